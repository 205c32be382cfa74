use std::path::{Path, PathBuf};

use super::*;
use crate::progress::Identity;

fn entry(source: &str, followed: &str, path: &str) -> FileEntry {
    FileEntry {
        source: source.to_string(),
        followed: PathBuf::from(followed),
        path: PathBuf::from(path),
        identity: Identity {
            dev: 1,
            ino: 2,
            fp_len: 3,
            fp_hash: 4,
        },
        offset: 77,
        mtime_ns: Some(5),
    }
}

/// As versions 1 and 2 are read: no source, the path as its own chain.
fn old(path: &str) -> FileEntry {
    entry("", path, path)
}

/// (source, followed) of each entry kept.
fn placed(entries: &[FileEntry]) -> Vec<(&str, &Path)> {
    entries
        .iter()
        .map(|e| (e.source.as_str(), e.followed.as_path()))
        .collect()
}

/// The WARN lines `f` logs, as JSON, with what it returns.
fn warnings<T>(f: impl FnOnce() -> T) -> (T, Vec<serde_json::Value>) {
    #[derive(Clone, Default)]
    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_writer(move || writer.clone())
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    let logs = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["level"] == "WARN")
        .collect();
    (out, logs)
}

const SEVERAL: [(&str, &str); 3] = [
    ("web", "/var/log/app/access.log"),
    ("workers", "/var/log/app/worker-*.log"),
    ("jobs", "/var/log/jobs/[a-c]?.log"),
];

/// One source: every old entry is its, wherever the file was last seen (a rename
/// out of the directory too), and follows its path.
#[test]
fn an_old_entry_gets_the_only_literal_source() {
    let sources = [("default", "/var/log/app/access.log")];
    let entries = vec![
        old("/var/log/app/access.log.1"),
        old("/var/log/app/access.log"),
        old("/elsewhere/moved.log"),
    ];
    let got = migrate(entries.clone(), &sources);
    let want = Path::new("/var/log/app/access.log");
    assert_eq!(placed(&got), vec![("default", want); 3]);
    let paths: Vec<_> = got.iter().map(|e| &e.path).collect();
    assert_eq!(paths, entries.iter().map(|e| &e.path).collect::<Vec<_>>());
    assert!(got.iter().all(|e| e.offset == 77 && e.mtime_ns == Some(5)));
}

/// One glob source: an old entry follows the file the pattern matched, or the one it
/// was rotated from, or else its own path.
#[test]
fn an_old_entry_gets_the_only_glob_source() {
    let sources = [("workers", "/var/log/app/worker-*.log")];
    let got = migrate(
        vec![
            old("/var/log/app/worker-1.log"),
            old("/var/log/app/worker-2.log.1"),
            old("/var/log/app/other.log"),
        ],
        &sources,
    );
    assert_eq!(
        placed(&got),
        [
            ("workers", Path::new("/var/log/app/worker-1.log")),
            ("workers", Path::new("/var/log/app/worker-2.log")),
            ("workers", Path::new("/var/log/app/other.log")),
        ]
    );
}

/// Several sources: by literal path, by a rotation of it, by pattern (and a rotation
/// of a matched name); the first source in order wins.
#[test]
fn an_old_entry_gets_the_source_that_matches_its_path() {
    let got = migrate(
        vec![
            old("/var/log/app/access.log"),
            old("/var/log/app/access.log.1"),
            old("/var/log/app/access.log-20261126"),
            old("/var/log/app/worker-7.log"),
            old("/var/log/app/worker-7.log.2"),
            old("/var/log/jobs/b9.log"),
        ],
        &SEVERAL,
    );
    let access = Path::new("/var/log/app/access.log");
    assert_eq!(
        placed(&got),
        [
            ("web", access),
            ("web", access),
            ("web", access),
            ("workers", Path::new("/var/log/app/worker-7.log")),
            ("workers", Path::new("/var/log/app/worker-7.log")),
            ("jobs", Path::new("/var/log/jobs/b9.log")),
        ]
    );
    let first = [("a", "/d/*.log"), ("b", "/d/x*.log")];
    let got = migrate(vec![old("/d/x1.log")], &first);
    assert_eq!(placed(&got), [("a", Path::new("/d/x1.log"))]);
}

/// Several sources and none matches: dropped, with a WARN naming the file and why.
#[test]
fn an_old_entry_no_source_matches_is_dropped_with_a_warning() {
    let entries = vec![
        old("/var/log/app/accesslog"),
        old("/var/log/other/access.log"),
        old("/var/log/jobs/d1.log"),
        old("/var/log/app/.worker-1.log"),
    ];
    let (got, warns) = warnings(|| migrate(entries, &SEVERAL));
    assert!(got.is_empty(), "{got:?}");
    assert_eq!(warns.len(), 4, "{warns:?}");
    assert_eq!(warns[1]["file"], "/var/log/other/access.log");
    let reason = warns[1]["reason"].as_str().unwrap();
    assert!(reason.contains("before sources existed"), "{reason}");
    assert!(warns[1]["message"]
        .as_str()
        .unwrap()
        .starts_with("Checkpointed file dropped"));
}

/// Version 3: an entry keeps its source and chain while that source follows it.
#[test]
fn a_version_3_entry_keeps_its_source() {
    let entries = vec![
        entry(
            "web",
            "/var/log/app/access.log",
            "/var/log/app/access.log.1",
        ),
        entry("workers", "/var/log/app/worker-3.log", "/moved/away"),
    ];
    let (got, warns) = warnings(|| migrate(entries.clone(), &SEVERAL));
    assert_eq!(got, entries);
    assert!(warns.is_empty(), "{warns:?}");
}

/// Version 3, its source removed (or no longer following its chain): dropped with a
/// WARN naming the file, the source and why, unless another source follows its path
/// now (a source renamed), which resumes it.
#[test]
fn a_version_3_entry_of_a_removed_source_is_dropped_or_adopted() {
    let entries = vec![
        entry("api", "/var/log/api.log", "/var/log/api.log.1"),
        entry("web", "/var/log/app/old.log", "/var/log/app/old.log"),
        entry(
            "default",
            "/var/log/app/access.log",
            "/var/log/app/access.log.1",
        ),
    ];
    let (got, warns) = warnings(|| migrate(entries, &SEVERAL));
    assert_eq!(
        placed(&got),
        [("web", Path::new("/var/log/app/access.log"))]
    );
    assert_eq!(warns.len(), 3, "{warns:?}");
    assert_eq!(
        (&warns[0]["file"], &warns[0]["source"]),
        (&"/var/log/api.log.1".into(), &"api".into())
    );
    let reason = |i: usize| warns[i]["reason"].as_str().unwrap().to_string();
    assert!(reason(0).contains("source api is no longer configured"));
    assert!(reason(1).contains("source web no longer follows /var/log/app/old.log"));
    assert_eq!(warns[2]["now_source"], "web", "renamed: adopted");
}

#[test]
fn patterns_match_as_a_shell_does() {
    let cases = [
        ("worker-*.log", "worker-1.log", true),
        ("worker-*.log", "worker-.log", true),
        ("worker-*.log", "worker-1.log.1", false),
        ("*", "anything", true),
        ("*", ".hidden", false),
        (".*", ".hidden", true),
        ("?.log", "a.log", true),
        ("?.log", "ab.log", false),
        ("[a-c]?.log", "b9.log", true),
        ("[a-c]?.log", "d9.log", false),
        ("[!0-9]x", "ax", true),
        ("[!0-9]x", "5x", false),
        ("[]]x", "]x", true),
        ("*a*b*", "xaxxbx", true),
        ("*a*b*", "xbxxax", false),
        ("é*", "été.log", true),
    ];
    for (pattern, name, want) in cases {
        assert_eq!(glob(pattern, name), want, "{pattern} on {name}");
    }
}
