//! `--secret` in docker's syntax, and `moby.buildkit.secrets.v1.Secrets/GetSecret`.
//!
//! `--secret id=ID[,src=PATH]`, `--secret id=ID,env=VAR` and `type=file|env`, as buildx reads
//! them (fields separated by commas, CSV quoting allowed, keys in any case, `source` for `src`).
//! With neither `src` nor `env`, the environment variable named ID is used when it is set, else
//! the file named ID, as BuildKit's secret store does. Every value is read before the build
//! starts, and a missing one is a usage error then. Values are held here and only ever leave in
//! the answer to the daemon's `GetSecret`: never in argv, a message, the document or the image.

use std::collections::HashMap;
use std::path::PathBuf;

use bollard_buildkit_proto::moby::buildkit::secrets::v1::secrets_server;
use bollard_buildkit_proto::moby::buildkit::secrets::v1::{GetSecretRequest, GetSecretResponse};
use shared::{Error, Result, exit};
use tonic::{Request, Response, Status};

/// BuildKit's limit on a secret (`MaxSecretSize`, 500 KB).
pub(crate) const SECRET_LIMIT: u64 = 500 * 1024;

/// Where a secret's value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    /// A file.
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// Not said: the variable named by the id when it is set, else the file.
    Either,
}

/// One `--secret`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretSpec {
    /// The id a `RUN --mount=type=secret,id=ID` names.
    pub id: String,
    /// Where its value is.
    pub source: SecretSource,
}

/// Splits one CSV record (Go's `encoding/csv`, one line): commas separate, double quotes quote.
pub(crate) fn csv_fields(text: &str) -> std::result::Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            '"' if quoted => quoted = false,
            '"' if at_start => quoted = true,
            ',' if !quoted => {
                fields.push(std::mem::take(&mut field));
                at_start = true;
                continue;
            }
            '\n' | '\r' if !quoted => return Err("a line break in the value".to_owned()),
            other => field.push(other),
        }
        at_start = false;
    }
    if quoted {
        return Err("an unclosed quote".to_owned());
    }
    fields.push(field);
    Ok(fields)
}

/// Parses a `--secret` value (clap's value parser: a bad one is a usage error).
pub fn parse_secret(text: &str) -> std::result::Result<SecretSpec, String> {
    let mut id = None;
    let mut src = None;
    let mut env = None;
    let mut kind = None;
    for field in csv_fields(text)? {
        let Some((key, value)) = field.split_once('=') else {
            return Err(format!(
                "invalid field '{field}': it must be a key=value pair"
            ));
        };
        match key.to_ascii_lowercase().as_str() {
            "type" if value == "file" || value == "env" => kind = Some(value.to_owned()),
            "type" => return Err(format!("unsupported secret type '{value}' (file or env)")),
            "id" => id = Some(value.to_owned()),
            "src" | "source" => src = Some(value.to_owned()),
            "env" => env = Some(value.to_owned()),
            other => {
                return Err(format!(
                    "unexpected key '{other}' (id, src, source, env, type)"
                ));
            }
        }
    }
    let id = id
        .filter(|i| !i.is_empty())
        .ok_or_else(|| "the secret id is missing: write id=ID".to_owned())?;
    if kind.as_deref() == Some("env") && env.is_none() {
        env = src.take();
    }
    let source = match (src, env) {
        (Some(_), Some(_)) => return Err("give either src or env, not both".to_owned()),
        (Some(path), None) if !path.is_empty() => SecretSource::File(PathBuf::from(path)),
        (None, Some(var)) if !var.is_empty() => SecretSource::Env(var),
        (None, None) if kind.as_deref() == Some("env") => SecretSource::Env(id.clone()),
        (None, None) if kind.as_deref() == Some("file") => SecretSource::File(PathBuf::from(&id)),
        (None, None) => SecretSource::Either,
        _ => return Err("src and env need a value".to_owned()),
    };
    Ok(SecretSpec { id, source })
}

/// A secret's bytes; formatting hides them.
struct Value(Vec<u8>);

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The secrets of a build, read before it starts.
#[derive(Debug, Default)]
pub(crate) struct Secrets {
    values: HashMap<String, Value>,
}

fn usage(message: String) -> Error {
    Error::new(exit::USAGE, message)
}

impl Secrets {
    /// Reads every secret's value; a missing one is a usage error that names the id and where
    /// it was looked for, never the value.
    pub(crate) fn load(specs: &[SecretSpec], env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut values = HashMap::new();
        for spec in specs {
            let id = &spec.id;
            let file = |path: &PathBuf| -> Result<Vec<u8>> {
                if std::fs::symlink_metadata(path).is_err() {
                    return Err(usage(format!(
                        "--secret id={id}: the file {} does not exist",
                        path.display()
                    ))
                    .with_hint("give src=PATH of an existing file, or env=VAR"));
                }
                shared::files::read_regular(path, SECRET_LIMIT, "secret file").map_err(|e| {
                    usage(format!("--secret id={id}: {}", e.message()))
                        .with_hint("a secret is a regular file of at most 500 KB")
                })
            };
            let value = match &spec.source {
                SecretSource::File(path) => file(path)?,
                SecretSource::Env(var) => env(var).map(String::into_bytes).ok_or_else(|| {
                    usage(format!(
                        "--secret id={id}: the environment variable {var} is not set"
                    ))
                    .with_hint("export it before the build, or give src=PATH")
                })?,
                SecretSource::Either => match env(id) {
                    Some(v) => v.into_bytes(),
                    None => file(&PathBuf::from(id))?,
                },
            };
            if value.len() as u64 > SECRET_LIMIT {
                return Err(usage(format!(
                    "--secret id={id}: the value is over BuildKit's limit of 500 KB"
                )));
            }
            values.insert(id.clone(), Value(value));
        }
        Ok(Self { values })
    }
}

#[tonic::async_trait]
impl secrets_server::Secrets for Secrets {
    async fn get_secret(
        &self,
        request: Request<GetSecretRequest>,
    ) -> std::result::Result<Response<GetSecretResponse>, Status> {
        let id = request.into_inner().id;
        match self.values.get(&id) {
            Some(value) => Ok(Response::new(GetSecretResponse {
                data: value.0.clone(),
            })),
            None => Err(Status::not_found(format!(
                "secret {id} not found: pass it with --secret id={id}"
            ))),
        }
    }
}
