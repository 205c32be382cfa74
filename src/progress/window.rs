//! The duplicate window, as the tail asks for it: room in the whole window, and each
//! file's share of it (docs/design.md#checkpoint, "the duplicate window").
//!
//! The window is one bound summed over every file: [`Progress::room`] keeps it. The
//! share only divides it fairly, so one file bursting (or stuck behind a throttled
//! stream) cannot take the room the others need: [`Progress::room_for`] is never more
//! than [`Progress::room`], so every bound `room` gives holds with shares too.

use super::files::Files;
use super::{FileKey, FileProgress, Progress};

/// The smallest share of the window a file gets however many files are open: a file
/// must be able to hold a few lines ahead, or its reads shrink to nothing. With many
/// files the shares add up to more than the window; the window still bounds the sum.
pub const MIN_SHARE: u64 = 64 * 1024;

impl FileProgress {
    /// Lines handed on and not covered by the durable checkpoint.
    pub(super) fn ahead(&self) -> u64 {
        self.read_offset.saturating_sub(self.durable)
    }
}

impl Progress {
    /// Bytes the tail may still read before the duplicate window is full. A line in
    /// progress counts as soon as anything else is ahead of the durable checkpoint: it
    /// will be, whole, once it ends. When nothing else is, the whole window is room and
    /// the tail reads the line in progress to its end and no further
    /// ([`Progress::read_ahead`]): a line longer than the window must not stop the
    /// reading that would end it.
    pub fn room(&self) -> u64 {
        self.room_in(&self.lock())
    }

    fn room_in(&self, files: &Files) -> u64 {
        let t = files.totals();
        let held = if t.ahead == 0 { 0 } else { t.held };
        self.window.saturating_sub(t.ahead + held)
    }

    /// A file's share of the window: the window divided between the files still being
    /// read, never less than [`MIN_SHARE`].
    fn share(&self, files: &Files) -> u64 {
        (self.window / files.totals().reading.max(1)).max(MIN_SHARE)
    }

    /// Bytes the tail may still read of this file: the room in the whole window, and
    /// no more than what is left of the file's share once its own lines ahead of the
    /// durable checkpoint and its line in progress are counted.
    ///
    /// A file with nothing of its own ahead is not stopped by its share: its line in
    /// progress, however much longer than the share, may be read on to its end as far
    /// as the whole window allows. Otherwise a line longer than a share would wait for
    /// every other file to be durable at once, which a busy neighbour never is. When
    /// this is 0, either the whole window is full, or the file has lines of its own
    /// ahead, which acknowledgements make durable without any further read: no file
    /// waits on its own reading.
    pub fn room_for(&self, key: FileKey) -> u64 {
        let files = self.lock();
        let room = self.room_in(&files);
        let share = self.share(&files);
        let left = match files.get(&key) {
            Some(f) if f.ahead() == 0 && f.held >= share => room,
            Some(f) => share.saturating_sub(f.ahead() + f.held),
            None => share,
        };
        room.min(left)
    }

    /// Waits until one of `keys` has room (returns at once when one has, or when
    /// `keys` is empty). Room frees when a checkpoint is made durable, and shares grow
    /// when a file is finished or leaves the ledger: each wakes the waiters.
    pub async fn wait_for_room_for(&self, keys: &[FileKey]) {
        loop {
            let notified = self.room.notified();
            if keys.is_empty() || keys.iter().any(|k| self.room_for(*k) > 0) {
                return;
            }
            notified.await;
        }
    }

    /// Bytes of lines handed on and not covered by the durable checkpoint.
    pub fn read_ahead(&self) -> u64 {
        self.lock().totals().ahead
    }

    /// `--max-unacked-bytes`.
    pub fn window(&self) -> u64 {
        self.window
    }

    /// Bytes of this file's lines handed on and not covered by the durable checkpoint
    /// (0 for an unknown key).
    pub fn read_ahead_of(&self, key: FileKey) -> u64 {
        self.lock().get(&key).map_or(0, FileProgress::ahead)
    }

    /// Waits until the window has room (returns at once when it has).
    pub async fn wait_for_room(&self) {
        loop {
            let notified = self.room.notified();
            if self.room() > 0 {
                return;
            }
            notified.await;
        }
    }

    /// True when half the window is used: the checkpoint writer should write now
    /// rather than wait for its interval, so a fast backlog is not held up by it.
    pub fn under_pressure(&self) -> bool {
        let t = self.lock().totals();
        t.ahead + t.held >= self.window / 2
    }
}

#[cfg(test)]
mod tests;
