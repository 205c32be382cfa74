//! The checkpoint file's format, by version: one private type per version, so the
//! ledger's view ([`FileEntry`]) can change without touching the file.
//!
//! Version 2 added each file's `mtime_ns`: when the checkpointed file is gone at
//! restart, the siblings newer than it are the ones to ship. Version 3 added each
//! file's `source` and `followed` path (its chain, docs/design.md#sources): one
//! checkpoint holds the files of every source. Versions 1 and 2 are read with an empty
//! `source` (unknown) and their own path as `followed`; `super::migrate` places them
//! in a configured source. A version this firetail does not know is treated as corrupt
//! (moved aside), so a downgrade never resumes from offsets it misunderstands
//! (docs/design.md#checkpoint).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::progress::{FileEntry, Identity};

/// The version this firetail writes.
pub const VERSION: u32 = 3;

#[derive(Serialize)]
struct Current {
    version: u32,
    files: Vec<V3Entry>,
}

#[derive(Deserialize)]
struct Versioned {
    version: u32,
}

#[derive(Deserialize)]
struct V3 {
    files: Vec<V3Entry>,
}

/// A file as version 3 stores it. Field order is the file's: it is pretty-printed for
/// an operator to read.
#[derive(Serialize, Deserialize)]
struct V3Entry {
    source: String,
    followed: PathBuf,
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
struct V2 {
    files: Vec<V2Entry>,
}

/// A file as version 2 stored it: one source, so no source nor chain.
#[derive(Deserialize)]
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

impl From<&FileEntry> for V3Entry {
    fn from(e: &FileEntry) -> V3Entry {
        V3Entry {
            source: e.source.clone(),
            followed: e.followed.clone(),
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

impl V3Entry {
    fn into_entry(self) -> Result<FileEntry, String> {
        Ok(FileEntry {
            identity: identity(
                self.dev,
                self.inode,
                self.fingerprint_len,
                &self.fingerprint,
            )?,
            source: self.source,
            followed: self.followed,
            path: self.path,
            offset: self.offset,
            mtime_ns: self.mtime_ns,
        })
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
        files: files.iter().map(V3Entry::from).collect(),
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
        2 => {
            let v2: V2 = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
            v2.files.into_iter().map(V2Entry::into_entry).collect()
        }
        VERSION => {
            let v3: V3 = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
            v3.files.into_iter().map(V3Entry::into_entry).collect()
        }
        other => Err(format!(
            "version {other} is not one this firetail reads (1 to {VERSION})"
        )),
    }
}

#[cfg(test)]
mod tests;
