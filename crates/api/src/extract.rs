//! Extractors that answer bad input in our problem format, naming the field at fault.

use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{StatusCode, header, request::Parts};
use bytes::Bytes;
use jointeval_domain::ValidationError;
use serde::de::DeserializeOwned;

use crate::problem::{FieldError, Problem};

/// A JSON body. Wrong content type → 415, unreadable JSON → 400, JSON of the wrong
/// shape → 422 naming the field, too large → 413.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (headers, bytes) = read_body(req, state).await?;
        json_body(&headers, &bytes).map(ApiJson)
    }
}

/// A JSON body whose fields are all optional: an empty body (with any `Content-Type`,
/// or none) is the default, as for a transition asked with nothing to add; any other
/// body is taken as [`ApiJson`] takes it.
#[derive(Debug, Clone, Copy, Default)]
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (headers, bytes) = read_body(req, state).await?;
        if bytes.is_empty() {
            return Ok(OptionalJson(T::default()));
        }
        json_body(&headers, &bytes).map(OptionalJson)
    }
}

/// A request's headers and whole body (413 past the limit).
pub(crate) async fn read_body<S: Send + Sync>(
    req: Request,
    state: &S,
) -> Result<(axum::http::HeaderMap, Bytes), Problem> {
    let headers = req.headers().clone();
    let bytes = Bytes::from_request(req, state)
        .await
        .map_err(body_problem)?;
    Ok((headers, bytes))
}

/// A JSON object body already read, for handlers that also need its bytes (to hash them).
pub fn json_body<T: DeserializeOwned>(
    headers: &axum::http::HeaderMap,
    bytes: &[u8],
) -> Result<T, Problem> {
    if !is_json(headers) {
        return Err(Problem::status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be JSON, sent with `Content-Type: application/json`",
        ));
    }
    // Every body taken here is an object. serde would also fill a struct from an array of
    // its fields in order (`[null, null]`); the contract says object, so refuse it.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[')
        && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
    {
        return Err(Problem::validation(vec![FieldError {
            field: ".".into(),
            message: "must be a JSON object, not an array".into(),
        }]));
    }
    parse_json(bytes)
}

/// A list's text filter (`q` and the like) holds at most 200 characters.
pub(crate) fn check_filter(field: &str, value: Option<&str>) -> Result<(), ValidationError> {
    match value {
        Some(v) if v.chars().count() > 200 => Err(ValidationError::new(
            field,
            "must be at most 200 characters",
        )),
        _ => Ok(()),
    }
}

/// The request's media type, without parameters, in lower case (`""` when none is sent).
pub(crate) fn media_type(headers: &axum::http::HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence
            .rsplit_once('+')
            .is_some_and(|(_, suffix)| suffix.eq_ignore_ascii_case("json"))
}

fn body_problem(rejection: BytesRejection) -> Problem {
    let status = rejection.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        Problem::status(
            status,
            "the request body is larger than this service accepts",
        )
    } else {
        Problem::status(status, "the request body could not be read")
    }
}

pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // serde_json reports some errors of shape as syntax (an object where a name of
        // an enum belongs, an array too long for the struct it fills), so a body that
        // parses as JSON on its own is of the wrong shape whatever the category: 422.
        let shape = matches!(inner.classify(), serde_json::error::Category::Data)
            || serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok();
        if shape {
            Problem::validation(vec![FieldError {
                field: path,
                message: strip_position(&inner),
            }])
        } else {
            Problem::typed(
                StatusCode::BAD_REQUEST,
                "malformed-json",
                "Malformed JSON",
                format!("the body is not valid JSON: {inner}"),
            )
        }
    })?;
    deserializer.end().map_err(|e| {
        Problem::typed(
            StatusCode::BAD_REQUEST,
            "malformed-json",
            "Malformed JSON",
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    Ok(value)
}

/// serde_json appends " at line L column C" to data errors; the field path says more.
fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// Query parameters; a parameter of the wrong type → 422 naming it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parse_query(parts.uri.query().unwrap_or_default()).map(ApiQuery)
    }
}

/// A query string as `T`; a parameter of the wrong type, or one `T` does not know, → 422
/// naming it.
pub(crate) fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, Problem> {
    let deserializer =
        serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let field = e.path().to_string();
        Problem::validation(vec![FieldError {
            field: if field == "." { "query".into() } else { field },
            message: e.into_inner().to_string(),
        }])
    })
}

/// Path parameters. A malformed id names nothing, so it is answered like an unknown one: 404.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| ApiPath(value))
            .map_err(|_| Problem::status(StatusCode::NOT_FOUND, "no resource at this address"))
    }
}

/// The `If-Match` of an update: required (428 without it), compared with the
/// resource's current `ETag` by the handler (412 when stale).
#[derive(Debug, Clone)]
pub struct IfMatch(pub String);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .headers
            .get(header::IF_MATCH)
            .and_then(|v| v.to_str().ok())
            .map(|v| IfMatch(v.trim().to_owned()))
            .ok_or_else(|| {
                Problem::status(
                    StatusCode::PRECONDITION_REQUIRED,
                    "updates need If-Match with the ETag of the version you read",
                )
            })
    }
}

impl IfMatch {
    /// 412 unless the client read the current version.
    pub fn check(&self, current_etag: &str) -> Result<(), Problem> {
        if self.0 == "*" {
            Ok(())
        } else {
            self.check_read(current_etag)
        }
    }

    /// As [`IfMatch::check`], but for an act bound to what was read (an agreement): only
    /// the ETag read will do, never `*` (428).
    pub fn check_read(&self, current_etag: &str) -> Result<(), Problem> {
        self.bound(
            current_etag,
            "the resource changed since you read it; read it again and retry with its new ETag",
        )
    }

    /// As [`IfMatch::check_read`], for an act bound to a hash the resource shows (`what`,
    /// such as "the run's digest"): `If-Match` is `hash`, quoted.
    pub fn check_hash(&self, hash: &str, what: &str) -> Result<(), Problem> {
        self.bound(
            &format!("\"{hash}\""),
            &format!(
                "If-Match is not {what}: send {what} as you read it, quoted (If-Match: \"<{what}>\")"
            ),
        )
    }

    fn bound(&self, expected: &str, stale: &str) -> Result<(), Problem> {
        if self.0 == "*" {
            Err(Problem::status(
                StatusCode::PRECONDITION_REQUIRED,
                "this binds to what you read: send the ETag you read as If-Match, not *",
            ))
        } else if self.0 == expected {
            Ok(())
        } else {
            Err(Problem::status(StatusCode::PRECONDITION_FAILED, stale))
        }
    }
}
