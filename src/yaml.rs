//! A located YAML tree and a reader that checks it against a schema, collecting every
//! finding instead of stopping at the first.
//!
//! serde-saphyr parses the text (with budgets against alias bombs and deep nesting)
//! into a generic [`Node`] tree in which every node keeps its line and column. Schema
//! code then walks that tree with a [`Reader`]: each accessor checks one node's type,
//! records a located [`Diagnostic`] when it is wrong and returns `None`, so one run
//! reports every error of a file. Unknown keys get a "did you mean".

use crate::diag::{Diagnostic, Diagnostics, Loc, SourceFile, did_you_mean};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;
use std::fmt;
use std::path::Path;

/// One YAML node with its place in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub loc: Loc,
}

/// The value of a [`Node`].
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// What the node is, in words, for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "nothing (null)",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// Limits applied while parsing any YAML input.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest file accepted, in bytes.
    pub max_bytes: u64,
    /// Most nodes after alias expansion (an alias bomb trips this).
    pub max_nodes: usize,
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 4 * 1024 * 1024,
            max_nodes: 200_000,
            max_depth: 64,
        }
    }
}

/// Reads `path` (size-capped), decodes it as UTF-8 and parses it.
///
/// Every failure — missing file, too large, not UTF-8, empty, YAML syntax, budget —
/// comes back as a located diagnostic naming the file.
pub fn load_file(path: &Path, limits: Limits) -> Result<(SourceFile, Node), Diagnostics> {
    let name = path.display().to_string();
    let whole_file = |message: String, help: &str| {
        Diagnostics(vec![Diagnostic {
            severity: crate::diag::Severity::Error,
            file: name.clone(),
            line: 0,
            column: 0,
            field: String::new(),
            message,
            help: Some(help.to_string()),
            snippet: String::new(),
        }])
    };
    let bytes = match crate::fsutil::read_capped(path, limits.max_bytes) {
        Ok(b) => b,
        Err(crate::fsutil::ReadError::TooLarge { size, max, .. }) => {
            return Err(whole_file(
                format!("the file is {size} bytes; the limit is {max} bytes"),
                "a policy or config is a few KiB of YAML: check that this is the right file",
            ));
        }
        Err(crate::fsutil::ReadError::Io(e)) => {
            return Err(whole_file(
                format!("cannot read the file: {}", e.source),
                "check the path and its permissions",
            ));
        }
    };
    let text = decode_utf8(&name, bytes)?;
    let src = SourceFile::new(name, text);
    let node = parse(&src, limits)?;
    Ok((src, node))
}

/// Decodes UTF-8, or says where the first bad byte is.
pub fn decode_utf8(name: &str, bytes: Vec<u8>) -> Result<String, Diagnostics> {
    String::from_utf8(bytes).map_err(|e| {
        let bytes = e.as_bytes();
        let at = e.utf8_error().valid_up_to();
        let line = bytes[..at].iter().filter(|b| **b == b'\n').count() + 1;
        let column = at
            - bytes[..at]
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |p| p + 1)
            + 1;
        Diagnostics(vec![Diagnostic {
            severity: crate::diag::Severity::Error,
            file: name.to_string(),
            line,
            column,
            field: String::new(),
            message: format!("the file is not UTF-8 text (invalid byte at offset {at})"),
            help: Some("save the file as UTF-8; is it a binary file?".into()),
            snippet: String::new(),
        }])
    })
}

/// Parses one YAML document into a located tree.
pub fn parse(src: &SourceFile, limits: Limits) -> Result<Node, Diagnostics> {
    let one = |d: Diagnostic| Diagnostics(vec![d]);
    if src.text.trim().is_empty() || src.text.lines().all(is_blank_or_comment) {
        return Err(one(src.diagnostic(
            Loc {
                line: 1,
                column: 1,
                len: 1,
            },
            "",
            "the file is empty",
            Some("write a YAML mapping; `fleetkit init` creates a commented starting file".into()),
        )));
    }
    if let Some(at) = src.text.find('\0') {
        let line = src.text[..at].matches('\n').count() + 1;
        return Err(one(src.diagnostic(
            Loc {
                line,
                column: 1,
                len: 1,
            },
            "",
            "the file contains a NUL byte: it is not a YAML text file",
            Some("is this a binary file?".into()),
        )));
    }
    if let Some(node) = parse_plain(&src.text, limits) {
        return Ok(node);
    }
    parse_serde(&src.text, limits).map_err(|e| one(from_parse_error(src, &e)))
}

/// The general path: serde-saphyr with budgets against alias bombs and deep nesting.
fn parse_serde(text: &str, limits: Limits) -> Result<Node, serde_saphyr::Error> {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = limits.max_nodes;
    budget.max_depth = limits.max_depth;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    options.strict_booleans = true;
    serde_saphyr::from_str_with_options::<Spanned<RawNode>>(text, options).map(Node::from)
}

/// Fast path for the common document: builds the tree straight from the parser's
/// events when the text has no anchors, aliases, tags, merge keys, duplicate keys,
/// ambiguous scalars or errors. Anything else returns `None` and goes through
/// serde-saphyr, whose error messages and alias budget then apply. The typed serde
/// path costs about twice as much on a 1,000-rule policy; both give the same tree
/// (tested in `fast_path_matches_serde_saphyr`).
fn parse_plain(text: &str, limits: Limits) -> Option<Node> {
    use serde_saphyr::granit_parser::{Event, Parser};

    enum Frame {
        Seq(Vec<Node>, Loc),
        Map(Vec<(Node, Node)>, Option<Node>, Loc),
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Node> = None;
    let (mut documents, mut nodes) = (0usize, 0usize);
    for item in Parser::new_from_str(text) {
        let (event, span) = item.ok()?;
        let loc = Loc {
            line: span.start.line(),
            column: span.start.col() + 1,
            len: span.end.index().saturating_sub(span.start.index()),
        };
        let node = match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Comment(..) => {
                continue;
            }
            Event::DocumentStart(..) => {
                documents += 1;
                if documents > 1 {
                    return None;
                }
                continue;
            }
            Event::Scalar(value, style, anchor, tag) => {
                if anchor != 0 || tag.is_some() {
                    return None;
                }
                Node {
                    value: resolve_scalar(&value, style)?,
                    loc,
                }
            }
            Event::SequenceStart(_, anchor, tag) => {
                if anchor != 0 || tag.is_some() || stack.len() >= limits.max_depth {
                    return None;
                }
                stack.push(Frame::Seq(Vec::new(), loc));
                continue;
            }
            Event::MappingStart(_, anchor, tag) => {
                if anchor != 0 || tag.is_some() || stack.len() >= limits.max_depth {
                    return None;
                }
                stack.push(Frame::Map(Vec::new(), None, loc));
                continue;
            }
            Event::SequenceEnd => match stack.pop()? {
                Frame::Seq(items, loc) => Node {
                    value: Value::Seq(items),
                    loc,
                },
                Frame::Map(..) => return None,
            },
            Event::MappingEnd => match stack.pop()? {
                Frame::Map(entries, None, loc) => Node {
                    value: Value::Map(entries),
                    loc,
                },
                _ => return None,
            },
            _ => return None,
        };
        nodes += 1;
        if nodes > limits.max_nodes {
            return None;
        }
        match stack.last_mut() {
            None if root.is_none() => root = Some(node),
            None => return None,
            Some(Frame::Seq(items, _)) => items.push(node),
            Some(Frame::Map(entries, pending, _)) => match pending.take() {
                Some(key) => entries.push((key, node)),
                None => {
                    let merge = node.value == Value::Str("<<".into());
                    if merge || entries.iter().any(|(k, _)| k.value == node.value) {
                        return None;
                    }
                    *pending = Some(node);
                }
            },
        }
    }
    root
}

/// YAML 1.2 core-schema typing of a scalar, with strict booleans (`yes` is a
/// string). `None` for a plain scalar that looks numeric but is not plainly an
/// integer or float: the slow path decides those.
fn resolve_scalar(v: &str, style: serde_saphyr::granit_parser::ScalarStyle) -> Option<Value> {
    use serde_saphyr::granit_parser::ScalarStyle;
    if style != ScalarStyle::Plain {
        return Some(Value::Str(v.to_string()));
    }
    Some(match v {
        "" | "~" | "null" | "Null" | "NULL" => Value::Null,
        "true" | "True" | "TRUE" => Value::Bool(true),
        "false" | "False" | "FALSE" => Value::Bool(false),
        _ => {
            let first = v.as_bytes()[0];
            if !(first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.')) {
                return Some(Value::Str(v.to_string()));
            }
            if v.bytes()
                .all(|b| b.is_ascii_digit() || b == b'-' || b == b'+')
            {
                return v.parse::<i128>().ok().map(Value::Int);
            }
            return None;
        }
    })
}

fn is_blank_or_comment(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#') || t == "---" || t == "..."
}

fn from_parse_error(src: &SourceFile, e: &serde_saphyr::Error) -> Diagnostic {
    let loc = e.location().map_or(
        Loc {
            line: 1,
            column: 1,
            len: 1,
        },
        |l| Loc {
            line: l.line() as usize,
            column: l.column() as usize,
            len: 1,
        },
    );
    let raw = e.without_snippet().to_string();
    let message = plain_parse_message(strip_location_prefix(
        raw.lines().next().unwrap_or("invalid YAML"),
    ));
    let help = if message.contains("budget") {
        "the document expands to too many nodes or nests too deeply (an alias bomb?); write it out plainly"
    } else if message.contains("duplicate") {
        "each key may appear once in a mapping; remove or merge the repeated one"
    } else {
        "fix the YAML syntax here; indentation must use spaces and be consistent"
    };
    src.diagnostic(
        loc,
        "",
        format!("invalid YAML: {message}"),
        Some(help.into()),
    )
}

/// The parser's message without its own location suffixes and API advice, which
/// mean nothing to the author of a policy file.
fn plain_parse_message(msg: &str) -> String {
    if msg.contains("budget breached") {
        return "the document expands beyond the parser's limits (too many nodes after alias expansion, or nested too deeply)".into();
    }
    let msg = msg.replace(", set DuplicateKeyPolicy in Options if acceptable", "");
    match msg.find(" at line ") {
        Some(at) => msg[..at].to_string(),
        None => msg,
    }
}

/// serde-saphyr prefixes its messages with "line L column C: "; we show the location
/// ourselves.
fn strip_location_prefix(msg: &str) -> &str {
    let msg = msg.strip_prefix("error: ").unwrap_or(msg);
    if let Some((_, rest)) = msg
        .starts_with("line ")
        .then(|| msg.split_once(": "))
        .flatten()
    {
        return rest;
    }
    msg
}

// --- serde bridge: a generic tree whose every node is Spanned ------------------------

#[derive(Debug)]
enum RawNode {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<RawNode>>),
    Map(Vec<(Spanned<RawNode>, Spanned<RawNode>)>),
}

impl From<Spanned<RawNode>> for Node {
    fn from(s: Spanned<RawNode>) -> Self {
        let loc = Loc {
            line: s.referenced.line() as usize,
            column: s.referenced.column() as usize,
            len: s.referenced.span().len() as usize,
        };
        let value = match s.value {
            RawNode::Null => Value::Null,
            RawNode::Bool(b) => Value::Bool(b),
            RawNode::Int(i) => Value::Int(i),
            RawNode::Float(f) => Value::Float(f),
            RawNode::Str(s) => Value::Str(s),
            RawNode::Seq(v) => Value::Seq(v.into_iter().map(Node::from).collect()),
            RawNode::Map(v) => Value::Map(
                v.into_iter()
                    .map(|(k, v)| (Node::from(k), Node::from(v)))
                    .collect(),
            ),
        };
        Node { value, loc }
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = RawNode;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<RawNode, E> {
        Ok(RawNode::Null)
    }
    fn visit_none<E>(self) -> Result<RawNode, E> {
        Ok(RawNode::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<RawNode, D::Error> {
        d.deserialize_any(RawVisitor)
    }
    fn visit_bool<E>(self, v: bool) -> Result<RawNode, E> {
        Ok(RawNode::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<RawNode, E> {
        Ok(RawNode::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<RawNode, E> {
        Ok(RawNode::Int(v.into()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<RawNode, E> {
        Ok(RawNode::Int(v))
    }
    fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<RawNode, E> {
        i128::try_from(v)
            .map(RawNode::Int)
            .map_err(|_| E::custom("integer too large"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<RawNode, E> {
        Ok(RawNode::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<RawNode, E> {
        Ok(RawNode::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<RawNode, E> {
        Ok(RawNode::Str(v))
    }
    fn visit_bytes<E: serde::de::Error>(self, _v: &[u8]) -> Result<RawNode, E> {
        Err(E::custom("binary values are not supported here"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<RawNode, A::Error> {
        let mut v = Vec::new();
        while let Some(x) = a.next_element()? {
            v.push(x);
        }
        Ok(RawNode::Seq(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<RawNode, A::Error> {
        let mut v = Vec::new();
        while let Some(entry) = a.next_entry()? {
            v.push(entry);
        }
        Ok(RawNode::Map(v))
    }
}

impl<'de> Deserialize<'de> for RawNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

// --- the schema reader ----------------------------------------------------------------

/// Joins a field path and a key: `safety` + `risk_tolerance` → `safety.risk_tolerance`.
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// Joins a field path and a list index: `allowed_tools` + 2 → `allowed_tools[2]`.
pub fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// Walks a located tree, collecting every finding.
pub struct Reader<'s> {
    pub src: &'s SourceFile,
    pub diags: Diagnostics,
}

/// A checked mapping: its keys are known and unique.
pub struct MapView<'n> {
    pub node: &'n Node,
    pub field: String,
    entries: Vec<(&'n str, &'n Node, &'n Node)>,
}

impl<'n> MapView<'n> {
    /// The value under `key`, if present.
    pub fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, _, v)| *v)
    }

    /// The node of `key` itself (for pointing at a key rather than its value).
    pub fn key_node(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, k, _)| *k)
    }

    /// The value under `key`; records "missing key" at the mapping when absent.
    pub fn required(&self, r: &mut Reader<'_>, key: &str, help: &str) -> Option<&'n Node> {
        let v = self.get(key);
        if v.is_none() {
            let where_ = if self.field.is_empty() {
                "the document".to_string()
            } else {
                format!("`{}`", self.field)
            };
            r.error_at(
                self.node.loc,
                &join(&self.field, key),
                format!("missing required key `{key}` in {where_}"),
                Some(help.to_string()),
            );
        }
        v
    }

    /// The keys in file order.
    pub fn keys(&self) -> impl Iterator<Item = &'n str> + '_ {
        self.entries.iter().map(|(k, _, _)| *k)
    }

    /// The entries in file order: key, key node, value node.
    pub fn entries(&self) -> &[(&'n str, &'n Node, &'n Node)] {
        &self.entries
    }
}

impl<'s> Reader<'s> {
    pub fn new(src: &'s SourceFile) -> Self {
        Self {
            src,
            diags: Diagnostics::default(),
        }
    }

    /// Records an error at `loc`.
    pub fn error_at(&mut self, loc: Loc, field: &str, message: String, help: Option<String>) {
        let d = self.src.diagnostic(loc, field, message, help);
        self.diags.push(d);
    }

    /// Records an error at `node`.
    pub fn error(
        &mut self,
        node: &Node,
        field: &str,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        let help = help.into();
        self.error_at(
            node.loc,
            field,
            message.into(),
            (!help.is_empty()).then_some(help),
        );
    }

    fn type_error(&mut self, node: &Node, field: &str, expected: &str) {
        if field == "document" {
            self.error_at(
                node.loc,
                "",
                format!("the document must be {expected}, found {}", node.kind()),
                Some("write `key: value` lines at the top level".into()),
            );
            return;
        }
        let help = match (&node.value, expected) {
            (Value::Bool(_) | Value::Int(_) | Value::Float(_), "a string") => {
                "quote the value to make it a string, e.g. \"1.0\"".to_string()
            }
            (Value::Str(_) | Value::Int(_) | Value::Float(_) | Value::Null, "a list") => {
                "write a list: `[a, b]` or one `- item` per line".to_string()
            }
            (Value::Null, _) => format!("give {expected} here, or remove the key"),
            _ => format!("write {expected} here"),
        };
        self.error_at(
            node.loc,
            field,
            format!("`{field}` must be {expected}, found {}", node.kind()),
            Some(help),
        );
    }

    /// Checks that `node` is a mapping whose keys are all strings, all in `known`.
    /// Unknown keys are reported with a suggestion; known keys are still usable.
    pub fn map<'n>(&mut self, node: &'n Node, field: &str, known: &[&str]) -> Option<MapView<'n>> {
        let Value::Map(pairs) = &node.value else {
            self.type_error(
                node,
                if field.is_empty() { "document" } else { field },
                "a mapping",
            );
            return None;
        };
        let mut entries = Vec::with_capacity(pairs.len());
        for (k, v) in pairs {
            let Value::Str(key) = &k.value else {
                self.error(
                    k,
                    field,
                    format!("mapping keys must be strings, found {}", k.kind()),
                    "quote the key",
                );
                continue;
            };
            if !known.contains(&key.as_str()) {
                let where_ = if field.is_empty() {
                    "at the top level".to_string()
                } else {
                    format!("in `{field}`")
                };
                let help = match did_you_mean(key, known) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("known keys here: {}", known.join(", ")),
                };
                self.error_at(
                    k.loc,
                    &join(field, key),
                    format!("unknown key `{key}` {where_}"),
                    Some(help),
                );
                continue;
            }
            entries.push((key.as_str(), k, v));
        }
        Some(MapView {
            node,
            field: field.to_string(),
            entries,
        })
    }

    /// A string scalar.
    pub fn str<'n>(&mut self, node: &'n Node, field: &str) -> Option<&'n str> {
        match &node.value {
            Value::Str(s) => Some(s),
            _ => {
                self.type_error(node, field, "a string");
                None
            }
        }
    }

    /// A non-empty string scalar.
    pub fn non_empty_str<'n>(&mut self, node: &'n Node, field: &str) -> Option<&'n str> {
        let s = self.str(node, field)?;
        if s.trim().is_empty() {
            self.error(
                node,
                field,
                format!("`{field}` must not be empty"),
                "give a value",
            );
            return None;
        }
        Some(s)
    }

    pub fn bool(&mut self, node: &Node, field: &str) -> Option<bool> {
        match node.value {
            Value::Bool(b) => Some(b),
            _ => {
                self.type_error(node, field, "a boolean (true or false)");
                None
            }
        }
    }

    /// A non-negative integer.
    pub fn uint(&mut self, node: &Node, field: &str) -> Option<u64> {
        match node.value {
            Value::Int(i) if i >= 0 && i <= i128::from(u64::MAX) => Some(i as u64),
            Value::Int(_) => {
                self.error(
                    node,
                    field,
                    format!("`{field}` must not be negative"),
                    "give a whole number ≥ 0",
                );
                None
            }
            _ => {
                self.type_error(node, field, "a whole number");
                None
            }
        }
    }

    /// A list.
    pub fn seq<'n>(&mut self, node: &'n Node, field: &str) -> Option<&'n [Node]> {
        match &node.value {
            Value::Seq(items) => Some(items),
            _ => {
                self.type_error(node, field, "a list");
                None
            }
        }
    }

    /// A list of strings; each bad item is reported, the good ones returned with
    /// their nodes.
    pub fn str_list<'n>(
        &mut self,
        node: &'n Node,
        field: &str,
    ) -> Option<Vec<(&'n str, &'n Node)>> {
        let items = self.seq(node, field)?;
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            if let Some(s) = self.non_empty_str(item, &index(field, i)) {
                out.push((s, item));
            }
        }
        Some(out)
    }

    /// Finishes: the collected findings, sorted in file order.
    pub fn finish(self) -> Diagnostics {
        self.diags.sorted()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn src(text: &str) -> SourceFile {
        SourceFile::new("t.yaml", text)
    }

    #[test]
    fn nodes_keep_their_location() {
        let s = src("a: 1\nlist:\n  - x\n  - {y: true}\n");
        let n = parse(&s, Limits::default()).unwrap();
        let Value::Map(pairs) = &n.value else {
            panic!()
        };
        let (k, v) = &pairs[1];
        assert_eq!((k.loc.line, k.loc.column), (2, 1));
        let Value::Seq(items) = &v.value else {
            panic!()
        };
        assert_eq!((items[0].loc.line, items[0].loc.column), (3, 5));
    }

    #[test]
    fn every_unknown_key_is_reported_with_a_suggestion() {
        let s = src("organisation: x\nversoin: 1\n");
        let n = parse(&s, Limits::default()).unwrap();
        let mut r = Reader::new(&s);
        let m = r.map(&n, "", &["organization", "version"]).unwrap();
        assert!(m.get("organization").is_none());
        let d = r.finish();
        assert_eq!(d.len(), 2);
        assert_eq!(d.0[0].help.as_deref(), Some("did you mean `organization`?"));
        assert_eq!(d.0[1].line, 2);
    }

    #[test]
    fn alias_bombs_hit_the_budget() {
        let mut text = String::from("a: &a [1,2,3,4,5,6,7,8,9]\n");
        for (i, c) in ('b'..='h').enumerate() {
            let prev = (b'a' + i as u8) as char;
            text.push_str(&format!(
                "{c}: &{c} [{}]\n",
                vec![format!("*{prev}"); 9].join(",")
            ));
        }
        let d = parse(&src(&text), Limits::default())
            .unwrap_err()
            .0
            .remove(0);
        assert!(d.message.contains("expands beyond"), "{}", d.message);
    }

    /// The fast path gives exactly the tree serde-saphyr gives, wherever it applies.
    #[test]
    fn fast_path_matches_serde_saphyr() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = vec![root.join("examples/acme-corp/policy.yaml")];
        for dir in [
            "tests/fixtures/policies/bad",
            "tests/fixtures/policies/valid",
        ] {
            files.extend(
                std::fs::read_dir(root.join(dir))
                    .unwrap()
                    .map(|e| e.unwrap().path()),
            );
        }
        let mut fast = 0;
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            let Some(quick) = parse_plain(&text, Limits::default()) else {
                continue;
            };
            fast += 1;
            let slow = parse_serde(&text, Limits::default())
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            assert_eq!(quick, slow, "{}", f.display());
        }
        assert!(fast > 20, "the fast path should cover ordinary files");
        let scalars =
            "a: 1\nb: -2\nc: yes\nd: ~\ne: \"1.0\"\nf: 'x'\ng: true\nh: null\ni: |\n  text\n";
        let slow = parse_serde(scalars, Limits::default()).unwrap();
        assert_eq!(parse_plain(scalars, Limits::default()), Some(slow));
        assert_eq!(parse_plain("a: &x 1\nb: *x\n", Limits::default()), None);
        assert_eq!(parse_plain("a: 1.5\n", Limits::default()), None);
    }

    #[test]
    fn syntax_errors_are_located() {
        let d = parse(&src("a: [1, 2\nb: c: d\n"), Limits::default())
            .unwrap_err()
            .0
            .remove(0);
        assert_eq!(d.line, 2);
        assert!(d.message.starts_with("invalid YAML"));
    }
}
