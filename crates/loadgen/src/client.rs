//! HTTP to the service: logins whose tokens renew themselves, calls that must succeed
//! (setup) and timed calls whose outcome is recorded (scenarios).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::stats::Recorder;

#[derive(Clone)]
pub struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(base: &str, timeout: Duration) -> anyhow::Result<Api> {
        let http = reqwest::Client::builder()
            // Without it, keep-alive requests can stall behind Nagle's algorithm.
            .tcp_nodelay(true)
            .pool_max_idle_per_host(256)
            .timeout(timeout)
            .build()
            .context("building the HTTP client")?;
        Ok(Api {
            base: base.trim_end_matches('/').to_owned(),
            http,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn login(&self, name: &str, credentials: Credentials) -> anyhow::Result<Session> {
        let token = self.token(&credentials).await?;
        Ok(Session {
            api: self.clone(),
            name: name.to_owned(),
            credentials,
            token: Mutex::new(token),
        })
    }

    async fn token(&self, credentials: &Credentials) -> anyhow::Result<Token> {
        let form: Vec<(&str, &str)> = match credentials {
            Credentials::Password { username, password } => vec![
                ("grant_type", "password"),
                ("username", username),
                ("password", password),
            ],
            Credentials::Client { id, secret } => vec![
                ("grant_type", "client_credentials"),
                ("client_id", id),
                ("client_secret", secret),
            ],
        };
        let asked = Instant::now();
        let answer = expect(
            self.http.post(self.url("/v1/auth/token")).form(&form),
            "POST /v1/auth/token",
            StatusCode::OK,
        )
        .await?;
        let value = answer["access_token"]
            .as_str()
            .context("the token answer has no access_token")?
            .to_owned();
        let lifetime = Duration::from_secs(answer["expires_in"].as_u64().unwrap_or(60));
        Ok(Token {
            value,
            // Renewed well before it expires: a request sent just before expiry must not
            // arrive after it and count as a 401 of the server's.
            renew_at: asked + lifetime.mul_f64(0.7),
        })
    }
}

pub enum Credentials {
    Password { username: String, password: String },
    Client { id: String, secret: String },
}

struct Token {
    value: String,
    renew_at: Instant,
}

/// A logged-in account. Scenarios outlast a token (15 minutes by default), so each
/// request asks for the current one.
pub struct Session {
    pub api: Api,
    pub name: String,
    credentials: Credentials,
    token: Mutex<Token>,
}

impl Session {
    pub async fn bearer(&self) -> anyhow::Result<String> {
        let mut token = self.token.lock().await;
        if Instant::now() >= token.renew_at {
            *token = self
                .api
                .token(&self.credentials)
                .await
                .with_context(|| format!("renewing the token of {}", self.name))?;
        }
        Ok(token.value.clone())
    }

    pub async fn request(&self, method: Method, path: &str) -> anyhow::Result<RequestBuilder> {
        Ok(self
            .api
            .http
            .request(method, self.api.url(path))
            .bearer_auth(self.bearer().await?))
    }

    /// A setup call: anything but `status` is an error naming the request and the answer.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        status: StatusCode,
    ) -> anyhow::Result<Value> {
        let what = format!("{method} {path} as {}", self.name);
        let mut request = self.request(method, path).await?;
        if let Some(body) = body {
            request = request.json(body);
        }
        expect(request, &what, status).await
    }

    pub async fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        self.call(Method::GET, path, None, StatusCode::OK).await
    }

    /// Agrees to an exercise as this account reads it now: its `ETag` as `If-Match`.
    pub async fn agree(&self, exercise: &str) -> anyhow::Result<Value> {
        let path = format!("/v1/exercises/{exercise}");
        let read = self
            .request(Method::GET, &path)
            .await?
            .send()
            .await
            .with_context(|| format!("GET {path} as {}: no answer", self.name))?;
        let etag = read
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .with_context(|| format!("GET {path} as {}: no ETag", self.name))?
            .to_owned();
        self.call_as_read(
            Method::POST,
            &format!("{path}/agree"),
            &serde_json::json!({}),
            &etag,
            StatusCode::OK,
        )
        .await
    }

    /// A setup call bound to what was read: `etag` as `If-Match`.
    pub async fn call_as_read(
        &self,
        method: Method,
        path: &str,
        body: &Value,
        etag: &str,
        status: StatusCode,
    ) -> anyhow::Result<Value> {
        let what = format!("{method} {path} as {}", self.name);
        let request = self
            .request(method, path)
            .await?
            .header(reqwest::header::IF_MATCH, etag)
            .json(body);
        expect(request, &what, status).await
    }
}

/// Sends `request`; its JSON answer when the status is `status`, else an error with the
/// status and body.
pub async fn expect(
    request: RequestBuilder,
    what: &str,
    status: StatusCode,
) -> anyhow::Result<Value> {
    let response = request
        .send()
        .await
        .with_context(|| format!("{what}: no answer"))?;
    let got = response.status();
    let text = response
        .text()
        .await
        .with_context(|| format!("{what}: reading the answer"))?;
    if got != status {
        bail!("{what} answered {got} (expected {status}): {text}");
    }
    if text.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).with_context(|| format!("{what}: the answer is not JSON: {text}"))
}

/// What a timed request answered.
pub enum Outcome {
    /// The expected status, with the body read whole.
    Ok(bytes::Bytes),
    /// Already recorded as a failure.
    Failed,
}

/// Sends `request` and reads the whole answer, timing both; a status other than `status`
/// (or no answer) is recorded as a failure with its body. The caller records a success,
/// with the rows it counts in the body.
pub async fn timed(
    recorder: &mut Recorder,
    request: RequestBuilder,
    status: StatusCode,
) -> (Duration, Outcome) {
    let started = Instant::now();
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => {
            let latency = started.elapsed();
            recorder.failure(latency, "io", &error_chain(&e));
            return (latency, Outcome::Failed);
        }
    };
    let got = response.status();
    let body = response.bytes().await;
    let latency = started.elapsed();
    match body {
        Ok(body) if got == status => (latency, Outcome::Ok(body)),
        Ok(body) => {
            recorder.failure(
                latency,
                got.as_str(),
                &String::from_utf8_lossy(&body[..body.len().min(4096)]),
            );
            (latency, Outcome::Failed)
        }
        Err(e) => {
            recorder.failure(latency, "io", &error_chain(&e));
            (latency, Outcome::Failed)
        }
    }
}

/// Streams an answer without holding it: its status, lines and bytes, and how long the
/// whole of it took. Exports are read this way, as a client saving them to disk would.
pub async fn timed_stream(
    recorder: &mut Recorder,
    request: RequestBuilder,
) -> Option<(Duration, u64, u64)> {
    let started = Instant::now();
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => {
            recorder.failure(started.elapsed(), "io", &error_chain(&e));
            return None;
        }
    };
    let status = response.status();
    if status != StatusCode::OK {
        let body = response.text().await.unwrap_or_default();
        recorder.failure(started.elapsed(), status.as_str(), &body);
        return None;
    }
    let (mut lines, mut bytes) = (0u64, 0u64);
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => {
                bytes += chunk.len() as u64;
                lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
            }
            Err(e) => {
                // A stream cut short after a 200: the server failed mid-export.
                recorder.failure(
                    started.elapsed(),
                    "cut",
                    &format!("after {lines} lines: {}", error_chain(&e)),
                );
                return None;
            }
        }
    }
    Some((started.elapsed(), lines, bytes))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
