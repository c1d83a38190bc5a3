//! OpenID Connect relying party: discovery, authorization code flow with PKCE (S256), `state`
//! and `nonce` kept server-side (single use, expiring, sealed with the tenant's key), and the
//! id_token checked by the openidconnect crate (signature against the provider's JWKS, `iss`,
//! `aud`, `exp`, `nonce`). Google is an OIDC connection with Google's issuer.
//!
//! Discovery documents (with their JWKS) are cached per issuer for [`DISCOVERY_TTL`], so a login
//! costs the provider one token request rather than three; an id_token whose signature does not
//! verify against the cached keys (the provider rotated them) is checked once more against a
//! freshly fetched document before it is refused.

use std::collections::BTreeMap;

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType,
    CoreGenderClaim, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreProviderMetadata, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret,
    CsrfToken, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet, IdTokenFields,
    IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope,
    StandardErrorResponse, StandardTokenResponse, TokenResponse as _,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tenancy::catalog::Tenant;

use crate::connections::{self, ConnectionId, OidcProvider, Protocol};
use crate::provision::Asserted;
use crate::requests;
use crate::saml::Verified;
use crate::{Rejection, Sso, SsoError};

const REQUEST_PURPOSE: &str = tenancy::crypto::registry::purpose::SSO_OIDC_REQUEST;

/// How long a provider's discovery document and keys are reused.
pub const DISCOVERY_TTL: std::time::Duration = std::time::Duration::from_secs(600);

/// The per-issuer cache of discovery documents (bounded; entries expire after [`DISCOVERY_TTL`]).
pub(crate) fn discovery_cache() -> moka::future::Cache<String, CoreProviderMetadata> {
    moka::future::Cache::builder()
        .max_capacity(10_000)
        .time_to_live(DISCOVERY_TTL)
        .build()
}

/// Every claim of the id_token, for role mapping (`groups` and the like).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(transparent)]
pub struct AllClaims(serde_json::Map<String, Value>);
impl AdditionalClaims for AllClaims {}

type Fields = IdTokenFields<
    AllClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type Client = openidconnect::Client<
    AllClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    StandardTokenResponse<Fields, CoreTokenType>,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// What is remembered between the redirect and the callback.
#[derive(Serialize, Deserialize)]
struct Pending {
    nonce: String,
    verifier: String,
}

impl Sso {
    /// The redirect URI registered at the provider for this tenant.
    #[must_use]
    pub fn oidc_redirect_uri(&self, tenant: &Tenant) -> String {
        format!("{}/sso/oidc/callback", self.tenant_origin(tenant))
    }

    async fn client(
        &self,
        tenant: &Tenant,
        p: &OidcProvider,
        secret: Option<String>,
        fresh: bool,
    ) -> Result<Client, SsoError> {
        if fresh {
            self.discovery.invalidate(&p.issuer).await;
        }
        let issuer = IssuerUrl::new(p.issuer.clone())
            .map_err(|_| SsoError::Invalid("the connection's issuer is not a URL".into()))?;
        let metadata = self
            .discovery
            .try_get_with(p.issuer.clone(), async move {
                CoreProviderMetadata::discover_async(issuer, &self.http)
                    .await
                    .map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| SsoError::Upstream(format!("OIDC discovery: {e}")))?;
        let redirect = RedirectUrl::new(self.oidc_redirect_uri(tenant))
            .map_err(|e| SsoError::Internal(e.to_string()))?;
        Ok(Client::from_provider_metadata(
            metadata,
            ClientId::new(p.client_id.clone()),
            secret.map(ClientSecret::new),
        )
        .set_redirect_uri(redirect))
    }

    /// Starts a login: remembers state, nonce and PKCE verifier; returns the provider's URL.
    pub async fn oidc_start(
        &self,
        t: &identity::Identity,
        tenant: &Tenant,
        id: ConnectionId,
    ) -> Result<String, SsoError> {
        let (conn, secret) = connections::usable(t, tenant, id).await?;
        let Protocol::Oidc(p) = &conn.protocol else {
            return Err(SsoError::NoSuchConnection("no such OIDC connection"));
        };
        let client = self
            .client(tenant, p, secret.map(|s| s.to_string()), false)
            .await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge);
        for s in &p.extra_scopes {
            req = req.add_scope(Scope::new(s.clone()));
        }
        let (url, state, nonce) = req.url();
        let pending = Pending {
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
        };
        requests::start(t, tenant, id, state.secret(), REQUEST_PURPOSE, &pending).await?;
        Ok(url.to_string())
    }

    /// Completes a login: consumes the state, exchanges the code (with the PKCE verifier) and
    /// verifies the id_token. Returns the connection and the identity.
    pub async fn oidc_callback(
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
        let Protocol::Oidc(p) = &conn.protocol else {
            return Err(SsoError::rejected(
                Rejection::UnknownState,
                "not an OIDC login",
            ));
        };
        let pending = taken.pending;
        let secret = secret.map(|s| s.to_string());
        let client = self.client(tenant, p, secret.clone(), false).await?;
        let token = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| SsoError::Upstream(format!("no token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier))
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(r) => SsoError::rejected(
                    Rejection::Token,
                    format!("the provider refused the code: {}", r.error()),
                ),
                other => SsoError::Upstream(format!("token exchange: {other}")),
            })?;
        let id_token = token
            .id_token()
            .ok_or_else(|| SsoError::rejected(Rejection::Token, "no id_token in the answer"))?;
        let nonce = Nonce::new(pending.nonce);
        let refused = |e: ClaimsVerificationError| {
            SsoError::rejected(Rejection::Token, format!("id_token refused: {e}"))
        };
        let claims = match id_token.claims(&client.id_token_verifier(), &nonce) {
            Ok(c) => c.clone(),
            // Signed with a key the cached document does not list: the provider may have rotated
            // its keys. Fetch the document again, once, and check against the new keys.
            Err(ClaimsVerificationError::SignatureVerification(_)) => {
                let fresh = self.client(tenant, p, secret, true).await?;
                id_token
                    .claims(&fresh.id_token_verifier(), &nonce)
                    .map_err(refused)?
                    .clone()
            }
            Err(e) => return Err(refused(e)),
        };
        let mut attributes = BTreeMap::new();
        for (k, v) in &claims.additional_claims().0 {
            let values = match v {
                Value::String(s) => vec![s.clone()],
                Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect(),
                _ => continue,
            };
            attributes.insert(k.clone(), values);
        }
        let identity = Asserted {
            subject: claims.subject().to_string(),
            email: claims.email().map(|e| e.to_string()),
            email_verified: claims.email_verified() == Some(true),
            name: claims
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.to_string()),
            attributes,
        };
        Ok(Verified {
            connection: conn,
            identity,
            request: None,
            assertion: None,
        })
    }
}
