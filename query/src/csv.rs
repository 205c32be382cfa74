//! RFC 4180 CSV, the format of Athena's result files and of `--format csv`.
//!
//! Athena writes every value double-quoted (inner quotes doubled) and NULL as an empty,
//! unquoted field; values may hold commas and newlines. So an unquoted empty field reads
//! as None and a quoted one as Some, and writing keeps the same distinction.

/// Parse a whole CSV text into records. Accepts `\n` and `\r\n` line ends; a final line
/// end is optional. An unclosed quote is an error naming the record.
pub fn parse(text: &str) -> Result<Vec<Vec<Option<String>>>, String> {
    let mut records = Vec::new();
    let mut record: Vec<Option<String>> = Vec::new();
    let mut chars = text.chars().peekable();
    let mut field = String::new();
    let mut quoted = false;
    let mut any = false;
    loop {
        let Some(c) = chars.next() else {
            if any || !record.is_empty() {
                record.push(finish(&mut field, &mut quoted));
                records.push(record);
            }
            return Ok(records);
        };
        any = true;
        match c {
            '"' if field.is_empty() && !quoted => {
                quoted = true;
                read_quoted(&mut chars, &mut field)
                    .map_err(|e| format!("record {}: {e}", records.len() + 1))?;
            }
            ',' => record.push(finish(&mut field, &mut quoted)),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                record.push(finish(&mut field, &mut quoted));
                records.push(std::mem::take(&mut record));
                any = false;
            }
            c => field.push(c),
        }
    }
}

/// The rest of a quoted field, up to and including its closing quote.
fn read_quoted(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    field: &mut String,
) -> Result<(), String> {
    while let Some(c) = chars.next() {
        if c == '"' {
            if chars.peek() == Some(&'"') {
                chars.next();
                field.push('"');
            } else {
                return Ok(());
            }
        } else {
            field.push(c);
        }
    }
    Err("a quoted value is never closed".into())
}

fn finish(field: &mut String, quoted: &mut bool) -> Option<String> {
    let value = std::mem::take(field);
    let was_quoted = std::mem::replace(quoted, false);
    (was_quoted || !value.is_empty()).then_some(value)
}

/// One CSV record (no line end): NULL as an empty field, an empty string as `""`, and
/// any value with a comma, quote or line break quoted.
pub fn format_record(cells: &[Option<&str>]) -> String {
    let fields: Vec<String> = cells
        .iter()
        .map(|cell| match cell {
            None => String::new(),
            Some(v) if v.is_empty() || v.contains([',', '"', '\n', '\r']) => {
                format!("\"{}\"", v.replace('"', "\"\""))
            }
            Some(v) => (*v).to_string(),
        })
        .collect();
    fields.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_athena_style_files() {
        let text = "\"id\",\"copies\"\r\n\"a\",\"2\"\r\n\"b,\"\"c\"\"\nd\",\r\n";
        let records = parse(text).unwrap();
        assert_eq!(
            records,
            vec![
                vec![Some("id".into()), Some("copies".into())],
                vec![Some("a".into()), Some("2".into())],
                vec![Some("b,\"c\"\nd".into()), None],
            ]
        );
        assert!(parse("\"open").unwrap_err().contains("record 1"));
        assert_eq!(parse("").unwrap(), Vec::<Vec<Option<String>>>::new());
        assert_eq!(parse("x").unwrap(), vec![vec![Some("x".to_string())]]);
    }

    proptest! {
        #[test]
        fn any_records_round_trip(records in prop::collection::vec(
            prop::collection::vec(prop::option::of(".*"), 1..5), 1..6)) {
            let text: String = records
                .iter()
                .map(|r| {
                    let cells: Vec<Option<&str>> = r.iter().map(Option::as_deref).collect();
                    format_record(&cells) + "\n"
                })
                .collect();
            // A record of one NULL is an empty line, which reads as one NULL too.
            prop_assert_eq!(parse(&text).unwrap(), records);
        }
    }
}
