//! The walk's engine: steps (a route template, its caller, its body, what to keep, the event
//! expected), filled from saved values and sent one after another with their own request ids.

use std::collections::BTreeMap;

use axum::http::Method;
use platform_tests::{ADMIN_TOKEN, PASSWORD, Req, TestApp, TestResponse};
use serde_json::{Value, json};

/// Who sends a step.
#[derive(Clone, Copy)]
pub(super) enum Who {
    Operator,
    Anonymous,
    /// A bearer of the access token saved under this name.
    Bearer(&'static str),
}

/// What a step's body is.
pub(super) enum Body {
    None,
    /// JSON whose string values may name saved values as `{name}`.
    Json(Value),
    /// A form body, sent as is (a malformed one: the step expects a refusal).
    Form(&'static str),
}

/// One step: a mutating route, its caller and body, what to keep from the answer, and the audit
/// event its request id must carry.
pub(super) struct Step {
    pub(super) who: Who,
    pub(super) route: &'static str,
    pub(super) body: Body,
    /// `(name, field)`: keep the answer's string `field` as `{name}` for later steps.
    pub(super) save: Vec<(&'static str, &'static str)>,
    pub(super) event: &'static str,
}

pub(super) fn step(who: Who, route: &'static str, event: &'static str) -> Step {
    Step {
        who,
        route,
        body: Body::None,
        save: Vec::new(),
        event,
    }
}

impl Step {
    pub(super) fn json(mut self, body: Value) -> Self {
        self.body = Body::Json(body);
        self
    }
    pub(super) fn form(mut self, body: &'static str) -> Self {
        self.body = Body::Form(body);
        self
    }
    pub(super) fn save(mut self, name: &'static str, field: &'static str) -> Self {
        self.save.push((name, field));
        self
    }
}

/// The walk's state: saved values and every request sent, with its request id.
pub(super) struct Walk<'a> {
    pub(super) app: &'a TestApp,
    pub(super) host: String,
    pub(super) vars: BTreeMap<&'static str, String>,
    /// `(route, request id, expected event)`.
    pub(super) sent: Vec<(&'static str, String, &'static str)>,
}

impl<'a> Walk<'a> {
    pub(super) fn fill(&self, template: &str) -> String {
        self.vars.iter().fold(template.to_owned(), |s, (k, v)| {
            s.replace(&format!("{{{k}}}"), v)
        })
    }

    pub(super) fn fill_json(&self, v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(self.fill(s)),
            Value::Array(a) => Value::Array(a.iter().map(|v| self.fill_json(v)).collect()),
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, v)| (k.clone(), self.fill_json(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    pub(super) fn set(&mut self, name: &'static str, value: impl Into<String>) {
        self.vars.insert(name, value.into());
    }

    pub(super) fn var(&self, name: &str) -> &str {
        self.vars
            .get(name)
            .unwrap_or_else(|| panic!("nothing saved as {name}"))
    }

    /// Runs the steps in order; a step expecting a form body expects a refusal (4xx), every
    /// other one a success. Returns the last answer.
    pub(super) async fn run(&mut self, steps: Vec<Step>) -> Option<TestResponse> {
        let mut last = None;
        for s in steps {
            let (method, path) = s.route.split_once(' ').expect("METHOD /path");
            let id = format!("audit-{}", self.sent.len());
            let mut req = Req::new(method.parse::<Method>().expect("method"), self.fill(path))
                .header("x-request-id", &id);
            req = match s.who {
                Who::Operator => req.bearer(ADMIN_TOKEN),
                Who::Anonymous => req.host(self.host.clone()),
                Who::Bearer(name) => req.host(self.host.clone()).bearer(self.var(name)),
            };
            let refusal = matches!(s.body, Body::Form(_));
            req = match &s.body {
                Body::None => req,
                Body::Json(v) => req.json(&self.fill_json(v)),
                Body::Form(f) => req.raw(*f, Some("application/x-www-form-urlencoded")),
            };
            let r = self.app.send(req).await;
            if refusal {
                assert!(
                    r.status.is_client_error(),
                    "{}: {} {}",
                    s.route,
                    r.status,
                    r.text
                );
            } else {
                assert!(
                    r.status.is_success(),
                    "{}: {} {}",
                    s.route,
                    r.status,
                    r.text
                );
            }
            for (name, field) in s.save {
                self.set(name, r.str(field));
            }
            self.sent.push((s.route, id, s.event));
            last = Some(r);
        }
        last
    }

    /// An unrecorded password login of `self@acme.test`.
    pub(super) async fn login_self(&self) -> TestResponse {
        self.app
            .send(
                Req::new(Method::POST, "/api/v1/auth/login")
                    .host(self.host.clone())
                    .json(&json!({"email": "self@acme.test", "password": PASSWORD})),
            )
            .await
    }
}

pub(super) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
