//! The checkpoint file's format, by version: one private type per version, so the
//! ledger's view ([`FileEntry`]) can change without touching the file.
//!
//! Version 2 added each file's `mtime_ns`: when the checkpointed file is gone at
//! restart, the siblings newer than it are the ones to ship. Version 1 — what firetail
//! wrote before — is migrated on read; a version this firetail does not know is treated
//! as corrupt (moved aside), so a downgrade never resumes from offsets it misunderstands
//! (docs/design.md#checkpoint).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::progress::{FileEntry, Identity};

/// The version this firetail writes.
pub const VERSION: u32 = 2;

#[derive(Serialize)]
struct Current {
    version: u32,
    files: Vec<V2Entry>,
}

#[derive(Deserialize)]
struct Versioned {
    version: u32,
}

#[derive(Deserialize)]
struct V2 {
    files: Vec<V2Entry>,
}

/// A file as version 2 stores it. Field order is the file's: it is pretty-printed for
/// an operator to read.
#[derive(Serialize, Deserialize)]
struct V2Entry {
    path: PathBuf,
    dev: u64,
    inode: u64,
    /// Bytes covered by `fingerprint`.
    fingerprint_len: u64,
    /// FNV-1a of the first `fingerprint_len` bytes, 16 hex digits.
    fingerprint: String,
    offset: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mtime_ns: Option<u64>,
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

impl From<&FileEntry> for V2Entry {
    fn from(e: &FileEntry) -> V2Entry {
        V2Entry {
            path: e.path.clone(),
            dev: e.identity.dev,
            inode: e.identity.ino,
            fingerprint_len: e.identity.fp_len,
            fingerprint: format!("{:016x}", e.identity.fp_hash),
            offset: e.offset,
            mtime_ns: e.mtime_ns,
        }
    }
}

impl V2Entry {
    fn into_entry(self) -> Result<FileEntry, String> {
        Ok(FileEntry {
            identity: identity(
                self.dev,
                self.inode,
                self.fingerprint_len,
                &self.fingerprint,
            )?,
            source: String::new(),
            followed: self.path.clone(),
            path: self.path,
            offset: self.offset,
            mtime_ns: self.mtime_ns,
        })
    }
}

impl V1Entry {
    fn into_entry(self) -> Result<FileEntry, String> {
        Ok(FileEntry {
            identity: identity(
                self.dev,
                self.inode,
                self.fingerprint_len,
                &self.fingerprint,
            )?,
            source: String::new(),
            followed: self.path.clone(),
            path: self.path,
            offset: self.offset,
            mtime_ns: None,
        })
    }
}

/// The identity a file's fields describe; a fingerprint that is not hexadecimal never
/// came from firetail, so the file is corrupt.
fn identity(dev: u64, ino: u64, fp_len: u64, fingerprint: &str) -> Result<Identity, String> {
    let fp_hash = u64::from_str_radix(fingerprint, 16)
        .map_err(|e| format!("fingerprint {fingerprint:?} is not hexadecimal: {e}"))?;
    Ok(Identity {
        dev,
        ino,
        fp_len,
        fp_hash,
    })
}

/// The file's bytes, pretty-printed (an operator may read it), with a final `\n`.
pub fn encode(files: &[FileEntry]) -> Vec<u8> {
    let current = Current {
        version: VERSION,
        files: files.iter().map(V2Entry::from).collect(),
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
            v1.files.into_iter().map(V1Entry::into_entry).collect()
        }
        VERSION => {
            let v2: V2 = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
            v2.files.into_iter().map(V2Entry::into_entry).collect()
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
            source: String::new(),
            followed: PathBuf::from("/var/log/app/access.log"),
            path: PathBuf::from("/var/log/app/access.log"),
            identity: Identity {
                dev: 66,
                ino: 1234,
                fp_len: 256,
                fp_hash: 0xdeadbeef,
            },
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

    /// Byte for byte what firetail writes now: decoded and encoded again, the same
    /// bytes (a restart rewrites nothing it did not change).
    #[test]
    fn version_2_round_trips_byte_for_byte() {
        let v2 = br#"{
  "version": 2,
  "files": [
    {
      "path": "/var/log/app/access.log.1",
      "dev": 66,
      "inode": 1233,
      "fingerprint_len": 256,
      "fingerprint": "0123456789abcdef",
      "offset": 1048576,
      "mtime_ns": 1764000000123456789
    },
    {
      "path": "/var/log/app/access.log",
      "dev": 66,
      "inode": 1234,
      "fingerprint_len": 17,
      "fingerprint": "00000000deadbeef",
      "offset": 0
    }
  ]
}
"#;
        let entries = decode(v2).unwrap();
        assert_eq!(entries[0].identity.fp_hash, 0x0123_4567_89ab_cdef);
        assert_eq!(entries[1].mtime_ns, None);
        assert_eq!(encode(&entries), v2.to_vec());
    }

    #[test]
    fn a_fingerprint_that_is_not_hexadecimal_is_corrupt() {
        let bad = br#"{"version": 2, "files": [{"path": "/x", "dev": 1, "inode": 2,
            "fingerprint_len": 3, "fingerprint": "xyz", "offset": 0}]}"#;
        assert!(decode(bad)
            .unwrap_err()
            .contains("\"xyz\" is not hexadecimal"));
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
