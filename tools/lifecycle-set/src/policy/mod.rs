//! The lifecycle policy: parsing, validation against AWS's documented rules, normalisation and
//! the difference between two policies.
//!
//! The rules checked here come from AWS's "Lifecycle policy properties in Amazon ECR" and
//! "Lifecycle policy evaluation rules" pages and the PutLifecyclePolicy API reference (policy text
//! of 100 to 30,720 characters). They are checked locally because the ECR API server used in
//! tests (moto) accepts policies real ECR rejects, e.g. `tagStatus: tagged` with no tag list.
//! Every problem names the rule (`rules[1] (rulePriority 2)`) and the field.
//!
//! The steps, each in its module: [`parse`] reads the text (shape errors stop there),
//! [`validate`] checks every documented constraint and [`diff`] compares two policies. This
//! module holds the policy itself, its normal form and the tag matching the preview shares.

use std::fmt;

mod diff;
mod parse;
#[cfg(test)]
mod tests;
mod validate;

pub use diff::{Change, diff};
pub use validate::length_problem;

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

impl Policy {
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
