//! Cursor pagination: `limit` (1 to 100, default 20) and an opaque `cursor` (the last id seen);
//! responses carry `next_cursor` when there may be more.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::ApiError;

pub const MAX_LIMIT: i64 = 100;
const DEFAULT_LIMIT: i64 = 20;

/// Query parameters of a list.
#[derive(Debug, Deserialize, IntoParams)]
pub struct PageQuery {
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A validated page request.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub limit: i64,
    pub after: Option<Uuid>,
}

impl PageQuery {
    /// Validates limit and cursor.
    pub fn page(&self) -> Result<Page, ApiError> {
        let limit = match &self.limit {
            None => DEFAULT_LIMIT,
            Some(l) => match l.parse::<i64>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "`limit` must be a whole number from 1 to {MAX_LIMIT}"
                    )));
                }
            },
        };
        let after = match &self.cursor {
            None => None,
            Some(c) => Some(decode(c).ok_or_else(|| {
                ApiError::bad_request("`cursor` is not a cursor this API issued")
            })?),
        };
        Ok(Page { limit, after })
    }
}

fn decode(c: &str) -> Option<Uuid> {
    let bytes = URL_SAFE_NO_PAD.decode(c).ok()?;
    Uuid::from_slice(&bytes).ok()
}

/// The cursor that continues after `id`.
#[must_use]
pub fn encode(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

/// One page of items.
#[derive(Debug, Serialize, ToSchema)]
pub struct Paged<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Paged<T> {
    /// Builds a page from `limit + 1` fetched rows, keyed by `id`.
    pub fn from_rows(mut items: Vec<T>, limit: i64, id: impl Fn(&T) -> Uuid) -> Self {
        let more = items.len() as i64 > limit;
        items.truncate(usize::try_from(limit).unwrap_or(0));
        let next_cursor = if more {
            items.last().map(|t| encode(id(t)))
        } else {
            None
        };
        Self { items, next_cursor }
    }
}
