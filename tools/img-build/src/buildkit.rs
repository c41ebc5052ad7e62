//! BuildKit's progress, as the daemon streams it during a `version=2` build: `moby.buildkit.trace`
//! messages, each a BuildKit `StatusResponse` (vertexes with names and cached/started/completed
//! state, their log output, warnings), turned into plain numbered lines for a CI log, like
//! BuildKit's own `--progress=plain`:
//!
//! ```text
//! #4 [base 2/3] RUN make
//! #4 compiling...
//! #4 DONE 2.1s
//! #5 [base 3/3] COPY app /app
//! #5 CACHED
//! ```
//!
//! It also remembers, per vertex, the last output lines, so a failing step can be reported with
//! them, and counts the Dockerfile's steps (vertexes named `[stage N/M] ...`) and how many came
//! from the cache.

use std::collections::{HashMap, VecDeque};

use bollard::moby::buildkit::v1::StatusResponse;

use crate::LAST_LINES;
use crate::stream::plain;

/// What is known about one vertex (one step or internal operation of the build).
#[derive(Debug, Default)]
struct Vertex {
    /// Its number in the output (`#4`), in order of first appearance in the output; 0 until then.
    number: usize,
    name: String,
    announced: bool,
    finished: bool,
    /// Log output not yet ended by a newline.
    partial: String,
    last: VecDeque<String>,
}

/// The progress of a BuildKit build, fed with the daemon's trace messages.
#[derive(Debug, Default)]
pub struct Trace {
    vertexes: HashMap<String, Vertex>,
    /// How many vertexes have been numbered in the output.
    shown: usize,
    /// Steps (vertexes named `[... N/M] ...`) that finished.
    pub steps: u64,
    /// Of those, the ones answered from the cache.
    pub cached: u64,
    /// The digest of the vertex that failed, if one did.
    failed: Option<String>,
}

/// A failed step: its name, the error BuildKit gave it and its last output lines.
#[derive(Debug, PartialEq, Eq)]
pub struct Failure {
    /// The step as BuildKit names it (`[2/3] RUN make`).
    pub step: String,
    /// The last output lines of the step.
    pub last: Vec<String>,
}

/// Whether a vertex name is one of the Dockerfile's steps: `[1/3] FROM ...`, `[build 2/4] RUN ...`
/// (and not `[internal] load .dockerignore` or `exporting to image`).
#[must_use]
pub fn is_step(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('[') else {
        return false;
    };
    let Some(end) = rest.find(']') else {
        return false;
    };
    let inside = rest[..end].rsplit(' ').next().unwrap_or("");
    match inside.split_once('/') {
        Some((n, m)) => {
            !n.is_empty()
                && !m.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
                && m.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// Seconds between two protobuf timestamps given as (seconds, nanos).
fn seconds(started: Option<(i64, i32)>, done: Option<(i64, i32)>) -> Option<f64> {
    let (a, b) = (started?, done?);
    #[allow(clippy::cast_precision_loss)]
    let s = (b.0 - a.0) as f64 + f64::from(b.1 - a.1) / 1e9;
    Some(s.max(0.0))
}

/// One line of a build's progress, about one vertex: its name when it starts, a line of its
/// output, or how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The vertex's number in the output (`#4`).
    pub vertex: usize,
    /// What the line says.
    pub kind: LineKind,
    /// The text, without the number.
    pub text: String,
}

/// What a [`Line`] says of its vertex.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    /// The vertex started: the text is its name.
    Start,
    /// A line of its output, or a warning.
    Output,
    /// It ended: `DONE 1.2s`, `CACHED` or `ERROR: ...`.
    End,
}

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{} {}", self.vertex, self.text)
    }
}

impl Trace {
    /// The name of vertex `number`, as BuildKit gives it.
    #[must_use]
    pub fn name_of(&self, number: usize) -> Option<String> {
        self.vertexes
            .values()
            .find(|v| v.number == number)
            .map(|v| plain(&v.name))
    }

    /// Takes one status message; returns its lines, in order, each with its vertex.
    pub fn feed_lines(&mut self, status: &StatusResponse) -> Vec<Line> {
        let mut out = Vec::new();
        let line = |vertex: usize, kind: LineKind, text: String| Line { vertex, kind, text };
        for v in &status.vertexes {
            let mut failed_now = false;
            let mut counted = None;
            {
                let vertex = entry(&mut self.vertexes, &v.digest);
                if !v.name.is_empty() {
                    vertex.name.clone_from(&v.name);
                }
                if !vertex.announced && (v.started.is_some() || v.cached || v.completed.is_some()) {
                    vertex.announced = true;
                    out.push(line(
                        number(vertex, &mut self.shown),
                        LineKind::Start,
                        plain(&vertex.name),
                    ));
                }
                if !vertex.finished && (v.completed.is_some() || !v.error.is_empty()) {
                    vertex.finished = true;
                    let n = number(vertex, &mut self.shown);
                    if let Some(rest) = take_partial(vertex) {
                        out.push(line(n, LineKind::Output, rest));
                    }
                    if !v.error.is_empty() {
                        out.push(line(
                            n,
                            LineKind::End,
                            format!("ERROR: {}", shared::cli::one_line(&v.error)),
                        ));
                        failed_now = true;
                    } else if v.cached {
                        out.push(line(n, LineKind::End, "CACHED".into()));
                    } else {
                        let took = seconds(
                            v.started.as_ref().map(|t| (t.seconds, t.nanos)),
                            v.completed.as_ref().map(|t| (t.seconds, t.nanos)),
                        );
                        out.push(line(
                            n,
                            LineKind::End,
                            match took {
                                Some(s) => format!("DONE {s:.1}s"),
                                None => "DONE".into(),
                            },
                        ));
                    }
                    if is_step(&vertex.name) {
                        counted = Some(v.cached);
                    }
                }
            }
            if let Some(cached) = counted {
                self.steps += 1;
                if cached {
                    self.cached += 1;
                }
            }
            if failed_now && self.failed.is_none() {
                self.failed = Some(v.digest.clone());
            }
        }
        for log in &status.logs {
            let vertex = entry(&mut self.vertexes, &log.vertex);
            vertex.partial.push_str(&String::from_utf8_lossy(&log.msg));
            while let Some(end) = vertex.partial.find('\n') {
                let text: String = vertex.partial.drain(..=end).collect();
                let text = plain(text.trim_end_matches(['\n', '\r']));
                remember(vertex, &text);
                let n = number(vertex, &mut self.shown);
                out.push(line(n, LineKind::Output, text));
            }
        }
        for warning in &status.warnings {
            let n = number(entry(&mut self.vertexes, &warning.vertex), &mut self.shown);
            out.push(line(
                n,
                LineKind::Output,
                format!(
                    "WARNING: {}",
                    plain(&String::from_utf8_lossy(&warning.short))
                ),
            ));
        }
        out
    }

    /// The step that failed, with its error and last lines; `None` when no vertex failed (the
    /// build failed before or outside the steps).
    #[must_use]
    pub fn failure(&self) -> Option<Failure> {
        let digest = self.failed.as_ref()?;
        let vertex = self.vertexes.get(digest)?;
        let mut last: Vec<String> = vertex.last.iter().cloned().collect();
        if !vertex.partial.is_empty() {
            last.push(plain(&vertex.partial));
        }
        Some(Failure {
            step: plain(&vertex.name),
            last,
        })
    }
}

fn entry<'a>(vertexes: &'a mut HashMap<String, Vertex>, digest: &str) -> &'a mut Vertex {
    vertexes.entry(digest.to_owned()).or_default()
}

/// The vertex's number in the output, given when it is first shown.
fn number(vertex: &mut Vertex, shown: &mut usize) -> usize {
    if vertex.number == 0 {
        *shown += 1;
        vertex.number = *shown;
    }
    vertex.number
}

fn take_partial(vertex: &mut Vertex) -> Option<String> {
    if vertex.partial.is_empty() {
        return None;
    }
    let line = plain(&std::mem::take(&mut vertex.partial));
    remember(vertex, &line);
    Some(line)
}

fn remember(vertex: &mut Vertex, line: &str) {
    if vertex.last.len() == LAST_LINES {
        vertex.last.pop_front();
    }
    vertex.last.push_back(line.to_owned());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines of one status message as a plain log shows them.
    fn feed(t: &mut Trace, status: &StatusResponse) -> Vec<String> {
        t.feed_lines(status)
            .iter()
            .map(ToString::to_string)
            .collect()
    }
    use bollard::moby::buildkit::v1::{Vertex as V, VertexLog};

    /// A vertex started and maybe completed at these seconds (bollard does not export the
    /// timestamp type, so it is only reached through the fields).
    // The timestamp type cannot be named from here (bollard does not export it).
    #[allow(clippy::cast_possible_truncation, clippy::default_trait_access)]
    fn timed(mut v: V, started: f64, completed: Option<f64>) -> V {
        v.started = Some(Default::default());
        if let Some(t) = v.started.as_mut() {
            t.seconds = started.trunc() as i64;
            t.nanos = (started.fract() * 1e9).round() as i32;
        }
        if let Some(at) = completed {
            v.completed = Some(Default::default());
            if let Some(t) = v.completed.as_mut() {
                t.seconds = at.trunc() as i64;
                t.nanos = (at.fract() * 1e9).round() as i32;
            }
        }
        v
    }

    fn vertex(digest: &str, name: &str) -> V {
        V {
            digest: digest.to_owned(),
            name: name.to_owned(),
            ..V::default()
        }
    }

    fn log(digest: &str, text: &str) -> VertexLog {
        VertexLog {
            vertex: digest.to_owned(),
            msg: text.as_bytes().to_vec(),
            ..VertexLog::default()
        }
    }

    #[test]
    fn steps_are_the_dockerfile_instructions() {
        let cases = [
            ("[1/3] FROM local/busybox:1", true),
            ("[build 2/4] RUN make", true),
            ("[stage-1 10/12] COPY --from=build /a /a", true),
            ("[internal] load build definition from Dockerfile", false),
            ("[internal] load metadata for local/busybox:1", false),
            ("exporting to image", false),
            ("[a/b] RUN x", false),
            ("[1/] RUN x", false),
            ("", false),
        ];
        for (name, want) in cases {
            assert_eq!(is_step(name), want, "{name}");
        }
    }

    #[test]
    fn plain_lines_per_vertex_with_cache_and_times() {
        let mut t = Trace::default();
        let mut lines = feed(
            &mut t,
            &StatusResponse {
                vertexes: vec![
                    timed(vertex("a", "[internal] load .dockerignore"), 10.0, None),
                    timed(
                        V {
                            cached: true,
                            ..vertex("b", "[1/3] FROM local/busybox:1")
                        },
                        10.0,
                        Some(10.0),
                    ),
                ],
                ..StatusResponse::default()
            },
        );
        lines.extend(feed(
            &mut t,
            &StatusResponse {
                vertexes: vec![timed(vertex("c", "[2/3] RUN make"), 11.0, None)],
                logs: vec![
                    log("c", "compil"),
                    log("c", "ing\n\u{1b}[1mdone\u{1b}[0m\nrest"),
                ],
                ..StatusResponse::default()
            },
        ));
        lines.extend(feed(
            &mut t,
            &StatusResponse {
                vertexes: vec![
                    timed(vertex("c", "[2/3] RUN make"), 11.0, Some(13.5)),
                    timed(vertex("a", ""), 10.0, Some(10.1)),
                ],
                ..StatusResponse::default()
            },
        ));
        assert_eq!(
            lines,
            [
                "#1 [internal] load .dockerignore",
                "#2 [1/3] FROM local/busybox:1",
                "#2 CACHED",
                "#3 [2/3] RUN make",
                "#3 compiling",
                "#3 done",
                "#3 rest",
                "#3 DONE 2.5s",
                "#1 DONE 0.1s",
            ]
        );
        assert_eq!((t.steps, t.cached), (2, 1));
        assert_eq!(t.failure(), None);
    }

    #[test]
    fn a_failed_vertex_keeps_its_last_lines() {
        let mut t = Trace::default();
        let input = (0..20)
            .map(|i| format!("line {i}"))
            .collect::<Vec<_>>()
            .join("\n")
            + "\n";
        feed(
            &mut t,
            &StatusResponse {
                vertexes: vec![timed(vertex("x", "[2/2] RUN ./test.sh"), 1.0, None)],
                logs: vec![log("x", &input), log("other", "unrelated\n")],
                ..StatusResponse::default()
            },
        );
        let lines = feed(&mut t, &StatusResponse {
            vertexes: vec![timed(V {
                error: "process \"/bin/sh -c ./test.sh\" did not complete successfully: exit code: 3"
                    .to_owned(),
                ..vertex("x", "[2/2] RUN ./test.sh")
            }, 1.0, Some(2.0))],
            ..StatusResponse::default()
        });
        assert_eq!(
            lines,
            [
                "#1 ERROR: process \"/bin/sh -c ./test.sh\" did not complete successfully: exit code: 3"
            ]
        );
        let failure = t.failure().expect("a failure");
        assert_eq!(failure.step, "[2/2] RUN ./test.sh");
        assert_eq!(failure.last.len(), LAST_LINES);
        assert_eq!(failure.last.last().map(String::as_str), Some("line 19"));
        assert_eq!(t.steps, 1);
    }
}
