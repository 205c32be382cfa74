//! `verify`: did every line a test wrote arrive, and how many arrived twice?
//!
//! Input: the ids the test wrote (one per line) and the rows of the verify query (one per
//! id found, with its number of copies, counted in SQL). Output: a [`Report`] of written,
//! found, lost and duplicated ids. Nothing lost is the only success; duplicates are
//! reported but allowed (firetail is at-least-once, README "Guarantees").

use std::collections::{BTreeSet, HashMap};

use crate::table::Rows;

/// How many ids of each kind the text report lists (the JSON report lists all).
const LISTED: usize = 20;

/// The outcome of a verify.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Distinct ids in the ids file.
    pub written: usize,
    /// Written ids found at least once.
    pub found: usize,
    /// Written ids not found, sorted.
    pub lost: Vec<String>,
    /// Written ids found more than once, with their number of copies, sorted.
    pub duplicated: Vec<(String, u64)>,
    /// Copies beyond the first, over all duplicated ids.
    pub extra_copies: u64,
    /// Ids in the result that the file does not hold (other writers, or an id prefix
    /// shared with another run).
    pub unexpected: usize,
    /// Lines of the ids file that repeat an earlier id (counted once in `written`).
    pub repeated_in_file: usize,
}

impl Report {
    pub fn nothing_lost(&self) -> bool {
        self.lost.is_empty()
    }
}

/// The ids in the file's text: one per line, surrounding whitespace ignored, empty lines
/// skipped. Returns the distinct ids and how many lines repeated one.
pub fn read_ids(text: &str) -> (BTreeSet<String>, usize) {
    let mut ids = BTreeSet::new();
    let mut repeated = 0;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if !ids.insert(line.to_string()) {
            repeated += 1;
        }
    }
    (ids, repeated)
}

/// `id -> copies` from the verify query's rows (columns `id`, `copies`).
pub fn copies_by_id(rows: &Rows) -> Result<HashMap<String, u64>, String> {
    let col = |name: &str| {
        rows.columns.iter().position(|c| c == name).ok_or_else(|| {
            format!(
                "the result has no {name:?} column (columns: {:?})",
                rows.columns
            )
        })
    };
    let (id_at, copies_at) = (col("id")?, col("copies")?);
    let mut copies = HashMap::with_capacity(rows.data.len());
    for (i, row) in rows.data.iter().enumerate() {
        let cell = |at: usize| row.get(at).cloned().flatten();
        let Some(id) = cell(id_at) else { continue };
        let n = cell(copies_at)
            .and_then(|c| c.parse::<u64>().ok())
            .ok_or_else(|| format!("result row {}: copies is not a count: {row:?}", i + 1))?;
        *copies.entry(id).or_default() += n;
    }
    Ok(copies)
}

/// Compare what was written with what arrived.
pub fn compare(
    written: &BTreeSet<String>,
    repeated: usize,
    found: &HashMap<String, u64>,
) -> Report {
    let mut report = Report {
        written: written.len(),
        repeated_in_file: repeated,
        ..Report::default()
    };
    for id in written {
        match found.get(id) {
            None | Some(0) => report.lost.push(id.clone()),
            Some(&n) => {
                report.found += 1;
                if n > 1 {
                    report.duplicated.push((id.clone(), n));
                    report.extra_copies += n - 1;
                }
            }
        }
    }
    report.unexpected = found.keys().filter(|id| !written.contains(*id)).count();
    report
}

/// The report for people: counts first, then the first lost and duplicated ids.
pub fn render_text(r: &Report) -> String {
    let mut out = format!(
        "written {}  found {}  lost {}  duplicated {} ({} extra copies)\n",
        r.written,
        r.found,
        r.lost.len(),
        r.duplicated.len(),
        r.extra_copies
    );
    for id in r.lost.iter().take(LISTED) {
        out.push_str(&format!("lost {id}\n"));
    }
    if r.lost.len() > LISTED {
        out.push_str(&format!(
            "... and {} more lost (--json lists all)\n",
            r.lost.len() - LISTED
        ));
    }
    for (id, n) in r.duplicated.iter().take(LISTED) {
        out.push_str(&format!("duplicated {id} ({n} copies)\n"));
    }
    if r.duplicated.len() > LISTED {
        let more = r.duplicated.len() - LISTED;
        out.push_str(&format!(
            "... and {more} more duplicated (--json lists all)\n"
        ));
    }
    out
}

/// The report for scripts: one JSON object.
pub fn render_json(r: &Report) -> String {
    let duplicated: Vec<serde_json::Value> = r
        .duplicated
        .iter()
        .map(|(id, n)| serde_json::json!({ "id": id, "copies": n }))
        .collect();
    serde_json::json!({
        "written": r.written,
        "found": r.found,
        "lost": r.lost.len(),
        "duplicated": r.duplicated.len(),
        "extra_copies": r.extra_copies,
        "unexpected": r.unexpected,
        "repeated_in_ids_file": r.repeated_in_file,
        "lost_ids": r.lost,
        "duplicated_ids": duplicated,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(pairs: &[(&str, &str)]) -> Rows {
        Rows {
            columns: vec!["id".into(), "copies".into()],
            types: vec![],
            data: pairs
                .iter()
                .map(|(id, n)| vec![Some(id.to_string()), Some(n.to_string())])
                .collect(),
        }
    }

    #[test]
    fn finds_lost_duplicated_and_unexpected_ids() {
        let (written, repeated) = read_ids("a\nb\r\n\n c \nd\na\n");
        assert_eq!(written.len(), 4);
        assert_eq!(repeated, 1);
        let found =
            copies_by_id(&rows(&[("a", "1"), ("b", "3"), ("d", "1"), ("zz", "1")])).unwrap();
        let r = compare(&written, repeated, &found);
        assert_eq!((r.written, r.found), (4, 3));
        assert_eq!(r.lost, vec!["c".to_string()]);
        assert_eq!(r.duplicated, vec![("b".to_string(), 3)]);
        assert_eq!((r.extra_copies, r.unexpected), (2, 1));
        assert!(!r.nothing_lost());
        let text = render_text(&r);
        assert!(text.starts_with("written 4  found 3  lost 1  duplicated 1 (2 extra copies)\n"));
        assert!(
            text.contains("lost c\n") && text.contains("duplicated b (3 copies)\n"),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(&render_json(&r)).unwrap();
        assert_eq!(json["lost_ids"], serde_json::json!(["c"]));
        assert_eq!(json["duplicated_ids"][0]["copies"], 3);
    }

    #[test]
    fn a_bad_count_is_an_error_not_a_loss() {
        let e = copies_by_id(&rows(&[("a", "x")])).unwrap_err();
        assert!(e.contains("row 1"), "{e}");
        let mut no_copies = rows(&[]);
        no_copies.columns = vec!["id".into()];
        assert!(copies_by_id(&no_copies).unwrap_err().contains("copies"));
    }
}
