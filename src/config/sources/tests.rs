use std::collections::HashMap;
use std::ffi::OsString;

use proptest::prelude::*;

use super::super::{parse_from, Config, ParseError};
use super::*;

/// Parses `argv` (after the program name) with `env` as the whole environment.
fn run(argv: &[String], env: &[(&str, &str)]) -> Result<Config, String> {
    let env: HashMap<String, OsString> = env
        .iter()
        .map(|(k, v)| (k.to_string(), OsString::from(v)))
        .collect();
    let argv = std::iter::once("firetail".to_string()).chain(argv.iter().cloned());
    parse_from(argv, &|k| env.get(k).cloned()).map_err(|e| match e {
        ParseError::Invalid(e) => e.to_string(),
        ParseError::Usage(e) => e.to_string(),
        ParseError::Help(h) => h,
    })
}

/// `--source=<spec>` for each spec.
fn sources(specs: &[String]) -> Result<Config, String> {
    let argv: Vec<String> = specs.iter().map(|s| format!("--source={s}")).collect();
    run(&argv, &[])
}

fn spec(name: &str, path: &Path, stream: &str) -> String {
    format!("name={name},path={},stream={stream}", path.display())
}

fn source(name: &str, path: &Path, stream: &str) -> SourceConfig {
    SourceConfig {
        name: name.into(),
        path: path.into(),
        stream: stream.into(),
    }
}

const KEYS_SENTENCE: &str = "the keys are name, path and stream";
const ONE_FILE: &str = "one file is followed by one source";

#[test]
fn path_and_stream_make_the_one_default_source() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let argv = [format!("--path={}", log.display()), "--stream=s".into()];
    let c = run(&argv, &[]).unwrap();
    assert_eq!(c.sources, [source("default", &log, "s")]);
    assert!(!c.sources[0].is_glob());
}

#[test]
fn several_sources_keep_their_order_and_the_first_places_the_own_files() {
    let dir = tempfile::tempdir().unwrap();
    let rails = dir.path().join("access.log");
    let sidekiq = dir.path().join("sidekiq.json.log");
    let c = sources(&[
        spec("rails", &rails, "rails-access"),
        spec("sidekiq", &sidekiq, "sidekiq-jobs"),
    ])
    .unwrap();
    assert_eq!(
        c.sources,
        [
            source("rails", &rails, "rails-access"),
            source("sidekiq", &sidekiq, "sidekiq-jobs")
        ]
    );
    // Byte-identical to the one-source defaults for the same first file.
    assert_eq!(c.checkpoint, dir.path().join(".firetail-access.log.json"));
    assert_eq!(
        c.dead_letter,
        dir.path().join(".firetail-access.log.dead.jsonl")
    );
}

#[test]
fn a_pattern_first_names_the_own_files_after_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let workers = dir.path().join("worker-*.log");
    let c = sources(&[spec("workers", &workers, "jobs")]).unwrap();
    assert!(c.sources[0].is_glob());
    assert_eq!(c.checkpoint, dir.path().join(".firetail-workers.json"));
    assert_eq!(
        c.dead_letter,
        dir.path().join(".firetail-workers.dead.jsonl")
    );
}

#[test]
fn the_variable_takes_one_spec_a_line_and_errors_give_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let text = format!("\n  {}\r\n\n{}\n", spec("a", &a, "s1"), spec("b", &b, "s2"));
    let c = run(&[], &[("FIRETAIL_SOURCES", &text)]).unwrap();
    assert_eq!(c.sources, [source("a", &a, "s1"), source("b", &b, "s2")]);
    let text = format!("{}\n\nname=B,path=/x,stream=s", spec("a", &a, "s1"));
    let err = run(&[], &[("FIRETAIL_SOURCES", &text)]).unwrap_err();
    assert_eq!(
        err,
        format!(
            "invalid value for FIRETAIL_SOURCES line 3: name: \"B\" is not a source name ({NAME_RULE}: lower-case letters, digits, '_' and '-', at most 32, starting with a letter or digit)"
        )
    );
}

#[test]
fn a_source_with_path_or_stream_is_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let s = format!("--source={}", spec("a", &dir.path().join("a.log"), "s"));
    let path = format!("--path={}", dir.path().join("b.log").display());
    let tail = "give every source with --source, or one source with --path and --stream";
    let err = run(&[s.clone(), path], &[]).unwrap_err();
    assert_eq!(
        err,
        format!("invalid value for --source: cannot be combined with --path: {tail}")
    );
    let err = run(&[s.clone(), "--stream=s".into()], &[]).unwrap_err();
    assert_eq!(
        err,
        format!("invalid value for --source: cannot be combined with --stream: {tail}")
    );
    let err = run(&[s], &[("FIRETAIL_STREAM", "s")]).unwrap_err();
    assert_eq!(
        err,
        format!("invalid value for --source: cannot be combined with FIRETAIL_STREAM: {tail}")
    );
    let env = spec("a", &dir.path().join("a.log"), "s");
    let err = run(&["--stream=s".into()], &[("FIRETAIL_SOURCES", &env)]).unwrap_err();
    assert_eq!(
        err,
        "invalid value for FIRETAIL_SOURCES: cannot be combined with --stream: give every source with FIRETAIL_SOURCES, or one source with --path and --stream"
    );
}

/// (spec, the error after "invalid value for ").
fn malformed_specs() -> Vec<(&'static str, String)> {
    vec![
        (
            "name=web,path=/x.log",
            "--source \"web\": missing stream: every source needs name, path and stream".into(),
        ),
        (
            "path=/x.log",
            "--source #1: missing name, stream: every source needs name, path and stream".into(),
        ),
        (
            "name=web,path=/x.log,stream=s,steam=t",
            format!("--source \"web\": unknown key \"steam\"; {KEYS_SENTENCE}"),
        ),
        (
            "name=web,path=/x.log,path=/y.log,stream=s",
            "--source \"web\": path: given twice".into(),
        ),
        (
            "name=web,/x.log,stream=s",
            format!("--source \"web\": \"/x.log\" is not key=value; {KEYS_SENTENCE}"),
        ),
        (
            "name=web,,path=/x.log,stream=s",
            format!("--source \"web\": has an empty item (a stray comma?); {KEYS_SENTENCE}"),
        ),
        (
            "",
            format!("--source #1: has an empty item (a stray comma?); {KEYS_SENTENCE}"),
        ),
        (
            "name=web,path=logs/a.log,stream=s",
            "--source \"web\": path: \"logs/a.log\" is not absolute".into(),
        ),
        (
            "name=web,path=/var/*/a.log,stream=s",
            "--source \"web\": path: /var/*/a.log has a wildcard (*, ? or [..]) outside the file name; only the last component may have one".into(),
        ),
        (
            "name=web,path=/var/log/*/,stream=s",
            "--source \"web\": path: /var/log/*/ has a wildcard (*, ? or [..]) outside the file name; only the last component may have one".into(),
        ),
        (
            "name=web,path=/var/log/[a.log,stream=s",
            format!(
                "--source \"web\": path: \"[a.log\" is not a valid pattern: {}",
                glob::Pattern::new("[a.log").unwrap_err().msg
            ),
        ),
        (
            "name=web,path=/nonexistent-dir/*.log,stream=s",
            "--source \"web\": path: the directory /nonexistent-dir does not exist".into(),
        ),
        (
            "name=web,path=/nonexistent-dir/a.log,stream=s",
            "--source \"web\": path: the directory /nonexistent-dir does not exist".into(),
        ),
        (
            "name=web,path=/dev/null,stream=s",
            "--source \"web\": path: /dev/null is a device, not a regular file; give the log file itself".into(),
        ),
        (
            "name=web,path=/tmp,stream=s",
            "--source \"web\": path: /tmp is a directory, not a regular file; give the log file itself".into(),
        ),
        (
            "name=web,path=/tmp/a.log,stream=has space",
            "--source \"web\": stream: \"has space\" contains ' '; a stream name has only letters, digits, '_', '.' and '-'".into(),
        ),
        (
            "name=web,path=/tmp/a.log,stream=",
            "--source \"web\": stream: must not be empty".into(),
        ),
    ]
}

#[test]
fn each_malformed_spec_names_its_source_and_key() {
    for (text, want) in malformed_specs() {
        let err = sources(&[text.to_string()]).unwrap_err();
        assert_eq!(err, format!("invalid value for {want}"), "{text}");
    }
}

#[test]
fn a_bad_name_is_named_by_position() {
    let dir = tempfile::tempdir().unwrap();
    let good = spec("a", &dir.path().join("a.log"), "s");
    for bad in ["Web", "-web", "", "a.b", &"x".repeat(33)] {
        let text = spec(bad, &dir.path().join("b.log"), "s");
        let err = sources(&[good.clone(), text]).unwrap_err();
        assert_eq!(
            err,
            format!(
                "invalid value for --source #2: name: {bad:?} is not a source name ({NAME_RULE}: lower-case letters, digits, '_' and '-', at most 32, starting with a letter or digit)"
            )
        );
    }
    let longest = "0".repeat(32);
    assert!(sources(&[spec(&longest, &dir.path().join("a.log"), "s")]).is_ok());
}

#[test]
fn names_are_unique() {
    let dir = tempfile::tempdir().unwrap();
    let err = sources(&[
        spec("web", &dir.path().join("a.log"), "s"),
        spec("api", &dir.path().join("b.log"), "s"),
        spec("web", &dir.path().join("c.log"), "s"),
    ])
    .unwrap_err();
    assert_eq!(
        err,
        "invalid value for --source #3: name: \"web\" is already the name of --source #1"
    );
    let text = format!(
        "{}\n\n{}",
        spec("web", &dir.path().join("a.log"), "s"),
        spec("web", &dir.path().join("b.log"), "s")
    );
    let err = run(&[], &[("FIRETAIL_SOURCES", &text)]).unwrap_err();
    assert_eq!(
        err,
        "invalid value for FIRETAIL_SOURCES line 3: name: \"web\" is already the name of FIRETAIL_SOURCES line 1"
    );
}

#[test]
fn one_path_is_followed_by_one_source_however_it_is_spelled() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("app");
    std::fs::create_dir(&sub).unwrap();
    std::os::unix::fs::symlink(&sub, dir.path().join("link")).unwrap();
    let a = sub.join("access.log");
    for other in [
        a.clone(),
        dir.path().join("link/access.log"),
        sub.join("./access.log"),
    ] {
        let err = sources(&[spec("a", &a, "s1"), spec("b", &other, "s2")]).unwrap_err();
        assert_eq!(
            err,
            format!(
                "invalid value for --source \"b\": path: {} is also the path of source \"a\"; {ONE_FILE}",
                other.display()
            )
        );
    }
}

#[test]
fn a_path_matched_by_another_sources_pattern_is_refused_either_way_round() {
    let dir = tempfile::tempdir().unwrap();
    let (lit, pat) = (
        dir.path().join("worker-1.log"),
        dir.path().join("worker-*.log"),
    );
    let err = sources(&[spec("w", &pat, "s"), spec("one", &lit, "s")]).unwrap_err();
    assert_eq!(
        err,
        format!(
            "invalid value for --source \"one\": path: {} is matched by the pattern {} of source \"w\"; {ONE_FILE}",
            lit.display(),
            pat.display()
        )
    );
    let err = sources(&[spec("one", &lit, "s"), spec("w", &pat, "s")]).unwrap_err();
    assert_eq!(
        err,
        format!(
            "invalid value for --source \"w\": path: the pattern {} matches {}, the path of source \"one\"; {ONE_FILE}",
            pat.display(),
            lit.display()
        )
    );
    // The pattern skips hidden files as a shell does, and other directories are apart.
    let hidden = dir.path().join(".worker-1.log");
    let elsewhere = tempfile::tempdir().unwrap();
    let apart = elsewhere.path().join("worker-1.log");
    assert!(sources(&[spec("w", &pat, "s"), spec("h", &hidden, "s")]).is_ok());
    assert!(sources(&[spec("w", &pat, "s"), spec("x", &apart, "s")]).is_ok());
}

#[test]
fn two_patterns_of_one_directory_may_not_both_match_a_file_there() {
    let dir = tempfile::tempdir().unwrap();
    let (workers, logs) = (dir.path().join("worker-*.log"), dir.path().join("*.log"));
    let both = [spec("w", &workers, "s"), spec("all", &logs, "s")];
    // Nothing there yet that both match: accepted (the run time takes the first).
    std::fs::write(dir.path().join("api.log"), "").unwrap();
    std::fs::create_dir(dir.path().join("worker-dir.log")).unwrap();
    assert!(sources(&both).is_ok());
    std::fs::write(dir.path().join("worker-2.log"), "").unwrap();
    let err = sources(&both).unwrap_err();
    assert_eq!(
        err,
        format!(
            "invalid value for --source \"all\": path: the pattern {} and the pattern {} of source \"w\" both match {}; {ONE_FILE}",
            logs.display(),
            workers.display(),
            dir.path().join("worker-2.log").display()
        )
    );
    let err = sources(&[spec("w", &workers, "s"), spec("v", &workers, "t")]).unwrap_err();
    assert_eq!(
        err,
        format!(
            "invalid value for --source \"v\": path: {} is also the path of source \"w\"; {ONE_FILE}",
            workers.display()
        )
    );
}

#[test]
fn an_own_file_a_pattern_would_follow_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("*.log");
    let cp = dir.path().join("checkpoint.log");
    let argv = [
        format!("--source={}", spec("all", &logs, "s")),
        format!("--checkpoint={}", cp.display()),
    ];
    let err = run(&argv, &[]).unwrap_err();
    assert_eq!(
        err,
        format!(
            "invalid value for --checkpoint: {} matches the pattern {} of source \"all\"; firetail's own files must not be followed",
            cp.display(),
            logs.display()
        )
    );
    let a = dir.path().join("a.jsonl");
    let argv = [
        format!("--source={}", spec("z", &dir.path().join("z.log"), "s")),
        format!("--source={}", spec("a", &a, "s")),
        format!("--dead-letter={}", a.display()),
    ];
    let err = run(&argv, &[]).unwrap_err();
    assert_eq!(
        err,
        "invalid value for --dead-letter: the log file, the checkpoint and the dead-letter file must be three different files"
    );
}

#[test]
fn the_path_form_takes_a_pattern_with_the_same_rules() {
    let dir = tempfile::tempdir().unwrap();
    let pat = dir.path().join("*.log");
    let argv = [format!("--path={}", pat.display()), "--stream=s".into()];
    let c = run(&argv, &[]).unwrap();
    assert_eq!(c.sources, [source(DEFAULT_SOURCE, &pat, "s")]);
    assert_eq!(c.checkpoint, dir.path().join(".firetail-default.json"));
    let err = run(
        &[],
        &[("FIRETAIL_PATH", "/var/*/a.log"), ("FIRETAIL_STREAM", "s")],
    )
    .unwrap_err();
    assert_eq!(
        err,
        "invalid value for FIRETAIL_PATH: /var/*/a.log has a wildcard (*, ? or [..]) outside the file name; only the last component may have one"
    );
}

#[test]
fn matching_is_by_file_name_in_the_patterns_directory() {
    let s = source("w", Path::new("/var/log/app/worker-*.log"), "s");
    assert!(s.matches(Path::new("/var/log/app/worker-1.log")));
    assert!(!s.matches(Path::new("/var/log/app/worker-1.log.1")));
    assert!(!s.matches(Path::new("/var/log/app/.worker-1.log")));
    assert!(!s.matches(Path::new("/var/log/other/worker-1.log")));
    let lit = source("a", Path::new("/var/log/app/access.log"), "s");
    assert!(!lit.is_glob() && lit.pattern().is_none());
    assert!(lit.matches(Path::new("/var/log/app/access.log")));
    assert!(!lit.matches(Path::new("/var/log/app/access.log.1")));
}

proptest! {
    /// Whatever the text, a spec is a source or an error: never a panic.
    #[test]
    fn any_source_text_is_a_source_or_an_error(
        texts in proptest::collection::vec(
            prop_oneof![
                ".{0,60}",
                "(name|path|stream|x)=[a-z/*?\\[\\],=. -]{0,20}(,(name|path|stream)=[a-z/*?\\[\\]. -]{0,20}){0,4}",
            ],
            1..4,
        )
    ) {
        // Own files in a directory of the test's, so no probe file lands where a
        // generated path points.
        let dir = tempfile::tempdir().unwrap();
        let own = [
            format!("--checkpoint={}", dir.path().join("cp.json").display()),
            format!("--dead-letter={}", dir.path().join("dl.jsonl").display()),
        ];
        let mut argv: Vec<String> = texts.iter().map(|s| format!("--source={s}")).collect();
        argv.extend(own.clone());
        let _ = run(&argv, &[]);
        let _ = run(&own, &[("FIRETAIL_SOURCES", &texts.join("\n"))]);
    }
}

#[test]
fn a_variable_that_is_not_utf8_or_holds_only_blank_lines() {
    use std::os::unix::ffi::OsStringExt;
    let bytes = OsString::from_vec(b"name=a,path=/tmp/\xff.log,stream=s".to_vec());
    let env = |k: &str| (k == "FIRETAIL_SOURCES").then(|| bytes.clone());
    let Err(ParseError::Invalid(e)) = parse_from(["firetail"], &env) else {
        panic!("a non-UTF-8 FIRETAIL_SOURCES was accepted")
    };
    assert_eq!(
        e.to_string(),
        "invalid value for FIRETAIL_SOURCES: is not valid UTF-8"
    );
    // Blank lines only: unset, as an empty variable is, so the one-source form is asked for.
    let err = run(&[], &[("FIRETAIL_SOURCES", "\n  \n")]).unwrap_err();
    assert_eq!(
        err,
        "invalid value for --stream: is required (give --stream or set FIRETAIL_STREAM; or give every source with --source or FIRETAIL_SOURCES)"
    );
}
