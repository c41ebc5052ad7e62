//! Reading image documents from stdin and writing them to stdout.
//!
//! Input is nothing (stdin is a terminal, or `--no-input`), one JSON object, or a stream of objects
//! (NDJSON or simply concatenated), read as it arrives. Empty input counts as nothing, so a tool
//! works alone in a buildspec whose stdin is empty. Output is one compact JSON object per line per
//! input object, flushed at once so the next tool in a pipeline can start.
//!
//! Errors in the input name the record, the line and column or the field path, and exit with
//! [`crate::exit::DATA`] before that record is acted on.

use std::cell::Cell;
use std::io::{self, BufRead, Read, Write};
use std::rc::Rc;

use serde_json::Value;

use crate::document::Document;
use crate::error::{Error, Result};

/// Where the next record starts, shared between the reader and [`Records`].
#[derive(Default)]
struct Position {
    /// The current line, 1-based.
    line: Cell<usize>,
    /// Whether the reader is between records (only whitespace seen since the last one).
    between: Cell<bool>,
    /// The line of the first byte of the record being read.
    start_line: Cell<usize>,
    /// Bytes of the record being read so far.
    size: Cell<u64>,
    /// Whether the record being read passed [`RECORD_LIMIT`].
    too_large: Cell<bool>,
}

/// The largest input record: an image document is a few kilobytes; a stream that never ends a
/// record (`/dev/zero` is refused at its first byte, an endless string is not) stops here.
pub const RECORD_LIMIT: u64 = 16 << 20;

/// A reader that notes the line on which each record starts. serde_json reads one byte at a
/// time from it, so what it sees is exactly what the parser consumed.
struct Tracking<R> {
    inner: R,
    position: Rc<Position>,
}

impl<R: Read> Read for Tracking<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &byte in &buf[..n] {
            if self.position.between.get() && !byte.is_ascii_whitespace() {
                self.position.between.set(false);
                self.position.start_line.set(self.position.line.get());
                self.position.size.set(0);
            }
            if !self.position.between.get() {
                self.position.size.set(self.position.size.get() + 1);
                if self.position.size.get() > RECORD_LIMIT {
                    self.position.too_large.set(true);
                    return Err(io::Error::from(io::ErrorKind::InvalidData));
                }
            }
            if byte == b'\n' {
                self.position.line.set(self.position.line.get() + 1);
            }
        }
        Ok(n)
    }
}

/// The documents of a JSON stream, in order.
pub struct Records<R: Read> {
    stream: serde_json::StreamDeserializer<'static, serde_json::de::IoRead<Tracking<R>>, Value>,
    position: Rc<Position>,
    count: usize,
    done: bool,
}

impl<R: BufRead> Records<R> {
    /// Reads documents from `reader`.
    pub fn new(reader: R) -> Self {
        let position = Rc::new(Position::default());
        position.line.set(1);
        position.between.set(true);
        let tracking = Tracking {
            inner: reader,
            position: Rc::clone(&position),
        };
        Self {
            stream: serde_json::Deserializer::from_reader(tracking).into_iter(),
            position,
            count: 0,
            done: false,
        }
    }
}

impl<R: BufRead> Iterator for Records<R> {
    type Item = Result<Document>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        self.position.between.set(true);
        let item = self.stream.next()?;
        self.count += 1;
        let result = match item {
            Ok(value) => {
                let at = format!(
                    "input record {} (line {})",
                    self.count,
                    self.position.start_line.get()
                );
                Document::from_value(value, &at)
            }
            Err(_) if self.position.too_large.get() => Err(Error::data(format!(
                "input record {} (line {}) is larger than {}, the limit for a document",
                self.count,
                self.position.start_line.get(),
                crate::show::limit(RECORD_LIMIT)
            ))
            .with_hint("the input must be image documents, as the imgpipe tools write them")),
            Err(err) => Err(json_error(&err, self.count)),
        };
        if result.is_err() {
            self.done = true;
        }
        Some(result)
    }
}

fn json_error(err: &serde_json::Error, record: usize) -> Error {
    if err.is_io() {
        let io = io::Error::other(err.to_string());
        return Error::read_io("reading standard input", &io);
    }
    // serde_json's message ends with " at line L column C"; put the position first instead.
    let text = err.to_string();
    let reason = text
        .rfind(" at line ")
        .map_or(text.as_str(), |end| &text[..end]);
    Error::data(format!(
        "input record {record} is not valid JSON at line {} column {}: {reason}",
        err.line(),
        err.column()
    ))
    .with_hint("each input record must be a JSON object, as the imgpipe tools write them")
}

/// Where the documents come from.
pub enum Input<R: Read> {
    /// No input: one empty document, from flags alone.
    Nothing,
    /// A stream of documents.
    Stream(Records<R>),
}

/// Opens stdin as the tools read it: nothing when it is a terminal or `no_input` is set.
#[must_use]
pub fn stdin_input(no_input: bool) -> Input<io::StdinLock<'static>> {
    use std::io::IsTerminal;
    let stdin = io::stdin();
    if no_input || stdin.is_terminal() {
        Input::Nothing
    } else {
        Input::Stream(Records::new(stdin.lock()))
    }
}

/// Prints one JSON value to stdout, pretty, for a person or a file to read (an IAM policy):
/// one way for every tool, flushed at once.
pub fn print_pretty(value: &Value) -> Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)
        .map_err(io::Error::from)
        .and_then(|()| writeln!(out))
        .and_then(|()| out.flush())
        .map_err(|e| Error::write_io("writing to standard output", &e))
}

/// Writes documents to stdout: whole, one compact line each, or one field raw. A person
/// reading a terminal gets each document pretty-printed instead ([`Output::stdout`]).
pub struct Output<W: Write> {
    out: W,
    field: Option<String>,
    pretty: bool,
}

impl Output<io::StdoutLock<'static>> {
    /// Writes to stdout: pretty-printed when stdout is a terminal (a person reads it), one
    /// compact line per document when it is a pipe or a file (the next tool reads it).
    #[must_use]
    pub fn stdout(field: Option<String>) -> Self {
        use std::io::IsTerminal;
        let stdout = io::stdout();
        let pretty = stdout.is_terminal();
        Self {
            out: stdout.lock(),
            field,
            pretty,
        }
    }
}

impl<W: Write> Output<W> {
    /// Writes to `out`; with `field`, writes only that field's value, raw (see [`raw_lines`]).
    pub fn new(out: W, field: Option<String>) -> Self {
        Self {
            out,
            field,
            pretty: false,
        }
    }

    /// Checks, before a step acts on `input`, that `--field` can name something in its result:
    /// a field the tools write, or one the input document already holds. A typo is a usage
    /// error found before a push or a write, not after.
    pub fn check(&self, input: &Document) -> Result<()> {
        let Some(path) = &self.field else {
            return Ok(());
        };
        let top = path.split('.').next().unwrap_or_default();
        let known = crate::document::FIELDS.iter().any(|f| f.name == top);
        if known || input.get(top).is_some() {
            return Ok(());
        }
        let names: Vec<&str> = crate::document::FIELDS.iter().map(|f| f.name).collect();
        Err(Error::new(
            crate::exit::USAGE,
            format!("--field {path}: the image document has no field {top}"),
        )
        .with_hint(format!("name one of {}", names.join(", "))))
    }

    /// Writes one document and flushes.
    pub fn write(&mut self, document: Document) -> Result<()> {
        let stdout_error = |e: &io::Error| Error::write_io("writing to standard output", e);
        match &self.field {
            None => {
                let value = document.into_value();
                let written = if self.pretty {
                    serde_json::to_writer_pretty(&mut self.out, &value)
                } else {
                    serde_json::to_writer(&mut self.out, &value)
                };
                written.map_err(|e| stdout_error(&io::Error::from(e)))?;
                self.out.write_all(b"\n").map_err(|e| stdout_error(&e))?;
            }
            Some(path) => {
                let value = document.lookup(path).ok_or_else(|| {
                    Error::data(format!("the output document has no field {path}"))
                        .with_hint("run without --field to see the whole document")
                })?;
                for line in raw_lines(value) {
                    writeln!(self.out, "{line}").map_err(|e| stdout_error(&e))?;
                }
            }
        }
        self.out.flush().map_err(|e| stdout_error(&e))
    }
}

/// A value as shell-friendly lines: a string as it is, an array one element per line, anything
/// else as compact JSON.
#[must_use]
pub fn raw_lines(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().flat_map(raw_lines).collect(),
        Value::Null => Vec::new(),
        other => vec![other.to_string()],
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_record_larger_than_the_limit_is_refused() {
        let endless = std::io::BufReader::new(std::io::repeat(b'a').take(RECORD_LIMIT + 10));
        let input = std::io::Cursor::new(b"{\"x\": \"".to_vec()).chain(endless);
        let mut records = Records::new(std::io::BufReader::new(input));
        let err = records.next().unwrap().unwrap_err();
        assert_eq!(err.code(), crate::exit::DATA);
        assert!(
            err.message().contains("larger than 16 MiB"),
            "{}",
            err.message()
        );
        assert!(records.next().is_none());
    }
    use serde_json::json;

    use super::*;
    use crate::exit;

    fn read_all(text: &str) -> Vec<Result<Document>> {
        Records::new(text.as_bytes()).collect()
    }

    #[test]
    fn reads_ndjson_and_concatenated_objects() {
        let docs = read_all("{\"a\":1}\n{\"a\":2}{\"a\":3}\n\n  {\"a\":\n4}");
        let values: Vec<Value> = docs
            .into_iter()
            .map(|d| d.unwrap().get("a").cloned().unwrap())
            .collect();
        assert_eq!(values, [json!(1), json!(2), json!(3), json!(4)]);
    }

    #[test]
    fn empty_input_has_no_records() {
        assert!(read_all("").is_empty());
        assert!(read_all(" \n\t\n").is_empty());
    }

    #[test]
    fn syntax_errors_give_line_and_column() {
        let docs = read_all("{\"a\":1}\n{\"a\": tru}\n{\"a\":3}");
        assert_eq!(docs.len(), 2, "reading stops at the first bad record");
        let err = docs[1].as_ref().unwrap_err();
        assert_eq!(err.code(), exit::DATA);
        assert!(
            err.message()
                .starts_with("input record 2 is not valid JSON at line 2 column"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn field_errors_name_the_record_and_its_line() {
        let docs = read_all("{}\n\n{\n \"tags\": [\"a\", 1]\n}");
        let err = docs[1].as_ref().unwrap_err();
        assert_eq!(
            err.message(),
            "input record 2 (line 3): field tags[1]: expected a string, found a number"
        );
    }

    #[test]
    fn truncated_input_is_an_error() {
        let docs = read_all("{\"a\":");
        let err = docs[0].as_ref().unwrap_err();
        assert!(
            err.message().contains("EOF while parsing"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn output_is_one_compact_line_per_document() {
        let mut buf = Vec::new();
        let mut out = Output::new(&mut buf, None);
        let mut d = Document::new();
        d.set("tags", vec!["a", "b"]);
        out.write(d.clone()).unwrap();
        out.write(d).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert_eq!(
            text,
            "{\"schema_version\":1,\"tags\":[\"a\",\"b\"]}\n{\"schema_version\":1,\"tags\":[\"a\",\"b\"]}\n"
        );
    }

    #[test]
    fn raw_field_prints_values_one_per_line() {
        let mut buf = Vec::new();
        let mut out = Output::new(&mut buf, Some("tags".into()));
        let mut d = Document::new();
        d.set("tags", vec!["a", "b"]);
        out.write(d.clone()).unwrap();
        assert_eq!(String::from_utf8(buf).unwrap(), "a\nb\n");
        let mut out = Output::new(Vec::new(), Some("digest".into()));
        let err = out.write(d).unwrap_err();
        assert!(err.message().contains("no field digest"));
    }
}
