//! AWS configuration for the tools that call the ECR API, and SDK errors in words.
//!
//! Credentials come from the SDK's default chain (environment, profile, SSO, web identity,
//! ECS/CodeBuild container credentials, EC2 instance metadata); the region from `--region`,
//! `AWS_REGION`/`AWS_DEFAULT_REGION` or the profile. The standard `AWS_ENDPOINT_URL_ECR` and
//! `AWS_ENDPOINT_URL` variables point the client elsewhere (the local ECR API server in tests),
//! and `AWS_RETRY_MODE`/`AWS_MAX_ATTEMPTS` choose the SDK's retry behaviour.

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_ecr::config::{ProvideCredentials, Region};
use aws_sdk_ecr::error::{ProvideErrorMetadata, SdkError};

use shared::ecr::is_region_name;
use shared::error::{Error, Result, chain};

pub mod ecr;
pub mod iam;

/// The AWS flags of the tools that call AWS.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct AwsArgs {
    /// AWS region (default: AWS_REGION, AWS_DEFAULT_REGION, then the profile's region).
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,

    /// Named profile from ~/.aws/config (default: AWS_PROFILE).
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,

    /// Send ECR API calls to this URL instead of the region's endpoint
    /// (default: AWS_ENDPOINT_URL_ECR, then AWS_ENDPOINT_URL).
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
}

/// A loaded AWS configuration, with what the error messages need to know about it.
#[derive(Clone, Debug)]
pub struct Aws {
    config: SdkConfig,
    region: String,
    endpoint: String,
}

/// Refuses a named profile that neither shared file defines, as aws-cli does, even when
/// credentials come from the environment: a typo in `--profile` must not go unnoticed and act
/// with other credentials. `default` may be absent (aws-cli allows that too).
fn check_profile_exists(name: &str) -> Result<()> {
    if name == "default" {
        return Ok(());
    }
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let file = |variable: &str, default: &str| {
        std::env::var_os(variable)
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws").join(default)))
    };
    let config = file("AWS_CONFIG_FILE", "config");
    let credentials = file("AWS_SHARED_CREDENTIALS_FILE", "credentials");
    let defines = |path: &Option<std::path::PathBuf>, in_config: bool| -> Result<bool> {
        let Some(path) = path else { return Ok(false) };
        let Some(bytes) =
            shared::files::read_if_exists(path, shared::files::TEXT_LIMIT, "AWS shared file")
                .map_err(|e| Error::config(e.message().to_owned()))?
        else {
            return Ok(false);
        };
        Ok(String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|line| line.trim().strip_prefix('[')?.strip_suffix(']'))
            .any(|section| {
                let mut words = section.split_whitespace();
                if in_config {
                    words.next() == Some("profile") && words.next() == Some(name)
                } else {
                    words.next() == Some(name)
                }
            }))
    };
    if defines(&config, true)? || defines(&credentials, false)? {
        return Ok(());
    }
    Err(
        Error::config(format!("the AWS profile '{name}' does not exist")).with_hint(format!(
            "check the name in --profile or AWS_PROFILE, or create it with: aws configure --profile {name}"
        )),
    )
}

impl Aws {
    /// Loads the configuration and resolves credentials once, so a missing or broken credential
    /// source is reported as such rather than as a failed request.
    pub async fn load(args: &AwsArgs) -> Result<Self> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .read_timeout(Duration::from_secs(30))
                .operation_attempt_timeout(Duration::from_secs(60))
                .build(),
        );
        if let Some(region) = &args.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(profile) = &args.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(profile) = args.profile.clone().or_else(|| env_nonempty("AWS_PROFILE")) {
            check_profile_exists(&profile)?;
        }
        if let Some(url) = &args.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let config = loader.load().await;

        let region = config.region().map(ToString::to_string).ok_or_else(|| {
            Error::config("no AWS region is set").with_hint(
                "pass --region, or set AWS_REGION (CodeBuild sets AWS_DEFAULT_REGION itself)",
            )
        })?;
        if !is_region_name(&region) {
            return Err(Error::config(format!(
                "'{region}' is not an AWS region name"
            ))
            .with_hint("use a region such as us-east-1 or eu-west-2, from --region, AWS_REGION or the profile"));
        }
        let endpoint = args
            .endpoint_url
            .clone()
            .or_else(|| env_nonempty("AWS_ENDPOINT_URL_ECR"))
            .or_else(|| env_nonempty("AWS_ENDPOINT_URL"))
            .unwrap_or_else(|| format!("https://api.ecr.{region}.amazonaws.com"));
        let aws = Self {
            config,
            region,
            endpoint,
        };
        aws.check_credentials().await?;
        Ok(aws)
    }

    async fn check_credentials(&self) -> Result<()> {
        use aws_credential_types::provider::error::CredentialsError;
        let provider = self
            .config
            .credentials_provider()
            .ok_or_else(|| Error::config("no AWS credential provider is configured"))?;
        match provider.provide_credentials().await {
            Ok(_) => Ok(()),
            Err(err) => {
                let detail = chain(&err);
                Err(match err {
                    CredentialsError::CredentialsNotLoaded(_) => Error::config(format!(
                        "no AWS credentials found (tried {})",
                        attempted_sources(&detail)
                    ))
                    .with_hint(
                        "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, pass --profile, or give the CodeBuild project a service role",
                    ),
                    CredentialsError::ProviderTimedOut(_) => Error::timeout(format!(
                        "the AWS credential source did not answer in time ({detail})"
                    )),
                    CredentialsError::InvalidConfiguration(_) => Error::config(format!(
                        "the AWS credential configuration is invalid: {detail}"
                    ))
                    .with_hint("check ~/.aws/config and the AWS_* variables"),
                    _ => Error::no_perm(format!("could not get AWS credentials: {detail}"))
                        .with_hint("refresh them (for SSO: aws sso login) and try again"),
                })
            }
        }
    }

    /// The SDK configuration, for building service clients.
    #[must_use]
    pub fn config(&self) -> &SdkConfig {
        &self.config
    }

    /// An ECR API client.
    #[must_use]
    pub fn ecr(&self) -> aws_sdk_ecr::Client {
        aws_sdk_ecr::Client::new(&self.config)
    }

    /// Who the credentials belong to, as STS GetCallerIdentity says, with an assumed role's
    /// session name dropped (`arn:aws:sts::123456789012:assumed-role/ci/build-1` becomes
    /// `arn:aws:sts::123456789012:assumed-role/ci`), so every session of a role is one identity.
    ///
    /// One attempt with short timeouts: in a VPC that has ECR endpoints and no STS endpoint, STS
    /// cannot be reached at all, and callers that can do without it should learn so quickly.
    pub async fn caller_identity(&self) -> Result<String> {
        let sts = aws_sdk_sts::config::Builder::from(&self.config)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(2))
                    .operation_timeout(Duration::from_secs(5))
                    .build(),
            )
            .retry_config(aws_sdk_sts::config::retry::RetryConfig::standard().with_max_attempts(1))
            .build();
        let output = aws_sdk_sts::Client::from_conf(sts)
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| {
                let endpoint = env_nonempty("AWS_ENDPOINT_URL_STS")
                    .or_else(|| env_nonempty("AWS_ENDPOINT_URL"))
                    .unwrap_or_else(|| format!("https://sts.{}.amazonaws.com", self.region));
                describe_sdk_error(
                    "asking STS who the caller is",
                    "STS",
                    &endpoint,
                    &self.region,
                    &e,
                )
            })?;
        let arn = output.arn().unwrap_or_default();
        Ok(match arn.split_once(":assumed-role/") {
            Some((head, role_and_session)) => {
                let role = role_and_session
                    .split('/')
                    .next()
                    .unwrap_or(role_and_session);
                format!("{head}:assumed-role/{role}")
            }
            None => arn.to_owned(),
        })
    }

    /// The access key id of the resolved credentials: who the caller is when STS cannot say.
    pub async fn access_key_id(&self) -> Result<String> {
        let provider = self
            .config
            .credentials_provider()
            .ok_or_else(|| Error::config("no AWS credential provider is configured"))?;
        let credentials = provider
            .provide_credentials()
            .await
            .map_err(|e| Error::no_perm(format!("could not get AWS credentials: {}", chain(&e))))?;
        Ok(credentials.access_key_id().to_owned())
    }

    /// The region in use.
    #[must_use]
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The ECR API endpoint in use, for messages.
    #[must_use]
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Turns a failed ECR call into an [`Error`] that says what failed, why, and the fix.
    /// `action` says what was being done ("creating repository my-app"). Callers handle the
    /// service errors that mean something particular to them first.
    pub fn error<E, R>(&self, action: &str, err: &SdkError<E, R>) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        describe_sdk_error(action, "the ECR API", &self.endpoint, &self.region, err)
    }
}

/// The credential sources the SDK's chain tried, from its error text
/// (`...Attempted:\n  Environment: ...\n  Profile: ...`), or the text itself.
fn attempted_sources(detail: &str) -> String {
    let Some((_, attempts)) = detail.split_once("Attempted:") else {
        return detail.to_owned();
    };
    let names: Vec<&str> = attempts
        .lines()
        .filter_map(|line| line.trim().split_once(':').map(|(name, _)| name))
        .filter(|name| !name.is_empty() && !name.contains(' '))
        .collect();
    if names.is_empty() {
        detail.to_owned()
    } else {
        names.join(", ")
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The service error codes that mean the caller's credentials are missing, wrong or expired.
const AUTH_CODES: &[(&str, &str)] = &[
    (
        "ExpiredTokenException",
        "the AWS session token has expired: refresh the credentials (aws sso login, or assume the role again)",
    ),
    (
        "ExpiredToken",
        "the AWS session token has expired: refresh the credentials (aws sso login, or assume the role again)",
    ),
    (
        "UnrecognizedClientException",
        "the access key is not valid in this partition or has been deleted: check AWS_ACCESS_KEY_ID and the region",
    ),
    (
        "InvalidClientTokenId",
        "the access key is not valid: check AWS_ACCESS_KEY_ID",
    ),
    (
        "InvalidSignatureException",
        "the secret key does not match the access key, or the clock is off: check AWS_SECRET_ACCESS_KEY and the system time",
    ),
    (
        "SignatureDoesNotMatch",
        "the secret key does not match the access key: check AWS_SECRET_ACCESS_KEY",
    ),
    (
        "AccessDeniedException",
        "grant the permission to the role the build runs as (ecr-repo --print-iam-policy prints a least-privilege policy)",
    ),
];

/// See [`Aws::error`].
pub fn describe_sdk_error<E, R>(
    action: &str,
    service: &str,
    endpoint: &str,
    region: &str,
    err: &SdkError<E, R>,
) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match err {
        SdkError::ServiceError(failure) => {
            let e = failure.err();
            let code = e.code().unwrap_or("unknown error");
            let message = e.message().unwrap_or("");
            let text = if message.is_empty() {
                format!("{action}: {code}")
            } else {
                format!("{action}: {code}: {message}")
            };
            if let Some((_, hint)) = AUTH_CODES.iter().find(|(c, _)| *c == code) {
                return Error::no_perm(text).with_hint(*hint);
            }
            if code.contains("Throttl")
                || code == "ServerException"
                || code.contains("ServiceUnavailable")
            {
                return Error::unavailable(text).with_hint(format!(
                    "{service} is busy or failing: try again later, or raise AWS_MAX_ATTEMPTS"
                ));
            }
            Error::data(text)
        }
        SdkError::TimeoutError(_) => Error::timeout(format!(
            "{action}: {service} at {endpoint} did not answer in time"
        ))
        .with_hint("check the network path to the endpoint (VPC endpoints, proxies) and try again"),
        SdkError::DispatchFailure(failure) => {
            let detail = chain(err);
            if failure.is_timeout() {
                Error::timeout(format!(
                    "{action}: {service} at {endpoint} did not answer in time ({detail})"
                ))
            } else if failure.is_io() {
                Error::unavailable(format!(
                    "{action}: cannot reach {service} at {endpoint} ({detail})"
                ))
                .with_hint(format!(
                    "check the region ({region}), AWS_ENDPOINT_URL_ECR and the network"
                ))
            } else {
                Error::unavailable(format!(
                    "{action}: the request to {endpoint} failed: {detail}"
                ))
            }
        }
        SdkError::ResponseError(_) => Error::unavailable(format!(
            "{action}: {service} at {endpoint} sent a response that could not be read ({})",
            chain(err)
        )),
        _ => Error::internal(format!("{action}: {}", chain(err))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempted_sources_are_listed_on_one_line() {
        let detail = "the credential provider was not enabled: no credentials found in chain. Attempted:\n  Environment: not set\n  Profile: the credential provider was not enabled\n  Ec2InstanceMetadata: disabled";
        assert_eq!(
            attempted_sources(detail),
            "Environment, Profile, Ec2InstanceMetadata"
        );
        assert_eq!(attempted_sources("plain"), "plain");
    }

    #[test]
    fn expired_tokens_are_permission_errors_with_the_fix() {
        use aws_sdk_ecr::operation::describe_repositories::DescribeRepositoriesError;
        use aws_smithy_runtime_api::http::{Response, StatusCode};
        use aws_smithy_types::body::SdkBody;
        use aws_smithy_types::error::ErrorMetadata;

        let service = DescribeRepositoriesError::generic(
            ErrorMetadata::builder()
                .code("ExpiredTokenException")
                .message("The security token included in the request is expired")
                .build(),
        );
        let raw = Response::new(StatusCode::try_from(400).unwrap(), SdkBody::empty());
        let err = SdkError::service_error(service, raw);
        let error = describe_sdk_error(
            "describing repository app",
            "the ECR API",
            "https://api.ecr.us-east-1.amazonaws.com",
            "us-east-1",
            &err,
        );
        assert_eq!(error.code(), shared::exit::NO_PERM);
        assert!(error.message().contains("ExpiredTokenException"));
        assert!(error.hint().unwrap().contains("expired"));
    }
}
