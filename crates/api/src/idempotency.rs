//! `Idempotency-Key` on the operations that create: a retry with the same key and the
//! same request answers the first answer (with `Idempotent-Replayed: true`) instead of
//! creating a second object; the same key with another request is a 422. Keys are each
//! account's own, and kept with the answer in the transaction that created the object,
//! so an answer is remembered exactly when its object exists.

use axum::Json;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use jointeval_domain::ValidationError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::IntoParams;

use crate::extract::{json_body, read_body};
use crate::problem::{ApiError, Problem};
use crate::work::Work;

/// The header, as the contract documents it on every operation that honours it.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
#[expect(
    dead_code,
    reason = "the contract's description of the header; the extractor reads it"
)]
pub struct IdempotencyHeader {
    /// Makes retries safe: 1 to 200 visible ASCII characters, chosen by the client. A
    /// retry with the same key and request answers the first answer
    /// (`Idempotent-Replayed: true`); the same key with another request is refused.
    #[param(rename = "Idempotency-Key", min_length = 1, max_length = 200)]
    idempotency_key: Option<String>,
}

/// A client's key, with what identifies the request it came with.
#[derive(Debug, Clone)]
pub(crate) struct Key {
    key: String,
    /// sha256 of the request's path and body.
    fingerprint: String,
}

impl Key {
    /// The key as the client sent it.
    pub(crate) fn as_str(&self) -> &str {
        &self.key
    }

    /// The request's key, if it sent one.
    pub(crate) fn of(
        headers: &HeaderMap,
        path: &str,
        body: &[u8],
    ) -> Result<Option<Self>, ApiError> {
        let Some(value) = headers.get("idempotency-key") else {
            return Ok(None);
        };
        let key = value
            .to_str()
            .map_err(|_| ValidationError::new("Idempotency-Key", "must be visible ASCII"))?;
        if key.is_empty() || key.len() > 200 {
            return Err(
                ValidationError::new("Idempotency-Key", "must be 1 to 200 characters").into(),
            );
        }
        Ok(Some(Key {
            key: key.to_owned(),
            fingerprint: jointeval_domain::canonical::sha256_hex([path.as_bytes(), b"\n", body]),
        }))
    }
}

/// A JSON body, and the `Idempotency-Key` it came with.
#[derive(Debug)]
pub(crate) struct IdempotentJson<T> {
    pub(crate) key: Option<Key>,
    pub(crate) request: T,
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for IdempotentJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let path = req.uri().path().to_owned();
        let (headers, bytes) = read_body(req, state).await?;
        let request = json_body(&headers, &bytes)?;
        let key = Key::of(&headers, &path, &bytes)?;
        Ok(IdempotentJson { key, request })
    }
}

/// The first answer to this key, when there is one: the caller answers it and creates
/// nothing. Waits for a request with the same key still in flight to end first.
pub(crate) async fn replay(
    work: &mut Work<'_>,
    key: Option<&Key>,
) -> Result<Option<Response>, ApiError> {
    let Some(key) = key else {
        return Ok(None);
    };
    let account = work.caller.account.id;
    let Some(first) = jointeval_store::idempotency::first_answer(work, account, &key.key).await?
    else {
        return Ok(None);
    };
    if first.request_sha256 != key.fingerprint {
        return Err(
            ValidationError::new("Idempotency-Key", "was used for a different request").into(),
        );
    }
    let status = StatusCode::from_u16(first.status as u16).unwrap_or(StatusCode::CREATED);
    let mut response = (status, Json(first.body)).into_response();
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    Ok(Some(response))
}

/// Keeps the answer to this key, in the transaction that made what it answers.
pub(crate) async fn remember(
    work: &mut Work<'_>,
    key: Option<&Key>,
    status: StatusCode,
    answer: &impl Serialize,
) -> Result<(), ApiError> {
    let Some(key) = key else {
        return Ok(());
    };
    let body = serde_json::to_value(answer).map_err(|e| {
        ApiError::from(Problem::status(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the answer could not be kept: {e}"),
        ))
    })?;
    let account = work.caller.account.id;
    jointeval_store::idempotency::remember(
        work,
        account,
        &key.key,
        &key.fingerprint,
        i32::from(status.as_u16()),
        &body,
    )
    .await?;
    Ok(())
}
