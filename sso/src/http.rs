//! The outbound HTTP client (reqwest over rustls with ring) and its adapter to the
//! `AsyncHttpClient` that openidconnect / oauth2 expect. Redirects are never followed (an IdP
//! endpoint that redirects is refused rather than leading the server somewhere else), and every
//! connection goes through the egress guard (no private or loopback addresses unless allowed).

use std::time::Duration;

use openidconnect::http::{HeaderValue, Response, StatusCode};
use openidconnect::{HttpRequest, HttpResponse};

use crate::SsoError;
use crate::egress::{Egress, GuardedResolver};

/// Largest response body accepted from an identity provider.
const MAX_BODY: usize = 1024 * 1024;

#[derive(Clone, Debug)]
pub(crate) struct HttpClient {
    client: reqwest::Client,
    egress: Egress,
}

/// An outbound request failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct HttpError(String);

impl HttpClient {
    pub(crate) fn new(egress: Egress) -> Result<Self, SsoError> {
        // reqwest is built without a default provider: the process needs one installed once.
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(GuardedResolver(egress))
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build()
            .map(|client| Self { client, egress })
            .map_err(|e| SsoError::Internal(format!("http client: {e}")))
    }

    /// Refuses a URL whose host is an IP address the policy does not allow (the resolver never
    /// sees those).
    fn guard(&self, url: &str) -> Result<(), String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
        self.egress
            .check_literal(&parsed)
            .map_err(|why| format!("outbound connection refused: {why}"))
    }

    /// Performs one request for openidconnect.
    pub(crate) async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let (parts, body) = req.into_parts();
        let url = parts.uri.to_string();
        self.guard(&url).map_err(HttpError)?;
        let mut r = self.client.request(parts.method, url).body(body);
        for (k, v) in &parts.headers {
            r = r.header(k, v);
        }
        let resp = r.send().await.map_err(|e| HttpError(e.to_string()))?;
        let status =
            StatusCode::from_u16(resp.status().as_u16()).map_err(|e| HttpError(e.to_string()))?;
        let content_type = resp.headers().get("content-type").cloned();
        let bytes = resp.bytes().await.map_err(|e| HttpError(e.to_string()))?;
        if bytes.len() > MAX_BODY {
            return Err(HttpError("response too large".into()));
        }
        let mut out = Response::new(bytes.to_vec());
        *out.status_mut() = status;
        if let Some(ct) = content_type
            && let Ok(v) = HeaderValue::from_bytes(ct.as_bytes())
        {
            out.headers_mut().insert("content-type", v);
        }
        Ok(out)
    }

    /// GET `url` (optionally with a bearer token): the body of a 2xx answer, at most 1 MiB.
    async fn get(&self, url: &str, token: Option<&str>) -> Result<Vec<u8>, SsoError> {
        self.guard(url)
            .map_err(|e| SsoError::Upstream(format!("GET {url}: {e}")))?;
        let mut req = self.client.get(url).header("user-agent", "platform-sso");
        if let Some(t) = token {
            req = req
                .bearer_auth(t)
                .header("accept", "application/vnd.github+json");
        }
        let resp = req
            .send()
            .await
            .map_err(|e| SsoError::Upstream(format!("GET {url}: {e}")))?;
        if !resp.status().is_success() {
            return Err(SsoError::Upstream(format!(
                "GET {url} answered HTTP {}",
                resp.status().as_u16()
            )));
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| SsoError::Upstream(e.to_string()))?;
        if bytes.len() > MAX_BODY {
            return Err(SsoError::Upstream(format!("GET {url}: response too large")));
        }
        Ok(bytes.to_vec())
    }

    /// GET a JSON resource with a bearer token (GitHub's REST API).
    pub(crate) async fn get_json(
        &self,
        url: &str,
        token: &str,
    ) -> Result<serde_json::Value, SsoError> {
        let body = self.get(url, Some(token)).await?;
        serde_json::from_slice(&body).map_err(|e| SsoError::Upstream(format!("GET {url}: {e}")))
    }

    /// GET a document (IdP metadata), as text.
    pub(crate) async fn get_text(&self, url: &str) -> Result<String, SsoError> {
        let body = self.get(url, None).await.map_err(|e| match e {
            SsoError::Upstream(d) => {
                SsoError::Invalid(format!("fetching the metadata failed: {d}"))
            }
            other => other,
        })?;
        String::from_utf8(body)
            .map_err(|_| SsoError::Invalid("the metadata document is not UTF-8".into()))
    }
}

/// The client as openidconnect / oauth2 call it (`request_async(&sso.http)`, discovery).
impl<'c> openidconnect::AsyncHttpClient<'c> for HttpClient {
    type Error = HttpError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>,
    >;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(HttpClient::call(self, request))
    }
}
