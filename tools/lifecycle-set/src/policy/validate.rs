//! The constraints AWS documents for a lifecycle policy, every problem found at once.

use std::collections::HashMap;

use super::{
    ActionType, CountType, MAX_TEXT, MAX_WILDCARDS, MIN_ARCHIVE_DAYS, MIN_TEXT, Policy, Problem,
    Rule, StorageClass, TagStatus, problem,
};

impl Policy {
    /// Every problem ECR would refuse the policy for, in the order of AWS's property list: each
    /// rule's own fields, then what the rules may not share.
    #[must_use]
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
