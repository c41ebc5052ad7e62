//! The image document: the JSON object that flows through a pipeline of imgpipe tools.
//!
//! `ecr-login | img-tag | img-build | img-push | scan-gate` pass one document per image along.
//! Each tool reads it, adds or overwrites only the fields it owns, and writes it on. Fields a tool
//! does not know, nested ones included, pass through unchanged and in order, so a pipeline never
//! loses what an upstream step (or the user) put there.
//!
//! The known top-level fields and their types are listed once, in [`FIELDS`]; the JSON Schema in
//! `docs/image-document.schema.json` describes the same fields, and a test keeps the two equal.

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The version of the document format this build reads and writes.
pub const SCHEMA_VERSION: u64 = 1;

/// The shape a known field must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// A JSON string.
    String,
    /// A non-negative integer.
    Integer,
    /// `true` or `false`.
    Bool,
    /// An array of strings.
    Strings,
    /// An object whose values are strings.
    StringMap,
    /// An object (its own fields belong to the tool that writes it).
    Object,
    /// An array of objects.
    Objects,
}

impl Shape {
    fn describe(self) -> &'static str {
        match self {
            Shape::String => "a string",
            Shape::Integer => "a non-negative integer",
            Shape::Bool => "true or false",
            Shape::Strings => "an array of strings",
            Shape::StringMap => "an object of strings",
            Shape::Object => "an object",
            Shape::Objects => "an array of objects",
        }
    }
}

/// A known top-level field: its name, its shape and what it holds.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    /// The field's name (snake_case).
    pub name: &'static str,
    /// The shape its value must have.
    pub shape: Shape,
    /// What the field holds, for the docs.
    pub about: &'static str,
}

macro_rules! fields {
    ($($name:literal : $shape:ident, $about:literal;)*) => {
        /// Every known top-level field of the image document.
        pub const FIELDS: &[Field] = &[$(Field { name: $name, shape: Shape::$shape, about: $about }),*];
    };
}

fields! {
    "schema_version": Integer, "version of this document format";
    "registry": String, "registry host, with a port if not the default (123456789012.dkr.ecr.us-east-1.amazonaws.com)";
    "region": String, "AWS region of the registry";
    "account_id": String, "AWS account that owns the registry";
    "repository": String, "repository name within the registry (my-app, team/my-app)";
    "repository_uri": String, "registry/repository";
    "repository_arn": String, "ARN of the ECR repository";
    "tags": Strings, "tags of the image, without the repository";
    "references": Strings, "full image references, registry/repository:tag, one per tag";
    "image_id": String, "local image id (sha256:...) from the Docker Engine";
    "digest": String, "manifest digest (sha256:...) in the registry";
    "image_uri": String, "registry/repository:tag of the first tag";
    "digest_uri": String, "registry/repository@digest";
    "labels": StringMap, "labels to apply to the image (OCI labels from img-tag, --label)";
    "platform": String, "os/architecture[/variant] of the image";
    "platforms": Objects, "per-platform images of a multi-platform image";
    "login": Object, "what ecr-login stored: registry, username, expiry, where";
    "source": Object, "source facts (commit, branch, tag, build number) and where each came from";
    "build": Object, "what img-build did: context size and hash, duration";
    "push": Object, "what img-push did: tags pushed or already present, layers";
    "manifest": Object, "what img-manifest did: format, tags pushed or already present";
    "scan": Object, "scan status, counts and verdict from scan-gate";
    "repository_settings": Object, "repository settings ecr-repo ensured";
    "lifecycle": Object, "lifecycle policy result from lifecycle-set";
}

/// Looks up a known field by name.
#[must_use]
pub fn field(name: &str) -> Option<&'static Field> {
    FIELDS.iter().find(|f| f.name == name)
}

/// One image document: a JSON object whose known fields have the documented shapes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Document {
    fields: Map<String, Value>,
}

impl Document {
    /// An empty document (it gets its `schema_version` when written).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks a parsed JSON value and makes it a document. `at` says where the value came from
    /// (`record 2 (line 3)`), for the error message.
    pub fn from_value(value: Value, at: &str) -> Result<Self> {
        let Value::Object(fields) = value else {
            return Err(Error::data(format!(
                "{at}: expected a JSON object, found {}",
                describe_value(&value)
            ))
            .with_hint("each input record must be an image document, {...}"));
        };
        for (name, value) in &fields {
            if let Some(field) = field(name) {
                check_shape(name, field.shape, value).map_err(|e| e.context(at))?;
            }
        }
        if let Some(version) = fields.get("schema_version").and_then(Value::as_u64)
            && version != SCHEMA_VERSION
        {
            return Err(Error::data(format!(
                "{at}: schema_version {version} is not supported (this build reads version {SCHEMA_VERSION})"
            ))
            .with_hint("use imgpipe tools of the same release across the pipeline"));
        }
        Ok(Self { fields })
    }

    /// The value of a field.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields.get(name)
    }

    /// A string field's value (`None` when absent, null or not a string).
    #[must_use]
    pub fn str(&self, name: &str) -> Option<&str> {
        self.fields.get(name).and_then(Value::as_str)
    }

    /// A string-array field's values (empty when absent).
    #[must_use]
    pub fn strings(&self, name: &str) -> Vec<&str> {
        self.fields
            .get(name)
            .and_then(Value::as_array)
            .map(|items| items.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }

    /// Sets a field, keeping its place if it exists. Panics in debug builds if a known field gets
    /// a value of the wrong shape: that is a bug in the tool, not bad input.
    pub fn set(&mut self, name: &str, value: impl Into<Value>) {
        let value = value.into();
        debug_assert!(
            field(name).is_none_or(|f| check_shape(name, f.shape, &value).is_ok()),
            "tool wrote field {name} with the wrong shape"
        );
        self.fields.insert(name.to_owned(), value);
    }

    /// Sets a string field when `value` is `Some` (a flag given on the command line): flags
    /// override input fields.
    pub fn set_some(&mut self, name: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.set(name, value);
        }
    }

    /// Removes a field, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        self.fields.shift_remove(name)
    }

    /// The document as a JSON object, with `schema_version` first.
    #[must_use]
    pub fn into_value(mut self) -> Value {
        self.fields.shift_remove("schema_version");
        self.fields
            .shift_insert(0, "schema_version".to_owned(), Value::from(SCHEMA_VERSION));
        Value::Object(self.fields)
    }

    /// Looks up a dotted path (`login.registry`, `tags`, `platforms.0.digest`).
    #[must_use]
    pub fn lookup(&self, path: &str) -> Option<&Value> {
        let mut parts = path.split('.');
        let mut current = self.fields.get(parts.next()?)?;
        for part in parts {
            current = match current {
                Value::Object(map) => map.get(part)?,
                Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(current)
    }
}

fn check_shape(name: &str, shape: Shape, value: &Value) -> Result<()> {
    let wrong = |path: String, found: &Value| {
        Error::data(format!(
            "field {path}: expected {}, found {}",
            shape.describe(),
            describe_value(found)
        ))
    };
    let ok = match (shape, value) {
        (Shape::String, Value::String(_))
        | (Shape::Bool, Value::Bool(_))
        | (Shape::Object, Value::Object(_)) => true,
        (Shape::Integer, Value::Number(n)) => n.is_u64(),
        (Shape::Strings, Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                if !item.is_string() {
                    return Err(Error::data(format!(
                        "field {name}[{i}]: expected a string, found {}",
                        describe_value(item)
                    )));
                }
            }
            true
        }
        (Shape::StringMap, Value::Object(map)) => {
            for (key, item) in map {
                if !item.is_string() {
                    return Err(Error::data(format!(
                        "field {name}.{key}: expected a string, found {}",
                        describe_value(item)
                    )));
                }
            }
            true
        }
        (Shape::Objects, Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                if !item.is_object() {
                    return Err(Error::data(format!(
                        "field {name}[{i}]: expected an object, found {}",
                        describe_value(item)
                    )));
                }
            }
            true
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(wrong(name.to_owned(), value))
    }
}

/// A JSON value's kind in words, for error messages (`a number`, `an array`).
#[must_use]
pub fn describe_value(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn doc(value: Value) -> Result<Document> {
        Document::from_value(value, "record 1 (line 1)")
    }

    #[test]
    fn unknown_fields_pass_through_in_order() {
        let input = json!({"zeta": {"deep": [1, {"x": null}]}, "repository": "app", "alpha": 1});
        let mut d = doc(input).unwrap();
        d.set("tags", vec!["v1"]);
        let out = d.into_value();
        let keys: Vec<&String> = out.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["schema_version", "zeta", "repository", "alpha", "tags"]
        );
        assert_eq!(out["zeta"], json!({"deep": [1, {"x": null}]}));
    }

    #[test]
    fn wrong_shapes_name_the_field_path() {
        let err = doc(json!({"tags": ["a", 3]})).unwrap_err();
        assert_eq!(
            err.message(),
            "record 1 (line 1): field tags[1]: expected a string, found a number"
        );
        let err = doc(json!({"labels": {"a": "b", "c": false}})).unwrap_err();
        assert!(
            err.message()
                .ends_with("field labels.c: expected a string, found a boolean")
        );
        let err = doc(json!({"registry": 5})).unwrap_err();
        assert!(
            err.message()
                .ends_with("field registry: expected a string, found a number")
        );
        assert_eq!(err.code(), crate::exit::DATA);
    }

    #[test]
    fn only_objects_are_documents() {
        let err = doc(json!([1, 2])).unwrap_err();
        assert!(
            err.message()
                .contains("expected a JSON object, found an array")
        );
    }

    #[test]
    fn other_schema_versions_are_refused() {
        assert!(doc(json!({"schema_version": 1})).is_ok());
        let err = doc(json!({"schema_version": 2})).unwrap_err();
        assert!(err.message().contains("schema_version 2 is not supported"));
        let err = doc(json!({"schema_version": "1"})).unwrap_err();
        assert!(
            err.message()
                .contains("field schema_version: expected a non-negative integer")
        );
    }

    #[test]
    fn lookup_follows_dotted_paths() {
        let d = doc(json!({"platforms": [{"digest": "sha256:ab"}], "login": {"registry": "r"}}))
            .unwrap();
        assert_eq!(d.lookup("platforms.0.digest"), Some(&json!("sha256:ab")));
        assert_eq!(d.lookup("login.registry"), Some(&json!("r")));
        assert_eq!(d.lookup("login.missing"), None);
    }
}
