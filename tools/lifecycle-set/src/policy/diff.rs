//! The difference between two policies, rule by priority, in their normal form.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use super::{Policy, Rule};

/// One line of the difference between two policies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A rule only the new policy has.
    Added(String),
    /// A rule only the current policy has.
    Removed(String),
    /// A field of a rule both have: path, old value, new value (compact JSON, or `-` if absent).
    Changed(String, String, String),
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Added(rule) => write!(f, "+ {rule}"),
            Change::Removed(rule) => write!(f, "- {rule}"),
            Change::Changed(path, old, new) => write!(f, "~ {path}: {old} -> {new}"),
        }
    }
}

fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&path, item, out);
            }
        }
        other => {
            out.insert(prefix.to_owned(), other.to_string());
        }
    }
}

/// The difference from `current` to `wanted`, compared in normalised form, rule by priority.
#[must_use]
pub fn diff(current: &Policy, wanted: &Policy) -> Vec<Change> {
    let by_priority = |policy: &Policy| -> BTreeMap<i64, (Rule, BTreeMap<String, String>)> {
        let normal = policy.normalised();
        let mut map = BTreeMap::new();
        for (rule, value) in policy.sorted().into_iter().zip(
            normal["rules"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default(),
        ) {
            let mut fields = BTreeMap::new();
            flatten("", value, &mut fields);
            map.insert(rule.priority, (rule.clone(), fields));
        }
        map
    };
    let old = by_priority(current);
    let new = by_priority(wanted);
    let mut changes = Vec::new();
    for (priority, (rule, fields)) in &old {
        match new.get(priority) {
            None => changes.push(Change::Removed(rule.summary())),
            Some((_, new_fields)) => {
                let keys: std::collections::BTreeSet<&String> =
                    fields.keys().chain(new_fields.keys()).collect();
                for key in keys {
                    let a = fields.get(key).map_or("-", String::as_str);
                    let b = new_fields.get(key).map_or("-", String::as_str);
                    if a != b {
                        changes.push(Change::Changed(
                            format!("rule {priority} {key}"),
                            a.to_owned(),
                            b.to_owned(),
                        ));
                    }
                }
            }
        }
    }
    for (priority, (rule, _)) in &new {
        if !old.contains_key(priority) {
            changes.push(Change::Added(rule.summary()));
        }
    }
    changes
}
