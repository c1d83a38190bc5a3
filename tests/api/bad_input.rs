//! Hostile and careless input against every route in the OpenAPI document: malformed JSON,
//! unknown fields, wrong types, oversized bodies, invalid path parameters, absurd limits and
//! cursors, wrong content types. Every answer must be below 500, and every error a problem+json.

use axum::http::Method;
use std::collections::BTreeMap;

use platform_tests::{ADMIN_TOKEN, PASSWORD, Req, TestApp, TestResponse};
use serde_json::{Value, json};

fn method(m: &str) -> Method {
    Method::from_bytes(m.to_ascii_uppercase().as_bytes()).expect("method")
}

fn check(r: &TestResponse, ctx: &str) {
    assert!(
        r.status.as_u16() < 500,
        "{ctx}: got {} {}",
        r.status,
        r.text
    );
    if r.status.as_u16() >= 400 {
        assert_eq!(
            r.headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/problem+json"),
            "{ctx}: error without problem+json: {}",
            r.text
        );
        assert!(r.body["detail"].is_string(), "{ctx}: {}", r.text);
        for leak in ["SQLSTATE", "tokio_postgres", "panicked", "sqlx", "db error"] {
            assert!(
                !r.text.contains(leak),
                "{ctx}: internal text leaked: {}",
                r.text
            );
        }
    }
}

/// Path parameters: malformed, absent, oversized, encoded traversal and injection, and real.
fn param_values(project: &str) -> Vec<String> {
    vec![
        "not-a-uuid".into(),
        "00000000-0000-0000-0000-000000000000".into(),
        "x".repeat(300),
        "%FF%FE".into(),
        "..%2F..%2Fetc%2Fpasswd".into(),
        "%27%3B%20DROP%20TABLE%20projects%3B--".into(),
        project.to_owned(),
        "acme".into(),
    ]
}

/// Bodies with their content types: none, broken, of the wrong shape or type, too big.
fn bodies() -> Vec<(Option<Vec<u8>>, Option<&'static str>)> {
    vec![
        (None, None),
        (Some(b"{".to_vec()), Some("application/json")),
        (Some(b"[]".to_vec()), Some("application/json")),
        (Some(b"null".to_vec()), Some("application/json")),
        (Some(br#"{"unexpected": true}"#.to_vec()), Some("application/json")),
        (
            Some(
                serde_json::to_vec(&json!({"name": 5, "title": [], "slug": {}, "status": 7, "domain": 1, "url": false, "plan": -1, "description": 3}))
                    .expect("json"),
            ),
            Some("application/json"),
        ),
        (
            Some(
                serde_json::to_vec(&json!({"name": "\u{0000}", "title": "", "slug": "UPPER", "status": "maybe", "domain": "..", "url": "postgres://", "placement": "moon"}))
                    .expect("json"),
            ),
            Some("application/json"),
        ),
        (Some(br#"{"name": "ok"}"#.to_vec()), Some("text/plain")),
        (Some(vec![b'{'; 2 * 1024 * 1024]), Some("application/json")),
        (Some(vec![0xff, 0xfe, 0x00]), Some("application/json")),
    ]
}

/// Query strings for listings: bad limits and cursors.
const QUERIES: [&str; 8] = [
    "",
    "?limit=0",
    "?limit=-1",
    "?limit=99999999999999999999",
    "?limit=abc",
    "?cursor=!!!",
    "?cursor=AAAA",
    "?limit=5&cursor=",
];

/// The order of the walk: tenant routes first, then the operator's, destructive ones last (a
/// `DELETE /admin/v1/tenants/acme` early on would leave every later tenant request answered by
/// tenant resolution instead of its handler).
fn walk_order(template: &str, method: &str) -> (u8, u8) {
    let area = u8::from(template.starts_with("/admin"));
    let destructive = u8::from(method == "delete");
    (area, destructive)
}

/// Whether an answer came from past authentication and authorization: a 401 or 403 may be the
/// layers in front of the handler, anything else is the handler (or its body and path
/// extractors, which run after authentication) answering.
fn reached_handler(r: &TestResponse) -> bool {
    !matches!(r.status.as_u16(), 401 | 403)
}

#[tokio::test]
async fn no_route_answers_bad_input_with_a_5xx_and_every_handler_is_reached() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    // An owner signed in with a JWT passes every permission and the self-service routes (API
    // keys are refused there), so tenant requests reach their handlers.
    let owner = app.user(&t, "owner@acme.test", "owner").await;
    let p = t.api.create_project("p").await.str("id");
    let doc = app.send(Req::new(Method::GET, "/openapi.json")).await.body;
    let paths = doc["paths"].as_object().expect("paths").clone();
    assert!(paths.len() >= 13);
    let mut routes: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(template, ops)| {
            ops.as_object()
                .expect("ops")
                .keys()
                .map(|m| (template.clone(), m.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    routes.sort_by_key(|(template, m)| walk_order(template, m));

    let param_values = param_values(&p);
    let bodies = bodies();
    let mut sent = 0usize;
    let mut reached: BTreeMap<String, usize> = BTreeMap::new();
    for (template, m) in &routes {
        let admin = template.starts_with("/admin");
        let api = template.starts_with("/api");
        // A fresh token per route: a route walked before may have ended the session.
        let token = if api {
            t.anon
                .login(&owner.email, PASSWORD)
                .await
                .str("access_token")
        } else {
            String::new()
        };
        let route = format!("{} {template}", m.to_uppercase());
        let n_params = template.matches('{').count();
        let values: Vec<&String> = if n_params == 0 {
            vec![&param_values[0]]
        } else {
            param_values.iter().collect()
        };
        for v in values {
            let mut path = template.clone();
            while let (Some(s), Some(e)) = (path.find('{'), path.find('}')) {
                path.replace_range(s..=e, v);
            }
            for q in QUERIES {
                for (body, ct) in &bodies {
                    // Keep the run bounded: queries only matter for GET, bodies for writes.
                    if (m == "get" && body.is_some()) || (m != "get" && !q.is_empty()) {
                        continue;
                    }
                    let mut r = Req::new(method(m), format!("{path}{q}"));
                    if admin {
                        r = r.bearer(ADMIN_TOKEN);
                    } else if api {
                        r = r.host(t.host()).bearer(&token);
                    }
                    if let Some(b) = body {
                        r = r.raw(b.clone(), *ct);
                    }
                    let resp = app.send(r).await;
                    check(
                        &resp,
                        &format!(
                            "{} {path}{q} body={:?}",
                            m.to_uppercase(),
                            body.as_ref().map(
                                |b| String::from_utf8_lossy(&b[..b.len().min(60)]).into_owned()
                            )
                        ),
                    );
                    if reached_handler(&resp) {
                        *reached.entry(route.clone()).or_default() += 1;
                    }
                    sent += 1;
                }
            }
        }
    }
    assert!(sent > 500, "only {sent} requests were sent");
    let unreached: Vec<String> = routes
        .iter()
        .filter(|(template, _)| template.starts_with("/api") || template.starts_with("/admin"))
        .map(|(template, m)| format!("{} {template}", m.to_uppercase()))
        .filter(|route| !reached.contains_key(route))
        .collect();
    assert!(
        unreached.is_empty(),
        "no bad input ever got past authentication to these handlers: {unreached:?}"
    );
    app.finish().await;
}

#[tokio::test]
async fn specific_bad_inputs_get_the_right_status() {
    let app = TestApp::spawn().await;
    let t = app.tenant("acme", "shared", None).await;
    let api = |m: Method, path: &str| Req::new(m, path).host(t.host()).bearer(&t.key);
    app.send(api(Method::POST, "/api/v1/projects").raw(b"{".to_vec(), Some("application/json")))
        .await
        .assert_problem(400);
    app.send(api(Method::POST, "/api/v1/projects").json(&json!({"name": "x", "extra": 1})))
        .await
        .assert_problem(422);
    app.send(api(Method::POST, "/api/v1/projects").json(&json!({"name": 1})))
        .await
        .assert_problem(422);
    app.send(api(Method::POST, "/api/v1/projects").json(&json!({"name": "   "})))
        .await
        .assert_problem(422);
    app.send(api(Method::POST, "/api/v1/projects").raw(b"{}".to_vec(), Some("text/plain")))
        .await
        .assert_problem(415);
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(1024 * 1024 + 10));
    app.send(api(Method::POST, "/api/v1/projects").raw(big.into_bytes(), Some("application/json")))
        .await
        .assert_problem(413);
    app.send(api(Method::GET, "/api/v1/projects/not-a-uuid"))
        .await
        .assert_problem(400);
    app.send(api(Method::GET, "/api/v1/projects?limit=0"))
        .await
        .assert_problem(400);
    app.send(api(Method::GET, "/api/v1/projects?limit=101"))
        .await
        .assert_problem(400);
    app.send(api(Method::GET, "/api/v1/projects?cursor=zzz"))
        .await
        .assert_problem(400);
    app.send(api(Method::PUT, "/api/v1/projects"))
        .await
        .assert_problem(405);
    app.send(api(Method::GET, "/api/v1/nothing-here"))
        .await
        .assert_problem(404);
    let v: Value = app
        .send(api(Method::GET, "/api/v1/projects?limit=100"))
        .await
        .body;
    assert!(v["items"].is_array());
    app.finish().await;
}
