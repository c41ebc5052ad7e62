//! The listing: the entries file sync sends for the whole context, recorded by the walk that
//! hashes it, so that the transfer replays them instead of walking the tree a second time.
//!
//! The hash walk and BuildKit's request for the context run at the same time: the walk records
//! each entry before it reads the entry's bytes, and a reader that catches up with it waits for
//! the next entry (or for the end of the walk). What is recorded is what the hash describes, so
//! the content hash and the transfer cannot list two different trees. A file's bytes are still
//! read twice, but the second read opens the file only if its stamp is the walk's
//! ([`crate::open_walked`]).
//!
//! Memory stays the same whatever the size of the context. The daemon asks for files by number
//! once it has every entry, so the whole listing must be kept until the transfer ends; it is
//! kept in an anonymous temporary file (in `$TMPDIR`, removed by the kernel when the process
//! ends), with one 8-byte offset per entry in a second one. Only the last [`SPILL`] entries are
//! in memory. If no temporary file can be made or written, the listing stays in memory.

use std::fs::File;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use shared::error::{Error, Result};

use crate::{Entry, Kind, Role};

/// Entries handed to a reader per lock.
const BATCH: usize = 512;

/// Entries kept in memory before they are written to the temporary file.
const SPILL: usize = 1024;

/// The recorded entries, and how the walk ended.
#[derive(Debug)]
pub struct Listing {
    /// The context's root: a name joined to it is the entry's path.
    root: PathBuf,
    /// Where the older entries go, if a temporary file could be made.
    spill: Option<Spill>,
    /// How many entries are kept in memory before they are written out.
    spill_at: usize,
    state: Mutex<State>,
    grown: Condvar,
}

/// The temporary files: the entries, encoded one after the other, and where each begins.
#[derive(Debug)]
struct Spill {
    records: File,
    offsets: File,
}

/// A regular file (or hard link) the daemon may ask for by number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedFile {
    /// Its path on disk.
    pub path: PathBuf,
    /// Its size as the walk saw it (`None` for a hard link to an earlier entry).
    pub size: Option<u64>,
    /// Its stamp as the walk saw it ([`Entry::stamp`]), to open it with [`crate::open_walked`].
    pub stamp: u64,
}

/// What file sync needs of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
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

    fn file(&self, root: &Path) -> Option<ListedFile> {
        let size = match self.kind {
            Kind::File(n) => Some(n),
            Kind::HardLink(_) => None,
            _ => return None,
        };
        let path = match &self.path {
            Some(path) => path.to_path_buf(),
            None => root.join(&*self.name),
        };
        Some(ListedFile {
            path,
            size,
            stamp: self.stamp,
        })
    }

    /// Appends the entry's encoding: the kind's tag and payload, the fixed fields, the name
    /// and the optional path, lengths as 4-byte little-endian numbers.
    fn encode(&self, out: &mut Vec<u8>) {
        fn bytes(out: &mut Vec<u8>, b: &[u8]) {
            out.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_le_bytes());
            out.extend_from_slice(b);
        }
        match &self.kind {
            Kind::Dir => out.push(0),
            Kind::File(size) => {
                out.push(1);
                out.extend_from_slice(&size.to_le_bytes());
            }
            Kind::Symlink(target) => {
                out.push(2);
                bytes(out, target.as_os_str().as_bytes());
            }
            Kind::HardLink(first) => {
                out.push(3);
                bytes(out, first.as_bytes());
            }
            Kind::Fifo => out.push(4),
            Kind::CharDevice(major, minor) | Kind::BlockDevice(major, minor) => {
                out.push(if matches!(self.kind, Kind::CharDevice(..)) {
                    5
                } else {
                    6
                });
                out.extend_from_slice(&major.to_le_bytes());
                out.extend_from_slice(&minor.to_le_bytes());
            }
        }
        out.extend_from_slice(&self.mode.to_le_bytes());
        out.push(match self.role {
            Role::Both => 0,
            Role::TarOnly => 1,
            Role::SessionOnly => 2,
        });
        out.extend_from_slice(&self.mtime.to_le_bytes());
        out.extend_from_slice(&self.mtime_ns.to_le_bytes());
        out.extend_from_slice(&self.stamp.to_le_bytes());
        bytes(out, self.name.as_bytes());
        match &self.path {
            None => out.push(0),
            Some(path) => {
                out.push(1);
                bytes(out, path.as_os_str().as_bytes());
            }
        }
    }

    /// The entry [`Listed::encode`] wrote at the start of `record`.
    fn decode(record: &[u8]) -> Option<Listed> {
        let mut r = Reader(record);
        let kind = match r.u8()? {
            0 => Kind::Dir,
            1 => Kind::File(r.u64()?),
            2 => Kind::Symlink(PathBuf::from(std::ffi::OsString::from_vec(
                r.bytes()?.to_vec(),
            ))),
            3 => Kind::HardLink(String::from_utf8(r.bytes()?.to_vec()).ok()?),
            4 => Kind::Fifo,
            5 => Kind::CharDevice(r.u32()?, r.u32()?),
            6 => Kind::BlockDevice(r.u32()?, r.u32()?),
            _ => return None,
        };
        let mode = r.u32()?;
        let role = match r.u8()? {
            0 => Role::Both,
            1 => Role::TarOnly,
            2 => Role::SessionOnly,
            _ => return None,
        };
        let mtime = r.u64()?.cast_signed();
        let mtime_ns = r.u64()?.cast_signed();
        let stamp = r.u64()?;
        let name = std::str::from_utf8(r.bytes()?).ok()?.into();
        let path = match r.u8()? {
            0 => None,
            _ => Some(
                PathBuf::from(std::ffi::OsString::from_vec(r.bytes()?.to_vec())).into_boxed_path(),
            ),
        };
        Some(Listed {
            name,
            path,
            kind,
            mode,
            role,
            mtime,
            mtime_ns,
            stamp,
        })
    }
}

/// Reads the fields [`Listed::encode`] writes.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)?.try_into().ok().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)?.try_into().ok().map(u64::from_le_bytes)
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.u32()?).ok()?;
        self.take(n)
    }
}

/// Entries of a [`Listing`] read back together, for [`Listing::file_in`].
#[derive(Debug, Default)]
pub struct Window {
    start: usize,
    entries: Vec<Listed>,
}

#[derive(Debug, Default)]
struct State {
    /// The entries numbered from `spilled` on, not written out yet.
    tail: Vec<Listed>,
    /// Entries in the temporary file (numbered from 0).
    spilled: usize,
    /// Bytes of those entries in the temporary file.
    written: u64,
    /// Set when writing the temporary file failed: the rest stays in memory.
    spill_failed: bool,
    /// `None` while the walk runs; then its outcome (the error's message).
    end: Option<std::result::Result<(), String>>,
}

impl State {
    fn len(&self) -> usize {
        self.spilled + self.tail.len()
    }
}

impl Listing {
    /// An empty listing of the context at `root` (the context's own [`crate::Context::root`]),
    /// to be filled by [`crate::Context::hash_into`].
    #[must_use]
    pub fn new(root: &Path) -> Arc<Self> {
        Self::spilling_at(root, SPILL)
    }

    /// [`Listing::new`], writing entries out once `spill_at` are in memory.
    pub(crate) fn spilling_at(root: &Path, spill_at: usize) -> Arc<Self> {
        let spill = match (tempfile::tempfile(), tempfile::tempfile()) {
            (Ok(records), Ok(offsets)) => Some(Spill { records, offsets }),
            (Err(e), _) | (_, Err(e)) => {
                shared::verbose!(
                    "the context listing stays in memory: no temporary file could be made ({e})"
                );
                None
            }
        };
        Arc::new(Self {
            root: root.to_owned(),
            spill,
            spill_at: spill_at.max(1),
            state: Mutex::default(),
            grown: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a consistent state: use it.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records the next entry file sync sends (only the walk calls it).
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
        let full = {
            let mut state = self.lock();
            state.tail.push(listed);
            state.tail.len() >= self.spill_at && !state.spill_failed
        };
        self.grown.notify_all();
        if full && let Some(spill) = &self.spill {
            self.write_out(spill);
        }
    }

    /// Writes the entries in memory to the temporary file. Readers see them in memory until
    /// they are written; after that, in the file.
    fn write_out(&self, spill: &Spill) {
        let (records, offsets, count, at, first) = {
            let state = self.lock();
            let mut records = Vec::new();
            let mut offsets = Vec::with_capacity(state.tail.len() * 8);
            for listed in &state.tail {
                let offset = state.written + records.len() as u64;
                offsets.extend_from_slice(&offset.to_le_bytes());
                listed.encode(&mut records);
            }
            (
                records,
                offsets,
                state.tail.len(),
                state.written,
                state.spilled as u64 * 8,
            )
        };
        let written = spill
            .records
            .write_all_at(&records, at)
            .and_then(|()| spill.offsets.write_all_at(&offsets, first));
        let mut state = self.lock();
        match written {
            Ok(()) => {
                state.tail.drain(..count);
                state.spilled += count;
                state.written += records.len() as u64;
            }
            Err(e) => {
                shared::verbose!(
                    "the context listing stays in memory: its temporary file could not be \
                     written ({e})"
                );
                state.spill_failed = true;
            }
        }
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

    /// The entries numbered `from` to `to` (excluding `to`) from the temporary file, of the
    /// `spilled` entries written, which end at byte `end`.
    fn read_back(&self, from: usize, to: usize, spilled: usize, end: u64) -> Result<Vec<Listed>> {
        let broken = || Error::internal("the context listing's temporary file is damaged");
        let Some(spill) = &self.spill else {
            return Err(broken());
        };
        if from >= to || to > spilled {
            return Err(broken());
        }
        let reading = |e: &std::io::Error| Error::read_io("reading the context listing", e);
        // Where each entry begins, and where the next one does (the end of what was written,
        // after the last).
        let known = if to < spilled { to + 1 } else { to };
        let mut raw = vec![0u8; (known - from) * 8];
        spill
            .offsets
            .read_exact_at(&mut raw, from as u64 * 8)
            .map_err(|e| reading(&e))?;
        let mut starts: Vec<u64> = raw
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
            .collect();
        if to == spilled {
            starts.push(end);
        }
        let base = starts[0];
        let len = starts[starts.len() - 1]
            .checked_sub(base)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(broken)?;
        let mut bytes = vec![0u8; len];
        spill
            .records
            .read_exact_at(&mut bytes, base)
            .map_err(|e| reading(&e))?;
        starts
            .windows(2)
            .map(|w| {
                let start = usize::try_from(w[0].checked_sub(base)?).ok()?;
                let stop = usize::try_from(w[1].checked_sub(base)?).ok()?;
                bytes.get(start..stop).and_then(Listed::decode)
            })
            .map(|listed| listed.ok_or_else(broken))
            .collect()
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
            let batch: Vec<Listed> = {
                let mut state = self.lock();
                if next == state.len() && state.end.is_none() {
                    drop(state);
                    waiting()?;
                    state = self.lock();
                }
                while next == state.len() && state.end.is_none() {
                    state = self
                        .grown
                        .wait(state)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
                if next == state.len() {
                    return match &state.end {
                        Some(Err(message)) => Err(Error::data(format!(
                            "the build context could not be read: {message}"
                        ))),
                        _ => Ok(()),
                    };
                }
                if next < state.spilled {
                    let (to, spilled, end) = (
                        state.spilled.min(next + BATCH),
                        state.spilled,
                        state.written,
                    );
                    drop(state);
                    self.read_back(next, to, spilled, end)?
                } else {
                    let from = next - state.spilled;
                    let to = state.tail.len().min(from + BATCH);
                    state.tail[from..to].to_vec()
                }
            };
            for listed in &batch {
                let id = u32::try_from(next)
                    .map_err(|_| Error::data("the build context has too many entries"))?;
                visit(id, &listed.entry())?;
                next += 1;
            }
        }
    }

    /// Whether the walk has recorded an entry numbered `id` (yet).
    #[must_use]
    pub fn has(&self, id: u32) -> bool {
        usize::try_from(id).is_ok_and(|id| id < self.lock().len())
    }

    /// [`Listing::file`], reading the entries from `id` on into `window` at once when they are
    /// in the temporary file: the daemon asks for files in about the order it was sent them.
    pub fn file_in(&self, id: u32, window: &mut Window) -> Result<Option<ListedFile>> {
        let Ok(at) = usize::try_from(id) else {
            return Ok(None);
        };
        if let Some(listed) = at
            .checked_sub(window.start)
            .and_then(|i| window.entries.get(i))
        {
            return Ok(listed.file(&self.root));
        }
        let state = self.lock();
        if at >= state.spilled {
            drop(state);
            return self.file(id);
        }
        let (spilled, end) = (state.spilled, state.written);
        drop(state);
        window.entries = self.read_back(at, spilled.min(at + BATCH), spilled, end)?;
        window.start = at;
        Ok(window
            .entries
            .first()
            .and_then(|listed| listed.file(&self.root)))
    }

    /// The file numbered `id` by [`Listing::replay`]: `None` for a number that is not a file's;
    /// an error when the temporary file cannot be read back.
    pub fn file(&self, id: u32) -> Result<Option<ListedFile>> {
        let Ok(id) = usize::try_from(id) else {
            return Ok(None);
        };
        let state = self.lock();
        if id >= state.spilled {
            return Ok(state
                .tail
                .get(id - state.spilled)
                .and_then(|listed| listed.file(&self.root)));
        }
        let (spilled, end) = (state.spilled, state.written);
        drop(state);
        Ok(self
            .read_back(id, id + 1, spilled, end)?
            .first()
            .and_then(|listed| listed.file(&self.root)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_entry_reads_back_as_it_was_written() {
        let names = ["a", "dir/b", "c\u{fffd}", "e"];
        let kinds = [
            Kind::Dir,
            Kind::File(u64::MAX),
            Kind::Symlink(PathBuf::from(std::ffi::OsStr::from_bytes(b"../t\xff"))),
            Kind::HardLink("dir/b".into()),
            Kind::Fifo,
            Kind::CharDevice(1, 5),
            Kind::BlockDevice(8, 0),
        ];
        let mut all = Vec::new();
        for (i, kind) in kinds.into_iter().enumerate() {
            let listed = Listed {
                name: names[i % names.len()].into(),
                path: (i % 2 == 0)
                    .then(|| PathBuf::from(std::ffi::OsStr::from_bytes(b"/x/c\xe9")).into()),
                kind,
                mode: 0o4755,
                role: [Role::Both, Role::TarOnly, Role::SessionOnly][i % 3],
                mtime: -1,
                mtime_ns: i64::MIN,
                stamp: u64::MAX - i as u64,
            };
            let mut bytes = Vec::new();
            listed.encode(&mut bytes);
            assert_eq!(Listed::decode(&bytes).as_ref(), Some(&listed));
            // A record cut short is refused, not read past.
            assert_eq!(Listed::decode(&bytes[..bytes.len() - 1]), None);
            all.push(listed);
        }
        // Written out after every third entry: what is read back, from the file or from
        // memory, is what was pushed.
        let listing = Listing::spilling_at(Path::new("/x"), 3);
        assert!(listing.spill.is_some(), "a temporary file can be made here");
        for listed in &all {
            listing.push(&Entry {
                name: listed.name.to_string(),
                rel: PathBuf::new(),
                path: listed.path.as_deref().map(Path::to_path_buf),
                kind: listed.kind.clone(),
                mode: listed.mode,
                mtime: listed.mtime,
                mtime_ns: listed.mtime_ns,
                stamp: listed.stamp,
                ctime: 0,
                role: listed.role,
            });
        }
        listing.finish(None);
        assert_eq!(listing.lock().spilled, 6, "two writes of three entries");
        let mut replayed = Vec::new();
        listing
            .replay(
                |id, entry| {
                    replayed.push((id, entry.name.clone(), entry.kind.clone(), entry.stamp));
                    Ok(())
                },
                || Ok(()),
            )
            .expect("replay");
        let want: Vec<_> = (0..)
            .zip(&all)
            .map(|(id, l)| (id, l.name.to_string(), l.kind.clone(), l.stamp))
            .collect();
        assert_eq!(replayed, want);
        assert_eq!(
            listing.file(1).expect("read"),
            Some(ListedFile {
                path: PathBuf::from("/x/dir/b"),
                size: Some(u64::MAX),
                stamp: u64::MAX - 1
            })
        );
        assert_eq!(
            listing.file(3).expect("read").map(|f| (f.path, f.size)),
            Some((PathBuf::from("/x/e"), None))
        );
        assert_eq!(
            listing.file(0).expect("read"),
            None,
            "a directory is not a file"
        );
        assert_eq!(listing.file(7).expect("read"), None);
        // Through a window: the same answers, in any order, from the file and from memory.
        let mut window = Window::default();
        for id in [1, 0, 5, 6, 2, 3, 4, 7, 1] {
            assert_eq!(
                listing.file_in(id, &mut window).expect("read"),
                listing.file(id).expect("read"),
                "{id}"
            );
        }
    }
}
