//! The context as a tar stream and as a content hash, in one walk.
//!
//! The hash covers what file sync sends (see [`crate::Role`]) and the Dockerfile, so the tar
//! body and BuildKit's session give the same hash for the same tree.

use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;

use sha2::{Digest, Sha256};
use shared::error::{Error, Result};

use crate::cache::HashCache;
use crate::listing::Listing;
use crate::{Context, Entry, IGNORE_FILE, Kind, Summary, changed, display_path};

impl Context {
    /// Writes the context as a tar to `out`, streaming file contents, and returns the summary
    /// and content hash of what the build sees (the same as [`Context::hash`]).
    pub fn write_tar<W: Write>(&self, out: W) -> Result<Summary> {
        let mut builder = tar::Builder::new(out);
        builder.mode(tar::HeaderMode::Complete);
        let mut hasher = ContentHasher::new();
        let mut cache = HashCache::open(self.root());
        let mut buf = vec![0u8; 64 * 1024];
        let writing = |e: &io::Error| Error::write_io("writing the build context", e);
        self.walk(|entry| {
            // The tar's own copy of .dockerignore (with the injected name) is not what the build
            // sees: hash the file itself.
            let tar_content_differs = entry.name == IGNORE_FILE && self.ignore_contents().is_some();
            if !entry.role.in_tar() || (tar_content_differs && entry.role.in_session()) {
                hash_entry(entry, &mut hasher, &mut cache, &mut buf)?;
                if !entry.role.in_tar() {
                    return Ok(());
                }
            }
            let hashing = entry.role.in_session() && !tar_content_differs;
            let mut header = tar::Header::new_gnu();
            header.set_mode(entry.mode);
            header.set_uid(0);
            header.set_gid(0);
            let mtime = match self.options.mtime {
                Some(fixed) => fixed,
                None => u64::try_from(entry.mtime).unwrap_or(0),
            };
            header.set_mtime(mtime);
            if hashing {
                hasher.begin(entry);
            }
            match &entry.kind {
                Kind::File(_) => {
                    let mut source = self.open_entry(entry)?;
                    let size = self.content_len(entry);
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_size(size);
                    let mut reader = HashingReader {
                        inner: (&mut source).take(size),
                        hasher: hashing.then_some(&mut hasher),
                        read: 0,
                    };
                    builder
                        .append_data(&mut header, &entry.rel, &mut reader)
                        .map_err(|e| writing(&e))?;
                    if reader.read != size {
                        return Err(changed(entry));
                    }
                    if hashing {
                        let digest = hasher.end_file(size);
                        cache.put(entry, digest);
                    }
                }
                Kind::Dir => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_size(0);
                    builder
                        .append_data(&mut header, &entry.rel, io::empty())
                        .map_err(|e| writing(&e))?;
                }
                Kind::Symlink(target) => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_size(0);
                    builder
                        .append_link(&mut header, &entry.rel, target)
                        .map_err(|e| writing(&e))?;
                }
                Kind::HardLink(first) => {
                    header.set_entry_type(tar::EntryType::Link);
                    header.set_size(0);
                    builder
                        .append_link(&mut header, &entry.rel, first)
                        .map_err(|e| writing(&e))?;
                }
                Kind::Fifo | Kind::CharDevice(..) | Kind::BlockDevice(..) => {
                    let (kind, (major, minor)) = match entry.kind {
                        Kind::CharDevice(a, b) => (tar::EntryType::Char, (a, b)),
                        Kind::BlockDevice(a, b) => (tar::EntryType::Block, (a, b)),
                        _ => (tar::EntryType::Fifo, (0, 0)),
                    };
                    header.set_entry_type(kind);
                    header.set_size(0);
                    header
                        .set_device_major(major)
                        .and_then(|()| header.set_device_minor(minor))
                        .map_err(|e| writing(&e))?;
                    builder
                        .append_data(&mut header, &entry.rel, io::empty())
                        .map_err(|e| writing(&e))?;
                }
            }
            Ok(())
        })?;
        builder
            .into_inner()
            .and_then(|mut w| w.flush())
            .map_err(|e| writing(&e))?;
        hasher.dockerfile(&self.dockerfile_contents()?);
        cache.save();
        Ok(hasher.finish())
    }

    /// The Dockerfile's bytes.
    pub fn dockerfile_contents(&self) -> Result<Vec<u8>> {
        match &self.dockerfile {
            crate::Dockerfile::Outside { contents, .. } => Ok(contents.clone()),
            crate::Dockerfile::Inside(_) => shared::files::read_regular(
                &self.dockerfile_path,
                shared::files::TEXT_LIMIT,
                "Dockerfile",
            ),
        }
    }

    pub(crate) fn content_len(&self, entry: &Entry) -> u64 {
        if entry.name == IGNORE_FILE
            && let Some(text) = self.ignore_contents()
        {
            return text.len() as u64;
        }
        match entry.kind {
            Kind::File(n) => n,
            _ => 0,
        }
    }

    /// Reads the context as the build sees it and returns its summary and content hash,
    /// without sending anything.
    ///
    /// A file whose stamp (times, inode, size) is in the hash cache of this context directory is
    /// taken by its cached digest, without reading it: the same trust file sync's receiver puts
    /// in the same metadata. See [`HashCache`].
    pub fn hash(&self) -> Result<Summary> {
        self.hash_with(HashCache::open(self.root()))
    }

    /// [`Context::hash`] with the given cache.
    pub fn hash_with(&self, cache: HashCache) -> Result<Summary> {
        self.hash_walk(cache, None)
    }

    /// [`Context::hash`], recording in `listing` each entry file sync sends, before its bytes
    /// are read: the transfer replays them instead of walking again. The listing ends with the
    /// walk, failed if the walk failed.
    pub fn hash_into(&self, listing: &Listing) -> Result<Summary> {
        /// Ends the listing even if the walk panics, so no reader waits for ever.
        struct Ends<'a>(&'a Listing);
        impl Drop for Ends<'_> {
            fn drop(&mut self) {
                self.0.finish(Some(&Error::internal(
                    "the walk of the build context stopped",
                )));
            }
        }
        let _ends = Ends(listing);
        let result = self.hash_walk(HashCache::open(self.root()), Some(listing));
        listing.finish(result.as_ref().err());
        result
    }

    fn hash_walk(&self, mut cache: HashCache, listing: Option<&Listing>) -> Result<Summary> {
        let mut hasher = ContentHasher::new();
        let mut buf = vec![0u8; 256 * 1024];
        self.walk(|entry| {
            if let Some(listing) = listing
                && entry.role.in_session()
            {
                listing.push(entry);
            }
            hash_entry(entry, &mut hasher, &mut cache, &mut buf)
        })?;
        hasher.dockerfile(&self.dockerfile_contents()?);
        cache.save();
        Ok(hasher.finish())
    }
}

/// Hashes one entry as the build sees it (its own bytes on disk), if file sync sends it.
fn hash_entry(
    entry: &Entry,
    hasher: &mut ContentHasher,
    cache: &mut HashCache,
    buf: &mut [u8],
) -> Result<()> {
    if !entry.role.in_session() {
        return Ok(());
    }
    hasher.begin(entry);
    if let Kind::File(size) = entry.kind {
        if let Some(digest) = cache.get(entry) {
            hasher.file_digest(&digest, size);
            return Ok(());
        }
        let Some(path) = &entry.path else {
            return Err(Error::internal(format!(
                "no file for context entry {}",
                entry.name
            )));
        };
        let mut source = crate::open_walked(path, entry.stamp)?.take(size);
        let mut read = 0u64;
        loop {
            let n = source
                .read(buf)
                .map_err(|e| Error::read_io(format!("reading {}", display_path(entry)), &e))?;
            if n == 0 {
                break;
            }
            hasher.content(&buf[..n]);
            read += n as u64;
        }
        if read != size {
            return Err(changed(entry));
        }
        let digest = hasher.end_file(size);
        cache.put(entry, digest);
    }
    Ok(())
}

/// The content hash: for each entry in order, a record of its kind, name, mode and link target
/// or size, then a regular file's bytes. Fields are length-prefixed so no two contexts share a
/// byte stream.
struct ContentHasher {
    sha: Sha256,
    /// The current file's own hash: its digest goes into `sha`.
    file: Sha256,
    summary: Summary,
}

impl ContentHasher {
    fn new() -> Self {
        let mut sha = Sha256::new();
        // v2: the entries file sync sends, each file by its own digest, then the Dockerfile (v1
        // hashed the tar's entries and their bytes).
        sha.update(b"imgpipe-context-v2\0");
        Self {
            sha,
            file: Sha256::new(),
            summary: Summary::default(),
        }
    }

    fn field(&mut self, bytes: &[u8]) {
        self.sha.update((bytes.len() as u64).to_le_bytes());
        self.sha.update(bytes);
    }

    fn begin(&mut self, entry: &Entry) {
        self.summary.entries += 1;
        let (tag, extra): (&[u8], Vec<u8>) = match &entry.kind {
            Kind::Dir => (b"d", Vec::new()),
            Kind::File(_) => (b"f", Vec::new()),
            Kind::Symlink(t) => (b"l", t.as_os_str().as_bytes().to_vec()),
            Kind::HardLink(t) => (b"h", t.as_bytes().to_vec()),
            Kind::Fifo => (b"p", Vec::new()),
            Kind::CharDevice(a, b) => (b"c", format!("{a}:{b}").into_bytes()),
            Kind::BlockDevice(a, b) => (b"b", format!("{a}:{b}").into_bytes()),
        };
        self.field(tag);
        self.field(entry.rel.as_os_str().as_bytes());
        self.field(&entry.mode.to_le_bytes());
        self.field(&extra);
    }

    fn content(&mut self, bytes: &[u8]) {
        self.file.update(bytes);
    }

    /// Ends the current file; returns its digest.
    fn end_file(&mut self, size: u64) -> [u8; 32] {
        let digest: [u8; 32] = std::mem::take(&mut self.file).finalize().into();
        self.file_digest(&digest, size);
        digest
    }

    /// A file known by its digest (from the cache) rather than its bytes.
    fn file_digest(&mut self, digest: &[u8; 32], size: u64) {
        self.sha.update(digest);
        self.sha.update(size.to_le_bytes());
        self.summary.files += 1;
        self.summary.bytes += size;
    }

    fn dockerfile(&mut self, contents: &[u8]) {
        self.field(b"Dockerfile");
        self.field(contents);
    }

    fn finish(self) -> Summary {
        let mut summary = self.summary;
        summary.hash = format!("sha256:{}", hex::encode(self.sha.finalize()));
        summary
    }
}

struct HashingReader<'h, R> {
    inner: R,
    hasher: Option<&'h mut ContentHasher>,
    read: u64,
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(hasher) = self.hasher.as_mut() {
            hasher.content(&buf[..n]);
        }
        self.read += n as u64;
        Ok(n)
    }
}
