//! A disk that misbehaves on command, over a real directory: read-only, full, EIO,
//! permission denied, short writes — and healthy again. The tests of the checkpoint
//! and the dead-letter file flip it while their writers run.
//!
//! Full and EIO tear writes the way a real disk does: a write that gets part of its
//! bytes on disk, then the next one fails, so the caller sees an error with half an
//! entry in the file.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::{Disk, Store, StoreFile};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Healthy,
    /// EROFS on everything that changes the disk; reads work.
    ReadOnly,
    /// Writes land in part, then ENOSPC; fsync ENOSPC. Shrinking a file works.
    Full,
    /// Everything fails with EIO, reads included; writes land in part first.
    Eio,
    /// EACCES on every open.
    Denied,
    /// Every write takes at most half of what it is given, without an error.
    Short,
}

struct Shared {
    fault: Mutex<Fault>,
    writes: AtomicU64,
}

/// The fault-injecting store. Clones share the fault.
#[derive(Clone)]
pub struct Faulty {
    shared: Arc<Shared>,
}

impl Default for Faulty {
    fn default() -> Self {
        Faulty {
            shared: Arc::new(Shared {
                fault: Mutex::new(Fault::Healthy),
                writes: AtomicU64::new(0),
            }),
        }
    }
}

fn err(errno: i32) -> io::Error {
    io::Error::from_raw_os_error(errno)
}

impl Shared {
    fn now(&self) -> Fault {
        *self.fault.lock().unwrap()
    }

    /// The error an operation that changes the disk gets now, if any.
    fn change(&self) -> io::Result<()> {
        match self.now() {
            Fault::ReadOnly => Err(err(libc::EROFS)),
            Fault::Eio => Err(err(libc::EIO)),
            Fault::Denied => Err(err(libc::EACCES)),
            Fault::Healthy | Fault::Full | Fault::Short => Ok(()),
        }
    }

    fn open(&self) -> io::Result<()> {
        match self.now() {
            Fault::Eio => Err(err(libc::EIO)),
            Fault::Denied => Err(err(libc::EACCES)),
            _ => Ok(()),
        }
    }
}

impl Faulty {
    pub fn set(&self, fault: Fault) {
        *self.shared.fault.lock().unwrap() = fault;
    }

    pub fn shared(&self) -> Arc<dyn Store> {
        Arc::new(self.clone())
    }
}

impl Store for Faulty {
    fn read(&self, path: &Path) -> io::Result<(Vec<u8>, SystemTime)> {
        self.shared.open()?;
        Disk.read(path)
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn Read + Send>> {
        self.shared.open()?;
        Disk.open_read(path)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn StoreFile>> {
        self.shared.change()?;
        Ok(Box::new(FaultyFile {
            inner: Disk.create(path)?,
            shared: self.shared.clone(),
        }))
    }

    fn append(&self, path: &Path) -> io::Result<Box<dyn StoreFile>> {
        if !path.exists() {
            self.shared.change()?;
        }
        self.shared.open()?;
        Ok(Box::new(FaultyFile {
            inner: Disk.append(path)?,
            shared: self.shared.clone(),
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.shared.change()?;
        Disk.rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.shared.change()?;
        Disk.remove(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.shared.open()?;
        Disk.sync_dir(dir)
    }
}

struct FaultyFile {
    inner: Box<dyn StoreFile>,
    shared: Arc<Shared>,
}

impl Write for FaultyFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let half = buf.len().div_ceil(2);
        match self.shared.now() {
            Fault::Healthy => self.inner.write(buf),
            Fault::Short => self.inner.write(&buf[..half]),
            Fault::ReadOnly => Err(err(libc::EROFS)),
            Fault::Denied => Err(err(libc::EACCES)),
            torn @ (Fault::Full | Fault::Eio) => {
                // Every other write lands in part, so an entry is torn mid-way.
                if self
                    .shared
                    .writes
                    .fetch_add(1, Ordering::Relaxed)
                    .is_multiple_of(2)
                {
                    self.inner.write(&buf[..half])
                } else if torn == Fault::Full {
                    Err(err(libc::ENOSPC))
                } else {
                    Err(err(libc::EIO))
                }
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl StoreFile for FaultyFile {
    fn size(&self) -> io::Result<u64> {
        self.shared.open()?;
        self.inner.size()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.shared.open()?;
        self.inner.read_at(buf, offset)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.shared.change()?;
        self.inner.set_len(len)
    }

    fn sync(&mut self) -> io::Result<()> {
        match self.shared.now() {
            Fault::Full => Err(err(libc::ENOSPC)),
            Fault::Eio => Err(err(libc::EIO)),
            _ => self.inner.sync(),
        }
    }
}
