//! The listing: the entries file sync sends for the whole context, recorded by the walk that
//! hashes it, so that the transfer replays them instead of walking the tree a second time.
//!
//! The hash walk and BuildKit's request for the context run at the same time: the walk records
//! each entry before it reads the entry's bytes, and a reader that catches up with it waits for
//! the next entry (or for the end of the walk). What is recorded is what the hash describes, so
//! the content hash and the transfer cannot see two different trees.
//!
//! Each entry is kept once, without its tar name ([`Entry::rel`]): about as much memory as the
//! map from file number to path that a walking transfer keeps anyway.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use shared::error::{Error, Result};

use crate::{Entry, Kind};

/// Entries handed to a reader per lock.
const BATCH: usize = 512;

/// The recorded entries, and how the walk ended.
#[derive(Debug, Default)]
pub struct Listing {
    state: Mutex<State>,
    grown: Condvar,
}

#[derive(Debug, Default)]
struct State {
    entries: Vec<Arc<Entry>>,
    /// `None` while the walk runs; then its outcome (the error's message).
    end: Option<std::result::Result<(), String>>,
}

impl Listing {
    /// An empty listing, to be filled by [`crate::Context::hash_into`].
    #[must_use]
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a consistent Vec: use it.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records the next entry file sync sends.
    pub(crate) fn push(&self, entry: &Entry) {
        let mut kept = entry.clone();
        kept.rel = PathBuf::new();
        self.lock().entries.push(Arc::new(kept));
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

    /// Visits every entry in order, numbered from 0, waiting for the walk where it is behind.
    /// Stops at the first error of `visit`, or with the walk's own error.
    pub fn replay(&self, mut visit: impl FnMut(u32, &Entry) -> Result<()>) -> Result<()> {
        let mut next = 0usize;
        loop {
            let batch: Vec<Arc<Entry>> = {
                let mut state = self.lock();
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
                state.entries[next..end].to_vec()
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
        let entry = state.entries.get(usize::try_from(id).ok()?)?;
        let size = match entry.kind {
            Kind::File(n) => Some(n),
            Kind::HardLink(_) => None,
            _ => return None,
        };
        Some((entry.path.clone()?, size))
    }
}
