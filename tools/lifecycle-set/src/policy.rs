//! The lifecycle policy: parsing, validation against AWS's documented rules, normalisation and
//! the difference between two policies.
//!
//! The rules checked here come from AWS's "Lifecycle policy properties in Amazon ECR" and
//! "Lifecycle policy evaluation rules" pages and the PutLifecyclePolicy API reference (policy text
//! of 100 to 30,720 characters). They are checked locally because the ECR API server used in
//! tests (moto) accepts policies real ECR rejects, e.g. `tagStatus: tagged` with no tag list.
//! Every problem names the rule (`rules[1] (rulePriority 2)`) and the field.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde_json::{Map, Value, json};

/// Shortest policy text PutLifecyclePolicy accepts, in characters.
pub const MIN_TEXT: usize = 100;
/// Longest policy text PutLifecyclePolicy accepts, in characters.
pub const MAX_TEXT: usize = 30_720;
/// Most `*` wildcards a `tagPatternList` entry may have.
pub const MAX_WILDCARDS: usize = 4;
/// Days an image must stay archived before a rule may expire it (archive's minimum storage
/// duration: "You cannot configure lifecycle policies that delete images that have been in
/// archive for less than 90 days").
pub const MIN_ARCHIVE_DAYS: u64 = 90;

/// Which images a rule looks at by their tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TagStatus {
    /// Images with at least one tag that match the rule's prefix or pattern list.
    Tagged,
    /// Images without tags.
    Untagged,
    /// Every image.
    Any,
}

/// How a rule picks images to act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CountType {
    /// Keep the newest `countNumber`, act on the rest.
    ImageCountMoreThan,
    /// Act on images pushed more than `countNumber` days ago.
    SinceImagePushed,
    /// Act on images last pulled more than `countNumber` days ago.
    SinceImagePulled,
    /// Act on images archived more than `countNumber` days ago.
    SinceImageTransitioned,
}

/// Where an image is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StorageClass {
    /// Normal storage (the default).
    Standard,
    /// Archive storage: cannot be pulled, 90 days minimum.
    Archive,
}

/// What a rule does to the images it picks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionType {
    /// Delete them.
    Expire,
    /// Move them to the archive storage class.
    Transition,
}

impl TagStatus {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "tagged" => Some(Self::Tagged),
            "untagged" => Some(Self::Untagged),
            "any" => Some(Self::Any),
            _ => None,
        }
    }
    /// The policy's spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tagged => "tagged",
            Self::Untagged => "untagged",
            Self::Any => "any",
        }
    }
}

impl CountType {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "imageCountMoreThan" => Some(Self::ImageCountMoreThan),
            "sinceImagePushed" => Some(Self::SinceImagePushed),
            "sinceImagePulled" => Some(Self::SinceImagePulled),
            "sinceImageTransitioned" => Some(Self::SinceImageTransitioned),
            _ => None,
        }
    }
    /// The policy's spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ImageCountMoreThan => "imageCountMoreThan",
            Self::SinceImagePushed => "sinceImagePushed",
            Self::SinceImagePulled => "sinceImagePulled",
            Self::SinceImageTransitioned => "sinceImageTransitioned",
        }
    }
}

impl StorageClass {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "standard" => Some(Self::Standard),
            "archive" => Some(Self::Archive),
            _ => None,
        }
    }
    /// The policy's spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Archive => "archive",
        }
    }
}

impl ActionType {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "expire" => Some(Self::Expire),
            "transition" => Some(Self::Transition),
            _ => None,
        }
    }
    /// The policy's spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Expire => "expire",
            Self::Transition => "transition",
        }
    }
}

/// One rule of a policy, as written (enumerations still as text, so that validation can name
/// a wrong value rather than failing to parse).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// `rulePriority`.
    pub priority: i64,
    /// `description`.
    pub description: Option<String>,
    /// `selection.tagStatus`.
    pub tag_status: String,
    /// `selection.tagPrefixList`.
    pub tag_prefixes: Option<Vec<String>>,
    /// `selection.tagPatternList`.
    pub tag_patterns: Option<Vec<String>>,
    /// `selection.storageClass` (absent means standard).
    pub storage_class: Option<String>,
    /// `selection.countType`.
    pub count_type: String,
    /// `selection.countUnit`.
    pub count_unit: Option<String>,
    /// `selection.countNumber`.
    pub count_number: i64,
    /// `action.type`.
    pub action: String,
    /// `action.targetStorageClass`.
    pub target_storage_class: Option<String>,
}

impl Rule {
    /// The parsed tag status (valid policies only).
    #[must_use]
    pub fn tag_status(&self) -> TagStatus {
        TagStatus::parse(&self.tag_status).unwrap_or(TagStatus::Any)
    }
    /// The parsed count type (valid policies only).
    #[must_use]
    pub fn count_type(&self) -> CountType {
        CountType::parse(&self.count_type).unwrap_or(CountType::ImageCountMoreThan)
    }
    /// The storage class the rule selects from (standard when absent).
    #[must_use]
    pub fn storage_class(&self) -> StorageClass {
        self.storage_class
            .as_deref()
            .and_then(StorageClass::parse)
            .unwrap_or(StorageClass::Standard)
    }
    /// The parsed action (valid policies only).
    #[must_use]
    pub fn action(&self) -> ActionType {
        ActionType::parse(&self.action).unwrap_or(ActionType::Expire)
    }
    /// `countNumber` as an unsigned number (valid policies have it >= 1).
    #[must_use]
    pub fn count(&self) -> u64 {
        u64::try_from(self.count_number).unwrap_or(0)
    }

    /// A short description for messages: `rule 2 (tagged prefix [v], imageCountMoreThan 10, expire)`.
    #[must_use]
    pub fn summary(&self) -> String {
        let mut parts = vec![self.tag_status.clone()];
        if let Some(list) = &self.tag_prefixes {
            parts.push(format!("prefix [{}]", list.join(", ")));
        }
        if let Some(list) = &self.tag_patterns {
            parts.push(format!("pattern [{}]", list.join(", ")));
        }
        if let Some(class) = &self.storage_class {
            parts.push(format!("in {class}"));
        }
        let count = match &self.count_unit {
            Some(unit) => format!("{} {} {unit}", self.count_type, self.count_number),
            None => format!("{} {}", self.count_type, self.count_number),
        };
        let action = match &self.target_storage_class {
            Some(target) => format!("{} to {target}", self.action),
            None => self.action.clone(),
        };
        format!(
            "rule {} ({}, {count}, {action})",
            self.priority,
            parts.join(" ")
        )
    }

    /// The rule as ECR's JSON, keys in the documented order; optional keys only when set.
    #[must_use]
    pub fn to_value(&self) -> Value {
        let mut selection = Map::new();
        selection.insert("tagStatus".into(), json!(self.tag_status));
        if let Some(list) = &self.tag_patterns {
            selection.insert("tagPatternList".into(), json!(list));
        }
        if let Some(list) = &self.tag_prefixes {
            selection.insert("tagPrefixList".into(), json!(list));
        }
        if let Some(class) = &self.storage_class {
            selection.insert("storageClass".into(), json!(class));
        }
        selection.insert("countType".into(), json!(self.count_type));
        if let Some(unit) = &self.count_unit {
            selection.insert("countUnit".into(), json!(unit));
        }
        selection.insert("countNumber".into(), json!(self.count_number));
        let mut action = Map::new();
        action.insert("type".into(), json!(self.action));
        if let Some(target) = &self.target_storage_class {
            action.insert("targetStorageClass".into(), json!(target));
        }
        let mut rule = Map::new();
        rule.insert("rulePriority".into(), json!(self.priority));
        if let Some(description) = &self.description {
            rule.insert("description".into(), json!(description));
        }
        rule.insert("selection".into(), Value::Object(selection));
        rule.insert("action".into(), Value::Object(action));
        Value::Object(rule)
    }
}

/// A lifecycle policy: its rules, in the order written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The rules.
    pub rules: Vec<Rule>,
}

/// A problem with a policy: where, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The rule and field (`rules[0] (rulePriority 1): selection.countUnit`), or `policy`.
    pub at: String,
    /// What is wrong, and what is allowed.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

fn problem(at: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem {
        at: at.into(),
        message: message.into(),
    }
}

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

    /// Checks every documented constraint; returns all problems found, in rule order.
    #[must_use]
    /// Every problem ECR would refuse the policy for, in the order of AWS's property list: each
    /// rule's own fields, then what the rules may not share.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.rules.is_empty() {
            problems.push(problem("policy.rules", "needs at least one rule"));
        }
        let mut priorities: HashMap<i64, usize> = HashMap::new();
        let max_priority = self.rules.iter().map(|r| r.priority).max().unwrap_or(0);
        let mut untagged: HashMap<StorageClass, i64> = HashMap::new();
        let mut prefix_sets: HashMap<(StorageClass, Vec<String>), i64> = HashMap::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let at = format!("rules[{i}] (rulePriority {})", rule.priority);
            let mut push = |field: &str, message: String| {
                problems.push(problem(format!("{at}: {field}"), message));
            };
            if rule.priority < 1 {
                push(
                    "rulePriority",
                    format!("must be 1 or more, found {}", rule.priority),
                );
            }
            if let Some(first) = priorities.insert(rule.priority, i) {
                push(
                    "rulePriority",
                    format!(
                        "{} is also the priority of rules[{first}]: priorities must be unique",
                        rule.priority
                    ),
                );
            }
            let kinds = Kinds::of(rule);
            kinds.check_names(rule, &mut push);
            check_tags(rule, kinds.status, &mut push);
            if kinds.status == Some(TagStatus::Any) && rule.priority != max_priority {
                push(
                    "rulePriority",
                    format!(
                        "a rule with tagStatus any must have the highest rulePriority ({max_priority} is higher)"
                    ),
                );
            }
            kinds.check_counts(rule, &mut push);
            kinds.check_action(rule, &mut push);
            let Kinds {
                status, storage, ..
            } = kinds;
            if status == Some(TagStatus::Untagged)
                && let Some(class) = storage
                && let Some(first) = untagged.insert(class, rule.priority)
            {
                push(
                    "selection.tagStatus",
                    format!(
                        "only one rule may select untagged images in {} storage; rule {first} already does",
                        class.as_str()
                    ),
                );
            }
            if let (Some(list), Some(class)) = (&rule.tag_prefixes, storage) {
                let mut key = list.clone();
                key.sort();
                key.dedup();
                if let Some(first) = prefix_sets.insert((class, key), rule.priority) {
                    push(
                        "selection.tagPrefixList",
                        format!(
                            "rule {first} has the same tag prefixes: the rules' sets of tag prefixes must be unique"
                        ),
                    );
                }
            }
        }
        if problems.is_empty()
            && let Some(p) = length_problem(self.text().chars().count())
        {
            problems.push(p);
        }
        problems
    }

    /// The rules sorted by priority.
    #[must_use]
    pub fn sorted(&self) -> Vec<&Rule> {
        let mut rules: Vec<&Rule> = self.rules.iter().collect();
        rules.sort_by_key(|r| r.priority);
        rules
    }

    /// The policy as ECR's JSON: rules by priority, keys in the documented order.
    #[must_use]
    pub fn to_value(&self) -> Value {
        json!({"rules": self.sorted().iter().map(|r| r.to_value()).collect::<Vec<_>>()})
    }

    /// The policy text written to ECR: [`Policy::to_value`] as compact JSON.
    #[must_use]
    pub fn text(&self) -> String {
        self.to_value().to_string()
    }

    /// The form two policies are compared in: rules by priority, tag lists sorted without
    /// repeats (a list matches by "all of"), storageClass standard written out (the default).
    #[must_use]
    pub fn normalised(&self) -> Value {
        let mut policy = self.clone();
        for rule in &mut policy.rules {
            for list in [&mut rule.tag_prefixes, &mut rule.tag_patterns]
                .into_iter()
                .flatten()
            {
                list.sort();
                list.dedup();
            }
            if rule.storage_class.is_none() {
                rule.storage_class = Some("standard".into());
            }
        }
        policy.to_value()
    }
}

/// What a rule's enumerated fields say, where they are valid.
#[derive(Clone, Copy)]
struct Kinds {
    status: Option<TagStatus>,
    count_type: Option<CountType>,
    storage: Option<StorageClass>,
    action: Option<ActionType>,
}

/// Where a rule's problems go: the field and the message.
type Push<'a> = dyn FnMut(&str, String) + 'a;

impl Kinds {
    fn of(rule: &Rule) -> Self {
        Self {
            status: TagStatus::parse(&rule.tag_status),
            count_type: CountType::parse(&rule.count_type),
            storage: match rule.storage_class.as_deref() {
                None => Some(StorageClass::Standard),
                Some(text) => StorageClass::parse(text),
            },
            action: ActionType::parse(&rule.action),
        }
    }

    /// Each enumerated field names one of its values.
    fn check_names(self, rule: &Rule, push: &mut Push<'_>) {
        let Self {
            status,
            count_type,
            storage,
            action,
        } = self;
        if status.is_none() {
            push(
                "selection.tagStatus",
                format!("'{}' is not one of tagged, untagged, any", rule.tag_status),
            );
        }
        if count_type.is_none() {
            push(
                "selection.countType",
                format!(
                    "'{}' is not one of imageCountMoreThan, sinceImagePushed, sinceImagePulled, sinceImageTransitioned",
                    rule.count_type
                ),
            );
        }
        if storage.is_none() {
            push(
                "selection.storageClass",
                format!(
                    "'{}' is not one of standard, archive",
                    rule.storage_class.as_deref().unwrap_or_default()
                ),
            );
        }
        if action.is_none() {
            push(
                "action.type",
                format!("'{}' is not one of expire, transition", rule.action),
            );
        }
    }

    /// countNumber, countUnit and the storage class they select from.
    fn check_counts(self, rule: &Rule, push: &mut Push<'_>) {
        let Self {
            count_type,
            storage,
            ..
        } = self;
        if rule.count_number < 1 {
            push(
                "selection.countNumber",
                format!("must be 1 or more, found {}", rule.count_number),
            );
        }
        match (count_type, &rule.count_unit) {
            (Some(CountType::ImageCountMoreThan), Some(_)) => push(
                "selection.countUnit",
                "is not allowed with countType imageCountMoreThan".into(),
            ),
            (Some(kind), None) if kind != CountType::ImageCountMoreThan => push(
                "selection.countUnit",
                format!(
                    "is required with countType {} (use \"days\")",
                    kind.as_str()
                ),
            ),
            (_, Some(unit)) if unit != "days" => push(
                "selection.countUnit",
                format!("'{unit}' is not a count unit; the only one is days"),
            ),
            _ => {}
        }
        // Storage classes and actions (archive support).
        match (count_type, storage) {
            (Some(CountType::SinceImageTransitioned), Some(StorageClass::Standard)) => push(
                "selection.storageClass",
                "countType sinceImageTransitioned needs storageClass archive".into(),
            ),
            (Some(kind), Some(StorageClass::Archive))
                if kind != CountType::SinceImageTransitioned =>
            {
                push(
                    "selection.storageClass",
                    format!(
                        "storageClass archive is only allowed with countType sinceImageTransitioned, not {}",
                        kind.as_str()
                    ),
                );
            }
            _ => {}
        }
    }

    /// The action and its target storage class.
    fn check_action(self, rule: &Rule, push: &mut Push<'_>) {
        let Self {
            count_type,
            storage,
            action,
            ..
        } = self;
        match (action, &rule.target_storage_class) {
            (Some(ActionType::Transition), None) => push(
                "action.targetStorageClass",
                "is required with action transition (use \"archive\")".into(),
            ),
            (Some(ActionType::Transition), Some(target)) if target != "archive" => push(
                "action.targetStorageClass",
                format!("'{target}' is not a target storage class; the only one is archive"),
            ),
            (Some(ActionType::Expire), Some(_)) => push(
                "action.targetStorageClass",
                "is only allowed with action transition".into(),
            ),
            _ => {}
        }
        if action == Some(ActionType::Transition) && storage == Some(StorageClass::Archive) {
            push(
                "action.type",
                "transition selects images in standard storage; archived images can only expire"
                    .into(),
            );
        }
        if action == Some(ActionType::Expire)
            && storage == Some(StorageClass::Archive)
            && count_type == Some(CountType::SinceImageTransitioned)
            && rule.count_number >= 1
            && rule.count() < MIN_ARCHIVE_DAYS
        {
            push(
                "selection.countNumber",
                format!(
                    "archived images must stay at least {MIN_ARCHIVE_DAYS} days before a rule may expire them, found {}",
                    rule.count_number
                ),
            );
        }
    }
}

/// The tag selection: which lists go with which tagStatus, and what the lists may hold.
fn check_tags(rule: &Rule, status: Option<TagStatus>, push: &mut Push<'_>) {
    match status {
        Some(TagStatus::Tagged) => match (&rule.tag_prefixes, &rule.tag_patterns) {
            (None, None) => push(
                "selection",
                "tagStatus tagged needs tagPrefixList or tagPatternList".into(),
            ),
            (Some(_), Some(_)) => push(
                "selection",
                "give tagPrefixList or tagPatternList, not both".into(),
            ),
            _ => {}
        },
        Some(other) => {
            for (field, present) in [
                ("tagPrefixList", rule.tag_prefixes.is_some()),
                ("tagPatternList", rule.tag_patterns.is_some()),
            ] {
                if present {
                    push(
                        &format!("selection.{field}"),
                        format!(
                            "is only allowed with tagStatus tagged, not {}",
                            other.as_str()
                        ),
                    );
                }
            }
        }
        None => {}
    }
    for (field, list) in [
        ("tagPrefixList", &rule.tag_prefixes),
        ("tagPatternList", &rule.tag_patterns),
    ] {
        let Some(list) = list else { continue };
        if list.is_empty() {
            push(&format!("selection.{field}"), "must not be empty".into());
        }
        for (j, item) in list.iter().enumerate() {
            if item.is_empty() {
                push(
                    &format!("selection.{field}[{j}]"),
                    "must not be empty".into(),
                );
            }
            if field == "tagPrefixList" && item.contains('*') {
                push(
                    &format!("selection.{field}[{j}]"),
                    format!("'{item}' has a wildcard: use tagPatternList for patterns"),
                );
            }
            let wildcards = item.matches('*').count();
            if field == "tagPatternList" && wildcards > MAX_WILDCARDS {
                push(
                    &format!("selection.{field}[{j}]"),
                    format!(
                        "'{item}' has {wildcards} wildcards; at most {MAX_WILDCARDS} are allowed"
                    ),
                );
            }
        }
    }
}

/// The problem with a policy text of `length` characters, if any. (The shortest well-formed
/// policy is longer than ECR's minimum, so in practice only the maximum bites.)
#[must_use]
pub fn length_problem(length: usize) -> Option<Problem> {
    if length < MIN_TEXT {
        Some(problem(
            "policy",
            format!("the policy text is {length} characters; ECR needs at least {MIN_TEXT}"),
        ))
    } else if length > MAX_TEXT {
        Some(problem(
            "policy",
            format!("the policy text is {length} characters; ECR allows at most {MAX_TEXT}"),
        ))
    } else {
        None
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

/// Whether an image with `tags` is selected by the rule's tag condition: every prefix (or
/// pattern) in the list must match at least one of the image's tags.
#[must_use]
pub fn tags_match(rule: &Rule, tags: &[String]) -> bool {
    match rule.tag_status() {
        TagStatus::Any => true,
        TagStatus::Untagged => tags.is_empty(),
        TagStatus::Tagged => {
            if tags.is_empty() {
                return false;
            }
            if let Some(prefixes) = &rule.tag_prefixes {
                prefixes
                    .iter()
                    .all(|p| tags.iter().any(|t| t.starts_with(p.as_str())))
            } else if let Some(patterns) = &rule.tag_patterns {
                patterns
                    .iter()
                    .all(|p| tags.iter().any(|t| shared::ecr::tag_matches(p, t)))
            } else {
                false
            }
        }
    }
}

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A rule as JSON text, from its selection and action.
    fn rule(priority: i64, selection: &str, action: &str) -> String {
        format!(
            r#"{{"rulePriority":{priority},"description":"test rule","selection":{selection},"action":{action}}}"#
        )
    }

    fn policy(rules: &[String]) -> String {
        format!(r#"{{"rules":[{}]}}"#, rules.join(","))
    }

    const EXPIRE: &str = r#"{"type":"expire"}"#;
    const TO_ARCHIVE: &str = r#"{"type":"transition","targetStorageClass":"archive"}"#;

    /// Parses and validates; `Ok(())` or the first problem's text.
    fn verdict(text: &str) -> Result<(), String> {
        let policy = Policy::parse(text).map_err(|p| p.to_string())?;
        match policy.validate().first() {
            None => Ok(()),
            Some(p) => Err(p.to_string()),
        }
    }

    /// Policies from AWS's "Examples of lifecycle policies in Amazon ECR" and "Lifecycle policy
    /// properties" pages, and variations breaking each documented constraint. Each invalid one
    /// lists words its message must contain (the rule and the field).
    #[test]
    #[allow(clippy::too_many_lines, reason = "a table of cases")]
    fn documented_policies_get_the_documented_verdict() {
        let cases: Vec<(&str, String, Option<&[&str]>)> = vec![
            // Valid: the documentation's examples.
            (
                "filtering on image age",
                policy(&[rule(
                    1,
                    r#"{"tagStatus":"tagged","tagPatternList":["prod*"],"countType":"sinceImagePushed","countUnit":"days","countNumber":14}"#,
                    EXPIRE,
                )]),
                None,
            ),
            (
                "filtering on image count",
                policy(&[rule(
                    1,
                    r#"{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1}"#,
                    EXPIRE,
                )]),
                None,
            ),
            (
                "multiple rules, example A",
                policy(&[
                    rule(
                        1,
                        r#"{"tagStatus":"tagged","tagPatternList":["prod*"],"countType":"imageCountMoreThan","countNumber":1}"#,
                        EXPIRE,
                    ),
                    rule(
                        2,
                        r#"{"tagStatus":"tagged","tagPatternList":["beta*"],"countType":"imageCountMoreThan","countNumber":1}"#,
                        EXPIRE,
                    ),
                ]),
                None,
            ),
            (
                "multiple tags in one rule",
                policy(&[rule(
                    1,
                    r#"{"tagStatus":"tagged","tagPrefixList":["alpha","beta"],"countType":"sinceImagePushed","countNumber":5,"countUnit":"days"}"#,
                    EXPIRE,
                )]),
                None,
            ),
            (
                "all images, any last",
                policy(&[
                    rule(
                        1,
                        r#"{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":14}"#,
                        EXPIRE,
                    ),
                    rule(
                        2,
                        r#"{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":100}"#,
                        EXPIRE,
                    ),
                ]),
                None,
            ),
            (
                "four wildcards per string",
                policy(&[rule(
                    1,
                    r#"{"tagStatus":"tagged","tagPatternList":["*test*1*2*3","test*1*2*3*"],"countType":"imageCountMoreThan","countNumber":1}"#,
                    EXPIRE,
                )]),
                None,
            ),
            (
                "priorities need not be sequential",
                policy(&[
                    rule(
                        10,
                        r#"{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1}"#,
                        EXPIRE,
                    ),
                    rule(
                        3,
                        r#"{"tagStatus":"tagged","tagPrefixList":["v"],"countType":"imageCountMoreThan","countNumber":5}"#,
                        EXPIRE,
                    ),
                ]),
                None,
            ),
            (
                "archive after 30 days unpulled, expire archived after 365",
                policy(&[
                    rule(
                        1,
                        r#"{"tagStatus":"any","storageClass":"standard","countType":"sinceImagePulled","countUnit":"days","countNumber":30}"#,
                        TO_ARCHIVE,
                    ),
                    rule(
                        2,
                        r#"{"tagStatus":"any","storageClass":"archive","countType":"sinceImageTransitioned","countUnit":"days","countNumber":365}"#,
                        EXPIRE,
                    ),
                ]),
                Some(&[
                    "rules[0] (rulePriority 1): rulePriority",
                    "tagStatus any must have the highest",
                ]),
            ),
            (
                "archive tagged, expire archived",
                policy(&[
                    rule(
                        1,
                        r#"{"tagStatus":"tagged","tagPatternList":["pr-*"],"countType":"sinceImagePushed","countUnit":"days","countNumber":30}"#,
                        TO_ARCHIVE,
                    ),
                    rule(
                        2,
                        r#"{"tagStatus":"any","storageClass":"archive","countType":"sinceImageTransitioned","countUnit":"days","countNumber":90}"#,
                        EXPIRE,
                    ),
                ]),
                None,
            ),
            (
                "one untagged rule per storage class",
                policy(&[
                    rule(
                        1,
                        r#"{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":7}"#,
                        TO_ARCHIVE,
                    ),
                    rule(
                        2,
                        r#"{"tagStatus":"untagged","storageClass":"archive","countType":"sinceImageTransitioned","countUnit":"days","countNumber":90}"#,
                        EXPIRE,
                    ),
                ]),
                None,
            ),
            // Invalid.
            (
                "tagged without a list",
                policy(&[rule(
                    1,
                    r#"{"tagStatus":"tagged","countType":"imageCountMoreThan","countNumber":1}"#,
                    EXPIRE,
                )]),
                Some(&[
                    "rules[0] (rulePriority 1): selection",
                    "needs tagPrefixList or tagPatternList",
                ]),
            ),
            (
                "tagged with both lists",
                policy(&[rule(
                    1,
                    r#"{"tagStatus":"tagged","tagPrefixList":["a"],"tagPatternList":["a*"],"countType":"imageCountMoreThan","countNumber":1}"#,
                    EXPIRE,
                )]),
                Some(&["not both"]),
            ),
            (
                "untagged with a prefix list",
                policy(&[rule(
                    1,
                    r#"{"tagStatus":"untagged","tagPrefixList":["a"],"countType":"imageCountMoreThan","countNumber":1}"#,
                    EXPIRE,
                )]),
                Some(&[
                    "selection.tagPrefixList",
                    "only allowed with tagStatus tagged",
                ]),
            ),
            (
                "any with a pattern list",
                policy(&[rule(
                    1,
                    r#"{"tagStatus":"any","tagPatternList":["a*"],"countType":"imageCountMoreThan","countNumber":1}"#,
                    EXPIRE,
                )]),
                Some(&["selection.tagPatternList"]),
            ),
            (
                "five wildcards",
                policy(&[rule(
                    1,
                    r#"{"tagStatus":"tagged","tagPatternList":["test*1*2*3*4*5*6"],"countType":"imageCountMoreThan","countNumber":1}"#,
                    EXPIRE,
                )]),
                Some(&["selection.tagPatternList[0]", "6 wildcards", "at most 4"]),
            ),
            (
                "duplicate priorities",
                policy(&[
                    rule(
                        1,
                        r#"{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1}"#,
                        EXPIRE,
                    ),
                    rule(
                        1,
                        r#"{"tagStatus":"tagged","tagPrefixList":["v"],"countType":"imageCountMoreThan","countNumber":1}"#,
                        EXPIRE,
                    ),
                ]),
                Some(&["rules[1] (rulePriority 1): rulePriority", "unique"]),
            ),
            (
                "priority zero",
                policy(&[rule(
                    0,
                    r#"{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1}"#,
                    EXPIRE,
                )]),
                Some(&["rulePriority", "1 or more"]),
            ),
            (
                "any not last",
                policy(&[
                    rule(
                        1,
                        r#"{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":100}"#,
                        EXPIRE,
                    ),
                    rule(
                        2,
                        r#"{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1}"#,
                        EXPIRE,
                    ),
                ]),
                Some(&["rules[0] (rulePriority 1)", "highest rulePriority"]),
            ),
            (
                "countUnit missing for sinceImagePushed",
                policy(&[rule(
                    1,
                    r#"{"tagStatus":"untagged","countType":"sinceImagePushed","countNumber":14}"#,
                    EXPIRE,
                )]),
                Some(&["selection.countUnit", "required"]),
            ),
            (
                "countUnit with imageCountMoreThan",
                policy(&[rule(
                    1,
                    r#"{"tagStatus":"untagged","countType":"imageCountMoreThan","countUnit":"days","countNumber":1}"#,
                    EXPIRE,
                )]),
                Some(&["selection.countUnit", "not allowed"]),
            ),
            (
                "countUnit hours",
                policy(&[rule(
                    1,
                    r#"{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"hours","countNumber":1}"#,
                    EXPIRE,
                )]),
                Some(&["selection.countUnit", "'hours'"]),
            ),
            (
                "countNumber zero",
                policy(&[rule(
                    1,
                    r#"{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":0}"#,
                    EXPIRE,
                )]),
                Some(&["selection.countNumber", "1 or more"]),
            ),
            (
                "countNumber not an integer",
                policy(&[rule(
                    1,
                    r#"{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1.5}"#,
                    EXPIRE,
                )]),
                Some(&["selection.countNumber", "expected an integer"]),
            ),
            (
                "two untagged rules",
                policy(&[
                    rule(
                        1,
                        r#"{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":5}"#,
                        EXPIRE,
                    ),
                    rule(
                        2,
                        r#"{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":5}"#,
                        EXPIRE,
                    ),
                ]),
                Some(&[
                    "rules[1] (rulePriority 2): selection.tagStatus",
                    "only one rule may select untagged",
                ]),
            ),
            (
                "same prefix set twice",
                policy(&[
                    rule(
                        1,
                        r#"{"tagStatus":"tagged","tagPrefixList":["a","b"],"countType":"imageCountMoreThan","countNumber":5}"#,
                        EXPIRE,
                    ),
                    rule(
                        2,
                        r#"{"tagStatus":"tagged","tagPrefixList":["b","a"],"countType":"sinceImagePushed","countUnit":"days","countNumber":5}"#,
                        EXPIRE,
                    ),
                ]),
                Some(&["rules[1]", "same tag prefixes"]),
            ),
            (
                "unknown tagStatus",
                policy(&[rule(
                    1,
                    r#"{"tagStatus":"all","countType":"imageCountMoreThan","countNumber":1}"#,
                    EXPIRE,
                )]),
                Some(&["selection.tagStatus", "'all'"]),
            ),
            (
                "unknown countType",
                policy(&[rule(
                    1,
                    r#"{"tagStatus":"untagged","countType":"sinceImageCreated","countUnit":"days","countNumber":1}"#,
                    EXPIRE,
                )]),
                Some(&["selection.countType", "'sinceImageCreated'"]),
            ),
            (
                "unknown action",
                policy(&[rule(
                    1,
                    r#"{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1}"#,
                    r#"{"type":"delete"}"#,
                )]),
                Some(&["action.type", "'delete'"]),
            ),
            (
                "transition without target",
                policy(&[rule(
                    1,
                    r#"{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":30}"#,
                    r#"{"type":"transition"}"#,
                )]),
                Some(&["action.targetStorageClass", "required"]),
            ),
            (
                "expire with a target",
                policy(&[rule(
                    1,
                    r#"{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":30}"#,
                    r#"{"type":"expire","targetStorageClass":"archive"}"#,
                )]),
                Some(&[
                    "action.targetStorageClass",
                    "only allowed with action transition",
                ]),
            ),
            (
                "transition to glacier",
                policy(&[rule(
                    1,
                    r#"{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":30}"#,
                    r#"{"type":"transition","targetStorageClass":"glacier"}"#,
                )]),
                Some(&["action.targetStorageClass", "'glacier'"]),
            ),
            (
                "sinceImageTransitioned in standard",
                policy(&[rule(
                    1,
                    r#"{"tagStatus":"untagged","countType":"sinceImageTransitioned","countUnit":"days","countNumber":90}"#,
                    EXPIRE,
                )]),
                Some(&["selection.storageClass", "needs storageClass archive"]),
            ),
            (
                "archive class with imageCountMoreThan",
                policy(&[rule(
                    1,
                    r#"{"tagStatus":"untagged","storageClass":"archive","countType":"imageCountMoreThan","countNumber":5}"#,
                    EXPIRE,
                )]),
                Some(&[
                    "selection.storageClass",
                    "only allowed with countType sinceImageTransitioned",
                ]),
            ),
            (
                "archived images expired before 90 days",
                policy(&[rule(
                    1,
                    r#"{"tagStatus":"untagged","storageClass":"archive","countType":"sinceImageTransitioned","countUnit":"days","countNumber":30}"#,
                    EXPIRE,
                )]),
                Some(&["selection.countNumber", "at least 90 days"]),
            ),
            (
                "archived images transitioned again",
                policy(&[rule(
                    1,
                    r#"{"tagStatus":"untagged","storageClass":"archive","countType":"sinceImageTransitioned","countUnit":"days","countNumber":90}"#,
                    TO_ARCHIVE,
                )]),
                Some(&["action.type", "can only expire"]),
            ),
            (
                "unknown storage class",
                policy(&[rule(
                    1,
                    r#"{"tagStatus":"untagged","storageClass":"cold","countType":"imageCountMoreThan","countNumber":1}"#,
                    EXPIRE,
                )]),
                Some(&["selection.storageClass", "'cold'"]),
            ),
            (
                "unknown field",
                policy(&[rule(
                    1,
                    r#"{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1,"tagRegex":"x"}"#,
                    EXPIRE,
                )]),
                Some(&[
                    "rules[0] (rulePriority 1): selection.tagRegex",
                    "unknown field",
                ]),
            ),
            (
                "missing countNumber",
                policy(&[rule(
                    1,
                    r#"{"tagStatus":"untagged","countType":"imageCountMoreThan"}"#,
                    EXPIRE,
                )]),
                Some(&["selection.countNumber", "is required"]),
            ),
            (
                "no rules",
                r#"{"rules":[]}"#.into(),
                Some(&["policy.rules", "at least one rule"]),
            ),
            (
                "not JSON",
                r#"{"rules":[}"#.into(),
                Some(&["policy", "not valid JSON at line 1"]),
            ),
        ];
        for (name, text, expected) in cases {
            let got = verdict(&text);
            match (expected, &got) {
                (None, Ok(())) => {}
                (Some(words), Err(message)) => {
                    for word in words {
                        assert!(message.contains(word), "{name}: {message:?} lacks {word:?}");
                    }
                }
                _ => panic!("{name}: expected {expected:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn the_longest_allowed_text_is_30720_characters() {
        let long = |n: usize| {
            let description = "x".repeat(n);
            Policy {
                rules: vec![Rule {
                    priority: 1,
                    description: Some(description),
                    tag_status: "untagged".into(),
                    tag_prefixes: None,
                    tag_patterns: None,
                    storage_class: None,
                    count_type: "imageCountMoreThan".into(),
                    count_unit: None,
                    count_number: 1,
                    action: "expire".into(),
                    target_storage_class: None,
                }],
            }
        };
        let base = long(0).text().chars().count();
        assert!(long(MAX_TEXT - base).validate().is_empty());
        let problems = long(MAX_TEXT - base + 1).validate();
        assert!(
            problems[0].message.contains("at most 30720"),
            "{problems:?}"
        );
    }

    #[test]
    fn normalised_policies_ignore_order_and_defaults() {
        let a = Policy::parse(&policy(&[
            rule(2, r#"{"tagStatus":"tagged","tagPrefixList":["b","a"],"countType":"imageCountMoreThan","countNumber":5}"#, EXPIRE),
            rule(1, r#"{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1}"#, EXPIRE),
        ]))
        .unwrap();
        let b = Policy::parse(&policy(&[
            rule(1, r#"{"countNumber":1,"countType":"imageCountMoreThan","tagStatus":"untagged","storageClass":"standard"}"#, EXPIRE),
            rule(2, r#"{"tagStatus":"tagged","tagPrefixList":["a","b","a"],"countType":"imageCountMoreThan","countNumber":5}"#, EXPIRE),
        ]))
        .unwrap();
        assert_eq!(a.normalised(), b.normalised());
        assert!(diff(&a, &b).is_empty());

        let c = Policy::parse(&policy(&[rule(
            1,
            r#"{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":3}"#,
            EXPIRE,
        )]))
        .unwrap();
        let changes: Vec<String> = diff(&a, &c).iter().map(ToString::to_string).collect();
        assert_eq!(
            changes,
            [
                "~ rule 1 selection.countNumber: 1 -> 3",
                "- rule 2 (tagged prefix [b, a], imageCountMoreThan 5, expire)"
            ]
        );
    }

    #[test]
    fn text_is_compact_and_in_priority_order() {
        let p = Policy::parse(&policy(&[
            rule(2, r#"{"tagStatus":"tagged","tagPrefixList":["v"],"countType":"imageCountMoreThan","countNumber":5}"#, EXPIRE),
            rule(1, r#"{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":7}"#, EXPIRE),
        ]))
        .unwrap();
        assert_eq!(
            p.text(),
            r#"{"rules":[{"rulePriority":1,"description":"test rule","selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":7},"action":{"type":"expire"}},{"rulePriority":2,"description":"test rule","selection":{"tagStatus":"tagged","tagPrefixList":["v"],"countType":"imageCountMoreThan","countNumber":5},"action":{"type":"expire"}}]}"#
        );
        assert_eq!(Policy::parse(&p.text()).unwrap().text(), p.text());
    }
}
