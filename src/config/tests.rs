use std::collections::HashMap;

use super::*;

/// Parses `extra` after `--path <dir>/access.log --stream s`, with `env` as the
/// whole environment.
fn parse_env(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Result<Config, String> {
    let path = dir.join("access.log");
    let mut argv = vec![
        "firetail".to_string(),
        "--path".into(),
        path.display().to_string(),
        "--stream".into(),
        "s".into(),
    ];
    argv.extend(extra.iter().map(|s| s.to_string()));
    let env: HashMap<String, OsString> = env
        .iter()
        .map(|(k, v)| (k.to_string(), OsString::from(v)))
        .collect();
    parse_from(argv, &|k| env.get(k).cloned()).map_err(|e| match e {
        ParseError::Invalid(e) => e.to_string(),
        ParseError::Usage(e) => e.to_string(),
        ParseError::Help(h) => h,
    })
}

fn parse(dir: &Path, extra: &[&str]) -> Result<Config, String> {
    parse_env(dir, extra, &[])
}

#[test]
fn defaults_follow_design() {
    let dir = tempfile::tempdir().unwrap();
    let c = parse(dir.path(), &[]).unwrap();
    assert_eq!(c.flush_interval, Duration::from_secs(1));
    assert_eq!(c.drain_timeout, Duration::from_secs(10));
    assert_eq!(c.drain_quiet, Duration::from_secs(1));
    assert_eq!(c.max_in_flight, 4);
    assert_eq!(c.read_from, ReadFrom::Beginning);
    assert_eq!(c.invalid_json, InvalidJson::Ship);
    assert!(!c.aggregate);
    assert_eq!(c.aggregate_max_lines, 500);
    assert!(c.adaptive);
    assert_eq!(c.checkpoint, dir.path().join(".firetail-access.log.json"));
    assert_eq!(
        c.dead_letter,
        dir.path().join(".firetail-access.log.dead.jsonl")
    );
    assert_eq!(c.metrics_addr, "[::]:9797".parse().unwrap());
    assert_eq!(c.rotate_wait, Duration::from_secs(30));
    assert_eq!(c.max_unacked_bytes, 16 << 20);
    assert_eq!(c.dead_letter_max_bytes, 64 << 20);
    assert_eq!(c.max_files, 1024);
    assert!(c.add_fields.is_empty());
    assert_eq!((c.source_field, c.file_field), (None, None));
}

#[test]
fn a_termination_message_path_given_is_taken_from_the_flag_or_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("termination-log");
    let flag = ["--termination-message-path", file.to_str().unwrap()];
    let c = parse(dir.path(), &flag).unwrap();
    assert_eq!(c.termination_message.as_deref(), Some(file.as_path()));
    let env = [("FIRETAIL_TERMINATION_MESSAGE_PATH", file.to_str().unwrap())];
    let c = parse_env(dir.path(), &[], &env).unwrap();
    assert_eq!(c.termination_message.as_deref(), Some(file.as_path()));
}

#[test]
fn durations_are_humantime() {
    let dir = tempfile::tempdir().unwrap();
    let c = parse(
        dir.path(),
        &["--flush-interval", "250ms", "--drain-timeout", "2m"],
    )
    .unwrap();
    assert_eq!(c.flush_interval, Duration::from_millis(250));
    assert_eq!(c.drain_timeout, Duration::from_secs(120));
}

/// Each option with a value that is malformed, out of range, or in conflict.
const BAD: &[(&str, &str)] = &[
    ("--flush-interval", "soon"),
    ("--flush-interval", "0s"),
    ("--flush-interval", "1000000000y"),
    ("--flush-interval", "11m"),
    ("--drain-timeout", "0s"),
    ("--drain-timeout", "2h"),
    ("--drain-quiet", "5ms"),
    ("--drain-quiet", "10s"),
    ("--call-timeout", "500ms"),
    ("--call-timeout", "6m"),
    ("--rotate-wait", "500ms"),
    ("--rotate-wait", "2h"),
    ("--max-unacked-bytes", "1MiB"),
    ("--max-unacked-bytes", "2GiB"),
    ("--max-unacked-bytes", "lots"),
    ("--dead-letter-max-bytes", "512KiB"),
    ("--dead-letter-max-bytes", "17GiB"),
    ("--max-in-flight", "0"),
    ("--max-in-flight", "65"),
    ("--max-in-flight", "four"),
    ("--adaptive", "maybe"),
    ("--aggregate-max-lines", "0"),
    ("--aggregate-max-lines", "501"),
    ("--read-from", "middle"),
    ("--invalid-json", "drop"),
    ("--log-format", "xml"),
    ("--metrics-addr", "nowhere"),
    ("--max-files", "0"),
    ("--max-files", "65537"),
    ("--max-files", "many"),
    ("--source-field", "1source"),
    ("--file-field", "has space"),
    ("--stream", "has space"),
];

#[test]
fn bad_values_name_their_flag() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, value) in BAD {
        let err = parse(dir.path(), &[flag, value]).unwrap_err();
        assert!(err.contains(flag), "{flag} {value}: {err}");
    }
}

#[test]
fn bad_values_from_the_environment_name_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    // --stream is on the command line of every case here; see below.
    for (flag, value) in BAD.iter().filter(|(f, _)| *f != "--stream") {
        let var = format!(
            "FIRETAIL_{}",
            flag.trim_start_matches("--")
                .replace('-', "_")
                .to_uppercase()
        );
        let err = parse_env(dir.path(), &[], &[(&var, value)]).unwrap_err();
        assert!(
            err.contains(&format!("invalid value for {var}")),
            "{var}={value}: {err}"
        );
    }
}

#[test]
fn a_flag_wins_over_its_variable() {
    let dir = tempfile::tempdir().unwrap();
    let c = parse_env(
        dir.path(),
        &["--flush-interval", "300ms"],
        &[("FIRETAIL_FLUSH_INTERVAL", "soon")],
    )
    .unwrap();
    assert_eq!(c.flush_interval, Duration::from_millis(300));
}

#[test]
fn variables_fill_what_flags_leave_out() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let env: HashMap<String, OsString> = [
        ("FIRETAIL_PATH", log.as_os_str()),
        ("FIRETAIL_STREAM", "orders".as_ref()),
        ("FIRETAIL_READ_FROM", "END".as_ref()),
        ("FIRETAIL_MAX_IN_FLIGHT", "8".as_ref()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_os_string()))
    .collect();
    let c = parse_from(["firetail"], &|k| env.get(k).cloned()).unwrap();
    let only = SourceConfig {
        name: DEFAULT_SOURCE.into(),
        path: log,
        stream: "orders".into(),
    };
    assert_eq!(c.sources, [only]);
    assert_eq!(c.read_from, ReadFrom::End);
    assert_eq!(c.max_in_flight, 8);
}

#[test]
fn aggregate_accepts_every_boolean_spelling() {
    let dir = tempfile::tempdir().unwrap();
    for (v, want) in [
        ("1", true),
        ("yes", true),
        ("TRUE", true),
        ("0", false),
        ("no", false),
    ] {
        let c = parse_env(dir.path(), &[], &[("FIRETAIL_AGGREGATE", v)]).unwrap();
        assert_eq!(c.aggregate, want, "{v}");
    }
    assert!(
        !parse_env(dir.path(), &[], &[("FIRETAIL_AGGREGATE", "")])
            .unwrap()
            .aggregate
    );
    let err = parse_env(dir.path(), &[], &[("FIRETAIL_AGGREGATE", "sometimes")]).unwrap_err();
    assert!(err.contains("FIRETAIL_AGGREGATE"), "{err}");
    assert!(parse(dir.path(), &["--aggregate"]).unwrap().aggregate);
}

#[test]
fn drain_quiet_must_be_shorter_than_drain_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let err = parse(
        dir.path(),
        &["--drain-quiet", "5s", "--drain-timeout", "5s"],
    )
    .unwrap_err();
    assert!(
        err.contains("--drain-quiet") && err.contains("--drain-timeout"),
        "{err}"
    );
    assert!(parse(
        dir.path(),
        &["--drain-quiet", "4s", "--drain-timeout", "5s"]
    )
    .is_ok());
}

#[test]
fn the_duplicate_window_covers_every_call_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let err = parse(
        dir.path(),
        &["--max-in-flight", "16", "--max-unacked-bytes", "8MiB"],
    )
    .unwrap_err();
    assert!(
        err.contains("--max-unacked-bytes") && err.contains("16MiB"),
        "{err}"
    );
    let c = parse(
        dir.path(),
        &["--max-in-flight", "16", "--max-unacked-bytes", "16MiB"],
    )
    .unwrap();
    assert_eq!(c.max_unacked_bytes, 16 << 20);
}

#[test]
fn missing_required_values_say_what_to_set() {
    let err = parse_from(["firetail", "--stream", "s"], &|_| None).unwrap_err();
    let ParseError::Invalid(e) = err else {
        panic!("{err:?}")
    };
    assert_eq!(e.name, "--path");
    assert!(e.problem.contains("FIRETAIL_PATH"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log").into_os_string();
    let env = |k: &str| match k {
        "FIRETAIL_STREAM" => Some(OsString::from("has space")),
        "FIRETAIL_PATH" => Some(log.clone()),
        _ => None,
    };
    let Err(ParseError::Invalid(e)) = parse_from(["firetail"], &env) else {
        panic!("a bad stream name from the environment was accepted")
    };
    assert_eq!(e.name, "FIRETAIL_STREAM");
}

#[test]
fn help_lists_exit_codes_and_variables() {
    let Err(ParseError::Help(help)) = parse_from(["firetail", "--help"], &|_| None) else {
        panic!("--help is not help")
    };
    for want in [
        "Exit codes:",
        "FIRETAIL_FLUSH_INTERVAL",
        "FIRETAIL_AGGREGATE",
        "SIGHUP",
        "4MiB–1GiB",
        "FIRETAIL_SOURCES",
        "FIRETAIL_ADD_FIELDS",
        "FIRETAIL_MAX_FILES",
    ] {
        assert!(help.contains(want), "{want} missing from:\n{help}");
    }
}

#[test]
fn stream_name_is_checked() {
    assert!(stream_problem("orders-access_log.v2").is_ok());
    assert_eq!(stream_problem("").unwrap_err(), "must not be empty");
    assert_eq!(
        stream_problem("has space").unwrap_err(),
        r#""has space" contains ' '; a stream name has only letters, digits, '_', '.' and '-'"#
    );
    assert_eq!(
        stream_problem(&"x".repeat(65)).unwrap_err(),
        "is longer than 64 characters"
    );
}

#[test]
fn max_files_takes_its_whole_range() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        parse(dir.path(), &["--max-files", "1"]).unwrap().max_files,
        1
    );
    let env = [("FIRETAIL_MAX_FILES", "65536")];
    assert_eq!(parse_env(dir.path(), &[], &env).unwrap().max_files, 65536);
    assert_eq!(
        parse(dir.path(), &["--max-files", "65537"]).unwrap_err(),
        "invalid value for --max-files: 65537 is outside the allowed range 1–65536"
    );
}

#[test]
fn added_fields_keep_their_order_and_their_values_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let flags = [
        "--add-field=env=prod",
        "--add-field=team=a=b",
        "--add-field=empty=",
        "--add-field=note=héllo, \"world\"",
        "--source-field=src",
        "--file-field=log.file",
    ];
    let c = parse(dir.path(), &flags).unwrap();
    let want = [
        ("env", "prod"),
        ("team", "a=b"),
        ("empty", ""),
        ("note", "héllo, \"world\""),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    assert_eq!(c.add_fields, want);
    assert_eq!(c.source_field.as_deref(), Some("src"));
    assert_eq!(c.file_field.as_deref(), Some("log.file"));
}

#[test]
fn the_added_fields_variable_is_comma_separated_and_a_flag_wins() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("FIRETAIL_ADD_FIELDS", "env=prod, team=web,,"),
        ("FIRETAIL_SOURCE_FIELD", "source"),
    ];
    let c = parse_env(dir.path(), &[], &env).unwrap();
    let want = [("env", "prod"), ("team", "web")].map(|(k, v)| (k.to_string(), v.to_string()));
    assert_eq!(c.add_fields, want);
    assert_eq!(c.source_field.as_deref(), Some("source"));
    let c = parse_env(dir.path(), &["--add-field", "zone=a"], &env).unwrap();
    assert_eq!(c.add_fields, [("zone".to_string(), "a".to_string())]);
}

#[test]
fn added_keys_are_valid_and_distinct() {
    let dir = tempfile::tempdir().unwrap();
    let rule = "[A-Za-z_][A-Za-z0-9_.-]{0,63}: a letter or '_', then letters, digits, '_', '.' and '-', at most 64";
    let long = format!("k{}", "x".repeat(64));
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            vec!["--add-field=novalue".into()],
            r#"--add-field: "novalue" is not KEY=VALUE (e.g. env=prod)"#.into(),
        ),
        (
            vec!["--add-field=1x=a".into()],
            format!(r#"--add-field: key "1x" is not a field key ({rule})"#),
        ),
        (
            vec![format!("--add-field={long}=a")],
            format!(r#"--add-field: key "{long}" is not a field key ({rule})"#),
        ),
        (
            vec!["--add-field=env=a".into(), "--add-field=env=b".into()],
            r#"--add-field: key "env" is given twice"#.into(),
        ),
        (
            vec!["--add-field=env=a".into(), "--source-field=env".into()],
            r#"--source-field: key "env" is already added by --add-field; every added key must be distinct"#.into(),
        ),
        (
            vec!["--source-field=src".into(), "--file-field=src".into()],
            r#"--file-field: key "src" is already added by --source-field; every added key must be distinct"#.into(),
        ),
    ];
    for (flags, want) in cases {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let err = parse(dir.path(), &flags).unwrap_err();
        assert_eq!(err, format!("invalid value for {want}"), "{flags:?}");
    }
    let longest = format!("_{}", "x".repeat(63));
    assert!(parse(dir.path(), &["--source-field", &longest]).is_ok());
    let env = [("FIRETAIL_ADD_FIELDS", "a=1,b=2,a=3")];
    assert_eq!(
        parse_env(dir.path(), &[], &env).unwrap_err(),
        r#"invalid value for FIRETAIL_ADD_FIELDS: key "a" is given twice"#
    );
}
