//! `--ssh` in docker's syntax, and `moby.sshforward.v1.SSH`: a `RUN --mount=type=ssh` step talks
//! to an SSH agent of this machine through the session, and no key enters the build.
//!
//! `--ssh default` forwards `SSH_AUTH_SOCK`; `--ssh ID=SOCKET` forwards that agent socket under
//! ID. Key files in place of the socket (`--ssh ID=KEY[,KEY]`) are loaded into a private
//! `ssh-agent` started for the build (OpenSSH's, from PATH) and stopped after it.

use std::collections::HashMap;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use bollard_buildkit_proto::moby::sshforward::v1::ssh_server;
use bollard_buildkit_proto::moby::sshforward::v1::{
    BytesMessage, CheckAgentRequest, CheckAgentResponse,
};
use shared::{Error, Result, exit, verbose};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// The id BuildKit uses when a step names none.
const DEFAULT_ID: &str = "default";

/// One `--ssh`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshSpec {
    /// The id a `RUN --mount=type=ssh,id=ID` names.
    pub id: String,
    /// An agent socket, or key files; none: `SSH_AUTH_SOCK`.
    pub paths: Vec<PathBuf>,
}

/// Parses a `--ssh` value: `default`, `ID`, or `ID=PATH[,PATH...]`.
pub fn parse_ssh(text: &str) -> std::result::Result<SshSpec, String> {
    let (id, paths) = match text.split_once('=') {
        Some((id, paths)) => (id, paths),
        None => (text, ""),
    };
    if id.is_empty() || id.contains(',') {
        return Err(format!("'{text}' is not default, ID or ID=SOCKET_OR_KEYS"));
    }
    let paths = if paths.is_empty() {
        Vec::new()
    } else {
        super::secrets::csv_fields(paths)?
            .into_iter()
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect()
    };
    Ok(SshSpec {
        id: id.to_owned(),
        paths,
    })
}

fn usage(message: String) -> Error {
    Error::new(exit::USAGE, message)
}

/// The agents a build may use, by id; and the private agents started for key files.
#[derive(Debug, Default)]
pub(crate) struct Agents {
    sockets: HashMap<String, PathBuf>,
    started: Vec<Private>,
}

/// A private `ssh-agent`, killed when dropped or when img-build panics; its directory goes
/// with it (the agent, then the directory: fields drop in order).
#[derive(Debug)]
struct Private {
    _agent: shared::child::Killed,
    _dir: tempfile::TempDir,
}

fn is_socket(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

impl Agents {
    /// Finds each agent, or starts one for key files; a missing one is a usage error.
    pub(crate) fn load(specs: &[SshSpec], env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut agents = Self::default();
        for spec in specs {
            let id = &spec.id;
            let socket = match spec.paths.as_slice() {
                [] => {
                    let Some(sock) = env("SSH_AUTH_SOCK").filter(|s| !s.is_empty()) else {
                        return Err(usage(format!(
                            "--ssh {id}: SSH_AUTH_SOCK is not set, so there is no agent to forward"
                        ))
                        .with_hint(
                            "start ssh-agent and ssh-add a key, or give --ssh ID=SOCKET_OR_KEYS",
                        ));
                    };
                    PathBuf::from(sock)
                }
                [one] if is_socket(one) => one.clone(),
                keys => agents.start(id, keys)?,
            };
            if !is_socket(&socket) {
                return Err(usage(format!(
                    "--ssh {id}: {} is not an agent socket",
                    socket.display()
                ))
                .with_hint("give the socket of a running ssh-agent, or key files"));
            }
            agents.sockets.insert(id.clone(), socket);
        }
        Ok(agents)
    }

    /// Starts a private agent holding `keys`; returns its socket.
    fn start(&mut self, id: &str, keys: &[PathBuf]) -> Result<PathBuf> {
        for key in keys {
            shared::files::check_regular(key, 1024 * 1024, "SSH key").map_err(|e| {
                usage(format!("--ssh {id}: {}", e.message()))
                    .with_hint("give key files or the socket of a running ssh-agent")
            })?;
        }
        let dir = tempfile::Builder::new()
            .prefix("img-build-ssh-")
            .tempdir()
            .map_err(|e| Error::read_io("making a directory for a private ssh-agent", &e))?;
        let socket = dir.path().join("agent.sock");
        let missing = |what: &str, e: &std::io::Error| {
            usage(format!(
                "--ssh {id}: cannot run {what} to hold the keys: {e}"
            ))
            .with_hint("install OpenSSH's client tools, or give the socket of a running agent")
        };
        let child = std::process::Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| missing("ssh-agent", &e))?;
        let private = Private {
            _agent: shared::child::Killed::hold(child),
            _dir: dir,
        };
        for _ in 0..100 {
            if is_socket(&socket) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let added = std::process::Command::new("ssh-add")
            .args(keys)
            .env("SSH_AUTH_SOCK", &socket)
            .env_remove("SSH_ASKPASS")
            .env("SSH_ASKPASS_REQUIRE", "never")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map_err(|e| missing("ssh-add", &e))?;
        if !added.success() {
            return Err(usage(format!(
                "--ssh {id}: ssh-add could not load the keys (a key with a passphrase needs an agent of your own)"
            ))
            .with_hint("ssh-add the key to a running agent and give --ssh ID=$SSH_AUTH_SOCK"));
        }
        verbose!(
            "--ssh {id}: a private ssh-agent holds {} key(s)",
            keys.len()
        );
        self.started.push(private);
        Ok(socket)
    }
}

#[tonic::async_trait]
impl ssh_server::Ssh for Agents {
    async fn check_agent(
        &self,
        request: Request<CheckAgentRequest>,
    ) -> std::result::Result<Response<CheckAgentResponse>, Status> {
        let id = request.into_inner().id;
        let id = if id.is_empty() { DEFAULT_ID } else { &id };
        if self.sockets.contains_key(id) {
            Ok(Response::new(CheckAgentResponse {}))
        } else {
            Err(Status::not_found(format!(
                "no SSH agent {id} is forwarded: pass --ssh {id}"
            )))
        }
    }

    type ForwardAgentStream = ReceiverStream<std::result::Result<BytesMessage, Status>>;

    async fn forward_agent(
        &self,
        request: Request<Streaming<BytesMessage>>,
    ) -> std::result::Result<Response<Self::ForwardAgentStream>, Status> {
        let id = request
            .metadata()
            .get("buildkit.ssh.id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .unwrap_or(DEFAULT_ID)
            .to_owned();
        let Some(socket) = self.sockets.get(&id) else {
            return Err(Status::not_found(format!("no SSH agent {id} is forwarded")));
        };
        let agent = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|e| Status::unavailable(format!("connecting to SSH agent {id}: {e}")))?;
        let (mut from_agent, mut to_agent) = agent.into_split();
        let mut incoming = request.into_inner();
        tokio::spawn(async move {
            while let Ok(Some(message)) = incoming.message().await {
                if to_agent.write_all(&message.data).await.is_err() {
                    break;
                }
            }
            let _ = to_agent.shutdown().await;
        });
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match from_agent.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let message = BytesMessage {
                            data: buf[..n].to_vec(),
                        };
                        if tx.send(Ok(message)).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
