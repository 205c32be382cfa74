//! Unit and property tests of the query builder: placeholders and parameters
//! always match, any value travels only as a parameter and round-trips, LIKE escaping is
//! exact, invalid identifiers are rejected.

use super::*;
use proptest::prelude::*;

fn ident(name: &str) -> Ident {
    Ident::new("column", name).unwrap()
}

fn table() -> TableRef {
    TableRef {
        database: Ident::new("database", "access_logs").unwrap(),
        table: Ident::new("table", "shop_access_log").unwrap(),
    }
}

fn days() -> DayRange {
    DayRange {
        first: "2026/11/25".into(),
        last: "2026/11/27".into(),
    }
}

fn search_spec(filters: Vec<Filter>) -> SearchSpec {
    SearchSpec {
        table: table(),
        columns: vec![ident("time"), ident("path"), ident("status")],
        days: days(),
        time: TimeBounds {
            from: "2026-11-26T00:00:00.000Z".into(),
            to: "2026-11-26T01:00:00.000Z".into(),
        },
        filters,
        order: Some((ident("time"), Direction::Desc)),
        limit: 50,
    }
}

/// The inverse of `Value::literal` for strings: what Athena reads back.
fn unquote(literal: &str) -> String {
    let inner = literal
        .strip_prefix('\'')
        .and_then(|l| l.strip_suffix('\''))
        .expect("a string literal is single-quoted");
    assert!(
        !inner.replace("''", "").contains('\''),
        "an inner quote is not doubled: {literal}"
    );
    inner.replace("''", "'")
}

/// The text a LIKE pattern of `kind` under `ESCAPE '\'` matches literally; panics if the
/// anchors are not where `kind` puts them, on an unescaped wildcard in the text, or on a
/// dangling escape.
fn unlike(pattern: &str, kind: LikeMatch) -> String {
    let mut body = pattern;
    if kind != LikeMatch::Prefix {
        body = body.strip_prefix('%').expect("a leading %");
    }
    if kind != LikeMatch::Suffix {
        body = body.strip_suffix('%').expect("a trailing %");
    }
    let mut text = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => text.push(chars.next().expect("dangling escape")),
            '%' | '_' => panic!("unescaped wildcard inside {pattern:?}"),
            c => text.push(c),
        }
    }
    text
}

#[test]
fn search_sql_restricts_days_and_time_and_puts_values_in_parameters() {
    let filters = vec![
        Filter::Eq(ident("status"), Value::Int(500)),
        Filter::like(ident("path"), LikeMatch::Prefix, "/orders/").unwrap(),
    ];
    let q = search(&search_spec(filters)).unwrap();
    assert_eq!(
        q.sql,
        "SELECT \"time\", \"path\", \"status\"\n\
         FROM \"access_logs\".\"shop_access_log\"\n\
         WHERE \"datepath\" >= ?\n  AND \"datepath\" <= ?\n\
         \x20 AND try(from_iso8601_timestamp(\"time\")) >= from_iso8601_timestamp(?)\n\
         \x20 AND try(from_iso8601_timestamp(\"time\")) < from_iso8601_timestamp(?)\n\
         \x20 AND \"status\" = ?\n  AND \"path\" LIKE ? ESCAPE '\\'\n\
         ORDER BY \"time\" DESC\nLIMIT 50"
    );
    assert_eq!(
        q.params,
        [
            "'2026/11/25'",
            "'2026/11/27'",
            "'2026-11-26T00:00:00.000Z'",
            "'2026-11-26T01:00:00.000Z'",
            "500",
            "'/orders/%'"
        ]
    );
}

#[test]
fn verify_sql_counts_copies_per_id_in_the_days() {
    let spec = VerifySpec {
        table: table(),
        id_column: ident("request_id"),
        days: days(),
        filters: vec![Filter::like(ident("request_id"), LikeMatch::Prefix, "run_1-").unwrap()],
    };
    let q = verify(&spec).unwrap();
    assert_eq!(
        q.sql,
        "SELECT \"request_id\" AS id, count(*) AS copies\n\
         FROM \"access_logs\".\"shop_access_log\"\n\
         WHERE \"datepath\" >= ?\n  AND \"datepath\" <= ?\n\
         \x20 AND \"request_id\" LIKE ? ESCAPE '\\'\n  AND \"request_id\" IS NOT NULL\n\
         GROUP BY \"request_id\""
    );
    assert_eq!(q.params, ["'2026/11/25'", "'2026/11/27'", "'run\\_1-%'"]);
}

#[test]
fn like_escaping_is_exact() {
    assert_eq!(
        like_pattern(LikeMatch::Prefix, "50%_off\\"),
        "50\\%\\_off\\\\%"
    );
    assert_eq!(like_pattern(LikeMatch::Suffix, ".css"), "%.css");
    assert_eq!(like_pattern(LikeMatch::Contains, "a_b"), "%a\\_b%");
    assert_eq!(like_pattern(LikeMatch::Contains, ""), "%%");
    let e = Filter::like(ident("status"), LikeMatch::Prefix, "5").unwrap_err();
    assert_eq!(
        e,
        SqlError::LikeOnNonString {
            column: "status".into()
        }
    );
}

#[test]
fn typed_values_become_literals_or_are_refused() {
    let lit = |col: &str, v: &str| Value::for_column(&ident(col), v).map(|v| v.literal());
    assert_eq!(lit("status", "404").unwrap(), "404");
    assert_eq!(lit("bytes", "9000000000").unwrap(), "9000000000");
    assert_eq!(lit("duration_ms", "12.5").unwrap(), "12.5");
    assert_eq!(lit("duration_ms", "3").unwrap(), "3.0");
    assert_eq!(lit("path", "it's").unwrap(), "'it''s'");
    assert_eq!(lit("unknown_column", "x").unwrap(), "'x'");
    for (col, bad) in [
        ("status", "5xx"),
        ("status", "1 OR 1=1"),
        ("status", "9000000000"),
        ("duration_ms", "NaN"),
        ("duration_ms", "inf"),
    ] {
        assert!(
            matches!(lit(col, bad), Err(SqlError::BadValue { .. })),
            "{col}={bad}"
        );
    }
    // The error names the column and the value, so the user sees which filter is wrong.
    assert_eq!(
        lit("status", "5xx"),
        Err(SqlError::BadValue {
            column: "status".into(),
            expected: "integer",
            value: "5xx".into(),
        })
    );
}

#[test]
fn invalid_identifiers_are_rejected() {
    let long = "a".repeat(256);
    for bad in [
        "",
        "Time",
        "1st",
        "a-b",
        "a b",
        "a\"b",
        "a;drop",
        "a.b",
        "é",
        "a'",
        "*",
        long.as_str(),
    ] {
        assert!(
            matches!(
                Ident::new("column", bad),
                Err(SqlError::BadIdentifier { .. })
            ),
            "{bad:?} was accepted"
        );
    }
    for good in ["time", "_x", "request_id", "a1", "a".repeat(255).as_str()] {
        Ident::new("column", good).unwrap();
    }
}

#[test]
fn a_value_over_athenas_parameter_limit_is_refused() {
    let long = "x".repeat(MAX_PARAMETER_CHARS - 1); // 1,025 characters quoted
    let e = search(&search_spec(vec![Filter::Eq(
        ident("path"),
        Value::Str(long),
    )]))
    .unwrap_err();
    assert_eq!(
        e,
        SqlError::ValueTooLong {
            column: "path".into(),
            chars: 1025
        }
    );
    let fits = "x".repeat(MAX_PARAMETER_CHARS - 2);
    search(&search_spec(vec![Filter::Eq(
        ident("path"),
        Value::Str(fits),
    )]))
    .unwrap();
}

/// Strings with everything that breaks naive quoting.
fn nasty_string() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "'", "''", "\\", "%", "_", "\n", "\r", "?", "\"", ";", "--", "/*", "é", "日本", "🔥", "\0",
        " ", "a",
    ]);
    prop_oneof![
        prop::collection::vec(pieces, 0..12).prop_map(|v| v.concat()),
        ".{0,40}",
    ]
}

fn any_filter() -> impl Strategy<Value = Filter> {
    let string_cols = prop::sample::select(vec!["path", "method", "request_id", "user_agent"]);
    let kinds = prop::sample::select(vec![
        LikeMatch::Prefix,
        LikeMatch::Suffix,
        LikeMatch::Contains,
    ]);
    prop_oneof![
        (string_cols.clone(), nasty_string())
            .prop_map(|(c, v)| Filter::Eq(ident(c), Value::Str(v))),
        (string_cols, kinds, nasty_string())
            .prop_map(|(c, k, v)| Filter::like(ident(c), k, &v).unwrap()),
        any::<i32>().prop_map(|v| Filter::Eq(ident("status"), Value::Int(v.into()))),
    ]
}

/// The same filter with its value replaced: the SQL text must not change.
fn blank(filter: &Filter) -> Filter {
    match filter {
        Filter::Eq(c, Value::Str(_)) => Filter::Eq(c.clone(), Value::Str("x".into())),
        Filter::Eq(c, _) => Filter::Eq(c.clone(), Value::Int(0)),
        Filter::Like(c, k, _) => Filter::Like(c.clone(), *k, "x".into()),
    }
}

/// A marker no SQL keyword or identifier contains.
const MARK: &str = "zq\u{2603}";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn values_travel_only_as_parameters_and_round_trip(filters in prop::collection::vec(any_filter(), 0..6)) {
        let q = search(&search_spec(filters.clone())).unwrap();
        // Placeholders and parameters match one to one.
        prop_assert_eq!(q.sql.matches('?').count(), q.params.len());
        prop_assert_eq!(q.params.len(), 4 + filters.len());
        // The text does not depend on the values at all, so no value is in it.
        let blanked: Vec<Filter> = filters.iter().map(blank).collect();
        prop_assert_eq!(&q.sql, &search(&search_spec(blanked)).unwrap().sql);
        // Each value comes back out of its parameter exactly.
        for (filter, param) in filters.iter().zip(&q.params[4..]) {
            match filter {
                Filter::Eq(_, Value::Str(v)) => prop_assert_eq!(&unquote(param), v),
                Filter::Eq(_, v) => prop_assert_eq!(param, &v.literal()),
                Filter::Like(_, kind, v) => {
                    prop_assert_eq!(&unlike(&unquote(param), *kind), v);
                }
            }
        }
    }

    #[test]
    fn a_marked_value_never_appears_in_the_text(value in nasty_string()) {
        let marked = format!("{MARK}{value}");
        let filters = vec![
            Filter::Eq(ident("path"), Value::Str(marked.clone())),
            Filter::like(ident("user_agent"), LikeMatch::Contains, &marked).unwrap(),
        ];
        let q = search(&search_spec(filters)).unwrap();
        prop_assert!(!q.sql.contains(MARK));
        prop_assert!(q.params.iter().any(|p| p.contains(MARK)));
    }

    #[test]
    fn only_the_strict_pattern_is_an_identifier(name in "\\PC{0,8}") {
        let strict = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        prop_assert_eq!(Ident::new("column", &name).is_ok(), strict);
    }
}
