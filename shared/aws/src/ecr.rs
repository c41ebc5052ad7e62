//! ECR's GetAuthorizationToken: the registry credentials for the caller's account and region.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use shared::secret::{Credentials, Secret};
use shared::{Error, Result};

use crate::Aws;

/// Registry credentials from GetAuthorizationToken.
#[derive(Clone, Debug)]
pub struct Token {
    /// `AWS` and the token's password.
    pub credentials: Credentials,
    /// When the token stops working.
    pub expires_at: Option<DateTime<Utc>>,
    /// The registry the token was issued for (`123456789012.dkr.ecr.us-east-1.amazonaws.com`).
    pub registry: String,
}

/// Calls GetAuthorizationToken once. With `registry_id`, the token is asked for that account's
/// registry, as amazon-ecr-credential-helper asks for the account of the host it serves: ECR's
/// token works for every registry the caller may reach in the region either way, and the
/// answer's proxy endpoint then names that registry. Without it, the caller's own registry.
#[allow(
    deprecated,
    reason = "registryIds is deprecated as a permission scope, not removed; it names the registry of the answer's proxy endpoint"
)]
pub async fn authorization_token(aws: &Aws, registry_id: Option<&str>) -> Result<Token> {
    let output = aws
        .ecr()
        .get_authorization_token()
        .set_registry_ids(registry_id.map(|id| vec![id.to_owned()]))
        .send()
        .await
        .map_err(|e| aws.error("getting an ECR authorization token", &e))?;
    let data = output.authorization_data().first().ok_or_else(|| {
        Error::unavailable(format!(
            "the ECR API at {} answered GetAuthorizationToken without a token",
            aws.endpoint()
        ))
    })?;
    let encoded = data.authorization_token().unwrap_or_default();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok());
    let Some((username, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
        return Err(Error::unavailable(format!(
            "the ECR API at {} returned an authorization token that is not base64 of user:password",
            aws.endpoint()
        )));
    };
    let expires_at = data
        .expires_at()
        .and_then(|t| DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos()));
    let registry = match data.proxy_endpoint() {
        Some(endpoint) => shared::names::host_of_address(endpoint)
            .map_err(|e| {
                Error::unavailable(format!(
                    "the ECR API at {} returned a proxy endpoint that is not a registry: {}",
                    aws.endpoint(),
                    e.message()
                ))
            })?
            .to_owned(),
        None => String::new(),
    };
    Ok(Token {
        credentials: Credentials {
            username: username.to_owned(),
            password: Secret::new(password),
        },
        expires_at,
        registry,
    })
}
