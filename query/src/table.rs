//! Query results and how they are printed: an aligned table for people, JSON lines or
//! CSV for scripts.
//!
//! Every value is Athena's text (`VarCharValue`); a missing value is SQL NULL. JSON lines
//! turn numeric columns back into numbers (by ColumnInfo's type), so `jq '.status >= 500'`
//! works; everything else stays a string.

use std::io::{self, Write};

use crate::csv;

/// Rows of a result: column names, Athena's type names (may be empty), values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rows {
    pub columns: Vec<String>,
    pub types: Vec<String>,
    pub data: Vec<Vec<Option<String>>>,
}

/// How `search` prints its rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for a terminal.
    Table,
    /// One JSON object per row.
    Jsonl,
    /// RFC 4180 CSV with a header row.
    Csv,
}

/// The widest a table cell is printed; longer values end in `…` (use jsonl/csv for all).
const MAX_CELL_CHARS: usize = 80;

pub fn write(rows: &Rows, format: Format, out: &mut impl Write) -> io::Result<()> {
    match format {
        Format::Table => write_table(rows, out),
        Format::Jsonl => write_jsonl(rows, out),
        Format::Csv => write_csv(rows, out),
    }
}

fn write_table(rows: &Rows, out: &mut impl Write) -> io::Result<()> {
    let shown: Vec<Vec<String>> = rows
        .data
        .iter()
        .map(|r| r.iter().map(|v| table_cell(v.as_deref())).collect())
        .collect();
    let mut widths: Vec<usize> = rows.columns.iter().map(|c| c.chars().count()).collect();
    for row in &shown {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String], out: &mut dyn Write| -> io::Result<()> {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        writeln!(out, "{}", padded.join("  ").trim_end())
    };
    line(&rows.columns, out)?;
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    line(&rule, out)?;
    for row in &shown {
        line(row, out)?;
    }
    writeln!(out, "({} rows)", rows.data.len())
}

/// A value as one terminal-safe cell: control characters escaped (a log value must not
/// move the cursor or break the row), long values cut.
fn table_cell(value: Option<&str>) -> String {
    let Some(value) = value else {
        return "NULL".into();
    };
    let mut cell = String::new();
    for (i, c) in value.chars().enumerate() {
        if i == MAX_CELL_CHARS {
            cell.push('…');
            break;
        }
        if c.is_control() {
            cell.extend(c.escape_default());
        } else {
            cell.push(c);
        }
    }
    cell
}

fn write_jsonl(rows: &Rows, out: &mut impl Write) -> io::Result<()> {
    for row in &rows.data {
        let mut line = String::from("{");
        for (i, (name, value)) in rows.columns.iter().zip(row).enumerate() {
            if i > 0 {
                line.push(',');
            }
            line.push_str(&serde_json::Value::from(name.as_str()).to_string());
            line.push(':');
            let kind = rows.types.get(i).map_or("", String::as_str);
            line.push_str(&json_value(value.as_deref(), kind).to_string());
        }
        line.push('}');
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// NULL as null, numeric Athena types as numbers, the rest as strings.
fn json_value(value: Option<&str>, athena_type: &str) -> serde_json::Value {
    let Some(v) = value else {
        return serde_json::Value::Null;
    };
    let numeric = matches!(
        athena_type,
        "tinyint" | "smallint" | "integer" | "int" | "bigint" | "double" | "float" | "real"
    );
    if numeric {
        if let Ok(n) = v.parse::<i64>() {
            return n.into();
        }
        if let Some(n) = v.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
            return n.into();
        }
    }
    v.into()
}

fn write_csv(rows: &Rows, out: &mut impl Write) -> io::Result<()> {
    let header: Vec<Option<&str>> = rows.columns.iter().map(|c| Some(c.as_str())).collect();
    writeln!(out, "{}", csv::format_record(&header))?;
    for row in &rows.data {
        let cells: Vec<Option<&str>> = row.iter().map(Option::as_deref).collect();
        writeln!(out, "{}", csv::format_record(&cells))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Rows {
        Rows {
            columns: vec!["path".into(), "status".into(), "duration_ms".into()],
            types: vec!["varchar".into(), "integer".into(), "double".into()],
            data: vec![
                vec![
                    Some("/a,\"b\"\nc".into()),
                    Some("500".into()),
                    Some("12.5".into()),
                ],
                vec![None, Some("200".into()), None],
            ],
        }
    }

    fn render(format: Format) -> String {
        let mut out = Vec::new();
        write(&sample(), format, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn jsonl_keeps_column_order_types_and_nulls() {
        assert_eq!(
            render(Format::Jsonl),
            "{\"path\":\"/a,\\\"b\\\"\\nc\",\"status\":500,\"duration_ms\":12.5}\n\
             {\"path\":null,\"status\":200,\"duration_ms\":null}\n"
        );
    }

    #[test]
    fn csv_quotes_what_needs_it_and_reads_back() {
        let text = render(Format::Csv);
        assert_eq!(
            text,
            "path,status,duration_ms\n\"/a,\"\"b\"\"\nc\",500,12.5\n,200,\n"
        );
        let parsed = csv::parse(&text).unwrap();
        assert_eq!(parsed[1][0].as_deref(), Some("/a,\"b\"\nc"));
    }

    #[test]
    fn table_escapes_control_characters_and_shows_null() {
        let text = render(Format::Table);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[2].starts_with("/a,\"b\"\\nc  500"), "{text}");
        assert!(lines[3].starts_with("NULL"), "{text}");
        assert_eq!(lines[4], "(2 rows)");
        let long = table_cell(Some(&"x".repeat(200)));
        assert_eq!(long.chars().count(), MAX_CELL_CHARS + 1);
    }
}
