//! The checkpoint file's format, by version. Version 2 added each file's `mtime_ns`
//! (issue 12: when the checkpointed file is gone at restart, the siblings newer than it
//! are the ones to ship). Version 1 — what firetail wrote before — is migrated on
//! read; a version this firetail does not know is treated as corrupt (moved aside), so
//! a downgrade never resumes from offsets it misunderstands.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::progress::FileEntry;

/// The version this firetail writes.
pub const VERSION: u32 = 2;

#[derive(Serialize)]
struct Current<'a> {
    version: u32,
    files: &'a [FileEntry],
}

#[derive(Deserialize)]
struct Versioned {
    version: u32,
}

#[derive(Deserialize)]
struct V2 {
    files: Vec<FileEntry>,
}

#[derive(Deserialize)]
struct V1 {
    files: Vec<V1Entry>,
}

/// A file as version 1 stored it: everything but the modification time.
#[derive(Deserialize)]
struct V1Entry {
    path: PathBuf,
    dev: u64,
    inode: u64,
    fingerprint_len: u64,
    fingerprint: String,
    offset: u64,
}

impl From<V1Entry> for FileEntry {
    fn from(e: V1Entry) -> FileEntry {
        FileEntry {
            path: e.path,
            dev: e.dev,
            inode: e.inode,
            fingerprint_len: e.fingerprint_len,
            fingerprint: e.fingerprint,
            offset: e.offset,
            mtime_ns: None,
        }
    }
}

/// The file's bytes, pretty-printed (an operator may read it), with a final `\n`.
pub fn encode(files: &[FileEntry]) -> Vec<u8> {
    let current = Current {
        version: VERSION,
        files,
    };
    let mut bytes = serde_json::to_vec_pretty(&current).expect("plain data serialises");
    bytes.push(b'\n');
    bytes
}

/// The entries in a checkpoint file of any known version; the reason when it is
/// corrupt.
pub fn decode(bytes: &[u8]) -> Result<Vec<FileEntry>, String> {
    let Versioned { version } = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    match version {
        1 => {
            let v1: V1 = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
            Ok(v1.files.into_iter().map(FileEntry::from).collect())
        }
        VERSION => {
            let v2: V2 = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
            Ok(v2.files)
        }
        other => Err(format!(
            "version {other} is not one this firetail reads (1 or {VERSION})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(mtime_ns: Option<u64>) -> FileEntry {
        FileEntry {
            path: PathBuf::from("/var/log/app/access.log"),
            dev: 66,
            inode: 1234,
            fingerprint_len: 256,
            fingerprint: "00000000deadbeef".into(),
            offset: 4096,
            mtime_ns,
        }
    }

    #[test]
    fn version_2_round_trips_with_the_modification_time() {
        let files = vec![entry(Some(1_764_000_000_123_456_789)), entry(None)];
        let bytes = encode(&files);
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.contains("\"version\": 2"), "{text}");
        assert_eq!(decode(&bytes).unwrap(), files);
    }

    /// Byte for byte what firetail wrote before version 2.
    #[test]
    fn version_1_is_migrated_on_read() {
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
        assert_eq!(decode(v1).unwrap(), vec![entry(None)]);
    }

    #[test]
    fn unknown_versions_and_garbage_are_corrupt() {
        let v3 = br#"{"version": 3, "files": []}"#;
        assert!(decode(v3).unwrap_err().contains("version 3"));
        assert!(decode(b"{\"version\": 2, \"fil").is_err());
        assert!(decode(br#"{"files": []}"#).is_err(), "no version");
        assert!(decode(br#"{"version": 1, "files": [{"path": "/x"}]}"#).is_err());
    }
}
