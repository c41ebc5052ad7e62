//! img-build's side of a BuildKit session, opened and served the way the docker CLI and buildx
//! do it (moby/buildkit `session/`, docker/cli `build_buildkit.go`).
//!
//! `POST /session` with `Upgrade: h2c` turns one connection to the daemon around: the daemon
//! becomes a gRPC client of this process, and calls only the methods the request's
//! `X-Docker-Expose-Session-Grpc-Method` headers name:
//! - `moby.filesync.v1.FileSync/DiffCopy`: the `context` directory and the `dockerfile`
//!   directory ([`filesync`]);
//! - `moby.filesync.v1.Auth/Credentials`: registry credentials from the shared lookup
//!   ([`auth`]);
//! - `moby.buildkit.secrets.v1.Secrets/GetSecret`: the values of `--secret` ([`secrets`]);
//! - `moby.sshforward.v1.SSH/CheckAgent` and `ForwardAgent`: the agents of `--ssh` ([`ssh`]);
//! - `grpc.health.v1.Health/Check`: the daemon's probe that the session is alive.
//!
//! The build request then names the session (`version=2&session=ID&remote=client-session`), and
//! carries no body. The session's shared key (`X-Docker-Expose-Session-Sharedkey`) is stable per
//! context directory, so a daemon that has seen the directory before asks only for the files whose
//! metadata changed.

pub(crate) mod auth;
pub(crate) mod filesync;
pub(crate) mod http;
pub mod secrets;
pub mod ssh;

use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use bollard_buildkit_proto::health::health_server::{Health, HealthServer};
use bollard_buildkit_proto::health::{
    HealthCheckRequest, HealthCheckResponse, health_check_response::ServingStatus,
};
use bollard_buildkit_proto::moby::buildkit::secrets::v1::secrets_server::SecretsServer;
use bollard_buildkit_proto::moby::filesync::v1::auth_server::AuthServer;
use bollard_buildkit_proto::moby::filesync::v1::file_sync_server::FileSyncServer;
use bollard_buildkit_proto::moby::sshforward::v1::ssh_server::SshServer;
use docker::Engine;
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use shared::{Error, Result, verbose};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

/// The methods this side serves, as the daemon calls them.
const METHODS: &[&str] = &[
    "/moby.filesync.v1.FileSync/DiffCopy",
    "/moby.filesync.v1.Auth/Credentials",
    "/moby.buildkit.secrets.v1.Secrets/GetSecret",
    "/grpc.health.v1.Health/Check",
];

/// The SSH methods, exposed only when `--ssh` gives an agent (as the docker CLI does): without
/// them, BuildKit says that no SSH agent was forwarded.
const SSH_METHODS: &[&str] = &[
    "/moby.sshforward.v1.SSH/CheckAgent",
    "/moby.sshforward.v1.SSH/ForwardAgent",
];

/// What the session serves.
pub(crate) struct Providers {
    pub(crate) files: filesync::FileSync,
    pub(crate) auth: auth::Auth,
    pub(crate) secrets: secrets::Secrets,
    pub(crate) ssh: Option<ssh::Agents>,
}

/// An open session: its id for the build request; closing it ends the connection.
pub(crate) struct Session {
    pub(crate) id: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

/// The shared key for a context directory: the same directory on the same machine gives the same
/// key, so the daemon finds what it received last time (the docker CLI hashes a node id and the
/// directory the same way).
pub(crate) fn shared_key(dir: &std::path::Path) -> String {
    let node = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
    let mut sha = Sha256::new();
    sha.update(b"imgpipe-session\0");
    sha.update(node.trim().as_bytes());
    sha.update(b"\0");
    sha.update(dir.as_os_str().as_encoded_bytes());
    hex::encode(sha.finalize())
}

/// A session id as BuildKit makes them: 25 characters of base 36, random.
fn session_id() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom(&mut bytes)?;
    let mut n = u128::from_le_bytes(bytes);
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut id = String::with_capacity(25);
    for _ in 0..25 {
        id.push(char::from(digits[(n % 36) as usize]));
        n /= 36;
    }
    Ok(id)
}

fn getrandom(buf: &mut [u8]) -> Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .map_err(|e| Error::internal(format!("reading /dev/urandom: {e}")))
}

impl Session {
    /// Opens a session with the daemon and serves it until [`Session::close`].
    pub(crate) async fn open(engine: &Engine, key: &str, providers: Providers) -> Result<Self> {
        let id = session_id()?;
        let mut headers = vec![
            ("X-Docker-Expose-Session-Uuid", id.clone()),
            ("X-Docker-Expose-Session-Name", "img-build".to_owned()),
            ("X-Docker-Expose-Session-Sharedkey", key.to_owned()),
        ];
        let methods = METHODS.iter().chain(if providers.ssh.is_some() {
            SSH_METHODS
        } else {
            &[]
        });
        for method in methods {
            headers.push(("X-Docker-Expose-Session-Grpc-Method", (*method).to_owned()));
        }
        let io = http::upgrade(engine, "/session", &headers).await?;
        verbose!("BuildKit session {id} open");

        let (tx, rx) = oneshot::channel::<()>();
        let mut server = tonic::transport::Server::builder();
        let router = server
            .add_service(HealthServer::new(Alive))
            .add_service(FileSyncServer::new(providers.files))
            .add_service(AuthServer::new(providers.auth))
            .add_service(SecretsServer::new(providers.secrets))
            .add_optional_service(providers.ssh.map(SshServer::new));
        // One connection, and no end to the stream of them: the server would otherwise start
        // closing the connection as soon as the stream ended.
        let incoming = futures_util::stream::iter([Ok::<_, std::io::Error>(Upgraded(io))])
            .chain(futures_util::stream::pending());
        let task = tokio::spawn(async move {
            let ended = async {
                let _ = rx.await;
            };
            if let Err(e) = router.serve_with_incoming_shutdown(incoming, ended).await {
                verbose!("the BuildKit session ended: {e}");
            }
        });
        Ok(Self {
            id,
            shutdown: Some(tx),
            task,
        })
    }

    /// Ends the session: the daemon sees the connection close.
    pub(crate) async fn close(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // A daemon that does not let go within a moment is left to notice the process exit.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), &mut self.task).await;
        self.task.abort();
    }
}

use futures_util::StreamExt as _;

/// The health probe: the session is alive while this process serves it.
struct Alive;

#[tonic::async_trait]
impl Health for Alive {
    async fn check(
        &self,
        _request: tonic::Request<HealthCheckRequest>,
    ) -> std::result::Result<tonic::Response<HealthCheckResponse>, tonic::Status> {
        Ok(tonic::Response::new(HealthCheckResponse {
            status: ServingStatus::Serving as i32,
        }))
    }

    async fn list(
        &self,
        _request: tonic::Request<bollard_buildkit_proto::health::HealthListRequest>,
    ) -> std::result::Result<
        tonic::Response<bollard_buildkit_proto::health::HealthListResponse>,
        tonic::Status,
    > {
        Err(tonic::Status::unimplemented("List is not served"))
    }

    type WatchStream =
        futures_util::stream::Empty<std::result::Result<HealthCheckResponse, tonic::Status>>;

    async fn watch(
        &self,
        _request: tonic::Request<HealthCheckRequest>,
    ) -> std::result::Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("Watch is not served"))
    }
}

/// The upgraded connection, as the gRPC server takes it.
pub(crate) struct Upgraded(TokioIo<hyper::upgrade::Upgraded>);

impl tonic::transport::server::Connected for Upgraded {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for Upgraded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
