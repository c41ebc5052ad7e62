//! Reading policy text into a [`Policy`]: wrong types, unknown or missing fields stop here, each
//! named by its rule and path.

use serde_json::{Map, Value};

use super::{Policy, Problem, Rule, problem};

const RULE_KEYS: &[&str] = &["rulePriority", "description", "selection", "action"];
const SELECTION_KEYS: &[&str] = &[
    "tagStatus",
    "tagPatternList",
    "tagPrefixList",
    "storageClass",
    "countType",
    "countUnit",
    "countNumber",
];
const ACTION_KEYS: &[&str] = &["type", "targetStorageClass"];

fn kind(value: &Value) -> &'static str {
    shared::document::describe_value(value)
}

/// Reads a field that must be an object, naming unknown keys.
fn object<'a>(
    value: &'a Value,
    at: &str,
    allowed: &[&str],
) -> Result<&'a Map<String, Value>, Problem> {
    let Some(map) = value.as_object() else {
        return Err(problem(
            at,
            format!("expected an object, found {}", kind(value)),
        ));
    };
    for key in map.keys() {
        if !allowed.contains(&key.as_str()) {
            return Err(problem(
                format!("{at}.{key}"),
                format!("unknown field (allowed: {})", allowed.join(", ")),
            ));
        }
    }
    Ok(map)
}

fn string(map: &Map<String, Value>, key: &str, at: &str) -> Result<Option<String>, Problem> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(problem(
            format!("{at}{key}"),
            format!("expected a string, found {}", kind(other)),
        )),
    }
}

fn integer(map: &Map<String, Value>, key: &str, at: &str) -> Result<Option<i64>, Problem> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| problem(format!("{at}{key}"), "is too large")),
        Some(other) => Err(problem(
            format!("{at}{key}"),
            format!("expected an integer, found {}", describe_number(other)),
        )),
    }
}

fn describe_number(value: &Value) -> String {
    match value {
        Value::Number(n) => format!("{n}"),
        other => kind(other).to_owned(),
    }
}

fn strings(map: &Map<String, Value>, key: &str, at: &str) -> Result<Option<Vec<String>>, Problem> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_str().map(str::to_owned).ok_or_else(|| {
                    problem(
                        format!("{at}{key}[{i}]"),
                        format!("expected a string, found {}", kind(item)),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(problem(
            format!("{at}{key}"),
            format!("expected an array of strings, found {}", kind(other)),
        )),
    }
}

fn required<T>(value: Option<T>, at: &str, key: &str) -> Result<T, Problem> {
    value.ok_or_else(|| problem(format!("{at}{key}"), "is required"))
}

impl Policy {
    /// Parses policy text. Shape errors (wrong types, unknown or missing fields) stop here;
    /// the documented constraints are checked by [`Policy::validate`].
    pub fn parse(text: &str) -> Result<Self, Problem> {
        let value: Value = serde_json::from_str(text).map_err(|e| {
            problem(
                "policy",
                format!(
                    "not valid JSON at line {} column {}: {}",
                    e.line(),
                    e.column(),
                    json_reason(&e)
                ),
            )
        })?;
        Self::from_value(&value)
    }

    /// Reads a policy from parsed JSON.
    pub fn from_value(value: &Value) -> Result<Self, Problem> {
        let top = object(value, "policy", &["rules"])?;
        let rules = match top.get("rules") {
            Some(Value::Array(rules)) => rules,
            Some(other) => {
                return Err(problem(
                    "policy.rules",
                    format!("expected an array, found {}", kind(other)),
                ));
            }
            None => return Err(problem("policy.rules", "is required")),
        };
        let mut parsed = Vec::with_capacity(rules.len());
        for (i, rule) in rules.iter().enumerate() {
            let priority_hint = rule
                .get("rulePriority")
                .map_or_else(String::new, |p| format!(" (rulePriority {p})"));
            let at = format!("rules[{i}]{priority_hint}");
            parsed.push(parse_rule(rule, &at)?);
        }
        Ok(Self { rules: parsed })
    }
}

fn json_reason(err: &serde_json::Error) -> String {
    let text = err.to_string();
    text.rfind(" at line ")
        .map_or(text.as_str(), |end| &text[..end])
        .to_owned()
}

fn parse_rule(value: &Value, at: &str) -> Result<Rule, Problem> {
    let rule = object(value, at, RULE_KEYS)?;
    let field = format!("{at}: ");
    let priority = required(
        integer(rule, "rulePriority", &field)?,
        &field,
        "rulePriority",
    )?;
    let description = string(rule, "description", &field)?;
    let selection_value = required(rule.get("selection"), &field, "selection")?;
    let selection = object(selection_value, &format!("{at}: selection"), SELECTION_KEYS)?;
    let sel = format!("{at}: selection.");
    let action_value = required(rule.get("action"), &field, "action")?;
    let action = object(action_value, &format!("{at}: action"), ACTION_KEYS)?;
    let act = format!("{at}: action.");
    Ok(Rule {
        priority,
        description,
        tag_status: required(string(selection, "tagStatus", &sel)?, &sel, "tagStatus")?,
        tag_prefixes: strings(selection, "tagPrefixList", &sel)?,
        tag_patterns: strings(selection, "tagPatternList", &sel)?,
        storage_class: string(selection, "storageClass", &sel)?,
        count_type: required(string(selection, "countType", &sel)?, &sel, "countType")?,
        count_unit: string(selection, "countUnit", &sel)?,
        count_number: required(
            integer(selection, "countNumber", &sel)?,
            &sel,
            "countNumber",
        )?,
        action: required(string(action, "type", &act)?, &act, "type")?,
        target_storage_class: string(action, "targetStorageClass", &act)?,
    })
}
