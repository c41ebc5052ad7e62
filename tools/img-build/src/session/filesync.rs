//! `moby.filesync.v1.FileSync/DiffCopy`: the sending side of tonistiigi/fsutil's protocol.
//!
//! The daemon asks for one directory by name (`dir-name`), with the `include-patterns`,
//! `exclude-patterns` and `followpaths` its frontend wants. This side then sends:
//! - a `STAT` packet per entry, in the walk's order (each directory before its contents, names
//!   in byte order), numbered from 0 in the order sent, then an empty `STAT` for the end;
//! - for each number the daemon asks for (`REQ`), the file's bytes in `DATA` packets and an
//!   empty `DATA` for the end: only regular files, and only those whose metadata differ from the
//!   copy the daemon kept from the last build under the session's shared key;
//! - `FIN` after the daemon's `FIN`.
//!
//! Modes are Go's `os.FileMode` bits; owners are 0, as the docker CLI maps them. Two directories
//! exist: `context` (the walk of crate `context`, as file sync sends it) and `dockerfile` (the
//! Dockerfile alone, so its own directory is never exposed).
//!
//! A request for the whole context (no include patterns, no follow paths, no excludes but our
//! own) replays the [`Listing`] that the content hash's walk records, so a build walks its
//! context once. A request for part of it walks, filtered.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bollard_buildkit_proto::fsutil::types::packet::PacketType;
use bollard_buildkit_proto::fsutil::types::{Packet, Stat};
use bollard_buildkit_proto::moby::filesync::v1::file_sync_server;
use context::{Context, Entry, Ignore, Kind, ListedFile, Listing};
use futures_util::StreamExt;
use shared::{Error, Result, verbose};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Bytes of file content per `DATA` packet.
const CHUNK: usize = 256 * 1024;

/// Bytes of small files' content batched together, at most: a batch is written at once, and
/// small batches keep the data in flight small.
const DATA_BATCH: usize = 64 * 1024;

/// What the transfers sent, for the record.
#[derive(Debug, Default)]
pub(crate) struct Sent {
    /// Files whose content was sent (once each: the daemon fetches `.dockerignore` alone
    /// before it asks for the context).
    pub(crate) files: AtomicU64,
    /// Bytes of file content sent.
    pub(crate) bytes: AtomicU64,
    /// How long the context's transfers took, in microseconds: from the daemon's request to the
    /// end of the stream, when the daemon has every file it asked for.
    pub(crate) micros: AtomicU64,
    /// The files sent by transfers of named paths (follow paths): a later transfer of the whole
    /// context does not count them again. Only those are kept, so memory does not grow with
    /// the context.
    followed: Mutex<std::collections::HashSet<PathBuf>>,
}

/// The two directories of a build, and what went wrong on this side, if anything did.
#[derive(Clone)]
pub(crate) struct FileSync {
    context: Arc<Context>,
    /// The entries of the whole context, as the hash walk records them.
    listing: Arc<Listing>,
    dockerfile: Arc<Entry>,
    pub(crate) sent: Arc<Sent>,
    pub(crate) failure: Arc<Mutex<Option<Error>>>,
}

impl FileSync {
    /// The directories of `context`; requests for the whole of it replay `listing`.
    pub(crate) fn new(context: Context, listing: Arc<Listing>) -> Result<Self> {
        let dockerfile = context.dockerfile_entry()?;
        Ok(Self {
            context: Arc::new(context),
            listing,
            dockerfile: Arc::new(dockerfile),
            sent: Arc::default(),
            failure: Arc::default(),
        })
    }

    /// The first error this side met while sending (a file that could not be read).
    pub(crate) fn take_failure(&self) -> Option<Error> {
        self.failure.lock().ok().and_then(|mut f| f.take())
    }
}

/// The directories and patterns of one request.
struct Ask {
    dir: String,
    includes: Vec<String>,
    excludes: Vec<String>,
    follow: Vec<String>,
}

impl Ask {
    fn from_metadata(meta: &tonic::metadata::MetadataMap) -> Self {
        let values = |key: &str| -> Vec<String> {
            let encoded = meta
                .get(format!("{key}-encoded"))
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
            meta.get_all(key)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(|v| {
                    if encoded {
                        query_unescape(v)
                    } else {
                        v.to_owned()
                    }
                })
                .collect()
        };
        Self {
            dir: values("dir-name").into_iter().next().unwrap_or_default(),
            includes: values("include-patterns"),
            excludes: values("exclude-patterns"),
            follow: values("followpaths"),
        }
    }
}

/// Go's `url.QueryUnescape`: `%XX` and `+`.
fn query_unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(u8::try_from(high * 16 + low).unwrap_or(b'?'));
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The request's own filter on top of the walk: includes (with the link targets of the follow
/// paths) and excludes, matched as moby's patternmatcher does.
struct Filter {
    include: Option<Ignore>,
    /// Literal include patterns, when all are literal: directories outside them are not
    /// entered.
    prefixes: Option<Vec<String>>,
    exclude: Option<Ignore>,
    /// Directories not sent yet, because nothing under them was included yet.
    pending: Vec<Entry>,
}

impl Filter {
    fn new(ask: &Ask, ctx: &Context, root: Option<&std::path::Path>) -> Result<Self> {
        let mut includes = ask.includes.clone();
        if let Some(root) = root {
            includes.extend(follow_links(root, &ask.follow));
        } else {
            includes.extend(ask.follow.iter().cloned());
        }
        let include = if includes.is_empty() {
            None
        } else {
            Some(Ignore::from_patterns(&includes)?)
        };
        let prefixes = include.as_ref().and_then(|inc| {
            inc.rules()
                .iter()
                .filter(|r| !r.exclusion)
                .map(|r| {
                    let literal = r.pattern.trim_end_matches("/**").trim_end_matches("**");
                    (!literal.contains(['*', '?', '[', ']', '^', '\\']))
                        .then(|| literal.trim_end_matches('/').to_owned())
                })
                .collect::<Option<Vec<String>>>()
        });
        let exclude = their_excludes(ask, ctx)?;
        Ok(Self {
            include,
            prefixes,
            exclude,
            pending: Vec::new(),
        })
    }

    /// Whether the walk should descend into directory `dir`.
    fn enter(&self, dir: &str) -> bool {
        let (Some(include), Some(prefixes)) = (&self.include, &self.prefixes) else {
            return true;
        };
        include.matches_or_parent_matches(dir).excluded
            || prefixes.iter().any(|p| p.starts_with(&format!("{dir}/")))
    }

    /// The entries to send for `entry`: the directories above it not sent yet, then itself; or
    /// none.
    fn pass(&mut self, entry: &Entry) -> Vec<Entry> {
        self.pending
            .retain(|dir| entry.name.starts_with(&format!("{}/", dir.name)));
        if let Some(exclude) = &self.exclude
            && exclude.matches_or_parent_matches(&entry.name).excluded
        {
            return Vec::new();
        }
        if let Some(include) = &self.include
            && !include.matches_or_parent_matches(&entry.name).excluded
        {
            if entry.kind == Kind::Dir {
                self.pending.push(entry.clone());
            }
            return Vec::new();
        }
        let mut out: Vec<Entry> = self.pending.drain(..).collect();
        out.push(entry.clone());
        out
    }
}

/// The request's exclude patterns, unless they are none or our own: the frontend sends back the
/// patterns it read from our own .dockerignore, which the walk already applied.
fn their_excludes(ask: &Ask, ctx: &Context) -> Result<Option<Ignore>> {
    if ask.excludes.is_empty() {
        return Ok(None);
    }
    let ours = ctx
        .ignore()
        .rules()
        .iter()
        .filter(|r| r.origin != context::Origin::Added)
        .map(|r| r.text.as_str());
    let theirs = Ignore::from_patterns(&ask.excludes)?;
    let same = theirs.rules().iter().map(|r| r.text.as_str()).eq(ours);
    Ok((!same).then_some(theirs))
}

/// Whether the request is for the whole context, as the walk (and so the listing) has it.
fn everything(ask: &Ask, ctx: &Context) -> bool {
    ask.dir == "context"
        && ask.includes.is_empty()
        && ask.follow.is_empty()
        && their_excludes(ask, ctx).is_ok_and(|theirs| theirs.is_none())
}

/// fsutil's `FollowLinks`: each follow path, and the target of each link on the way, within the
/// directory (an absolute target is read from the directory's root; one that leaves it is not
/// followed).
fn follow_links(root: &std::path::Path, paths: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for path in paths {
        let mut current = context::clean(path.trim_start_matches('/'));
        for _ in 0..40 {
            out.push(current.clone());
            let Ok(target) = std::fs::read_link(root.join(&current)) else {
                break;
            };
            let target = target.to_string_lossy().into_owned();
            let joined = if let Some(absolute) = target.strip_prefix('/') {
                absolute.to_owned()
            } else {
                match current.rsplit_once('/') {
                    Some((parent, _)) => format!("{parent}/{target}"),
                    None => target,
                }
            };
            let next = context::clean(&joined);
            if next == ".." || next.starts_with("../") || next == "." {
                break;
            }
            current = next;
        }
    }
    out
}

/// Go's `os.FileMode` for an entry.
fn go_mode(entry: &Entry) -> u32 {
    let mut mode = entry.mode & 0o777;
    if entry.mode & 0o4000 != 0 {
        mode |= 1 << 23;
    }
    if entry.mode & 0o2000 != 0 {
        mode |= 1 << 22;
    }
    if entry.mode & 0o1000 != 0 {
        mode |= 1 << 20;
    }
    mode | match entry.kind {
        Kind::Dir => 1 << 31,
        Kind::Symlink(_) => 1 << 27,
        Kind::Fifo => 1 << 25,
        Kind::CharDevice(..) => (1 << 26) | (1 << 21),
        Kind::BlockDevice(..) => 1 << 26,
        Kind::File(_) | Kind::HardLink(_) => 0,
    }
}

fn stat(ctx: &Context, entry: &Entry) -> Stat {
    let (size, linkname, dev) = match &entry.kind {
        Kind::File(n) => (i64::try_from(*n).unwrap_or(i64::MAX), String::new(), (0, 0)),
        Kind::Symlink(target) => {
            let target = target.to_string_lossy().into_owned();
            (
                i64::try_from(target.len()).unwrap_or(i64::MAX),
                target,
                (0, 0),
            )
        }
        Kind::HardLink(first) => (0, first.clone(), (0, 0)),
        Kind::CharDevice(a, b) | Kind::BlockDevice(a, b) => (0, String::new(), (*a, *b)),
        Kind::Dir | Kind::Fifo => (0, String::new(), (0, 0)),
    };
    Stat {
        path: entry.name.clone(),
        mode: go_mode(entry),
        uid: 0,
        gid: 0,
        size,
        mod_time: ctx.session_mtime_ns(entry),
        linkname,
        devmajor: i64::from(dev.0),
        devminor: i64::from(dev.1),
        xattrs: HashMap::new(),
    }
}

fn packet(kind: PacketType) -> Packet {
    Packet {
        r#type: kind as i32,
        stat: None,
        id: 0,
        data: Vec::new(),
    }
}

/// The packets to the daemon, a batch at a time.
type Out = mpsc::Sender<Vec<Packet>>;

/// Packets per batch, at most.
const PACKETS_PER_BATCH: usize = 128;

/// Packets to the daemon, sent in batches: one wake-up of the connection per batch rather than
/// one per entry or per small file. A batch goes when it holds [`PACKETS_PER_BATCH`] packets,
/// before it would hold more than [`DATA_BATCH`] bytes of file content, and on `flush`.
struct Batch<'a> {
    out: &'a Out,
    packets: Vec<Packet>,
    bytes: usize,
}

impl<'a> Batch<'a> {
    fn new(out: &'a Out) -> Self {
        Self {
            out,
            packets: Vec::with_capacity(PACKETS_PER_BATCH),
            bytes: 0,
        }
    }

    fn push(&mut self, p: Packet) -> Result<()> {
        if self.out.is_closed() {
            return Err(gone());
        }
        if self.bytes + p.data.len() > DATA_BATCH {
            self.flush()?;
        }
        self.bytes += p.data.len();
        self.packets.push(p);
        if self.packets.len() == PACKETS_PER_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn stat(&mut self, stat: Stat) -> Result<()> {
        let mut p = packet(PacketType::PacketStat);
        p.stat = Some(stat);
        self.push(p)
    }

    /// Sends what is batched now (all there is, when nothing more is ready: the walk the
    /// listing waits for takes a while, or no other request waits).
    fn flush(&mut self) -> Result<()> {
        if self.packets.is_empty() {
            return Ok(());
        }
        self.bytes = 0;
        let batch = std::mem::replace(&mut self.packets, Vec::with_capacity(PACKETS_PER_BATCH));
        self.out.blocking_send(batch).map_err(|_| gone())
    }

    /// Sends the empty `STAT` that ends the list of entries, with what is batched.
    fn end(mut self) -> Result<()> {
        self.packets.push(packet(PacketType::PacketStat));
        self.flush()
    }
}

/// What a number stands for: a file to read, as the walk saw it.
type Files = Arc<Mutex<HashMap<u32, ListedFile>>>;

/// Where the files behind the numbers sent are found.
#[derive(Clone)]
enum Numbers {
    /// The listing replayed: a number is an index into it.
    Listing(Arc<Listing>),
    /// A walk's map, filled as it sends.
    Walked(Files),
}

impl Numbers {
    /// Whether `id` may be asked for now: a number sent, not asked for before. Cheap, so the
    /// daemon's requests are read as fast as they come.
    fn claim(&self, id: u32, taken: &mut Taken) -> bool {
        match self {
            // Checked first, so only a number the listing has is marked.
            Numbers::Listing(listing) => listing.has(id) && taken.insert(id),
            Numbers::Walked(files) => files.lock().is_ok_and(|m| m.contains_key(&id)),
        }
    }

    /// The file numbered `id` (claimed), once; `None` for a number that is not a file's.
    /// `window`: the listing's entries read back last.
    fn take(&self, id: u32, window: &mut context::Window) -> Result<Option<ListedFile>> {
        match self {
            Numbers::Listing(listing) => listing.file_in(id, window),
            Numbers::Walked(files) => Ok(files.lock().ok().and_then(|mut m| m.remove(&id))),
        }
    }
}

/// The numbers asked for already: one bit per number, up to the highest asked for (a number
/// the listing has).
#[derive(Default)]
struct Taken(Vec<u64>);

impl Taken {
    /// Marks `id`; whether it was not marked before.
    fn insert(&mut self, id: u32) -> bool {
        let (word, bit) = ((id / 64) as usize, 1u64 << (id % 64));
        if word >= self.0.len() {
            self.0.resize(word + 1, 0);
        }
        let new = self.0[word] & bit == 0;
        self.0[word] |= bit;
        new
    }
}

fn gone() -> Error {
    Error::unavailable("the Docker daemon stopped reading the build context")
}

/// Sends the STAT packets of the whole context from the listing, then the end of the list.
fn replay_stats(ctx: &Context, listing: &Listing, out: &Out) -> Result<()> {
    let stats = std::cell::RefCell::new(Batch::new(out));
    listing.replay(
        |_, entry| stats.borrow_mut().stat(stat(ctx, entry)),
        || stats.borrow_mut().flush(),
    )?;
    stats.into_inner().end()
}

/// Sends the STAT packets of a directory, walked, then the end of the list.
fn send_stats(sync: &FileSync, ask: &Ask, files: &Files, out: &Out) -> Result<()> {
    let ctx = &*sync.context;
    let mut stats = Batch::new(out);
    let mut id: u32 = 0;
    let mut send = |entry: &Entry| -> Result<()> {
        if matches!(entry.kind, Kind::File(_) | Kind::HardLink(_))
            && let Some(path) = &entry.path
            && let Ok(mut map) = files.lock()
        {
            let size = match entry.kind {
                Kind::File(n) => Some(n),
                _ => None,
            };
            let (path, stamp) = (path.clone(), entry.stamp);
            map.insert(id, ListedFile { path, size, stamp });
        }
        id += 1;
        stats.stat(stat(ctx, entry))
    };
    if ask.dir == "context" {
        {
            let filter = Mutex::new(Filter::new(ask, ctx, Some(ctx.root()))?);
            let enter = |dir: &str| filter.lock().map_or(true, |f| f.enter(dir));
            ctx.walk_pruned(&enter, &mut |entry| {
                if !entry.role.in_session() {
                    return Ok(());
                }
                let passed = filter.lock().map(|mut f| f.pass(entry)).unwrap_or_default();
                for e in &passed {
                    send(e)?;
                }
                Ok(())
            })?;
        }
    } else {
        let mut filter = Filter::new(ask, ctx, None)?;
        for e in filter.pass(&sync.dockerfile) {
            send(&e)?;
        }
    }
    stats.end()
}

/// Sends the files asked for by number, one after the other, each ended by an empty DATA
/// packet. `sent`: where to count them, and whether this transfer is of named paths (see
/// [`Sent::followed`]).
fn send_files(
    asked: &mut mpsc::UnboundedReceiver<u32>,
    numbers: &Numbers,
    out: &Out,
    sent: Option<(&Sent, bool)>,
) -> Result<()> {
    use std::io::Read;
    use tokio::sync::mpsc::error::TryRecvError;
    let mut buf = vec![0u8; CHUNK];
    let mut data = Batch::new(out);
    let mut window = context::Window::default();
    loop {
        // What is batched goes once no other request is waiting.
        let id = match asked.try_recv() {
            Ok(id) => id,
            Err(TryRecvError::Empty) => {
                data.flush()?;
                match asked.blocking_recv() {
                    Some(id) => id,
                    None => break,
                }
            }
            Err(TryRecvError::Disconnected) => break,
        };
        let Some(ListedFile { path, size, stamp }) = numbers.take(id, &mut window)? else {
            return Err(Error::internal(format!(
                "the daemon asked for unknown file {id}"
            )));
        };
        // Only the file the walk saw: one replaced since (by a link out of the context, say)
        // is refused before a byte of it is sent. Its stamp covers its size, so the walk's size
        // is read, and no more (a hard link to an earlier file is read to its end).
        let file = context::open_walked(&path, stamp)?;
        let mut reader = file.take(size.unwrap_or(u64::MAX));
        let mut total = 0u64;
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(|e| Error::read_io(format!("reading {}", path.display()), &e))?;
            if n == 0 {
                break;
            }
            total += n as u64;
            let mut p = packet(PacketType::PacketData);
            p.id = id;
            p.data = buf[..n].to_vec();
            data.push(p)?;
            if size == Some(total) {
                break;
            }
        }
        if size.is_some_and(|s| s != total) {
            return Err(Error::data(format!(
                "{} changed size while the build context was sent",
                path.display()
            ))
            .with_hint("build again once nothing writes to the context"));
        }
        let new = sent.is_some_and(|(sent, named)| {
            sent.followed.lock().is_ok_and(|mut followed| {
                if named {
                    followed.insert(path)
                } else {
                    !followed.contains(&path)
                }
            })
        });
        if let Some((sent, _)) = sent
            && new
        {
            sent.files.fetch_add(1, Ordering::Relaxed);
            sent.bytes.fetch_add(total, Ordering::Relaxed);
        }
        let mut end = packet(PacketType::PacketData);
        end.id = id;
        data.push(end)?;
    }
    data.flush()
}

/// The error of a task that ended, if it failed.
fn task_error(result: std::result::Result<Result<()>, tokio::task::JoinError>) -> Option<Error> {
    match result {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(e) => Some(Error::internal(format!("the file sync task stopped: {e}"))),
    }
}

impl FileSync {
    /// Keeps the first error of the build, and tells the daemon, after what is queued.
    async fn fail(&self, out: &Out, error: Error) {
        let mut p = packet(PacketType::PacketErr);
        p.data = error.message().as_bytes().to_vec();
        if let Ok(mut slot) = self.failure.lock()
            && slot.is_none()
        {
            *slot = Some(error);
        }
        // The daemon reads until it has an error or the end: this waits only for room.
        let _ = out.send(vec![p]).await;
    }

    async fn serve(self, ask: Ask, out: Out, mut incoming: Streaming<Packet>) {
        let began = std::time::Instant::now();
        let counted = ask.dir == "context";
        let named = !ask.follow.is_empty();
        let numbers = if everything(&ask, &self.context) {
            verbose!("file sync: the whole context, as the hash walk listed it");
            Numbers::Listing(self.listing.clone())
        } else {
            Numbers::Walked(Files::default())
        };
        let walk = {
            let (sync, numbers, out) = (self.clone(), numbers.clone(), out.clone());
            tokio::task::spawn_blocking(move || match numbers {
                Numbers::Listing(listing) => replay_stats(&sync.context, &listing, &out),
                Numbers::Walked(files) => send_stats(&sync, &ask, &files, &out),
            })
        };
        let mut taken = Taken::default();
        // The numbers asked for and not sent yet: on a first build the daemon asks for every
        // file at once, so only the number waits (4 bytes), not the file's path. The requests
        // are read as they come: the session's other calls (its health checks among them) share
        // the connection, and requests left unread would hold up its flow-control window.
        let (asked_tx, mut asked_rx) = mpsc::unbounded_channel();
        let sender = {
            // What is counted is the context; the Dockerfile goes every time.
            let (sync, out, numbers) = (self.clone(), out.clone(), numbers.clone());
            tokio::task::spawn_blocking(move || {
                let sent = counted.then_some((&*sync.sent, named));
                send_files(&mut asked_rx, &numbers, &out, sent)
            })
        };
        // The daemon's packets are read while both tasks run. Either task failing ends the
        // transfer at once: the daemon would otherwise wait for a file or an entry it never
        // gets, and this side for packets that never come. The sender ends early only when it
        // fails.
        let (mut walk, mut sender) = (walk, sender);
        let (mut walk_ended, mut sender_ended) = (false, false);
        let mut finished = false;
        loop {
            tokio::select! {
                packet = incoming.message() => {
                    let Ok(Some(p)) = packet else { break };
                    match PacketType::try_from(p.r#type) {
                        Ok(PacketType::PacketReq) => {
                            if !numbers.claim(p.id, &mut taken) {
                                let e = format!("the daemon asked for unknown file {}", p.id);
                                self.fail(&out, Error::internal(e)).await;
                                break;
                            }
                            if asked_tx.send(p.id).is_err() {
                                break;
                            }
                        }
                        Ok(PacketType::PacketFin) => {
                            finished = true;
                            break;
                        }
                        Ok(PacketType::PacketErr) => {
                            verbose!(
                                "the daemon's file sync ended with: {}",
                                shared::cli::one_line(&String::from_utf8_lossy(&p.data))
                            );
                            break;
                        }
                        _ => {}
                    }
                }
                result = &mut walk, if !walk_ended => {
                    walk_ended = true;
                    if let Some(e) = task_error(result) {
                        self.fail(&out, e).await;
                        break;
                    }
                }
                result = &mut sender, if !sender_ended => {
                    sender_ended = true;
                    if let Some(e) = task_error(result) {
                        self.fail(&out, e).await;
                    }
                    break;
                }
            }
        }
        drop(asked_tx);
        if !walk_ended && let Some(e) = task_error(walk.await) {
            self.fail(&out, e).await;
        }
        if !sender_ended && let Some(e) = task_error(sender.await) {
            self.fail(&out, e).await;
        }
        let failed = self.failure.lock().map_or(true, |f| f.is_some());
        if finished && !failed {
            let _ = out.send(vec![packet(PacketType::PacketFin)]).await;
        }
        if counted {
            let micros = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
            self.sent.micros.fetch_add(micros, Ordering::Relaxed);
        }
    }
}

#[tonic::async_trait]
impl file_sync_server::FileSync for FileSync {
    type DiffCopyStream =
        futures_util::stream::BoxStream<'static, std::result::Result<Packet, Status>>;

    async fn diff_copy(
        &self,
        request: Request<Streaming<Packet>>,
    ) -> std::result::Result<Response<Self::DiffCopyStream>, Status> {
        let ask = Ask::from_metadata(request.metadata());
        if ask.dir != "context" && ask.dir != "dockerfile" {
            return Err(Status::not_found(format!(
                "no access allowed to dir {:?}",
                ask.dir
            )));
        }
        verbose!(
            "file sync: {} (include {:?}, exclude {:?}, follow {:?})",
            ask.dir,
            ask.includes,
            ask.excludes,
            ask.follow
        );
        // At most 8 MiB of file data in flight, or 4,096 entries.
        let (tx, rx) = mpsc::channel(32);
        tokio::spawn(self.clone().serve(ask, tx, request.into_inner()));
        let packets = ReceiverStream::new(rx)
            .flat_map(|batch| futures_util::stream::iter(batch.into_iter().map(Ok)));
        Ok(Response::new(Box::pin(packets)))
    }

    type TarStreamStream = ReceiverStream<std::result::Result<Packet, Status>>;

    async fn tar_stream(
        &self,
        _request: Request<Streaming<Packet>>,
    ) -> std::result::Result<Response<Self::TarStreamStream>, Status> {
        Err(Status::unimplemented("only DiffCopy is served"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The context `dir` hashed into its listing, and the number of `name` in it.
    fn listed(dir: &std::path::Path, name: &str) -> (Arc<Listing>, u32) {
        let ctx = Context::open(dir, None, context::Options::default()).expect("open");
        let listing = Listing::new(ctx.root());
        ctx.hash_into(&listing).expect("hash");
        let mut number = None;
        listing
            .replay(
                |id, entry| {
                    if entry.name == name {
                        number = Some(id);
                    }
                    Ok(())
                },
                || Ok(()),
            )
            .expect("replay");
        (listing, number.expect("listed"))
    }

    /// What `send_files` sends for `id`: the bytes of its DATA packets, or its error.
    fn send(listing: &Arc<Listing>, id: u32) -> std::result::Result<Vec<u8>, Error> {
        let (asked_tx, mut asked_rx) = mpsc::unbounded_channel();
        asked_tx.send(id).expect("queue");
        drop(asked_tx);
        let (out, mut packets) = mpsc::channel(64);
        let numbers = Numbers::Listing(listing.clone());
        let result = send_files(&mut asked_rx, &numbers, &out, None);
        drop(out);
        let mut data = Vec::new();
        while let Some(batch) = packets.blocking_recv() {
            for p in batch {
                data.extend_from_slice(&p.data);
            }
        }
        result.map(|()| data)
    }

    #[test]
    fn a_file_replaced_after_the_walk_is_refused_before_a_byte_is_sent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        let ctx = dir.path().join("ctx");
        std::fs::create_dir(&ctx).expect("mkdir");
        std::fs::write(ctx.join("Dockerfile"), "FROM scratch\n").expect("write");
        std::fs::write(ctx.join("a.txt"), "inside bytes").expect("write");
        std::fs::write(ctx.join("b.txt"), "inside bytes").expect("write");
        std::fs::write(outside.path().join("secret"), "SECRET BYTES").expect("write");

        // Unchanged: its bytes go.
        let (listing, a) = listed(&ctx, "a.txt");
        assert_eq!(send(&listing, a).expect("sent"), b"inside bytes");

        // Swapped for a link of the same size that leads out of the context.
        std::fs::remove_file(ctx.join("a.txt")).expect("rm");
        std::os::unix::fs::symlink(outside.path().join("secret"), ctx.join("a.txt"))
            .expect("symlink");
        let err = send(&listing, a).expect_err("a link in its place");
        assert!(err.message().contains("was replaced"), "{}", err.message());

        // Replaced by another regular file of the same size.
        let (listing, b) = listed(&ctx, "b.txt");
        std::fs::write(ctx.join("b.new"), "SECRET BYTES").expect("write");
        std::fs::rename(ctx.join("b.new"), ctx.join("b.txt")).expect("rename");
        let err = send(&listing, b).expect_err("another file in its place");
        assert!(err.message().contains("was replaced"), "{}", err.message());
    }

    #[test]
    fn a_number_is_claimed_once_and_only_if_the_listing_has_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").expect("write");
        std::fs::write(dir.path().join("a.txt"), "a").expect("write");
        let (listing, a) = listed(dir.path(), "a.txt");
        let numbers = Numbers::Listing(listing.clone());
        let mut taken = Taken::default();
        assert!(numbers.claim(a, &mut taken));
        assert!(!numbers.claim(a, &mut taken), "asked for twice");
        assert!(!numbers.claim(u32::MAX, &mut taken));
        assert!(
            taken.0.len() <= 1,
            "an unknown number marks nothing: {} words",
            taken.0.len()
        );
        // The sender refuses a number that stands for no file.
        let err = send(&listing, u32::MAX).expect_err("unknown");
        assert!(err.message().contains("unknown file"), "{}", err.message());
    }
}

/// The daemon's side played over real gRPC: what a failure on this side does to the stream.
#[cfg(test)]
mod stream_tests {
    use super::*;
    use bollard_buildkit_proto::moby::filesync::v1::file_sync_client::FileSyncClient;
    use bollard_buildkit_proto::moby::filesync::v1::file_sync_server::FileSyncServer;

    /// Serves `sync` on a local port; the client connected to it.
    async fn serve(sync: FileSync) -> FileSyncClient<tonic::transport::Channel> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let incoming = futures_util::stream::unfold(listener, |listener| async move {
            let accepted = listener.accept().await.map(|(stream, _)| stream);
            Some((accepted, listener))
        });
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(FileSyncServer::new(sync))
                .serve_with_incoming(incoming),
        );
        FileSyncClient::connect(format!("http://{address}"))
            .await
            .expect("connect")
    }

    #[tokio::test]
    async fn a_file_replaced_after_the_walk_ends_the_transfer_with_an_error_the_daemon_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_owned();
        std::fs::write(root.join("Dockerfile"), "FROM scratch\n").expect("write");
        std::fs::write(root.join("a.txt"), "inside bytes").expect("write");
        std::fs::write(outside.path().join("secret"), "SECRET BYTES").expect("write");
        let ctx = Context::open(&root, None, context::Options::default()).expect("open");
        let listing = Listing::new(ctx.root());
        ctx.hash_into(&listing).expect("hash");
        let sync = FileSync::new(ctx, listing).expect("file sync");
        let failure = sync.failure.clone();
        let mut client = serve(sync).await;

        let (to_us, requests) = mpsc::channel(8);
        let mut request = Request::new(ReceiverStream::new(requests));
        request
            .metadata_mut()
            .insert("dir-name", "context".parse().expect("value"));
        let mut from_us = client
            .diff_copy(request)
            .await
            .expect("diff copy")
            .into_inner();
        // The entries, up to the empty STAT that ends them.
        let mut number = None;
        let mut id = 0;
        loop {
            let p = from_us.message().await.expect("packet").expect("a STAT");
            let Some(stat) = p.stat else { break };
            if stat.path == "a.txt" {
                number = Some(id);
            }
            id += 1;
        }
        let number = number.expect("a.txt is listed");
        // Swapped for a link of the same size out of the context, then asked for.
        std::fs::remove_file(root.join("a.txt")).expect("rm");
        std::os::unix::fs::symlink(outside.path().join("secret"), root.join("a.txt"))
            .expect("symlink");
        let mut req = packet(PacketType::PacketReq);
        req.id = number;
        to_us.send(req).await.expect("send");

        // The daemon gets an error naming the file, and the stream ends, though the daemon
        // still holds its side open (it would wait for the file for ever otherwise).
        let rest = tokio::time::timeout(std::time::Duration::from_secs(60), async {
            let mut got = Vec::new();
            while let Ok(Some(p)) = from_us.message().await {
                got.push(p);
            }
            got
        })
        .await
        .expect("the stream ends");
        let errors: Vec<String> = rest
            .iter()
            .filter(|p| p.r#type == PacketType::PacketErr as i32)
            .map(|p| String::from_utf8_lossy(&p.data).into_owned())
            .collect();
        assert!(
            errors.len() == 1 && errors[0].contains("a.txt was replaced"),
            "{errors:?}"
        );
        assert!(
            rest.iter()
                .all(|p| !String::from_utf8_lossy(&p.data).contains("SECRET")),
            "no byte of the file outside"
        );
        let kept = failure
            .lock()
            .expect("lock")
            .take()
            .expect("the build's error");
        assert!(
            kept.message().contains("was replaced"),
            "{}",
            kept.message()
        );
        drop(to_us);
    }
}
