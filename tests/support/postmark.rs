//! The email provider's stand-in for the email tests: an HTTP server on a loopback port that
//! answers in Postmark's documented shapes (`POST /email` → `{"To", "SubmittedAt", "MessageID",
//! "ErrorCode": 0, "Message": "OK"}`; `422 {"ErrorCode": 406}` for an inactive recipient;
//! `GET /messages/outbound` → `{"TotalCount", "Messages": [...]}` with `metadata_<key>` filters),
//! checks the server token, and can be told to fail with 5xx or to hang (a timeout).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

/// The server token the stand-in accepts.
pub const TOKEN: &str = "test-postmark-server-token";

/// How the next `POST /email` calls are answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Accept,
    /// 503 Service Unavailable.
    Unavailable,
    /// Never answers (the client times out).
    Hang,
}

#[derive(Default)]
struct Inner {
    mode: Option<Mode>,
    /// Every `POST /email` call, accepted or not.
    calls: Vec<Value>,
    /// Accepted messages with their `MessageID`.
    accepted: Vec<(String, Value)>,
}

/// A running stand-in, stopped on drop.
pub struct PostmarkStandIn {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PostmarkStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(i: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    i.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn send(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if headers
        .get("x-postmark-server-token")
        .and_then(|v| v.to_str().ok())
        != Some(TOKEN)
    {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"ErrorCode": 10, "Message": "Bad or missing Server API token."})),
        );
    }
    let mode = {
        let mut i = lock(&inner);
        i.calls.push(body.clone());
        i.mode.unwrap_or(Mode::Accept)
    };
    match mode {
        Mode::Unavailable => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"ErrorCode": 500, "Message": "Service unavailable"})),
            );
        }
        Mode::Hang => {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        }
        Mode::Accept => {}
    }
    for field in ["From", "To", "Subject"] {
        if body[field].as_str().is_none_or(str::is_empty) {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(
                    json!({"ErrorCode": 300, "Message": format!("Invalid email request: {field}")}),
                ),
            );
        }
    }
    let to = body["To"].as_str().unwrap_or_default().to_owned();
    if to.starts_with("inactive") {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(
                json!({"ErrorCode": 406, "Message": "You tried to send to a recipient that has been marked as inactive."}),
            ),
        );
    }
    let id = uuid::Uuid::now_v7().to_string();
    lock(&inner).accepted.push((id.clone(), body));
    (
        StatusCode::OK,
        Json(json!({
            "To": to,
            "SubmittedAt": "2026-11-28T20:00:00.0000000-05:00",
            "MessageID": id,
            "ErrorCode": 0,
            "Message": "OK",
        })),
    )
}

async fn search(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    Query(q): Query<Vec<(String, String)>>,
) -> (StatusCode, Json<Value>) {
    if headers
        .get("x-postmark-server-token")
        .and_then(|v| v.to_str().ok())
        != Some(TOKEN)
    {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"ErrorCode": 10, "Message": "Bad or missing Server API token."})),
        );
    }
    let filters: Vec<(String, String)> = q
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix("metadata_").map(|k| (k.to_owned(), v)))
        .collect();
    let i = lock(&inner);
    let hits: Vec<Value> = i
        .accepted
        .iter()
        .filter(|(_, b)| filters.iter().all(|(k, v)| b["Metadata"][k].as_str() == Some(v)))
        .map(|(id, b)| json!({"MessageID": id, "To": [{"Email": b["To"]}], "Subject": b["Subject"], "Metadata": b["Metadata"], "Status": "Sent"}))
        .collect();
    (
        StatusCode::OK,
        Json(json!({"TotalCount": hits.len(), "Messages": hits})),
    )
}

impl PostmarkStandIn {
    /// Starts the stand-in on a free loopback port.
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/email", post(send))
            .route("/messages/outbound", get(search))
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind the provider stand-in");
        let addr = listener.local_addr().expect("its address");
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        Self {
            url: format!("http://{addr}"),
            inner,
            task,
        }
    }

    /// How the next calls are answered.
    pub fn set_mode(&self, mode: Mode) {
        lock(&self.inner).mode = Some(mode);
    }

    /// Every `POST /email` body so far (accepted or not).
    #[must_use]
    pub fn calls(&self) -> Vec<Value> {
        lock(&self.inner).calls.clone()
    }

    /// The accepted messages so far: (`MessageID`, request body).
    #[must_use]
    pub fn accepted(&self) -> Vec<(String, Value)> {
        lock(&self.inner).accepted.clone()
    }
}
