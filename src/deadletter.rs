//! The dead-letter file: lines Firehose can never take (DESIGN §5).
//!
//! JSON lines `{"time", "file", "offset", "reason", "size", "line"}`; the line is a
//! string when it is UTF-8, else base64 with `"line_base64": true`. Entries are
//! synced before their lines' spans can be acknowledged (once per batch), so a dead
//! letter is as durable as a shipped record. Reasons: `oversize` (over 1,024,000 bytes), `invalid_json`
//! (with `--invalid-json dead-letter`), `rejected` (Firehose refused the record alone
//! with `InvalidArgumentException`).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use base64::Engine;
use serde::Serialize;

use crate::metrics::LogThrottle;

#[derive(Serialize)]
struct Entry<'a> {
    time: String,
    file: &'a Path,
    offset: u64,
    reason: &'a str,
    /// The line's full size in bytes, with its `\n`.
    size: u64,
    line: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    line_base64: bool,
    /// True when only the first bytes of a huge line are kept here; the rest is still in
    /// the log file at `offset`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    line_cut: bool,
}

/// Appends entries to the dead-letter file, opened on first use.
pub struct DeadLetter {
    path: PathBuf,
    file: Mutex<Option<File>>,
    /// Entries written since the last sync.
    unsynced: AtomicBool,
    log: LogThrottle,
}

impl DeadLetter {
    pub fn new(path: &Path) -> DeadLetter {
        DeadLetter {
            path: path.to_path_buf(),
            file: Mutex::new(None),
            unsynced: AtomicBool::new(false),
            log: LogThrottle::new(std::time::Duration::from_secs(1)),
        }
    }

    /// Writes one line (or a record holding several), retrying every second while the
    /// disk refuses. Call [`DeadLetter::sync`] before the line's span can be
    /// acknowledged: a full disk delays the checkpoint instead of losing the line.
    pub async fn write_retrying(
        &self,
        file: &Path,
        offset: u64,
        reason: &str,
        data: &[u8],
        size: u64,
    ) {
        let mut failing = false;
        while let Err(e) = self.write_data(file, offset, reason, data, size) {
            if !failing {
                tracing::error!(dead_letter = %self.path.display(), error = %e, "Cannot write the dead-letter file; retrying every second. The checkpoint cannot advance past this line until it is written.");
                failing = true;
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }

    /// Makes the entries written so far durable (one fsync for a whole batch of dead
    /// letters, not one per line), retrying every second while the disk refuses.
    pub async fn sync(&self) {
        if !self.unsynced.swap(false, Ordering::Relaxed) {
            return;
        }
        let mut failing = false;
        loop {
            let result = match self.file.lock().unwrap().as_ref() {
                Some(f) => f.sync_data(),
                None => Ok(()),
            };
            match result {
                Ok(()) => return,
                Err(e) if !failing => {
                    tracing::error!(dead_letter = %self.path.display(), error = %e, "Cannot sync the dead-letter file; retrying every second. The checkpoint cannot advance past its lines until it is synced.");
                    failing = true;
                }
                Err(_) => {}
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }

    pub fn write_data(
        &self,
        file: &Path,
        offset: u64,
        reason: &str,
        data: &[u8],
        size: u64,
    ) -> io::Result<()> {
        let body = data.strip_suffix(b"\n").unwrap_or(data);
        let (line, line_base64) = match std::str::from_utf8(body) {
            Ok(s) => (s.to_string(), false),
            Err(_) => (base64::engine::general_purpose::STANDARD.encode(body), true),
        };
        let entry = Entry {
            time: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            file,
            offset,
            reason,
            size,
            line,
            line_base64,
            line_cut: (data.len() as u64) < size,
        };
        let mut json = serde_json::to_vec(&entry).map_err(io::Error::other)?;
        json.push(b'\n');
        let mut guard = self.file.lock().unwrap();
        if guard.is_none() {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!(
                            "cannot open the dead-letter file {}: {e}",
                            self.path.display()
                        ),
                    )
                })?;
            *guard = Some(f);
        }
        let f = guard.as_mut().expect("opened above");
        f.write_all(&json)?;
        self.unsynced.store(true, Ordering::Relaxed);
        if let Some(lines) = self.log.note(1) {
            tracing::warn!(
                file = %file.display(),
                offset,
                size,
                reason,
                lines,
                dead_letter = %self.path.display(),
                "Lines written to the dead-letter file (this one's file, offset, size and reason; `lines` counts all since the last such log line)."
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_json_lines_and_binary_is_base64() {
        let dir = tempfile::tempdir().unwrap();
        let dl = DeadLetter::new(&dir.path().join("dead.jsonl"));
        dl.write_data(Path::new("/a.log"), 7, "oversize", b"{\"x\":1}\n", 8)
            .unwrap();
        dl.write_data(Path::new("/a.log"), 15, "invalid_json", b"\xff\x00\n", 3)
            .unwrap();
        let text = std::fs::read_to_string(dir.path().join("dead.jsonl")).unwrap();
        let rows: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows[0]["line"], "{\"x\":1}");
        assert_eq!(rows[0]["offset"], 7);
        assert_eq!(rows[0]["reason"], "oversize");
        assert_eq!(rows[1]["line"], "/wA=");
        assert_eq!(rows[1]["line_base64"], true);
        assert!(rows[0]["time"].as_str().unwrap().ends_with('Z'));
    }
}
