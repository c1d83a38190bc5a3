//! SP-initiated login: the HTTP-Redirect AuthnRequest sent to the IdP, whose ID is remembered
//! (single use) so the response can be matched to it.

use tenancy::catalog::Tenant;

use crate::connections::{self, ConnectionId, Protocol};
use crate::requests;
use crate::{Rejection, Sso, SsoError};

impl Sso {
    /// Starts an SP-initiated login: the IdP URL carrying the AuthnRequest (its ID remembered).
    pub async fn saml_login(
        &self,
        t: &identity::Identity,
        tenant: &Tenant,
        id: ConnectionId,
        relay_state: &str,
    ) -> Result<String, SsoError> {
        let mut tx = t.auth.begin(&t.dataplane, tenant).await?;
        let conn = connections::get(&mut tx, id)
            .await?
            .ok_or(SsoError::NoSuchConnection("no such SSO connection"))?;
        let Protocol::Saml(idp) = &conn.protocol else {
            return Err(SsoError::NoSuchConnection("no such SAML connection"));
        };
        if !conn.enabled {
            return Err(SsoError::rejected(
                Rejection::Disabled,
                "connection disabled",
            ));
        }
        let sp = self.service_provider(tenant, idp, false)?;
        let mut req = sp
            .make_authentication_request(&idp.sso_url)
            .map_err(|e| SsoError::Internal(format!("AuthnRequest: {e}")))?;
        req.id = format!("_{}", tenancy::crypto::random_token(32));
        let url = req
            .redirect(relay_state)
            .map_err(|e| SsoError::Internal(format!("AuthnRequest: {e}")))?
            .ok_or_else(|| SsoError::Internal("AuthnRequest without destination".into()))?;
        requests::remember(&mut tx, id, &req.id, None).await?;
        tx.commit().await?;
        Ok(url.to_string())
    }
}
