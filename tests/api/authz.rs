//! Authorization: every tenant route declares a permission (checked against the OpenAPI
//! document), the allow/deny matrix of the built-in roles over every tenant route, API key roles,
//! custom roles, and the object-level rule of project membership.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::http::Method;
use identity::mfa::code_at;
use platform::authz::Access;
use platform::router::declared;
use platform_tests::{PASSWORD, Req, TestApp, TestTenant, TestUser};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::auth::as_user;

mod keys;
mod matrix;
mod projects;
mod roles;
