//! store: the few file operations the checkpoint and the dead-letter file need, behind
//! a trait, so that tests can hand them a disk that is read-only, full, failing with
//! EIO or writing short, and then heals ([`faulty`]). Production uses [`Disk`], plain
//! `std::fs`. Every call blocks: callers run them on a blocking thread, never on the
//! runtime thread (which ships meanwhile).

#[cfg(test)]
pub mod faulty;

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

/// The file system as the checkpoint and the dead-letter file see it.
pub trait Store: Send + Sync {
    /// The whole (small) file and its modification time.
    fn read(&self, path: &Path) -> io::Result<(Vec<u8>, SystemTime)>;
    /// A file to stream through (large files: the dead-letter `.1`).
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn Read + Send>>;
    /// Creates or empties the file, for writing.
    fn create(&self, path: &Path) -> io::Result<Box<dyn StoreFile>>;
    /// Opens the file for appending (and reading back its tail), creating it if needed.
    fn append(&self, path: &Path) -> io::Result<Box<dyn StoreFile>>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes renames and creations in the directory durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// An open file. A write may be short; callers use `write_all`.
pub trait StoreFile: Write + Send {
    fn size(&self) -> io::Result<u64>;
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// `fdatasync`: the data written so far survives a crash.
    fn sync(&mut self) -> io::Result<()>;
}

/// The real disk.
#[derive(Debug, Default, Clone, Copy)]
pub struct Disk;

impl Disk {
    pub fn shared() -> Arc<dyn Store> {
        Arc::new(Disk)
    }
}

impl Store for Disk {
    fn read(&self, path: &Path) -> io::Result<(Vec<u8>, SystemTime)> {
        let mut f = File::open(path)?;
        let mtime = f.metadata()?.modified()?;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)?;
        Ok((bytes, mtime))
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(File::open(path)?))
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn StoreFile>> {
        Ok(Box::new(File::create(path)?))
    }

    fn append(&self, path: &Path) -> io::Result<Box<dyn StoreFile>> {
        let f = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        Ok(Box::new(f))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

impl StoreFile for File {
    fn size(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(self, buf, offset)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.sync_data()
    }
}
