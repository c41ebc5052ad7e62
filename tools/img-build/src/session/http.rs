//! HTTP/1.1 to the daemon on a connection of our own: bollard keeps its upgrade to itself, and its
//! BuildKit builds open a session of their own.
//!
//! `DOCKER_HOST` as [`docker::host`] reads it: `unix://PATH`, or `tcp://` / `http://` without
//! TLS. A TLS daemon is refused with the way round it (`--builder classic`).

use bytes::Bytes;
use docker::Engine;
use futures_util::Stream;
use http_body_util::{BodyExt, Empty};
use hyper::StatusCode;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use shared::error::chain;
use shared::{Error, Result};
use tokio::io::{AsyncRead, AsyncWrite};

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Whether the daemon's address is one the session can use.
pub(crate) fn session_capable(host: &str) -> bool {
    let tls = std::env::var("DOCKER_TLS_VERIFY").is_ok_and(|v| !v.is_empty());
    host.starts_with("unix://")
        || (!tls && (host.starts_with("tcp://") || host.starts_with("http://")))
}

async fn dial(engine: &Engine) -> Result<Box<dyn Io>> {
    let host = engine.host.as_str();
    let failed = |e: std::io::Error| {
        Error::unavailable(format!("connecting to the Docker daemon at {host}: {e}"))
            .with_hint("start dockerd or set DOCKER_HOST")
    };
    if let Some(path) = host.strip_prefix("unix://") {
        let stream = tokio::net::UnixStream::connect(path)
            .await
            .map_err(failed)?;
        return Ok(Box::new(stream));
    }
    let address = host
        .strip_prefix("tcp://")
        .or_else(|| host.strip_prefix("http://"))
        .filter(|_| session_capable(host))
        .ok_or_else(|| {
            Error::config(format!(
                "img-build's BuildKit session needs the daemon on a unix socket or plain tcp, not {host}"
            ))
            .with_hint("use --builder classic with a TLS daemon, or a unix:// DOCKER_HOST")
        })?;
    let stream = tokio::net::TcpStream::connect(address.trim_end_matches('/'))
        .await
        .map_err(failed)?;
    Ok(Box::new(stream))
}

fn request(
    engine: &Engine,
    path_and_query: &str,
    headers: &[(&str, String)],
) -> Result<hyper::Request<Empty<Bytes>>> {
    let mut builder = hyper::Request::post(format!(
        "/v{}{path_and_query}",
        engine.client.client_version()
    ))
    .header(hyper::header::HOST, "docker");
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    builder
        .body(Empty::new())
        .map_err(|e| Error::internal(format!("making the request {path_and_query}: {e}")))
}

async fn send(
    engine: &Engine,
    req: hyper::Request<Empty<Bytes>>,
    upgrades: bool,
) -> Result<hyper::Response<Incoming>> {
    let io = TokioIo::new(dial(engine).await?);
    let failed = |e: hyper::Error| {
        Error::unavailable(format!(
            "the request to the Docker daemon at {} failed: {}",
            engine.host,
            chain(&e)
        ))
        .with_hint("check that the Docker daemon is running and reachable")
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(failed)?;
    if upgrades {
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
    } else {
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    sender.send_request(req).await.map_err(failed)
}

/// How long the daemon may take to switch protocols.
const UPGRADE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// `POST path` with `Upgrade: h2c`: the connection, once the daemon has switched protocols.
pub(crate) async fn upgrade(
    engine: &Engine,
    path: &str,
    headers: &[(&str, String)],
) -> Result<TokioIo<hyper::upgrade::Upgraded>> {
    let mut all = vec![
        ("Connection", "Upgrade".to_owned()),
        ("Upgrade", "h2c".to_owned()),
    ];
    all.extend(headers.iter().map(|(k, v)| (*k, v.clone())));
    let response = tokio::time::timeout(
        UPGRADE_TIMEOUT,
        send(engine, request(engine, path, &all)?, true),
    )
    .await
    .map_err(|_| {
        Error::unavailable(format!(
            "the Docker daemon at {} did not open a BuildKit session within 30 s",
            engine.host
        ))
        .with_hint("see the daemon's log; retry the build")
    })??;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = response.status();
        let message = error_message(response).await;
        return Err(Error::unavailable(format!(
            "the Docker daemon at {} refused a BuildKit session ({status}): {message}",
            engine.host
        ))
        .with_hint("use --builder classic, or a daemon with BuildKit (Engine 18.09 or newer)"));
    }
    let upgraded = hyper::upgrade::on(response).await.map_err(|e| {
        Error::unavailable(format!(
            "the BuildKit session with {} did not start: {}",
            engine.host,
            chain(&e)
        ))
    })?;
    Ok(TokioIo::new(upgraded))
}

/// The text of an error response: the `message` of its JSON, else its first line.
async fn error_message(response: hyper::Response<Incoming>) -> String {
    let body = response
        .into_body()
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default();
    let body = &body[..body.len().min(64 * 1024)];
    let text = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    shared::cli::one_line(&text)
}

/// `POST /build?query` with an empty body: the build's JSON messages, as bollard reads them.
pub(crate) async fn build(
    engine: &Engine,
    query: &str,
) -> Result<
    impl Stream<Item = std::result::Result<bollard::models::BuildInfo, bollard::errors::Error>>,
> {
    let response = send(
        engine,
        request(engine, &format!("/build?{query}"), &[])?,
        false,
    )
    .await?;
    let status = response.status();
    if !status.is_success() {
        let message = error_message(response).await;
        return Err(crate::stream::request_failed(
            engine,
            &bollard::errors::Error::DockerResponseServerError {
                status_code: status.as_u16(),
                message,
            },
        ));
    }
    let body = response.into_body().into_data_stream();
    Ok(json_lines(body))
}

/// One JSON message per line, however the body's chunks fall; a line is at most 16 MiB.
fn json_lines(
    body: impl Stream<Item = std::result::Result<Bytes, hyper::Error>> + Send + 'static,
) -> impl Stream<Item = std::result::Result<bollard::models::BuildInfo, bollard::errors::Error>> {
    const LINE_LIMIT: usize = 16 * 1024 * 1024;
    let body = Box::pin(body);
    futures_util::stream::unfold(
        (body, Vec::<u8>::new(), false),
        |(mut body, mut buf, mut done)| async move {
            use futures_util::StreamExt;
            loop {
                if let Some(end) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=end).collect();
                    let line = line.trim_ascii();
                    if line.is_empty() {
                        continue;
                    }
                    let item = serde_json::from_slice(line).map_err(|e| {
                        bollard::errors::Error::JsonDataError {
                            message: e.to_string(),
                            column: e.column(),
                        }
                    });
                    return Some((item, (body, buf, done)));
                }
                if done {
                    if buf.trim_ascii().is_empty() {
                        return None;
                    }
                    buf.push(b'\n');
                    continue;
                }
                if buf.len() > LINE_LIMIT {
                    let err = bollard::errors::Error::DockerStreamError {
                        error: "the daemon sent a build message over 16 MiB".to_owned(),
                    };
                    return Some((Err(err), (body, Vec::new(), true)));
                }
                match body.next().await {
                    Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                    Some(Err(e)) => {
                        let err = bollard::errors::Error::HyperResponseError { err: e };
                        return Some((Err(err), (body, Vec::new(), true)));
                    }
                    None => done = true,
                }
            }
        },
    )
}
