//! The SIEM envelope: Elasticsearch's bulk API (NDJSON over HTTPS), which Elastic,
//! OpenSearch and the SIEMs built on them ingest as is.
//!
//! Why this one: each record travels as a `create` action with `_id` set to the
//! record's id, so the receiver itself refuses a second copy (`409`,
//! version_conflict). A batch sent again after a lost answer, or after the agent was
//! killed between sending and saving how far it got, adds nothing: delivery is at
//! least once on the wire and exactly once in the index, by id. Splunk's HEC and
//! OTLP/HTTP logs have no such key: a repeat would be a second event.
//!
//! The body: for each record, the line `{"create":{"_id":"<id>"}}` and then the
//! record's own line, each ending in `\n`. The answer's `items` come back in the
//! same order, each with its own `status`: 201 (stored) and 409 (already stored)
//! acknowledge the record; anything else stops the acknowledgement there, and the
//! rest is sent again later.

/// The body of one bulk request.
pub fn body<'a>(records: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<u8> {
    let mut out = Vec::new();
    for (id, line) in records {
        let action = serde_json::json!({"create": {"_id": id}});
        out.extend_from_slice(action.to_string().as_bytes());
        out.push(b'\n');
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out
}

/// What a bulk answer acknowledges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// How many records, from the first, the receiver holds now.
    pub acknowledged: usize,
    /// Of those, how many it already held (sent before).
    pub duplicates: usize,
    /// Why the first record that is not acknowledged was refused, if one was.
    pub refused: Option<String>,
}

/// Reads a 200 answer to a bulk request of `sent` records.
pub fn outcome(answer: &[u8], sent: usize) -> Result<Outcome, String> {
    let v: serde_json::Value =
        serde_json::from_slice(answer).map_err(|e| format!("the bulk answer is not JSON: {e}"))?;
    let items = v
        .get("items")
        .and_then(|i| i.as_array())
        .ok_or("the bulk answer has no `items`")?;
    if items.len() != sent {
        return Err(format!(
            "the bulk answer has {} items for {sent} records",
            items.len()
        ));
    }
    let mut done = Outcome {
        acknowledged: 0,
        duplicates: 0,
        refused: None,
    };
    for item in items {
        let result = item.get("create").or_else(|| item.get("index"));
        let status = result
            .and_then(|r| r.get("status"))
            .and_then(|s| s.as_u64());
        match status {
            Some(200 | 201) => done.acknowledged += 1,
            Some(409) => {
                done.acknowledged += 1;
                done.duplicates += 1;
            }
            other => {
                let reason = result
                    .and_then(|r| r.get("error"))
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                done.refused = Some(format!(
                    "status {}: {}",
                    other.map_or("?".into(), |s| s.to_string()),
                    reason.chars().take(300).collect::<String>()
                ));
                break;
            }
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_record_is_a_create_with_its_id() {
        let b = body([("a", r#"{"x":1}"#), ("b\"q", r#"{"y":"\n"}"#)]);
        let text = String::from_utf8(b).unwrap();
        assert_eq!(
            text,
            "{\"create\":{\"_id\":\"a\"}}\n{\"x\":1}\n{\"create\":{\"_id\":\"b\\\"q\"}}\n{\"y\":\"\\n\"}\n"
        );
    }

    #[test]
    fn conflicts_acknowledge_and_the_first_failure_stops_the_count() {
        let answer = br#"{"errors":true,"items":[
            {"create":{"_id":"a","status":201}},
            {"create":{"_id":"b","status":409,"error":{"type":"version_conflict_engine_exception"}}},
            {"create":{"_id":"c","status":429,"error":{"type":"es_rejected_execution_exception"}}},
            {"create":{"_id":"d","status":201}}]}"#;
        let o = outcome(answer, 4).unwrap();
        assert_eq!((o.acknowledged, o.duplicates), (2, 1));
        assert!(o.refused.unwrap().contains("429"));
        assert!(outcome(answer, 3).is_err());
        assert!(outcome(b"<html>", 1).is_err());
    }
}
