//! The listing: the entries file sync sends for the whole context, recorded by the walk that
//! hashes it, so that the transfer replays them instead of walking the tree a second time.
//!
//! The hash walk and BuildKit's request for the context run at the same time: the walk records
//! each entry before it reads the entry's bytes, and a reader that catches up with it waits for
//! the next entry (or for the end of the walk). What is recorded is what the hash describes, so
//! the content hash and the transfer cannot list two different trees (a file's bytes are still
//! read twice: a change that keeps its size between the two reads goes unseen, as with two walks).
//!
//! Each entry is kept in about 120 bytes: its name, what it is, and the metadata file sync
//! sends; its path on disk only when the name does not spell it (a name that is not UTF-8).
//! That is less than the map from file number to path that a walking transfer keeps.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use shared::error::{Error, Result};

use crate::{Entry, Kind, Role};

/// Entries handed to a reader per lock.
const BATCH: usize = 512;

/// The recorded entries, and how the walk ended.
#[derive(Debug)]
pub struct Listing {
    /// The context's root: a name joined to it is the entry's path.
    root: PathBuf,
    state: Mutex<State>,
    grown: Condvar,
}

/// What file sync needs of one entry.
#[derive(Debug)]
struct Listed {
    name: Box<str>,
    /// Its path on disk, when `root` joined with `name` is not it.
    path: Option<Box<Path>>,
    kind: Kind,
    mode: u32,
    role: Role,
    mtime: i64,
    mtime_ns: i64,
    stamp: u64,
}

impl Listed {
    fn entry(&self) -> Entry {
        Entry {
            name: self.name.to_string(),
            rel: PathBuf::new(),
            path: None,
            kind: self.kind.clone(),
            mode: self.mode,
            mtime: self.mtime,
            mtime_ns: self.mtime_ns,
            stamp: self.stamp,
            ctime: 0,
            role: self.role,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    entries: Vec<Listed>,
    /// `None` while the walk runs; then its outcome (the error's message).
    end: Option<std::result::Result<(), String>>,
}

impl Listing {
    /// An empty listing of the context at `root` (the context's own [`crate::Context::root`]),
    /// to be filled by [`crate::Context::hash_into`].
    #[must_use]
    pub fn new(root: &Path) -> Arc<Self> {
        Arc::new(Self {
            root: root.to_owned(),
            state: Mutex::default(),
            grown: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a consistent Vec: use it.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records the next entry file sync sends.
    /// Every entry file sync sends has a path on disk: only the tar's injected entries lack one.
    pub(crate) fn push(&self, entry: &Entry) {
        let path = entry
            .path
            .as_deref()
            .filter(|path| *path != self.root.join(&entry.name))
            .map(Box::from);
        let listed = Listed {
            name: entry.name.as_str().into(),
            path,
            kind: entry.kind.clone(),
            mode: entry.mode,
            role: entry.role,
            mtime: entry.mtime,
            mtime_ns: entry.mtime_ns,
            stamp: entry.stamp,
        };
        self.lock().entries.push(listed);
        self.grown.notify_all();
    }

    /// Marks the walk as over, with its error if it failed.
    pub(crate) fn finish(&self, failed: Option<&Error>) {
        let mut state = self.lock();
        if state.end.is_none() {
            state.end = Some(failed.map_or(Ok(()), |e| Err(e.message().to_owned())));
        }
        drop(state);
        self.grown.notify_all();
    }

    /// Visits every entry in order, numbered from 0, waiting for the walk where it is behind;
    /// `waiting` is called (without the lock) each time before it waits, so that a reader can
    /// pass on what it holds. Stops at the first error of `visit` or `waiting`, or with the
    /// walk's own error. The entries visited carry no `rel`, `path` or `ctime`:
    /// [`Listing::file`] gives a file's path.
    pub fn replay(
        &self,
        mut visit: impl FnMut(u32, &Entry) -> Result<()>,
        mut waiting: impl FnMut() -> Result<()>,
    ) -> Result<()> {
        // Copied out a batch at a time, so the walk is never held up by a slow reader.
        let mut next = 0usize;
        loop {
            let batch: Vec<Entry> = {
                let mut state = self.lock();
                if next == state.entries.len() && state.end.is_none() {
                    drop(state);
                    waiting()?;
                    state = self.lock();
                }
                while next == state.entries.len() && state.end.is_none() {
                    state = self
                        .grown
                        .wait(state)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
                if next == state.entries.len() {
                    return match &state.end {
                        Some(Err(message)) => Err(Error::data(format!(
                            "the build context could not be read: {message}"
                        ))),
                        _ => Ok(()),
                    };
                }
                let end = state.entries.len().min(next + BATCH);
                state.entries[next..end].iter().map(Listed::entry).collect()
            };
            for entry in &batch {
                let id = u32::try_from(next)
                    .map_err(|_| Error::data("the build context has too many entries"))?;
                visit(id, entry)?;
                next += 1;
            }
        }
    }

    /// The file numbered `id` by [`Listing::replay`]: its path on disk and, for a regular file,
    /// the size the walk saw. `None` for a number that is not a file's.
    #[must_use]
    pub fn file(&self, id: u32) -> Option<(PathBuf, Option<u64>)> {
        let state = self.lock();
        let listed = state.entries.get(usize::try_from(id).ok()?)?;
        let size = match listed.kind {
            Kind::File(n) => Some(n),
            Kind::HardLink(_) => None,
            _ => return None,
        };
        let path = match &listed.path {
            Some(path) => path.to_path_buf(),
            None => self.root.join(&*listed.name),
        };
        Some((path, size))
    }
}
