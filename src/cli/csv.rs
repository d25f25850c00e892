//! RFC 4180 CSV for the admin listings (`fleet list --csv`, `audit list --csv`),
//! safe to open in a spreadsheet: what devices report is data, never a formula.

/// A header line, then one line per row of `cells(row)`.
pub fn table<T>(header: &[&str], rows: &[T], cells: impl Fn(&T) -> Vec<String>) -> String {
    let mut out = header.join(",");
    for row in rows {
        out.push('\n');
        out.push_str(
            &cells(row)
                .iter()
                .map(|c| cell(c))
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    out
}

/// One cell, quoted when it must be.
pub fn cell(value: &str) -> String {
    // A cell starting with = + - @ (or a tab/CR) is a formula to a spreadsheet:
    // device facts come from devices, so an attacker could plant one.
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_string()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_quoted_and_formulas_neutralised() {
        assert_eq!(cell("plain"), "plain");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(cell("line\nbreak"), "\"line\nbreak\"");
    }

    #[test]
    fn a_table_is_its_header_then_a_line_per_row() {
        let rows = [("a", "=1"), ("b,c", "")];
        assert_eq!(
            table(&["x", "y"], &rows, |r| vec![
                r.0.to_string(),
                r.1.to_string()
            ]),
            "x,y\na,'=1\n\"b,c\","
        );
    }
}
