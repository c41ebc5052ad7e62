//! The least-privilege IAM policy for the steps of a build (`ecr-repo --print-iam-policy`,
//! `ecr-login --print-iam-policy`).
//!
//! Each step needs the ECR actions AWS lists for it (the user guide's "Amazon ECR identity-based
//! policy examples" and the managed policies' action lists), scoped to the repositories' ARNs.
//! `ecr:GetAuthorizationToken` has no resource to scope to: it is the one `"Resource": "*"`.

use serde_json::{Value, json};

/// A step of a build that needs ECR permissions.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Get a registry login (ecr-login): GetAuthorizationToken, which cannot be scoped.
    Login,
    /// Push images (img-push).
    Push,
    /// Pull images (a later stage or deployment).
    Pull,
    /// Start scans and read findings (scan-gate).
    Scan,
    /// Read, set and preview the lifecycle policy (lifecycle-set).
    Lifecycle,
    /// Create and configure the repository (ecr-repo itself).
    Repository,
}

impl Step {
    /// The step's name on the command line.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Step::Login => "login",
            Step::Push => "push",
            Step::Pull => "pull",
            Step::Scan => "scan",
            Step::Lifecycle => "lifecycle",
            Step::Repository => "repository",
        }
    }

    /// The ECR actions the step needs.
    #[must_use]
    pub fn actions(self) -> &'static [&'static str] {
        match self {
            Step::Login => &["ecr:GetAuthorizationToken"],
            Step::Push => &[
                "ecr:BatchCheckLayerAvailability",
                "ecr:InitiateLayerUpload",
                "ecr:UploadLayerPart",
                "ecr:CompleteLayerUpload",
                "ecr:PutImage",
            ],
            Step::Pull => &[
                "ecr:BatchCheckLayerAvailability",
                "ecr:BatchGetImage",
                "ecr:GetDownloadUrlForLayer",
            ],
            Step::Scan => &[
                "ecr:DescribeImages",
                "ecr:StartImageScan",
                "ecr:DescribeImageScanFindings",
            ],
            Step::Lifecycle => &[
                "ecr:GetLifecyclePolicy",
                "ecr:PutLifecyclePolicy",
                "ecr:DescribeImages",
                "ecr:BatchGetImage",
                "ecr:StartLifecyclePolicyPreview",
                "ecr:GetLifecyclePolicyPreview",
            ],
            Step::Repository => &[
                "ecr:CreateRepository",
                "ecr:DescribeRepositories",
                "ecr:PutImageScanningConfiguration",
                "ecr:PutImageTagMutability",
                "ecr:ListTagsForResource",
                "ecr:TagResource",
            ],
        }
    }

    /// Whether the step's actions can be limited to repository ARNs.
    #[must_use]
    pub fn scoped(self) -> bool {
        self != Step::Login
    }
}

/// The AWS partition of a region (`aws`, `aws-cn`, `aws-us-gov`).
#[must_use]
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// A repository's ARN.
#[must_use]
pub fn repository_arn(region: &str, account: &str, name: &str) -> String {
    format!(
        "arn:{}:ecr:{region}:{account}:repository/{name}",
        partition(region)
    )
}

/// The IAM policy document: one statement per step, in the order given, repeats dropped.
#[must_use]
pub fn policy(steps: &[Step], arns: &[String]) -> Value {
    let mut seen = Vec::new();
    let mut statements = Vec::new();
    for step in steps {
        if seen.contains(step) {
            continue;
        }
        seen.push(*step);
        let mut name = step.name().to_owned();
        name[..1].make_ascii_uppercase();
        let resource = if step.scoped() {
            json!(arns)
        } else {
            json!("*")
        };
        statements.push(json!({
            "Sid": format!("Imgpipe{name}"),
            "Effect": "Allow",
            "Action": step.actions(),
            "Resource": resource,
        }));
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_follow_the_partition() {
        for (region, arn) in [
            (
                "us-east-1",
                "arn:aws:ecr:us-east-1:123456789012:repository/team/app",
            ),
            (
                "cn-north-1",
                "arn:aws-cn:ecr:cn-north-1:123456789012:repository/team/app",
            ),
            (
                "us-gov-west-1",
                "arn:aws-us-gov:ecr:us-gov-west-1:123456789012:repository/team/app",
            ),
        ] {
            assert_eq!(repository_arn(region, "123456789012", "team/app"), arn);
        }
    }

    #[test]
    fn only_login_is_unscoped_and_steps_appear_once() {
        let arns = vec!["arn:aws:ecr:us-east-1:1:repository/a".to_owned()];
        let doc = policy(&[Step::Login, Step::Push, Step::Login, Step::Scan], &arns);
        let statements = doc["Statement"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        assert_eq!(statements.len(), 3);
        assert_eq!(statements[0]["Resource"], "*");
        assert_eq!(
            statements[0]["Action"],
            json!(["ecr:GetAuthorizationToken"])
        );
        assert_eq!(statements[1]["Sid"], "ImgpipePush");
        for statement in &statements[1..] {
            assert_eq!(statement["Resource"], json!(arns));
            let actions = statement["Action"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            assert!(!actions.contains(&json!("ecr:GetAuthorizationToken")));
            assert!(
                !actions
                    .iter()
                    .any(|a| a.as_str().is_some_and(|a| a.contains('*')))
            );
        }
    }
}
