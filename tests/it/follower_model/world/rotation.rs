//! The apps' rotations, as their scripts do them (rename, copytruncate, deletion of
//! the oldest, an app that ends), and what each does to the model's contents: which
//! pieces no follower can recover any more (docs/how-it-works.md#what-can-be-lost-and-why).

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use super::{open_append, MFile, Naming, Piece, World};

/// The `n`th rotated name of `path` under `naming`.
fn rotated_name(path: &Path, naming: Naming, n: usize) -> PathBuf {
    let name = path.file_name().unwrap().to_string_lossy();
    let (stem, ext) = name.rsplit_once('.').unwrap_or((&name, ""));
    let name = match naming {
        Naming::Numbered => format!("{name}.{n}"),
        Naming::Dated => format!("{name}-20261207{n:04}"),
        Naming::NumberedExt => format!("{stem}.{n}.{ext}"),
        Naming::DatedExt => format!("{stem}-20261207{n:04}.{ext}"),
    };
    path.with_file_name(name)
}

impl World {
    fn rename(&mut self, from: &Path, to: &Path) {
        std::fs::rename(from, to).unwrap();
        let id = self.at.remove(from).unwrap();
        self.at.insert(to.to_path_buf(), id);
    }

    fn rotated(&self, n: usize) -> PathBuf {
        rotated_name(&self.app().path, self.app().naming, n)
    }

    /// The name for the file rotated now: `.n` → `.n+1` for every rotated file first
    /// when numbered, the next date when dated.
    fn next_rotated(&mut self) -> PathBuf {
        if matches!(self.app().naming, Naming::Dated | Naming::DatedExt) {
            let n = self.app().dated;
            self.app_mut().dated += 1;
            return self.rotated(n);
        }
        let mut n = 0;
        while self.rotated(n).exists() {
            n += 1;
        }
        for n in (0..n).rev() {
            self.rename(&self.rotated(n), &self.rotated(n + 1));
        }
        self.rotated(0)
    }

    /// Rename rotation, also in the middle of a line: the app's descriptor still
    /// points at the renamed file.
    pub fn rename_rotate(&mut self) {
        if !self.app().path.exists() {
            return;
        }
        let to = self.next_rotated();
        let path = self.app().path.clone();
        self.rename(&path, &to);
    }

    /// The app reopens the path (also in the middle of a line: a buffered writer
    /// reopened on a signal flushes the rest into the new file).
    pub fn reopen(&mut self) {
        let path = self.app().path.clone();
        if self.app().ended {
            return;
        }
        if !self.at.contains_key(&path) {
            self.files.push(MFile {
                pieces: Vec::new(),
                opened: false,
            });
            self.at.insert(path.clone(), self.files.len() - 1);
        }
        let file = self.at[&path];
        let app = self.app_mut();
        app.writer = Some(open_append(&path));
        app.writer_file = file;
    }

    /// copytruncate, also in the middle of a line: copy, `window` writes (the first
    /// finishes a half-written line, inside the doomed content), truncate. The rest of
    /// a line still half written after that lands at offset 0 of the truncated file.
    pub fn copy_truncate(&mut self, window: usize, keep_copy: bool) {
        let Some(&id) = self.at.get(&self.app().path) else {
            return;
        };
        if self.app().writer_file != id || self.app().writer.is_none() {
            return;
        }
        let copy = self.next_rotated();
        std::fs::copy(&self.app().path, &copy).unwrap();
        self.files.push(MFile {
            pieces: self.files[id].pieces.clone(),
            opened: false,
        });
        let copy_id = self.files.len() - 1;
        self.at.insert(copy.clone(), copy_id);
        for _ in 0..window {
            self.write_line(30);
        }
        if !keep_copy {
            self.delete(&copy);
        } else if !self.any_emitted(&self.files[copy_id].pieces) {
            // A content truncated before firetail read a byte of it leaves the handle
            // at offset 0 with a size of 0: nothing shows the truncation, and only the
            // periodic sibling scan (every few seconds, no clock here) or a rotation
            // finds the copy — a kill, or the copy's deletion, before that loses it
            // (docs/how-it-works.md#what-can-be-lost-and-why, 5). Lenient when firetail
            // read only a head it holds back, and when no checkpoint followed the copy.
            let copied = self.files[copy_id].pieces.clone();
            self.unrecoverable.extend(copied);
        }
        OpenOptions::new()
            .write(true)
            .open(&self.app().path)
            .unwrap()
            .set_len(0)
            .unwrap();
        let gone = std::mem::take(&mut self.files[id].pieces);
        self.destroyed(gone, false);
    }

    fn any_emitted(&self, pieces: &[Piece]) -> bool {
        let emitted: HashSet<&str> = self.emitted.iter().map(String::as_str).collect();
        pieces.iter().any(|p| emitted.contains(self.piece_text(*p)))
    }

    /// Pieces whose content was destroyed: unrecoverable unless firetail already
    /// emitted them, holds them in an open file, or another file still has them.
    pub(in crate::follower_model) fn destroyed(&mut self, pieces: Vec<Piece>, held_open: bool) {
        self.history.extend(pieces.iter().copied());
        if held_open {
            return;
        }
        let emitted: HashSet<&str> = self.emitted.iter().map(String::as_str).collect();
        let elsewhere: HashSet<Piece> = self
            .at
            .values()
            .flat_map(|f| self.files[*f].pieces.iter().copied())
            .collect();
        let lost: Vec<Piece> = pieces
            .into_iter()
            .filter(|p| !emitted.contains(self.piece_text(*p)) && !elsewhere.contains(p))
            .collect();
        self.unrecoverable.extend(lost);
    }

    fn delete(&mut self, path: &Path) {
        std::fs::remove_file(path).unwrap();
        let id = self.at.remove(path).unwrap();
        let held = self.files[id].opened && self.reader.is_some();
        if held {
            self.held_deleted.push(id);
        }
        let pieces = self.files[id].pieces.clone();
        self.destroyed(pieces, held);
    }

    /// The app's rotated files that exist, oldest first.
    fn rotated_files(&self) -> Vec<PathBuf> {
        let app = self.app();
        match app.naming {
            Naming::Dated | Naming::DatedExt => (0..app.dated)
                .map(|n| self.rotated(n))
                .filter(|p| p.exists())
                .collect(),
            Naming::Numbered | Naming::NumberedExt => {
                let mut n = 0;
                while self.rotated(n).exists() {
                    n += 1;
                }
                (0..n).rev().map(|n| self.rotated(n)).collect()
            }
        }
    }

    /// The oldest rotated file is deleted (Logger's `shift_age`, logrotate `rotate N`).
    pub fn delete_oldest(&mut self) {
        let Some(oldest) = self.rotated_files().into_iter().next() else {
            return;
        };
        if self.at.get(&oldest) == Some(&self.app().writer_file) && self.app().writer.is_some() {
            return; // the app still writes there
        }
        self.delete(&oldest);
    }

    /// The app ends (a job done): it finishes its line, and its file and every
    /// rotated one are deleted with it.
    pub fn end_app(&mut self) {
        if self.app().writer.is_none() {
            return;
        }
        self.write_rest();
        self.app_mut().writer = None;
        self.app_mut().ended = true;
        let mut paths = self.rotated_files();
        paths.push(self.app().path.clone());
        for p in paths {
            if self.at.contains_key(&p) {
                self.delete(&p);
            }
        }
    }
}
