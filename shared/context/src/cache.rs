//! The hash cache: each file's content digest, by its stamp, per context directory, so hashing
//! an unchanged tree reads no file contents (as git's index does for `git status`).
//!
//! A file's stamp mixes its modification and change times (nanoseconds), inode, device and size
//! ([`crate::Entry::stamp`]): any write or replacement changes it. That is the same metadata the
//! daemon's file sync receiver compares to decide which files to ask for, so the hash trusts no
//! more than the transfer does. A file whose change time is within [`RACY_SECONDS`] of the
//! moment it was hashed is not stored (a second write in the same clock tick could keep its
//! stamp: git's "racy clean" case).
//!
//! The cache lives in `$XDG_CACHE_HOME/imgpipe/context-hash/` (else `~/.cache/...`), one file per
//! context directory, named by a hash of its path. It holds a record per file in the walk's
//! order (its name, stamp and digest), and the walk reads it alongside, a record at a time: a
//! file is a hit when the record of its name has its stamp. So memory does not grow with the
//! context. What the walk saw is written to a temporary file beside it, and renamed over it at
//! the end, only once something differs (an unchanged tree writes nothing). A cache that is
//! missing, unreadable or malformed is ignored from where it stops making sense, and one that
//! cannot be written is skipped: it only ever saves time.

use std::cmp::Ordering;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{Entry, Kind};

/// Files whose change time is this close to the hashing time are not cached.
pub const RACY_SECONDS: i64 = 2;

/// The longest name a record may hold (a longer one ends the cache as malformed).
const NAME_LIMIT: u32 = 64 * 1024;

const MAGIC: &[u8; 8] = b"imgpctx2";

/// One file's record.
#[derive(Debug)]
struct Record {
    name: String,
    stamp: u64,
    digest: [u8; 32],
}

impl Record {
    fn len(&self) -> u64 {
        4 + self.name.len() as u64 + 8 + 32
    }

    fn write(&self, out: &mut impl Write) -> std::io::Result<()> {
        let len = u32::try_from(self.name.len()).unwrap_or(u32::MAX);
        out.write_all(&len.to_le_bytes())?;
        out.write_all(self.name.as_bytes())?;
        out.write_all(&self.stamp.to_le_bytes())?;
        out.write_all(&self.digest)
    }

    /// The next record, or `None` at the end or where the file stops making sense.
    fn read(input: &mut impl Read) -> Option<Record> {
        let mut len = [0u8; 4];
        input.read_exact(&mut len).ok()?;
        let len = u32::from_le_bytes(len);
        if len > NAME_LIMIT {
            return None;
        }
        let mut name = vec![0u8; len as usize];
        input.read_exact(&mut name).ok()?;
        let mut stamp = [0u8; 8];
        input.read_exact(&mut stamp).ok()?;
        let mut digest = [0u8; 32];
        input.read_exact(&mut digest).ok()?;
        Some(Record {
            name: String::from_utf8(name).ok()?,
            stamp: u64::from_le_bytes(stamp),
            digest,
        })
    }
}

/// The walk's order of two names: component by component, in byte order, a directory before
/// what is under it.
fn walk_order(a: &str, b: &str) -> Ordering {
    a.split('/').cmp(b.split('/'))
}

/// The cache as it was (read a record at a time) and as this walk sees it (written as it goes).
#[derive(Debug, Default)]
pub struct HashCache {
    /// The cache file; `None` when there is nowhere to keep one.
    path: Option<PathBuf>,
    /// The records of the last walk, from the next one on.
    old: Option<BufReader<File>>,
    /// The same file, to copy the records agreed on from (another process may have replaced
    /// the file at `path` since).
    source: Option<File>,
    /// The next old record, read ahead.
    peeked: Option<Record>,
    /// The bytes of the old file up to the last record kept, while this walk agrees with it.
    agreed: u64,
    /// What this walk saw, once it differs from what was read.
    new: Option<BufWriter<tempfile::NamedTempFile>>,
    /// Writing failed: nothing is saved.
    failed: bool,
    now: i64,
}

impl HashCache {
    /// The cache of the context at `root` (resolved), loaded if it is there.
    #[must_use]
    pub fn open(root: &Path) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        match shared::files::cache_dir("context-hash") {
            Some(dir) => Self::open_in(&dir, root, now),
            None => Self {
                now,
                ..Self::default()
            },
        }
    }

    /// The cache of `root` kept in `dir`, as of `now` (seconds since the epoch).
    #[must_use]
    pub fn open_in(dir: &Path, root: &Path, now: i64) -> Self {
        let name = hex::encode(Sha256::digest(root.as_os_str().as_encoded_bytes()));
        let path = dir.join(&name[..32]);
        let old = shared::files::open_regular(&path, "context hash cache")
            .ok()
            .map(BufReader::new)
            .and_then(|mut reader| {
                let mut magic = [0u8; 8];
                reader.read_exact(&mut magic).ok()?;
                (&magic == MAGIC).then_some(reader)
            });
        let source = old.as_ref().and_then(|r| r.get_ref().try_clone().ok());
        Self {
            path: Some(path),
            agreed: if source.is_some() {
                MAGIC.len() as u64
            } else {
                0
            },
            old: old.filter(|_| source.is_some()),
            source,
            now,
            ..Self::default()
        }
    }

    /// The old record of `name`, if there is one: records before it in the walk's order are
    /// of files gone since, and are dropped.
    fn seek(&mut self, name: &str) -> Option<Record> {
        loop {
            if self.peeked.is_none() {
                let record = self.old.as_mut().and_then(Record::read);
                if record.is_none() {
                    self.old = None;
                    return None;
                }
                self.peeked = record;
            }
            let next = self.peeked.as_ref()?;
            match walk_order(&next.name, name) {
                Ordering::Less => {
                    self.peeked = None;
                    self.differs();
                }
                Ordering::Equal => return self.peeked.take(),
                Ordering::Greater => return None,
            }
        }
    }

    /// From here on, what this walk writes differs from the old file: the records agreed on
    /// so far are copied into the new one first.
    fn differs(&mut self) {
        if self.new.is_some() || self.failed {
            return;
        }
        let Some(path) = &self.path else {
            self.failed = true;
            return;
        };
        let made = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| shared::files::temp_beside(path))
            .and_then(|file| {
                let mut out = BufWriter::new(file);
                out.write_all(MAGIC)?;
                if let Some(old) = &self.source {
                    // The old file's records up to here are the ones this walk kept.
                    let mut at = MAGIC.len() as u64;
                    let mut buf = vec![0u8; 64 * 1024];
                    while at < self.agreed {
                        let want = usize::try_from(self.agreed - at)
                            .unwrap_or(usize::MAX)
                            .min(buf.len());
                        old.read_exact_at(&mut buf[..want], at)?;
                        out.write_all(&buf[..want])?;
                        at += want as u64;
                    }
                }
                Ok(out)
            });
        match made {
            Ok(out) => self.new = Some(out),
            Err(e) => self.skip(&e),
        }
    }

    fn skip(&mut self, e: &std::io::Error) {
        shared::verbose!("the context hash cache was not written ({e})");
        self.failed = true;
        self.new = None;
    }

    fn keep(&mut self, record: &Record) {
        if let Some(out) = &mut self.new {
            if let Err(e) = record.write(out) {
                self.skip(&e);
            }
        } else {
            self.agreed += record.len();
        }
    }

    /// The cached digest of a regular file, if its stamp is known.
    pub fn get(&mut self, entry: &Entry) -> Option<[u8; 32]> {
        if !matches!(entry.kind, Kind::File(_)) || entry.stamp == 0 {
            return None;
        }
        let record = self.seek(&entry.name)?;
        if record.stamp != entry.stamp {
            // Changed: `put` writes its new digest, or nothing if it is too recent.
            self.differs();
            return None;
        }
        self.keep(&record);
        Some(record.digest)
    }

    /// Remembers a file's digest, unless it changed too recently to be trusted.
    pub fn put(&mut self, entry: &Entry, digest: [u8; 32]) {
        if !matches!(entry.kind, Kind::File(_)) || entry.stamp == 0 {
            return;
        }
        // An old record of the same name (when `get` was not asked first) is replaced.
        let _ = self.seek(&entry.name);
        self.differs();
        if entry.ctime < self.now - RACY_SECONDS {
            let record = Record {
                name: entry.name.clone(),
                stamp: entry.stamp,
                digest,
            };
            self.keep(&record);
        }
    }

    /// Writes what this walk saw (and only that) when it differs from what was read.
    pub fn save(mut self) {
        // Records left over are of files gone since.
        if self.peeked.is_some() || self.old.as_mut().and_then(Record::read).is_some() {
            self.differs();
        }
        let (Some(path), Some(out)) = (self.path.take(), self.new.take()) else {
            return;
        };
        if self.failed {
            return;
        }
        let written = out
            .into_inner()
            .map_err(std::io::IntoInnerError::into_error)
            .and_then(|file| file.persist(&path).map(drop).map_err(|e| e.error));
        if let Err(e) = written {
            shared::verbose!("the context hash cache was not written ({e})");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, stamp: u64) -> Entry {
        Entry {
            name: name.to_owned(),
            rel: PathBuf::from(name),
            path: None,
            kind: Kind::File(1),
            mode: 0o644,
            mtime: 0,
            mtime_ns: 0,
            stamp,
            ctime: 0,
            role: crate::Role::Both,
        }
    }

    /// One walk over `entries` (name, stamp) with the cache of `dir`: which were hits. A miss
    /// is hashed: its digest is its stamp's bytes, repeated.
    fn walk(dir: &Path, entries: &[(&str, u64)]) -> Vec<bool> {
        let mut cache = HashCache::open_in(dir, Path::new("/ctx"), 1_000_000);
        let hits = entries
            .iter()
            .map(|&(name, stamp)| {
                let entry = file(name, stamp);
                let digest = [u8::try_from(stamp % 256).unwrap_or(0); 32];
                if let Some(cached) = cache.get(&entry) {
                    assert_eq!(cached, digest, "{name}: the digest stored for its stamp");
                    true
                } else {
                    cache.put(&entry, digest);
                    false
                }
            })
            .collect();
        cache.save();
        hits
    }

    fn written(dir: &Path) -> Option<std::time::SystemTime> {
        let entry = std::fs::read_dir(dir).ok()?.next()?.ok()?;
        entry.metadata().ok()?.modified().ok()
    }

    #[test]
    fn files_are_found_by_name_and_stamp_in_the_walks_order_whatever_came_and_went() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = [("a", 1), ("b/c", 2), ("b/d", 3), ("b-e", 4), ("z", 5)];
        assert_eq!(walk(dir.path(), &first), [false; 5]);
        assert_eq!(walk(dir.path(), &first), [true; 5]);
        // Nothing changed: the file is not written again.
        let before = written(dir.path());
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(walk(dir.path(), &first), [true; 5]);
        assert_eq!(
            written(dir.path()),
            before,
            "an unchanged tree writes nothing"
        );
        // A file gone, one new between the others, one changed: the rest still hit.
        let second = [("a", 1), ("b/a", 9), ("b/d", 3), ("b-e", 40), ("z", 5)];
        assert_eq!(walk(dir.path(), &second), [true, false, true, false, true]);
        assert_eq!(walk(dir.path(), &second), [true; 5]);
        // The same stamp under another name is not the same file.
        assert_eq!(walk(dir.path(), &[("y", 1)]), [false]);
        // A cache cut short is used as far as it makes sense.
        let cache = std::fs::read_dir(dir.path())
            .expect("dir")
            .next()
            .expect("one file")
            .expect("entry")
            .path();
        walk(dir.path(), &first);
        let bytes = std::fs::read(&cache).expect("read");
        std::fs::write(&cache, &bytes[..bytes.len() - 10]).expect("write");
        assert_eq!(
            walk(dir.path(), &first),
            [true, true, true, true, false],
            "the last record is cut"
        );
        std::fs::write(&cache, b"imgpctx2\xff\xff\xff\xffgarbage").expect("write");
        // A temporary file a killed walk left an hour ago is removed; a running walk's stays.
        let name = cache
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let stale = dir.path().join(format!(".{name}.killed.tmp"));
        let running = dir.path().join(format!(".{name}.running.tmp"));
        for (file, age) in [(&stale, 7200), (&running, 60)] {
            let f = std::fs::File::create(file).expect("create");
            let then = std::time::SystemTime::now() - std::time::Duration::from_secs(age);
            f.set_modified(then).expect("mtime");
        }
        assert_eq!(walk(dir.path(), &first), [false; 5]);
        assert!(!stale.exists() && running.exists());
    }
}
