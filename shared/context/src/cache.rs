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
//! context directory, named by a hash of its path: 40 bytes per file (stamp, digest). A cache that
//! is missing, unreadable, too large or malformed is ignored, and one that cannot be written is
//! skipped: it only ever saves time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{Entry, Kind};

/// Files whose change time is this close to the hashing time are not cached.
pub const RACY_SECONDS: i64 = 2;

/// The largest cache file read (about 1.6 million files).
const LIMIT: u64 = 64 * 1024 * 1024;

const MAGIC: &[u8; 8] = b"imgpctx1";

/// Digests by stamp: those read from the cache file, and those of this walk.
#[derive(Debug, Default)]
pub struct HashCache {
    path: Option<PathBuf>,
    old: HashMap<u64, [u8; 32]>,
    new: Vec<(u64, [u8; 32])>,
    hits: usize,
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
        let old = shared::files::read_if_exists(&path, LIMIT, "context hash cache")
            .ok()
            .flatten()
            .and_then(|bytes| parse(&bytes))
            .unwrap_or_default();
        Self {
            path: Some(path),
            old,
            new: Vec::new(),
            hits: 0,
            now,
        }
    }

    /// The cached digest of a regular file, if its stamp is known.
    pub fn get(&mut self, entry: &Entry) -> Option<[u8; 32]> {
        if !matches!(entry.kind, Kind::File(_)) || entry.stamp == 0 {
            return None;
        }
        let digest = *self.old.get(&entry.stamp)?;
        self.hits += 1;
        self.new.push((entry.stamp, digest));
        Some(digest)
    }

    /// Remembers a file's digest, unless it changed too recently to be trusted.
    pub fn put(&mut self, entry: &Entry, digest: [u8; 32]) {
        if matches!(entry.kind, Kind::File(_))
            && entry.stamp != 0
            && entry.ctime < self.now - RACY_SECONDS
        {
            self.new.push((entry.stamp, digest));
        }
    }

    /// Writes what this walk saw (and only that) when it differs from what was read.
    pub fn save(mut self) {
        let Some(path) = self.path.take() else {
            return;
        };
        if self.hits == self.old.len() && self.new.len() == self.hits {
            return;
        }
        self.new.sort_unstable();
        self.new.dedup();
        let mut bytes = Vec::with_capacity(8 + self.new.len() * 40);
        bytes.extend_from_slice(MAGIC);
        for (stamp, digest) in &self.new {
            bytes.extend_from_slice(&stamp.to_le_bytes());
            bytes.extend_from_slice(digest);
        }
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                shared::files::write_atomic(&path, &bytes, Some(0o600)).map_err(|e| e.to_string())
            });
        if let Err(e) = written {
            shared::verbose!("the context hash cache was not written ({e})");
        }
    }
}

fn parse(bytes: &[u8]) -> Option<HashMap<u64, [u8; 32]>> {
    let body = bytes.strip_prefix(MAGIC)?;
    if body.len() % 40 != 0 {
        return None;
    }
    let mut map = HashMap::with_capacity(body.len() / 40);
    for record in body.chunks_exact(40) {
        let stamp = u64::from_le_bytes(record[..8].try_into().ok()?);
        let digest: [u8; 32] = record[8..].try_into().ok()?;
        map.insert(stamp, digest);
    }
    Some(map)
}
