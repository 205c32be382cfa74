use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::*;

/// An entry as versions 1 and 2 come out of the file: no source known, the path as
/// its own chain.
fn legacy(path: &str, offset: u64, mtime_ns: Option<u64>) -> FileEntry {
    FileEntry {
        source: String::new(),
        followed: PathBuf::from(path),
        path: PathBuf::from(path),
        identity: Identity {
            dev: 66,
            ino: 1234,
            fp_len: 256,
            fp_hash: 0xdeadbeef,
        },
        offset,
        mtime_ns,
    }
}

/// Byte for byte what firetail writes now: decoded and encoded again, the same bytes
/// (a restart rewrites nothing it did not change).
#[test]
fn version_3_round_trips_byte_for_byte() {
    let v3 = br#"{
  "version": 3,
  "files": [
    {
      "source": "web",
      "followed": "/var/log/app/access.log",
      "path": "/var/log/app/access.log.1",
      "dev": 66,
      "inode": 1233,
      "fingerprint_len": 256,
      "fingerprint": "0123456789abcdef",
      "offset": 1048576,
      "mtime_ns": 1764000000123456789
    },
    {
      "source": "workers",
      "followed": "/var/log/app/worker-2.log",
      "path": "/var/log/app/worker-2.log",
      "dev": 66,
      "inode": 1234,
      "fingerprint_len": 17,
      "fingerprint": "00000000deadbeef",
      "offset": 0
    }
  ]
}
"#;
    let entries = decode(v3).unwrap();
    assert_eq!(entries[0].source, "web");
    assert_eq!(entries[0].followed, Path::new("/var/log/app/access.log"));
    assert_eq!(entries[0].path, Path::new("/var/log/app/access.log.1"));
    assert_eq!(entries[0].identity.fp_hash, 0x0123_4567_89ab_cdef);
    assert_eq!(entries[1].source, "workers");
    assert_eq!(entries[1].mtime_ns, None);
    assert_eq!(encode(&entries), v3.to_vec());
}

/// Byte for byte what firetail wrote before sources: read with no source known (the
/// migration places it), its modification time kept.
#[test]
fn version_2_is_read_with_its_source_unknown() {
    let v2 = br#"{
  "version": 2,
  "files": [
    {
      "path": "/var/log/app/access.log.1",
      "dev": 66,
      "inode": 1234,
      "fingerprint_len": 256,
      "fingerprint": "00000000deadbeef",
      "offset": 1048576,
      "mtime_ns": 1764000000123456789
    },
    {
      "path": "/var/log/app/access.log",
      "dev": 66,
      "inode": 1234,
      "fingerprint_len": 256,
      "fingerprint": "00000000deadbeef",
      "offset": 0
    }
  ]
}
"#;
    let want = vec![
        legacy(
            "/var/log/app/access.log.1",
            1048576,
            Some(1_764_000_000_123_456_789),
        ),
        legacy("/var/log/app/access.log", 0, None),
    ];
    assert_eq!(decode(v2).unwrap(), want);
    let again = String::from_utf8(encode(&want)).unwrap();
    assert!(
        again.contains("\"version\": 3"),
        "written back as version 3"
    );
}

/// Byte for byte what firetail wrote before version 2.
#[test]
fn version_1_is_read_with_its_source_unknown() {
    let v1 = br#"{
  "version": 1,
  "files": [
    {
      "path": "/var/log/app/access.log",
      "dev": 66,
      "inode": 1234,
      "fingerprint_len": 256,
      "fingerprint": "00000000deadbeef",
      "offset": 4096
    }
  ]
}
"#;
    assert_eq!(
        decode(v1).unwrap(),
        vec![legacy("/var/log/app/access.log", 4096, None)]
    );
}

#[test]
fn a_fingerprint_that_is_not_hexadecimal_is_corrupt() {
    for version in [2, 3] {
        let bad = format!(
            r#"{{"version": {version}, "files": [{{"source": "a", "followed": "/x",
            "path": "/x", "dev": 1, "inode": 2, "fingerprint_len": 3,
            "fingerprint": "xyz", "offset": 0}}]}}"#
        );
        assert!(
            decode(bad.as_bytes())
                .unwrap_err()
                .contains("\"xyz\" is not hexadecimal"),
            "version {version}"
        );
    }
}

#[test]
fn unknown_versions_missing_fields_and_garbage_are_corrupt() {
    let v4 = br#"{"version": 4, "files": []}"#;
    assert!(decode(v4).unwrap_err().contains("version 4"));
    assert!(decode(b"{\"version\": 3, \"fil").is_err());
    assert!(decode(br#"{"files": []}"#).is_err(), "no version");
    assert!(decode(br#"{"version": 1, "files": [{"path": "/x"}]}"#).is_err());
    let no_source = br#"{"version": 3, "files": [{"followed": "/x", "path": "/x",
        "dev": 1, "inode": 2, "fingerprint_len": 3, "fingerprint": "0a", "offset": 0}]}"#;
    assert!(decode(no_source).unwrap_err().contains("source"));
}

fn arb_entry() -> impl Strategy<Value = FileEntry> {
    (
        "[a-z0-9][a-z0-9_-]{0,31}",
        "(/[^/\0]{1,12}){1,4}",
        "(/[^/\0]{1,12}){1,4}",
        any::<(u64, u64, u64, u64, u64)>(),
        any::<Option<u64>>(),
    )
        .prop_map(
            |(source, followed, path, (dev, ino, fp_len, fp_hash, offset), mtime_ns)| FileEntry {
                source,
                followed: PathBuf::from(followed),
                path: PathBuf::from(path),
                identity: Identity {
                    dev,
                    ino,
                    fp_len,
                    fp_hash,
                },
                offset,
                mtime_ns,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the names, paths (any UTF-8 but `/` and NUL in a component), numbers and
    /// modification times: version 3 reads back exactly what was written.
    #[test]
    fn version_3_round_trips(files in prop::collection::vec(arb_entry(), 0..8)) {
        prop_assert_eq!(decode(&encode(&files)).unwrap(), files);
    }
}
