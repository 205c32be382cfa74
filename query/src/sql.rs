//! The query builder: the SQL text of a search or a verify, and its execution parameters.
//!
//! Input: validated identifiers ([`Ident`]), typed values ([`Value`]) and the UTC days to
//! scan. Output: a [`Query`] whose text holds only identifiers that passed a strict
//! pattern, fixed keywords and `?` placeholders, and whose parameters hold every value.
//!
//! Why this shape: Athena's `ExecutionParameters` are not bound values but SQL literals
//! that Athena substitutes for the `?` in order, so a string parameter must itself be a
//! quoted literal (`'it''s'`, inner quotes doubled); the builder does that quoting, and
//! the text never contains a value, so no value can change the statement. Placeholders
//! appear only in `WHERE` (Athena rejects them elsewhere), so `LIMIT` is a number the
//! builder formats itself. Every query restricts `datepath`, the partition projection
//! column, so it scans only the days asked for.

use std::fmt::Write as _;

/// Athena refuses an execution parameter longer than this (StartQueryExecution API
/// reference: `ExecutionParameters`, each member 1-1024 characters).
pub const MAX_PARAMETER_CHARS: usize = 1024;

/// The partition projection column: the UTC day Firehose received a line, `yyyy/MM/dd`.
pub const PARTITION_COLUMN: &str = "datepath";

/// The character that escapes `%`, `_` and itself in LIKE patterns (`ESCAPE '\'`).
pub const LIKE_ESCAPE: char = '\\';

/// The type of a column, which decides how its values are written as literals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    String,
    Int,
    BigInt,
    Double,
}

/// The table's columns (deploy/terraform/glue.tf, in its order). A column not listed is
/// still accepted if its name is valid, and compared as a string.
pub const ACCESS_LOG_COLUMNS: &[(&str, ColumnType)] = &[
    ("time", ColumnType::String),
    ("request_id", ColumnType::String),
    ("method", ColumnType::String),
    ("path", ColumnType::String),
    ("status", ColumnType::Int),
    ("duration_ms", ColumnType::Double),
    ("remote_ip", ColumnType::String),
    ("user_agent", ColumnType::String),
    ("bytes", ColumnType::BigInt),
    ("level", ColumnType::String),
];

/// The columns firetail adds to every line (deploy/terraform/glue.tf, `added_columns`,
/// with the Terraform variables' defaults): the pod's name, namespace and node, from the
/// Downward API. Strings, after the access log's own columns.
pub const IDENTITY_COLUMNS: &[&str] = &["pod", "namespace", "node"];

/// The column of the source's name when the table has one (Terraform `source_column`,
/// firetail's `--source-field`); not in the table by default.
pub const SOURCE_COLUMN: &str = "source";

/// Why a query could not be built: always the user's input, so always exit 2.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SqlError {
    #[error("{what} {name:?} is not a valid name: use 1-255 lowercase letters, digits and underscores, not starting with a digit (Glue's naming rules)")]
    BadIdentifier { what: &'static str, name: String },
    #[error("column {column} holds {expected} values, and {value:?} is not one")]
    BadValue {
        column: String,
        expected: &'static str,
        value: String,
    },
    #[error("column {column} is not a string column, so it cannot be matched with a prefix, suffix or substring")]
    LikeOnNonString { column: String },
    #[error("the value for {column} is {chars} characters as a SQL literal; Athena accepts at most {MAX_PARAMETER_CHARS} per parameter")]
    ValueTooLong { column: String, chars: usize },
}

/// A database, table or column name that matched the strict pattern: lowercase ASCII
/// letters, digits and `_`, not starting with a digit, at most 255 bytes. Written
/// double-quoted, so a reserved word such as `time` works as a column name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ident(String);

impl Ident {
    /// `what` names the kind of identifier in the error ("column", "table").
    pub fn new(what: &'static str, name: &str) -> Result<Ident, SqlError> {
        let bytes = name.as_bytes();
        let ok = !bytes.is_empty()
            && bytes.len() <= 255
            && !bytes[0].is_ascii_digit()
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_');
        if ok {
            Ok(Ident(name.to_string()))
        } else {
            Err(SqlError::BadIdentifier {
                what,
                name: name.to_string(),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The type of this column in the access-log table (string when unknown).
    pub fn column_type(&self) -> ColumnType {
        ACCESS_LOG_COLUMNS
            .iter()
            .find(|(name, _)| *name == self.0)
            .map_or(ColumnType::String, |(_, t)| *t)
    }

    fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }
}

/// `"database"."table"`, both validated.
#[derive(Clone, Debug)]
pub struct TableRef {
    pub database: Ident,
    pub table: Ident,
}

impl TableRef {
    fn quoted(&self) -> String {
        format!("{}.{}", self.database.quoted(), self.table.quoted())
    }
}

/// A typed value for a column; `literal` turns it into an execution parameter.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Double(f64),
}

impl Value {
    /// Parse `text` as a value of `column`'s type.
    pub fn for_column(column: &Ident, text: &str) -> Result<Value, SqlError> {
        let bad = |expected| SqlError::BadValue {
            column: column.as_str().to_string(),
            expected,
            value: text.to_string(),
        };
        match column.column_type() {
            ColumnType::String => Ok(Value::Str(text.to_string())),
            ColumnType::Int => text
                .trim()
                .parse::<i32>()
                .map(|v| Value::Int(v.into()))
                .map_err(|_| bad("integer")),
            ColumnType::BigInt => text
                .trim()
                .parse::<i64>()
                .map(Value::Int)
                .map_err(|_| bad("integer")),
            ColumnType::Double => match text.trim().parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(Value::Double(v)),
                _ => Err(bad("finite number")),
            },
        }
    }

    /// The SQL literal Athena substitutes for a `?`: strings single-quoted with inner
    /// quotes doubled (the only character a SQL string literal escapes; a backslash is
    /// an ordinary character in Trino), numbers in plain decimal.
    pub fn literal(&self) -> String {
        match self {
            Value::Str(s) => format!("'{}'", s.replace('\'', "''")),
            Value::Int(v) => v.to_string(),
            // `{:?}` keeps a `.0` on whole numbers and never prints `inf`/`NaN` here
            // (`for_column` admits finite values only).
            Value::Double(v) => format!("{v:?}"),
        }
    }
}

/// Where in a string column a LIKE pattern anchors the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LikeMatch {
    Prefix,
    Suffix,
    Contains,
}

/// Escape `%`, `_` and the escape character itself, so each matches only itself under
/// `ESCAPE '\'`; then anchor the text with `%` as asked.
pub fn like_pattern(kind: LikeMatch, text: &str) -> String {
    let mut escaped = String::with_capacity(text.len() + 2);
    for c in text.chars() {
        if c == LIKE_ESCAPE || c == '%' || c == '_' {
            escaped.push(LIKE_ESCAPE);
        }
        escaped.push(c);
    }
    match kind {
        LikeMatch::Prefix => escaped + "%",
        LikeMatch::Suffix => format!("%{escaped}"),
        LikeMatch::Contains => format!("%{escaped}%"),
    }
}

/// One condition of the WHERE clause.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    Eq(Ident, Value),
    Like(Ident, LikeMatch, String),
}

impl Filter {
    /// A LIKE filter, refused on a column that does not hold strings.
    pub fn like(column: Ident, kind: LikeMatch, text: &str) -> Result<Filter, SqlError> {
        if column.column_type() != ColumnType::String {
            return Err(SqlError::LikeOnNonString {
                column: column.as_str().to_string(),
            });
        }
        Ok(Filter::Like(column, kind, text.to_string()))
    }
}

/// The first and last `datepath` to scan, both inclusive (`yyyy/MM/dd`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DayRange {
    pub first: String,
    pub last: String,
}

/// The ISO-8601 bounds for the `time` column: `from` inclusive, `to` exclusive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeBounds {
    pub from: String,
    pub to: String,
}

/// Sort direction of the ORDER BY column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Asc,
    Desc,
}

/// A search: which columns, which rows, in which order, how many.
#[derive(Clone, Debug)]
pub struct SearchSpec {
    pub table: TableRef,
    pub columns: Vec<Ident>,
    pub days: DayRange,
    pub time: TimeBounds,
    pub filters: Vec<Filter>,
    pub order: Option<(Ident, Direction)>,
    pub limit: u32,
}

/// A verify: how many copies of each id arrived in the days scanned.
#[derive(Clone, Debug)]
pub struct VerifySpec {
    pub table: TableRef,
    pub id_column: Ident,
    pub days: DayRange,
    pub filters: Vec<Filter>,
}

/// SQL text with `?` placeholders and the literals that fill them, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    pub sql: String,
    pub params: Vec<String>,
}

/// The WHERE clause under construction: every condition pushed with its one literal.
#[derive(Default)]
struct Where {
    conditions: Vec<String>,
    params: Vec<String>,
}

impl Where {
    fn push(&mut self, condition: String, column: &str, literal: String) -> Result<(), SqlError> {
        let chars = literal.chars().count();
        if chars > MAX_PARAMETER_CHARS {
            return Err(SqlError::ValueTooLong {
                column: column.to_string(),
                chars,
            });
        }
        debug_assert_eq!(condition.matches('?').count(), 1);
        self.conditions.push(condition);
        self.params.push(literal);
        Ok(())
    }

    fn days(&mut self, days: &DayRange) -> Result<(), SqlError> {
        let col = format!("\"{PARTITION_COLUMN}\"");
        let first = Value::Str(days.first.clone()).literal();
        let last = Value::Str(days.last.clone()).literal();
        self.push(format!("{col} >= ?"), PARTITION_COLUMN, first)?;
        self.push(format!("{col} <= ?"), PARTITION_COLUMN, last)
    }

    fn filter(&mut self, filter: &Filter) -> Result<(), SqlError> {
        match filter {
            Filter::Eq(col, value) => self.push(
                format!("{} = ?", col.quoted()),
                col.as_str(),
                value.literal(),
            ),
            Filter::Like(col, kind, text) => {
                let pattern = Value::Str(like_pattern(*kind, text)).literal();
                let condition = format!("{} LIKE ? ESCAPE '{LIKE_ESCAPE}'", col.quoted());
                self.push(condition, col.as_str(), pattern)
            }
        }
    }

    fn render(&self) -> String {
        format!("WHERE {}", self.conditions.join("\n  AND "))
    }
}

/// The search query. `time` is compared as a timestamp (`try` makes a malformed time a
/// NULL, which no bound matches, instead of failing the whole query).
pub fn search(spec: &SearchSpec) -> Result<Query, SqlError> {
    let mut w = Where::default();
    w.days(&spec.days)?;
    let time = "try(from_iso8601_timestamp(\"time\"))";
    let from = Value::Str(spec.time.from.clone()).literal();
    let to = Value::Str(spec.time.to.clone()).literal();
    w.push(format!("{time} >= from_iso8601_timestamp(?)"), "time", from)?;
    w.push(format!("{time} < from_iso8601_timestamp(?)"), "time", to)?;
    for f in &spec.filters {
        w.filter(f)?;
    }
    let columns: Vec<String> = spec.columns.iter().map(Ident::quoted).collect();
    let mut sql = format!(
        "SELECT {}\nFROM {}\n{}",
        columns.join(", "),
        spec.table.quoted(),
        w.render()
    );
    if let Some((col, dir)) = &spec.order {
        let dir = match dir {
            Direction::Asc => "ASC",
            Direction::Desc => "DESC",
        };
        let _ = write!(sql, "\nORDER BY {} {dir}", col.quoted());
    }
    let _ = write!(sql, "\nLIMIT {}", spec.limit);
    Ok(Query {
        sql,
        params: w.params,
    })
}

/// The verify query: one row per id found, with its number of copies. The duplicate
/// count is aggregated in SQL (`count(*)` per id); the result holds each found id once,
/// so its size is the number of distinct ids, not the number of lines.
pub fn verify(spec: &VerifySpec) -> Result<Query, SqlError> {
    let mut w = Where::default();
    w.days(&spec.days)?;
    for f in &spec.filters {
        w.filter(f)?;
    }
    let id = spec.id_column.quoted();
    w.conditions.push(format!("{id} IS NOT NULL"));
    let sql = format!(
        "SELECT {id} AS id, count(*) AS copies\nFROM {}\n{}\nGROUP BY {id}",
        spec.table.quoted(),
        w.render()
    );
    Ok(Query {
        sql,
        params: w.params,
    })
}

#[cfg(test)]
#[path = "sql_tests.rs"]
mod tests;
