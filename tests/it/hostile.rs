//! Hostile peers on loopback for the trust-boundary tests: an HTTP listener that logs every
//! request it receives (so a test can prove that no credential reached it) and answers as the
//! test says, including with an endless body or not at all.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the listener answers one request.
pub enum Reply {
    /// A status, extra headers and a body.
    Status(u16, Vec<(String, String)>, Vec<u8>),
    /// `200 OK` with these headers and a body that never ends (chunked).
    Endless(Vec<(String, String)>),
    /// Nothing at all: the connection stays open and silent.
    Hang,
}

impl Reply {
    /// `401 Unauthorized` with this `WWW-Authenticate` challenge.
    pub fn challenge(value: &str) -> Self {
        Self::Status(
            401,
            vec![("WWW-Authenticate".to_owned(), value.to_owned())],
            br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#.to_vec(),
        )
    }

    /// `200 OK` with an empty JSON body (`GET /v2/` of an open registry).
    pub fn ok() -> Self {
        Self::Status(200, Vec::new(), b"{}".to_vec())
    }
}

/// A request as received: its request line and headers, as text.
#[derive(Clone, Debug)]
pub struct Request {
    /// `GET /v2/ HTTP/1.1`.
    pub line: String,
    /// The headers, names lowercased.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The path of the request line.
    pub fn path(&self) -> &str {
        self.line.split(' ').nth(1).unwrap_or_default()
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A listener on a free loopback port, logging every request, answering with `respond`.
pub struct Listener {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    requests: Arc<Mutex<Vec<Request>>>,
    connections: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
}

impl Listener {
    /// Starts listening; each connection is served on its own thread until the test process
    /// ends.
    pub fn start(respond: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
        let addr = listener.local_addr().expect("local address").to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicU64::new(0));
        let sent = Arc::new(AtomicU64::new(0));
        let respond = Arc::new(respond);
        let (log, count, bytes) = (requests.clone(), connections.clone(), sent.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                let (log, bytes, respond) = (log.clone(), bytes.clone(), respond.clone());
                std::thread::spawn(move || serve(stream, &log, &bytes, &*respond));
            }
        });
        Self {
            addr,
            requests,
            connections,
            sent,
        }
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// How many connections were accepted (a TLS handshake counts, though it is no request).
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    /// How many body bytes an endless reply managed to send.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    /// The `Authorization` headers received.
    pub fn authorizations(&self) -> Vec<String> {
        self.requests()
            .iter()
            .filter_map(|r| r.header("authorization").map(str::to_owned))
            .collect()
    }
}

fn serve(
    stream: TcpStream,
    log: &Mutex<Vec<Request>>,
    sent: &AtomicU64,
    respond: &(dyn Fn(&Request) -> Reply + Send + Sync),
) {
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut out = write_half;
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = Vec::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        let request = Request {
            line: line.trim_end().to_owned(),
            headers,
        };
        let length: u64 = request
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let _ = std::io::copy(&mut (&mut reader).take(length), &mut std::io::sink());
        log.lock().unwrap().push(request.clone());
        let head_only = request.line.starts_with("HEAD ");
        match respond(&request) {
            Reply::Status(status, headers, body) => {
                let mut head = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
                if !headers
                    .iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
                {
                    head.push_str("Content-Type: application/json\r\n");
                }
                for (name, value) in headers {
                    let _ = write!(head, "{name}: {value}\r\n");
                }
                head.push_str("\r\n");
                // A HEAD answer has no body, or the client reads it as the next answer.
                let body: &[u8] = if head_only { &[] } else { &body };
                if out.write_all(head.as_bytes()).is_err() || out.write_all(body).is_err() {
                    return;
                }
            }
            Reply::Endless(headers) => {
                let mut head = String::from("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n");
                for (name, value) in headers {
                    let _ = write!(head, "{name}: {value}\r\n");
                }
                head.push_str("\r\n");
                if out.write_all(head.as_bytes()).is_err() {
                    return;
                }
                if head_only {
                    continue;
                }
                let chunk = vec![b' '; 65536];
                loop {
                    let ok = out
                        .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                        .and_then(|()| out.write_all(&chunk))
                        .and_then(|()| out.write_all(b"\r\n"));
                    if ok.is_err() {
                        return;
                    }
                    sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                }
            }
            Reply::Hang => {
                std::thread::sleep(Duration::from_secs(3600));
                return;
            }
        }
    }
}
