//! `moby.filesync.v1.Auth/Credentials`: the daemon asks for a registry's credentials when a
//! build pulls from it (a base image, `--cache-from`). The answer comes from the same lookup
//! img-push uses ([`registry::credentials::lookup`]): what Docker stores for that host, else an
//! ECR token for an ECR host, else none. Credentials are only ever given for the host asked
//! about, and a host name that is not one gets nothing.

use aws::AwsArgs;
use bollard_buildkit_proto::moby::filesync::v1::auth_server;
use bollard_buildkit_proto::moby::filesync::v1::{
    CredentialsRequest, CredentialsResponse, FetchTokenRequest, FetchTokenResponse,
    GetTokenAuthorityRequest, GetTokenAuthorityResponse, VerifyTokenAuthorityRequest,
    VerifyTokenAuthorityResponse,
};
use shared::{verbose, warn};
use tonic::{Request, Response, Status};

/// Credentials for the daemon's pulls.
pub(crate) struct Auth {
    pub(crate) aws: AwsArgs,
}

#[tonic::async_trait]
impl auth_server::Auth for Auth {
    async fn credentials(
        &self,
        request: Request<CredentialsRequest>,
    ) -> Result<Response<CredentialsResponse>, Status> {
        let host = request.into_inner().host;
        let mut answer = CredentialsResponse::default();
        match registry::credentials::lookup(&host, &self.aws).await {
            Ok(found) => {
                verbose!(
                    "the build asked for credentials for {}: {}",
                    shared::names::quote(&host),
                    found.source
                );
                if let Some(credentials) = found.credentials {
                    answer.username = credentials.username;
                    answer.secret = credentials.password.expose().to_owned();
                }
            }
            Err(e) => warn!(
                "no credentials for {} ({}); the build pulls from it without",
                shared::names::quote(&host),
                e.message()
            ),
        }
        Ok(Response::new(answer))
    }

    async fn fetch_token(
        &self,
        _request: Request<FetchTokenRequest>,
    ) -> Result<Response<FetchTokenResponse>, Status> {
        Err(Status::unimplemented(
            "tokens are not fetched here: ask for credentials",
        ))
    }

    async fn get_token_authority(
        &self,
        _request: Request<GetTokenAuthorityRequest>,
    ) -> Result<Response<GetTokenAuthorityResponse>, Status> {
        Err(Status::unimplemented("no token authority"))
    }

    async fn verify_token_authority(
        &self,
        _request: Request<VerifyTokenAuthorityRequest>,
    ) -> Result<Response<VerifyTokenAuthorityResponse>, Status> {
        Err(Status::unimplemented("no token authority"))
    }
}
