//! What can go wrong in SSO. A [`Rejection`] is a refused login (a security event, answered 4xx);
//! the other variants are bad requests, missing things, or infrastructure failures.

use identity::AuthError;

/// Why a login through an identity provider was refused. The names are stable: they are the
/// `reason` of the `sso.rejected` security event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Not base64, not XML, a DTD, not a SAML Response, or missing required parts.
    Malformed,
    /// Comments, processing instructions, more or fewer than one assertion, an encrypted
    /// assertion, duplicate IDs, or a signature that is not an enveloped signature of the
    /// Response or of the one Assertion (signature wrapping).
    Structure,
    /// No signature, a signature by a key that is not the connection's, content modified after
    /// signing, or an algorithm outside the allow-list.
    Signature,
    WrongIssuer,
    WrongAudience,
    WrongRecipient,
    WrongDestination,
    Expired,
    NotYetValid,
    /// `InResponseTo` names no request this tenant issued (or another tenant's).
    UnknownRequest,
    /// The request was already answered, or the assertion id was already used.
    Replay,
    /// No `InResponseTo` and the connection does not allow IdP-initiated login.
    Unsolicited,
    /// The IdP answered with a non-success status.
    IdpStatus,
    /// OIDC: unknown, used or expired `state`.
    UnknownState,
    /// OIDC: the code exchange or the id_token failed its checks.
    Token,
    /// The identity would take over an account whose email it has not proven.
    LinkRefused,
    /// The identity has no email address to provision an account with.
    NoEmail,
    /// The connection is disabled.
    Disabled,
    /// The identity's email is not in one of the tenant's verified domains.
    UnverifiedDomain,
}

impl Rejection {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Structure => "structure",
            Self::Signature => "signature",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::WrongRecipient => "wrong_recipient",
            Self::WrongDestination => "wrong_destination",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::UnknownRequest => "unknown_request",
            Self::Replay => "replay",
            Self::Unsolicited => "unsolicited",
            Self::IdpStatus => "idp_status",
            Self::UnknownState => "unknown_state",
            Self::Token => "token",
            Self::LinkRefused => "link_refused",
            Self::NoEmail => "no_email",
            Self::Disabled => "disabled",
            Self::UnverifiedDomain => "unverified_domain",
        }
    }

    /// What the client is told (short; the event has the detail).
    #[must_use]
    pub fn public_detail(self) -> &'static str {
        match self {
            Self::LinkRefused => {
                "an account with this email exists and cannot be linked automatically; sign in with your password and ask an admin to link the account"
            }
            Self::NoEmail => "the identity provider sent no email address for this user",
            Self::Disabled => "this SSO connection is disabled",
            Self::UnverifiedDomain => {
                "the identity provider asserted an email outside the tenant's verified domains"
            }
            Self::UnknownState => "the login request is unknown, used or expired; start again",
            _ => "the identity provider's response was refused",
        }
    }
}

/// An SSO operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    #[error("refused ({}): {detail}", reason.as_str())]
    Rejected { reason: Rejection, detail: String },
    #[error("{0}")]
    Invalid(String),
    /// The connection does not exist (or was deleted meanwhile); the text says which kind.
    #[error("{0}")]
    NoSuchConnection(&'static str),
    #[error("a SAML connection with this IdP entity id already exists")]
    DuplicateEntityId,
    /// The domain is verified by another tenant.
    #[error("this domain is verified by another tenant")]
    DomainTaken,
    /// The identity is linked to another user.
    #[error("this identity is already linked to another user")]
    IdentityTaken,
    /// The tenant has not claimed this domain.
    #[error("no such domain")]
    NoSuchDomain,
    #[error(transparent)]
    Catalog(#[from] tenancy::catalog::CatalogError),
    /// The identity provider could not be reached or answered nonsense (not the user's fault).
    #[error("identity provider unavailable: {0}")]
    Upstream(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("internal: {0}")]
    Internal(String),
}

impl SsoError {
    pub(crate) fn rejected(reason: Rejection, detail: impl Into<String>) -> Self {
        Self::Rejected {
            reason,
            detail: detail.into(),
        }
    }
}

impl From<tokio_postgres::Error> for SsoError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Auth(AuthError::Db(e))
    }
}

impl From<tenancy::crypto::KeyError> for SsoError {
    fn from(e: tenancy::crypto::KeyError) -> Self {
        Self::Auth(AuthError::Key(e))
    }
}

impl From<tenancy::dataplane::ConnectError> for SsoError {
    fn from(e: tenancy::dataplane::ConnectError) -> Self {
        Self::Auth(AuthError::Connect(e))
    }
}
