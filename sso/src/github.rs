//! GitHub login: OAuth 2.0 authorization code flow with PKCE and a server-side `state` (GitHub
//! has no id_token), then the user from `GET /user` and the email from `GET /user/emails`: only
//! the primary address, and only if GitHub marks it verified. github.com or a GitHub Enterprise
//! Server.

use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope, TokenResponse as _, TokenUrl,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tenancy::catalog::Tenant;

use crate::connections::{self, ConnectionId, GithubApp, Protocol};
use crate::provision::Asserted;
use crate::requests;
use crate::saml::Verified;
use crate::{Rejection, Sso, SsoError};

const REQUEST_PURPOSE: &str = tenancy::crypto::registry::purpose::SSO_GITHUB_REQUEST;

#[derive(Serialize, Deserialize)]
struct Pending {
    verifier: String,
}

type Client = BasicClient<
    oauth2::EndpointSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;

fn client(app: &GithubApp, secret: Option<String>, redirect: String) -> Result<Client, SsoError> {
    let (auth, token, _) = app.urls();
    let bad = |e: oauth2::url::ParseError| SsoError::Internal(e.to_string());
    let mut c = BasicClient::new(ClientId::new(app.client_id.clone()))
        .set_auth_uri(AuthUrl::new(auth).map_err(bad)?)
        .set_token_uri(TokenUrl::new(token).map_err(bad)?)
        .set_redirect_uri(RedirectUrl::new(redirect).map_err(bad)?)
        // GitHub reads the client credentials from the form body.
        .set_auth_type(AuthType::RequestBody);
    if let Some(s) = secret {
        c = c.set_client_secret(ClientSecret::new(s));
    }
    Ok(c)
}

impl Sso {
    /// The callback URL to register in the GitHub OAuth app.
    #[must_use]
    pub fn github_redirect_uri(&self, tenant: &Tenant) -> String {
        format!("{}/sso/github/callback", self.tenant_origin(tenant))
    }

    /// Starts a GitHub login: remembers state and PKCE verifier; returns GitHub's URL.
    pub async fn github_start(
        &self,
        t: &identity::Identity,
        tenant: &Tenant,
        id: ConnectionId,
    ) -> Result<String, SsoError> {
        let (conn, _) = connections::usable(t, tenant, id).await?;
        let Protocol::Github(app) = &conn.protocol else {
            return Err(SsoError::NoSuchConnection("no such GitHub connection"));
        };
        let c = client(app, None, self.github_redirect_uri(tenant))?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state) = c
            .authorize_url(CsrfToken::new_random)
            .add_scope(Scope::new("read:user".into()))
            .add_scope(Scope::new("user:email".into()))
            .set_pkce_challenge(challenge)
            .url();
        let pending = Pending {
            verifier: verifier.secret().clone(),
        };
        requests::start(t, tenant, id, state.secret(), REQUEST_PURPOSE, &pending).await?;
        Ok(url.to_string())
    }

    /// Completes a GitHub login: consumes the state, exchanges the code, reads the user and its
    /// primary verified email.
    pub async fn github_callback(
        &self,
        t: &identity::Identity,
        tenant: &Tenant,
        code: &str,
        state: &str,
    ) -> Result<Verified, SsoError> {
        let taken: requests::Taken<Pending> =
            requests::take(t, tenant, state, REQUEST_PURPOSE).await?;
        let conn = taken.connection;
        let secret = taken.secret;
        let Protocol::Github(app) = &conn.protocol else {
            return Err(SsoError::rejected(
                Rejection::UnknownState,
                "not a GitHub login",
            ));
        };
        let pending = taken.pending;
        let c = client(
            app,
            secret.map(|s| s.to_string()),
            self.github_redirect_uri(tenant),
        )?;
        let token = c
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier))
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(r) => SsoError::rejected(
                    Rejection::Token,
                    format!("GitHub refused the code: {}", r.error()),
                ),
                other => SsoError::Upstream(format!("token exchange: {other}")),
            })?;
        let access = token.access_token().secret();
        let (_, _, api) = app.urls();
        let user = self.http.get_json(&format!("{api}/user"), access).await?;
        let emails = self
            .http
            .get_json(&format!("{api}/user/emails"), access)
            .await?;
        let id = user["id"]
            .as_u64()
            .ok_or_else(|| SsoError::Upstream("GitHub's /user has no numeric id".into()))?;
        let primary = emails
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["primary"] == Value::Bool(true));
        let email = match primary {
            Some(e) if e["verified"] == Value::Bool(true) => e["email"].as_str().map(str::to_owned),
            _ => None,
        }
        .ok_or_else(|| {
            SsoError::rejected(
                Rejection::NoEmail,
                "the GitHub account has no verified primary email",
            )
        })?;
        let identity = Asserted {
            subject: id.to_string(),
            email: Some(email),
            email_verified: true,
            name: user["name"].as_str().map(str::to_owned),
            attributes: std::collections::BTreeMap::new(),
        };
        Ok(Verified {
            connection: conn,
            identity,
            request: None,
            assertion: None,
        })
    }
}
