//! The load generator's own data, made through the API as `examples/setup_demo.py` makes
//! it: people created by the bootstrapped admins, a protocol approved by both institutes'
//! reviewers, an active exercise, a harness's service account; then runs as scenarios
//! need them.

use anyhow::Context;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::client::{Api, Credentials, Session};
use crate::rows;

/// The accounts and the exercise every scenario works in.
pub struct Fixture {
    pub exercise_id: Uuid,
    pub protocol_id: Uuid,
    pub version: i64,
    /// A US author who is also an evaluator: writes the protocol, runs the read runs.
    pub us_author: Session,
    /// Releases US runs to UK.
    pub us_reviewer: Session,
    pub us_viewer: Session,
    pub uk_viewer: Session,
    /// A US service account with the harness's scopes: the writer of ingest and mixed.
    pub harness: Session,
}

pub struct Admins {
    pub us_email: String,
    pub us_password: String,
    pub uk_email: String,
    pub uk_password: String,
}

fn id_of(value: &Value, what: &str) -> anyhow::Result<Uuid> {
    value["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("{what} has no id: {value}"))
}

/// A random suffix, so that the load generator can run again against the same server.
fn suffix() -> String {
    Uuid::now_v7().simple().to_string()[20..].to_owned()
}

/// A passphrase for a person nobody logs in as again (v7 ids carry 74 random bits).
fn passphrase() -> String {
    format!("loadgen-{}", Uuid::now_v7().simple())
}

async fn admin(api: &Api, email: &str, password: &str) -> anyhow::Result<Session> {
    let session = api
        .login(
            email,
            Credentials::Password {
                username: email.to_owned(),
                password: password.to_owned(),
            },
        )
        .await
        .with_context(|| format!("logging in as {email}"))?;
    let me = session.get_json("/v1/me").await?;
    if me["must_change_password"].as_bool() == Some(true) {
        anyhow::bail!(
            "{email} still has a one-time password: start the server for the first time (or run \
             `jointeval admin bootstrap`) with JOINTEVAL_ADMIN_PASSWORD_<CODE> set"
        );
    }
    Ok(session)
}

/// A person of the admin's institute with `roles`, logged in, whose one-time password has
/// been replaced (every other call answers 403 until it is).
async fn person(
    api: &Api,
    admin: &Session,
    email: &str,
    roles: &[&str],
) -> anyhow::Result<Session> {
    let created = admin
        .call(
            Method::POST,
            "/v1/accounts",
            Some(&json!({"kind": "person", "email": email, "display_name": "Load generator"})),
            StatusCode::CREATED,
        )
        .await?;
    let account = id_of(&created["account"], "the new account")?;
    for role in roles {
        admin
            .call(
                Method::POST,
                &format!("/v1/accounts/{account}/memberships"),
                Some(&json!({"role": role})),
                StatusCode::CREATED,
            )
            .await?;
    }
    let one_time = created["one_time_password"]
        .as_str()
        .context("a new person has a one-time password")?
        .to_owned();
    let password = passphrase();
    let first = api
        .login(
            email,
            Credentials::Password {
                username: email.to_owned(),
                password: one_time.clone(),
            },
        )
        .await?;
    first
        .call(
            Method::POST,
            "/v1/me/password",
            Some(&json!({"current_password": one_time, "new_password": password})),
            StatusCode::NO_CONTENT,
        )
        .await?;
    api.login(
        email,
        Credentials::Password {
            username: email.to_owned(),
            password,
        },
    )
    .await
}

const PROTOCOL_CONTENT: &str = r#"{
    "objective": "Load generator: per-sample scores at scale",
    "tasks": [{
        "name": "Synthetic",
        "dataset": {"name": "loadgen-data", "version": "1", "sha256": null, "sample_count": 1000000},
        "harness": {"name": "jointeval-loadgen", "task_ref": "synthetic"},
        "scorers": ["match"],
        "metrics": ["accuracy"],
        "epochs": 3
    }],
    "metrics": [{"name": "accuracy", "higher_is_better": true, "threshold": null}]
}"#;

pub async fn fixture(api: &Api, admins: &Admins) -> anyhow::Result<Fixture> {
    let us_admin = admin(api, &admins.us_email, &admins.us_password).await?;
    let uk_admin = admin(api, &admins.uk_email, &admins.uk_password).await?;
    let s = suffix();
    // Nobody grants their own roles, so the work is done by people the admins create;
    // whoever edits a version may not review it, hence separate reviewers.
    let us_author = person(
        api,
        &us_admin,
        &format!("author-{s}@us.jointeval.invalid"),
        &["author", "evaluator"],
    )
    .await?;
    let us_reviewer = person(
        api,
        &us_admin,
        &format!("reviewer-{s}@us.jointeval.invalid"),
        &["reviewer"],
    )
    .await?;
    let uk_reviewer = person(
        api,
        &uk_admin,
        &format!("reviewer-{s}@uk.jointeval.invalid"),
        &["reviewer"],
    )
    .await?;
    let us_viewer = person(
        api,
        &us_admin,
        &format!("viewer-{s}@us.jointeval.invalid"),
        &["viewer"],
    )
    .await?;
    let uk_viewer = person(
        api,
        &uk_admin,
        &format!("viewer-{s}@uk.jointeval.invalid"),
        &["viewer"],
    )
    .await?;

    let protocol = us_author
        .call(
            Method::POST,
            "/v1/protocols",
            Some(
                &json!({"slug": format!("loadgen-{s}"), "title": "Load generator",
                         "risk_area": "other", "participants": ["US", "UK"]}),
            ),
            StatusCode::CREATED,
        )
        .await?;
    let protocol_id = id_of(&protocol, "the protocol")?;
    let content: Value = serde_json::from_str(PROTOCOL_CONTENT).context("protocol content")?;
    let draft = us_author
        .call(
            Method::POST,
            &format!("/v1/protocols/{protocol_id}/versions"),
            Some(&json!({"content": content})),
            StatusCode::CREATED,
        )
        .await?;
    let version = draft["number"].as_i64().context("the draft's number")?;
    let submitted = us_author
        .call(
            Method::POST,
            &format!("/v1/protocols/{protocol_id}/versions/{version}/submit"),
            None,
            StatusCode::OK,
        )
        .await?;
    // A review is bound to the content's hash, as the submission answered it.
    let hash = submitted["content_sha256"]
        .as_str()
        .context("the submitted version has no content hash")?;
    for reviewer in [&us_reviewer, &uk_reviewer] {
        reviewer
            .call_as_read(
                Method::POST,
                &format!("/v1/protocols/{protocol_id}/versions/{version}/reviews"),
                &json!({"verdict": "approve"}),
                &format!("\"{hash}\""),
                StatusCode::CREATED,
            )
            .await?;
    }

    let now = chrono::Utc::now();
    let exercise = us_admin
        .call(
            Method::POST,
            "/v1/exercises",
            Some(&json!({
                "title": format!("Load generator {s}"),
                "model": {"provider": "jointeval", "name": "loadgen", "version": "1", "access": "public_api"},
                "protocol_versions": [{"protocol_id": protocol_id, "number": version}],
                "participants": ["US", "UK"],
                "starts_at": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "ends_at": (now + chrono::Duration::days(7)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            })),
            StatusCode::CREATED,
        )
        .await?;
    let exercise_id = id_of(&exercise, "the exercise")?;
    let mut status = Value::Null;
    for admin in [&us_admin, &uk_admin] {
        status = admin.agree(&exercise_id.to_string()).await?["status"].clone();
    }
    anyhow::ensure!(
        status == "active",
        "the exercise is {status} after both agreed"
    );

    // The harness registers its runs, so it must see the exercise (exercises:read).
    let harness = us_admin
        .call(
            Method::POST,
            "/v1/accounts",
            Some(
                &json!({"kind": "service", "display_name": format!("Load generator harness {s}"),
                         "scopes": ["runs:execute", "runs:write", "results:write", "runs:read", "exercises:read"]}),
            ),
            StatusCode::CREATED,
        )
        .await?;
    let harness_account = id_of(&harness["account"], "the harness")?;
    us_admin
        .call(
            Method::POST,
            &format!("/v1/accounts/{harness_account}/memberships"),
            Some(&json!({"role": "evaluator"})),
            StatusCode::CREATED,
        )
        .await?;
    let harness = api
        .login(
            "the US harness",
            Credentials::Client {
                id: harness["client_id"]
                    .as_str()
                    .context("client_id")?
                    .to_owned(),
                secret: harness["client_secret"]
                    .as_str()
                    .context("client_secret")?
                    .to_owned(),
            },
        )
        .await?;

    Ok(Fixture {
        exercise_id,
        protocol_id,
        version,
        us_author,
        us_reviewer,
        us_viewer,
        uk_viewer,
        harness,
    })
}

impl Fixture {
    /// A queued run of the exercise, registered by `by`.
    pub async fn queued_run(&self, by: &Session) -> anyhow::Result<Uuid> {
        let run = by
            .call(
                Method::POST,
                &format!("/v1/exercises/{}/runs", self.exercise_id),
                Some(&json!({
                    "protocol_id": self.protocol_id, "protocol_version": self.version,
                    "harness": {"name": "jointeval-loadgen", "version": env!("CARGO_PKG_VERSION")},
                    "config": {}, "model_version": "loadgen-1",
                })),
                StatusCode::CREATED,
            )
            .await?;
        id_of(&run, "the run")
    }

    /// A running run, which accepts results.
    pub async fn running_run(&self, by: &Session) -> anyhow::Result<Uuid> {
        let run = self.queued_run(by).await?;
        by.call(
            Method::POST,
            &format!("/v1/runs/{run}/start"),
            None,
            StatusCode::OK,
        )
        .await?;
        Ok(run)
    }

    /// A finished US run with `n` scores and a few metrics, released to UK unless
    /// `release` is false. The scores go in one NDJSON request, generated while it is sent,
    /// so that a million of them cost the client no memory.
    pub async fn finished_run(&self, n: u64, release: bool) -> anyhow::Result<Uuid> {
        let run = self.running_run(&self.us_author).await?;
        const CHUNK: u64 = 5_000;
        let chunks = futures_util::stream::iter((0..n.div_ceil(CHUNK)).map(move |k| {
            let start = k * CHUNK;
            Ok::<_, std::io::Error>(rows::ndjson(start, CHUNK.min(n - start)))
        }));
        let request = self
            .us_author
            .request(Method::POST, &format!("/v1/runs/{run}/samples"))
            .await?
            .header("content-type", "application/x-ndjson")
            .body(reqwest::Body::wrap_stream(chunks));
        let answer = crate::client::expect(
            request,
            &format!("POST /v1/runs/{run}/samples ({n} scores)"),
            StatusCode::OK,
        )
        .await?;
        anyhow::ensure!(
            answer["stored"].as_u64() == Some(n),
            "{n} scores sent, the run holds {answer}"
        );
        let metrics: Vec<Value> = (0..20)
            .map(|k| {
                json!({"scorer": "match", "metric": format!("metric_{k:02}"),
                            "value": 0.5 + f64::from(k) / 100.0, "stderr": 0.01, "sample_count": n})
            })
            .collect();
        self.us_author
            .call(
                Method::POST,
                &format!("/v1/runs/{run}/metrics"),
                Some(&json!({"metrics": metrics})),
                StatusCode::OK,
            )
            .await?;
        let finished = self
            .us_author
            .call(
                Method::POST,
                &format!("/v1/runs/{run}/finish"),
                Some(&json!({"outcome": "succeeded"})),
                StatusCode::OK,
            )
            .await?;
        if release {
            // A release is bound to the results' digest, as the run's finish answered it.
            let digest = finished["digest"]
                .as_str()
                .context("the finished run has no digest")?;
            self.us_reviewer
                .call_as_read(
                    Method::POST,
                    &format!("/v1/runs/{run}/release"),
                    &json!({"institutes": ["UK"]}),
                    &format!("\"{digest}\""),
                    StatusCode::OK,
                )
                .await?;
        }
        Ok(run)
    }
}
