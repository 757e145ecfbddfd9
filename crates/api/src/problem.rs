//! RFC 9457 problem details: the one wire format of every error this service answers.

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jointeval_domain::ValidationError;
use jointeval_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error answer (RFC 9457, `application/problem+json`).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:jointeval:problem:validation",
    "title": "Invalid request",
    "status": 422,
    "detail": "the request has 1 invalid field",
    "errors": [{"field": "limit", "message": "must be between 1 and 200"}]
}))]
pub struct Problem {
    /// A URI naming the kind of problem; `about:blank` when the status says it all.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request, for a person to read.
    pub detail: String,
    /// The fields that failed validation, when there are any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    #[serde(skip)]
    #[schema(ignore)]
    headers: Vec<(HeaderName, HeaderValue)>,
    /// Set when the access policy refused the request, which the audit trail records.
    #[serde(skip)]
    #[schema(ignore)]
    denied: bool,
}

/// One invalid field of a request.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct FieldError {
    /// Where the field is: a query parameter's name, or a path into the JSON body.
    #[schema(example = "limit")]
    pub field: String,
    #[schema(example = "must be between 1 and 200")]
    pub message: String,
}

impl From<ValidationError> for FieldError {
    fn from(e: ValidationError) -> Self {
        Self {
            field: e.field,
            message: e.message,
        }
    }
}

impl Problem {
    /// A problem that the status code describes fully.
    pub fn status(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            kind: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
            headers: Vec::new(),
            denied: false,
        }
    }

    /// A problem of a kind of our own, named `urn:jointeval:problem:<kind>`.
    pub fn typed(status: StatusCode, kind: &str, title: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("urn:jointeval:problem:{kind}"),
            title: title.into(),
            ..Self::status(status, detail)
        }
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            many => format!("the request has {} invalid fields", many.len()),
        };
        Self {
            errors,
            ..Self::typed(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "Invalid request",
                detail,
            )
        }
    }

    /// The middleware adds `Retry-After` to every 503.
    pub fn unavailable() -> Self {
        Self::typed(
            StatusCode::SERVICE_UNAVAILABLE,
            "database-unavailable",
            "Database unavailable",
            "the database cannot be reached right now; retry later",
        )
    }

    /// The answer to a failure of ours: it says nothing of the cause, which is logged.
    pub fn internal() -> Self {
        Self::status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the service failed to answer this request; the failure has been logged",
        )
    }

    /// Marks the answer as the access policy's refusal.
    pub fn denied(mut self) -> Self {
        self.denied = true;
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The whole HTTP/1.1 response, closing the connection: for the answers the listener
    /// writes itself, where no router runs (a connection refused, a head that could not
    /// be read).
    pub(crate) fn http1_closing(&self, request_id: &str) -> Vec<u8> {
        let body = serde_json::to_vec(self).unwrap_or_default();
        let status = self.status_code();
        let mut head = format!(
            "HTTP/1.1 {} {}\r\ndate: {}\r\ncontent-type: {PROBLEM_JSON}\r\ncontent-length: {}\r\nconnection: close\r\nx-request-id: {request_id}\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("Error"),
            chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT"),
            body.len(),
        );
        for (name, value) in &self.headers {
            if let Ok(value) = value.to_str() {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&body);
        bytes
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (
            self.status_code(),
            [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))],
            body,
        )
            .into_response();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        if self.denied {
            response.extensions_mut().insert(crate::denials::Denied);
        }
        response
    }
}

/// What a handler fails with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{}", .0.detail)]
    Problem(Problem),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<Problem> for ApiError {
    fn from(p: Problem) -> Self {
        ApiError::Problem(p)
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        ApiError::Problem(Problem::validation(vec![e.into()]))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Problem(p) => p.into_response(),
            ApiError::Store(StoreError::Unavailable(e)) => {
                tracing::warn!(error = %e, "database unavailable");
                Problem::unavailable().into_response()
            }
            ApiError::Store(StoreError::Conflict { constraint }) => Problem::typed(
                StatusCode::CONFLICT,
                "conflict",
                "Conflict",
                format!("the change conflicts with existing data ({constraint})"),
            )
            .into_response(),
            ApiError::Store(StoreError::UnstorableText) => Problem::typed(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unstorable-text",
                "Unstorable text",
                "the request holds text with a NUL character (\\u0000), which cannot be stored",
            )
            .into_response(),
            ApiError::Store(StoreError::OutOfRange) => Problem::typed(
                StatusCode::CONFLICT,
                "out-of-range",
                "Values out of range",
                "the scores are too large to compute on in double precision (a difference or a square past 1.8e308)",
            )
            .into_response(),
            ApiError::Store(e) => {
                tracing::error!(error = %e, "request failed");
                Problem::internal().into_response()
            }
        }
    }
}
