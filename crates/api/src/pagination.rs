//! Cursor pagination: `limit` and an opaque `cursor` in, `items` and `next_cursor` out.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::extract::parse_query;
use crate::problem::{FieldError, Problem};

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// How many items to answer, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200, example = 50)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page; empty or absent for the first.
    pub cursor: Option<String>,
}

/// A list's query: its filters `F`, and the page it asks for (`limit` and `cursor`, as
/// [`PageQuery`] documents them), checked. A parameter neither knows is refused.
pub struct ListQuery<F> {
    pub filter: F,
    pub page: PageRequest,
}

impl<F: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ListQuery<F> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let is_page = |name: &str| name == "limit" || name == "cursor";
        let part = |page: bool| {
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(
                    form_urlencoded::parse(query.as_bytes()).filter(|(k, _)| is_page(k) == page),
                )
                .finish()
        };
        let page: PageQuery = parse_query(&part(true))?;
        let filter = parse_query(&part(false))?;
        Ok(ListQuery {
            filter,
            page: page.validate()?,
        })
    }
}

/// A validated page request: the limit, and the sort key to continue after.
pub struct PageRequest {
    pub limit: u32,
    pub after: Option<String>,
}

impl PageRequest {
    /// The id to continue after, for lists ordered by id.
    pub fn after_id(&self) -> Result<Option<Uuid>, Problem> {
        self.after
            .as_deref()
            .map(|after| Uuid::parse_str(after).map_err(|_| foreign_cursor()))
            .transpose()
    }

    /// The key to continue after, for lists in the order of a compound key (a run's
    /// scores by sample, epoch and scorer, say): the key as [`key_text`] wrote it.
    pub fn after_key<K: DeserializeOwned>(&self) -> Result<Option<K>, Problem> {
        self.after
            .as_deref()
            .map(|after| serde_json::from_str(after).map_err(|_| foreign_cursor()))
            .transpose()
    }

    /// How many rows to fetch: one more than the page, to know whether another follows.
    pub fn fetch(&self) -> i64 {
        i64::from(self.limit) + 1
    }
}

impl PageQuery {
    pub fn validate(self) -> Result<PageRequest, Problem> {
        self.validate_up_to(MAX_LIMIT)
    }

    /// For lists whose pages may be larger than [`MAX_LIMIT`].
    pub fn validate_up_to(self, max: u32) -> Result<PageRequest, Problem> {
        let mut errors = Vec::new();
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=max).contains(&limit) {
            errors.push(FieldError {
                field: "limit".into(),
                message: format!("must be between 1 and {max}"),
            });
        }
        let cursor = self.cursor.as_deref().filter(|c| !c.is_empty());
        let after = match cursor.map(decode_cursor) {
            None => None,
            Some(Some(after)) => Some(after),
            Some(None) => {
                errors.push(FieldError {
                    field: "cursor".into(),
                    message: "is not a cursor this service gave out".into(),
                });
                None
            }
        };
        if errors.is_empty() {
            Ok(PageRequest { limit, after })
        } else {
            Err(Problem::validation(errors))
        }
    }
}

/// A compound key a page continues after, as [`Page::from_rows`] takes it: JSON, so that
/// any character of an id or a name comes back as it was.
pub fn key_text(key: &impl Serialize) -> String {
    serde_json::to_string(key).unwrap_or_default()
}

/// One page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// `rows` was fetched with one more than `limit`, so a further page is known to exist
    /// without counting; `key` gives the sort key a cursor continues after.
    pub fn from_rows(mut rows: Vec<T>, limit: u32, key: impl Fn(&T) -> String) -> Self {
        let next_cursor = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last().map(|last| encode_cursor(&key(last)))
        } else {
            None
        };
        Self {
            items: rows,
            next_cursor,
        }
    }
}

impl<T> Page<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }
}

fn foreign_cursor() -> Problem {
    Problem::validation(vec![FieldError {
        field: "cursor".into(),
        message: "is not a cursor this service gave out".into(),
    }])
}

fn encode_cursor(after: &str) -> String {
    URL_SAFE_NO_PAD.encode(after)
}

fn decode_cursor(cursor: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_continues_after_the_last_item_of_a_full_page() {
        let page = Page::from_rows(vec!["a", "b", "c"], 2, |s| s.to_string());
        assert_eq!(page.items, vec!["a", "b"]);
        let next = PageQuery {
            limit: Some(2),
            cursor: page.next_cursor,
        }
        .validate()
        .expect("valid");
        assert_eq!(next.after.as_deref(), Some("b"));
        let last = Page::from_rows(vec!["c"], 2, |s| s.to_string());
        assert_eq!(last.next_cursor, None);
    }

    #[test]
    fn a_score_cursor_brings_back_any_key_and_refuses_an_id_cursor() {
        let key = key_text(&("a,\u{1f}\"b\"\n", 3, "match\u{1f}2"));
        let page = Page::from_rows(vec![1, 2], 1, |_| key.clone());
        let next = PageQuery {
            limit: Some(1),
            cursor: page.next_cursor,
        }
        .validate()
        .expect("valid");
        assert_eq!(
            next.after_key::<(String, i32, String)>()
                .expect("a score key"),
            Some(("a,\u{1f}\"b\"\n".into(), 3, "match\u{1f}2".into()))
        );
        let id = Uuid::from_u128(7).to_string();
        let page = Page::from_rows(vec![1, 2], 1, |_| id.clone());
        let other = PageQuery {
            limit: Some(1),
            cursor: page.next_cursor,
        }
        .validate()
        .expect("valid");
        assert_eq!(
            other
                .after_key::<(String, i32, String)>()
                .err()
                .map(|p| p.status),
            Some(422)
        );
    }

    #[test]
    fn limits_out_of_range_and_foreign_cursors_are_refused_by_name() {
        let problem = PageQuery {
            limit: Some(0),
            cursor: Some("!!not base64!!".into()),
        }
        .validate()
        .err()
        .expect("invalid");
        let fields: Vec<_> = problem.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["limit", "cursor"]);
        assert_eq!(problem.status, 422);
    }

    #[test]
    fn any_cursor_decodes_or_is_refused_and_every_key_round_trips() {
        // xorshift64*: the same strings on every run.
        let mut state = 0x00c0_ffee_u64;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        for _ in 0..5_000 {
            let len = (next() % 64) as usize;
            let text: String = (0..len)
                .map(|_| char::from_u32((next() % 0x2FF) as u32).unwrap_or('?'))
                .collect();
            // Whatever arrives, an answer: a key or a refusal.
            let _ = decode_cursor(&text);
            let query = PageQuery {
                limit: Some((next() % 400) as u32),
                cursor: Some(text.clone()),
            };
            if let Err(problem) = query.validate() {
                assert_eq!(problem.status, 422);
            }
            // A key the service hands out comes back as it was.
            assert_eq!(
                decode_cursor(&encode_cursor(&text)).as_deref(),
                Some(text.as_str())
            );
        }
    }
}
