//! identity: which file is this? (docs/design.md#files-and-lines)
//!
//! A file is identified once, when it is opened: (device, inode) plus a fingerprint of
//! its first bytes together with how many bytes it covers. The rules that follow from
//! that, and that the follower relies on:
//! - a rename keeps inode and fingerprint: the same file;
//! - a copytruncate copy has a new inode and the same first bytes, and holds at least
//!   every byte the original had when it was copied ([`Identity::is_copy`]);
//! - the same inode whose first bytes changed (truncated and written again) is new
//!   content, read from offset 0 under a new key ([`Identity::starts_like`] is false).
//!
//! The fingerprint of a file opened while shorter than [`FINGERPRINT_LEN`] grows only
//! with bytes this process read from that content, in order ([`Identity::extend`]);
//! it is never "refreshed" from the disk, where by then another content may start.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};

use crate::progress::Identity;

/// How many leading bytes the fingerprint covers: more than a Ruby Logger header and
/// the start of the first access-log line (a timestamp), so two files rarely share it.
pub const FINGERPRINT_LEN: u64 = 256;

/// FNV-1a's starting state.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a, continued from `state` over `bytes`: stable across versions and platforms
/// (the checkpoint outlives the binary), and resumable, so a short file's fingerprint
/// can grow with the bytes read after it.
fn fnv(state: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(state, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The fingerprint of the first `len` bytes of `file` (`pread`, the file position is
/// untouched).
pub fn fingerprint(file: &File, len: u64) -> io::Result<u64> {
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, 0)?;
    Ok(fnv(FNV_OFFSET, &buf))
}

impl Identity {
    /// Takes the identity of an open file: the one time its first bytes are read from
    /// the disk to identify it.
    pub fn of(file: &File, meta: &Metadata) -> io::Result<Identity> {
        let fp_len = meta.len().min(FINGERPRINT_LEN);
        Ok(Identity {
            dev: meta.dev(),
            ino: meta.ino(),
            fp_len,
            fp_hash: fingerprint(file, fp_len)?,
        })
    }

    /// True when `meta` is this file's inode (renames keep it).
    pub fn same_inode(&self, meta: &Metadata) -> bool {
        meta.dev() == self.dev && meta.ino() == self.ino
    }

    /// True when `file` (of size `size`) still starts with the bytes this identity
    /// was taken from. False when it is shorter than them or they changed: the content
    /// was truncated (and maybe written again past our offset while we waited).
    pub fn starts_like(&self, file: &File, size: u64) -> io::Result<bool> {
        match self.fp_len {
            0 => Ok(true),
            n if size < n => Ok(false),
            n => Ok(fingerprint(file, n)? == self.fp_hash),
        }
    }

    /// True when `file` is this file: same inode and same first bytes.
    pub fn matches(&self, file: &File, meta: &Metadata) -> io::Result<bool> {
        Ok(self.same_inode(meta) && self.starts_like(file, meta.len())?)
    }

    /// True when `file` is a copy of this file's content up to `offset` (what
    /// copytruncate leaves beside the file): another inode, the same first bytes, and
    /// at least `offset` bytes. An empty fingerprint identifies no copy.
    pub fn is_copy(&self, file: &File, meta: &Metadata, offset: u64) -> io::Result<bool> {
        if self.fp_len == 0 || self.same_inode(meta) || meta.len() < offset.max(self.fp_len) {
            return Ok(false);
        }
        self.starts_like(file, meta.len())
    }

    /// Grows a short fingerprint with `bytes`, read from this content at `at`. Only
    /// bytes that continue the fingerprint exactly count. True when it grew.
    pub fn extend(&mut self, at: u64, bytes: &[u8]) -> bool {
        if self.fp_len >= FINGERPRINT_LEN || at > self.fp_len {
            return false;
        }
        let end = (at + bytes.len() as u64).min(FINGERPRINT_LEN);
        if end <= self.fp_len {
            return false;
        }
        let from = (self.fp_len - at) as usize;
        let to = (end - at) as usize;
        self.fp_hash = fnv(self.fp_hash, &bytes[from..to]);
        self.fp_len = end;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(bytes: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut t = tempfile::NamedTempFile::new().unwrap();
        t.write_all(bytes).unwrap();
        let f = File::open(t.path()).unwrap();
        (t, f)
    }

    /// The checkpoint stores fingerprints, so the hash must stay FNV-1a exactly: the
    /// published 64-bit test vectors, whole and resumed part-way.
    #[test]
    fn the_fingerprint_is_fnv_1a() {
        assert_eq!(fnv(FNV_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv(FNV_OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(fnv(fnv(FNV_OFFSET, b"foo"), b"bar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn an_extended_fingerprint_equals_one_taken_whole() {
        let data: Vec<u8> = (0..400u32).map(|i| (i % 251) as u8).collect();
        let (_t, short) = file_with(&data[..100]);
        let mut id = Identity::of(&short, &short.metadata().unwrap()).unwrap();
        assert_eq!(id.fp_len, 100);
        assert!(!id.extend(150, &data[150..200]), "a gap never extends it");
        assert!(id.extend(60, &data[60..300]));
        let (_u, long) = file_with(&data);
        let whole = Identity::of(&long, &long.metadata().unwrap()).unwrap();
        assert_eq!((id.fp_len, id.fp_hash), (whole.fp_len, whole.fp_hash));
    }

    #[test]
    fn a_fingerprint_grows_from_exactly_where_it_ends_and_stops_at_its_full_length() {
        let data: Vec<u8> = (0..300u32).map(|i| (i % 251) as u8).collect();
        let (_t, short) = file_with(&data[..100]);
        let mut id = Identity::of(&short, &short.metadata().unwrap()).unwrap();
        assert!(id.extend(100, &data[100..110]), "bytes right after it");
        assert_eq!(id.fp_len, 110);
        assert!(
            !id.extend(20, &data[20..110]),
            "only bytes it already covers"
        );
        assert!(id.extend(110, &data[110..300]));
        assert_eq!(id.fp_len, FINGERPRINT_LEN);
        assert!(
            !id.extend(256, &data[256..300]),
            "full: nothing more counts"
        );
        let (_u, long) = file_with(&data);
        let whole = Identity::of(&long, &long.metadata().unwrap()).unwrap();
        assert_eq!((id.fp_len, id.fp_hash), (whole.fp_len, whole.fp_hash));
    }

    #[test]
    fn a_file_matches_while_it_keeps_its_inode_and_first_bytes() {
        let (t, file) = file_with(&[b'a'; 256]);
        let id = Identity::of(&file, &file.metadata().unwrap()).unwrap();
        assert!(id.matches(&file, &file.metadata().unwrap()).unwrap());
        let (_c, copy) = file_with(&[b'a'; 256]);
        assert!(
            !id.matches(&copy, &copy.metadata().unwrap()).unwrap(),
            "same bytes, another inode"
        );
        // Truncated to fewer bytes than the fingerprint covers: not this content, and
        // not an error either.
        t.as_file().set_len(100).unwrap();
        assert!(!id.matches(&file, &file.metadata().unwrap()).unwrap());
    }

    #[test]
    fn a_copy_needs_the_same_start_another_inode_and_enough_bytes() {
        let (_t, orig) = file_with(&[b'a'; 300]);
        let id = Identity::of(&orig, &orig.metadata().unwrap()).unwrap();
        let (_c, copy) = file_with(&[b'a'; 300]);
        let meta = copy.metadata().unwrap();
        assert!(id.is_copy(&copy, &meta, 300).unwrap());
        assert!(
            !id.is_copy(&copy, &meta, 301).unwrap(),
            "shorter than the offset"
        );
        assert!(!id.is_copy(&orig, &orig.metadata().unwrap(), 0).unwrap());
        let (_o, other) = file_with(&[b'b'; 300]);
        assert!(!id.is_copy(&other, &other.metadata().unwrap(), 0).unwrap());
    }
}
