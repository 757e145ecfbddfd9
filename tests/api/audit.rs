//! The audit trail over HTTP: every change the API makes writes exactly one event, in the
//! change's own transaction, chained by hash; refused logins and policy refusals are
//! recorded too; concurrent writers keep one linear chain; and not even the database
//! owner rewrites it.
//!
//! Events are read through the owner connection of the test database (`app.db.pool()`),
//! not through the service's pool, which row-level security restricts.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use jointeval_domain::audit::{ChainCheck, Event};
use jointeval_domain::{Role, Scope};
use jointeval_store::PgPool;
use reqwest::RequestBuilder;
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::support::story::{active_exercise, new_run};
use crate::support::{PASSWORD, TestApp, problem};

/// Every mutating route of the API and the one event a successful call writes. A route
/// the OpenAPI document lists and this table (and the scenario below) does not fails
/// `every_mutating_route_writes_exactly_one_audit_event`.
const ROUTES: &[(&str, &str, &str)] = &[
    ("POST", "/v1/auth/token", "token.issued"),
    ("POST", "/v1/me/password", "account.password_changed"),
    ("POST", "/v1/accounts", "account.created"),
    ("PATCH", "/v1/accounts/{id}", "account.updated"),
    ("POST", "/v1/accounts/{id}/disable", "account.disabled"),
    ("POST", "/v1/accounts/{id}/enable", "account.enabled"),
    (
        "POST",
        "/v1/accounts/{id}/reset-password",
        "account.password_reset",
    ),
    (
        "POST",
        "/v1/accounts/{id}/rotate-secret",
        "account.secret_rotated",
    ),
    (
        "POST",
        "/v1/accounts/{id}/memberships",
        "membership.granted",
    ),
    (
        "POST",
        "/v1/accounts/{id}/memberships/{membership_id}/revoke",
        "membership.revoked",
    ),
    ("POST", "/v1/exchanges", "exchange.proposed"),
    ("POST", "/v1/exchanges/{id}/approve", "exchange.approved"),
    ("POST", "/v1/exchanges/{id}/reject", "exchange.rejected"),
    ("POST", "/v1/exchanges/{id}/end", "exchange.ended"),
    ("POST", "/v1/protocols", "protocol.created"),
    (
        "PUT",
        "/v1/protocols/{id}/participants",
        "protocol.participants_set",
    ),
    ("POST", "/v1/protocols/{id}/retire", "protocol.retired"),
    (
        "POST",
        "/v1/protocols/{id}/versions",
        "protocol_version.drafted",
    ),
    (
        "PATCH",
        "/v1/protocols/{id}/versions/{number}",
        "protocol_version.edited",
    ),
    (
        "POST",
        "/v1/protocols/{id}/versions/{number}/comments",
        "protocol_version.commented",
    ),
    (
        "POST",
        "/v1/protocols/{id}/versions/{number}/submit",
        "protocol_version.submitted",
    ),
    (
        "POST",
        "/v1/protocols/{id}/versions/{number}/reviews",
        "protocol_version.reviewed",
    ),
    ("POST", "/v1/exercises", "exercise.planned"),
    ("PATCH", "/v1/exercises/{id}", "exercise.plan_changed"),
    ("POST", "/v1/exercises/{id}/agree", "exercise.agreed"),
    ("POST", "/v1/exercises/{id}/complete", "exercise.completed"),
    ("POST", "/v1/exercises/{id}/cancel", "exercise.cancelled"),
    ("POST", "/v1/exercises/{id}/runs", "run.created"),
    ("POST", "/v1/runs/{id}/start", "run.started"),
    ("POST", "/v1/runs/{id}/metrics", "run.metrics_written"),
    ("POST", "/v1/runs/{id}/samples", "run.samples_ingested"),
    ("POST", "/v1/runs/{id}/finish", "run.finished"),
    ("POST", "/v1/runs/{id}/release", "run.released"),
    ("POST", "/v1/runs/{id}/cancel", "run.cancelled"),
    ("POST", "/v1/runs/claim", "run.claimed"),
    ("POST", "/v1/runs/{id}/heartbeat", "run.heartbeat"),
    (
        "POST",
        "/v1/runs/{id}/inspect-log",
        "run.inspect_log_imported",
    ),
    (
        "POST",
        "/v1/exercises/{id}/runs/inspect-log",
        "run.created_from_log",
    ),
];

pub(crate) const EVENT_COLUMNS: &str = "seq, at, actor, institute_id, action, object_type, object_id, \
     visible_to, summary, request_id, client_addr, prev_hash, hash";

pub(crate) fn event_of(row: &PgRow) -> Event {
    Event {
        seq: row.get("seq"),
        at: row.get("at"),
        actor: row.get("actor"),
        institute_id: row.get("institute_id"),
        action: row.get("action"),
        object_type: row.get("object_type"),
        object_id: row.get("object_id"),
        visible_to: row.get("visible_to"),
        summary: row.get("summary"),
        request_id: row.get("request_id"),
        client_addr: row.get("client_addr"),
        prev_hash: row.get("prev_hash"),
        hash: row.get("hash"),
    }
}

/// The audit trail as the database owner reads it.
struct Trail {
    owner: PgPool,
}

impl Trail {
    fn of(app: &TestApp) -> Self {
        Self {
            owner: app.db.pool(),
        }
    }

    async fn count(&self) -> i64 {
        sqlx::query_scalar("select count(*) from audit_events")
            .fetch_one(&self.owner)
            .await
            .expect("count the audit events")
    }

    async fn newest(&self) -> Event {
        let row = sqlx::query(&format!(
            "select {EVENT_COLUMNS} from audit_events order by seq desc limit 1"
        ))
        .fetch_one(&self.owner)
        .await
        .expect("the newest audit event");
        event_of(&row)
    }

    async fn after(&self, seq: i64) -> Vec<Event> {
        sqlx::query(&format!(
            "select {EVENT_COLUMNS} from audit_events where seq > $1 order by seq"
        ))
        .bind(seq)
        .fetch_all(&self.owner)
        .await
        .expect("the audit events")
        .iter()
        .map(event_of)
        .collect()
    }

    async fn all(&self) -> Vec<Event> {
        self.after(0).await
    }

    async fn head(&self) -> (i64, String) {
        sqlx::query_as("select seq, hash from audit_head")
            .fetch_one(&self.owner)
            .await
            .expect("the chain head")
    }

    /// Every stored row, each as one line of JSON text: what must not hold a secret.
    async fn rows_as_text(&self) -> Vec<String> {
        sqlx::query_scalar("select row_to_json(e)::text from audit_events e order by seq")
            .fetch_all(&self.owner)
            .await
            .expect("the audit rows")
    }

    /// The newest event once there are `count` of them. Refusals are recorded after the
    /// handler answers: this waits a little for them, then insists on the exact count.
    async fn newest_at(&self, count: i64) -> Event {
        for _ in 0..40 {
            if self.count().await >= count {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(self.count().await, count, "audit events after the request");
        self.newest().await
    }

    async fn scalar(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.owner)
            .await
            .expect(sql)
    }
}

/// Verifies the whole chain from the first event; answers its head.
fn verify(events: &[Event]) -> jointeval_domain::audit::Link {
    let mut check = ChainCheck::new(None);
    for e in events {
        check
            .push(e)
            .unwrap_or_else(|broken| panic!("the audit chain does not verify: {broken}"));
    }
    check
        .finish()
        .unwrap_or_else(|broken| panic!("the audit chain does not verify: {broken}"))
}

fn post(app: &TestApp, token: &str, path: &str, body: &Value) -> RequestBuilder {
    app.client.post(app.url(path)).bearer_auth(token).json(body)
}

fn patch(app: &TestApp, token: &str, path: &str, etag: &str, body: &Value) -> RequestBuilder {
    app.client
        .patch(app.url(path))
        .bearer_auth(token)
        .header("if-match", etag)
        .json(body)
}

fn put(app: &TestApp, token: &str, path: &str, body: &Value) -> RequestBuilder {
    app.client.put(app.url(path)).bearer_auth(token).json(body)
}

fn password_login(app: &TestApp, username: &str, password: &str) -> RequestBuilder {
    app.client.post(app.url("/v1/auth/token")).form(&[
        ("grant_type", "password"),
        ("username", username),
        ("password", password),
    ])
}

fn text_at(value: &Value, pointer: &str) -> String {
    match value.pointer(pointer).and_then(Value::as_str) {
        Some(s) => s.to_owned(),
        None => panic!("no string at {pointer} in {value}"),
    }
}

fn uuid_at(value: &Value, pointer: &str) -> Uuid {
    Uuid::parse_str(&text_at(value, pointer)).expect("a UUID")
}

/// Whether `path` is an instance of the route `template` (`{…}` matches one segment).
fn instance_of(path: &str, template: &str) -> bool {
    let (p, t): (Vec<&str>, Vec<&str>) = (path.split('/').collect(), template.split('/').collect());
    p.len() == t.len()
        && p.iter()
            .zip(&t)
            .all(|(p, t)| (t.starts_with('{') && t.ends_with('}') && !p.is_empty()) || p == t)
}

/// The object an event must name.
enum Object {
    /// Known before the call: the id in the path, or the caller's own account.
    Is(Uuid),
    /// The created object's id, at this JSON pointer of the answer.
    InBody(&'static str),
    /// A protocol version (protocol id, number): its own id, which the API does not show.
    Version(Uuid, i32),
}

struct Answer {
    body: Value,
    etag: Option<String>,
}

/// Calls routes one at a time, checking around each call that it wrote exactly its one
/// event, and remembers which routes were exercised.
struct Scenario<'a> {
    app: &'a TestApp,
    trail: Trail,
    exercised: BTreeSet<(String, String)>,
}

impl<'a> Scenario<'a> {
    fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            trail: Trail::of(app),
            exercised: BTreeSet::new(),
        }
    }

    async fn call(
        &mut self,
        route: (&str, &str),
        request: RequestBuilder,
        status: u16,
        actor: Uuid,
        object: Object,
    ) -> Answer {
        let (method, template) = route;
        let Some(&(_, _, action)) = ROUTES
            .iter()
            .find(|(m, t, _)| *m == method && *t == template)
        else {
            panic!("{method} {template} is not in ROUTES");
        };
        let request = request.build().expect("a request");
        let what = format!("{method} {}", request.url().path());
        assert_eq!(request.method().as_str(), method, "{what}");
        assert!(
            instance_of(request.url().path(), template),
            "{what} is not an instance of {template}"
        );

        let before = self.trail.count().await;
        let response = self.app.client.execute(request).await.expect("send");
        let got = response.status().as_u16();
        let etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = response.text().await.expect("the body");
        assert_eq!(got, status, "{what} answered {got}: {text}");
        let body: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("a JSON body")
        };

        let written = self.trail.count().await - before;
        assert_eq!(
            written, 1,
            "{what} ({template}) wrote {written} audit events, not exactly one"
        );
        let event = self.trail.newest().await;
        assert_eq!(event.seq, before + 1, "{what}: the new event's position");
        assert_eq!(event.action, action, "{what}: the event's action");
        assert_eq!(
            Some(event.object_type.as_str()),
            action.split('.').next(),
            "{what}: the event's object type"
        );
        assert_eq!(event.actor, actor.to_string(), "{what}: the event's actor");
        let object_id = match object {
            Object::Is(id) => id,
            Object::InBody(pointer) => uuid_at(&body, pointer),
            Object::Version(protocol, number) => sqlx::query_scalar(
                "select id from protocol_versions where protocol_id = $1 and number = $2",
            )
            .bind(protocol)
            .bind(number)
            .fetch_one(&self.trail.owner)
            .await
            .expect("the version's id"),
        };
        assert_eq!(
            event.object_id,
            object_id.to_string(),
            "{what}: the event's object"
        );
        assert_eq!(
            event.client_addr.as_deref(),
            Some("127.0.0.1"),
            "{what}: the event's client address"
        );
        assert!(
            event.request_id.as_deref().is_some_and(|r| !r.is_empty()),
            "{what}: the event has no request id"
        );
        assert!(
            serde_json::from_str::<Value>(&event.summary).is_ok_and(|s| s.is_object()),
            "{what}: the summary is not a JSON object: {}",
            event.summary
        );
        self.exercised
            .insert((method.to_owned(), template.to_owned()));
        Answer { body, etag }
    }
}

fn protocol_content() -> Value {
    json!({
        "objective": "Measure uplift",
        "tasks": [{"name": "t", "dataset": {"name": "d", "version": "1", "sha256": null, "sample_count": 20},
                   "harness": {"name": "inspect", "task_ref": "arith"}, "scorers": ["match"],
                   "metrics": ["accuracy"], "epochs": 1}],
        "metrics": [{"name": "accuracy", "higher_is_better": true, "threshold": null}]
    })
}

fn new_protocol(slug: &str) -> Value {
    json!({"slug": slug, "title": slug, "risk_area": "cyber", "participants": ["US", "UK"]})
}

#[tokio::test]
async fn every_mutating_route_writes_exactly_one_audit_event() {
    let app = TestApp::spawn().await;
    for code in ["US", "UK", "JP"] {
        app.institute(code).await;
    }
    let us_admin = app.person("admin@nist.gov", "US", &[Role::Admin]).await;
    let uk_admin = app.person("admin@aisi.gov.uk", "UK", &[Role::Admin]).await;
    let us_author = app.person("author@nist.gov", "US", &[Role::Author]).await;
    let uk_author = app
        .person("author@aisi.gov.uk", "UK", &[Role::Author])
        .await;
    let us_reviewer = app
        .person("reviewer@nist.gov", "US", &[Role::Reviewer])
        .await;
    let uk_reviewer = app
        .person("reviewer@aisi.gov.uk", "UK", &[Role::Reviewer])
        .await;
    let us_evaluator = app
        .person("evaluator@nist.gov", "US", &[Role::Evaluator])
        .await;
    let visitor = app.person("ada@aisi.gov.uk", "UK", &[Role::Viewer]).await;
    let declined = app.person("alan@aisi.gov.uk", "UK", &[Role::Viewer]).await;
    let usa = app.login(&us_admin).await;
    let uka = app.login(&uk_admin).await;
    let usw = app.login(&us_author).await;
    let ukw = app.login(&uk_author).await;
    let usr = app.login(&us_reviewer).await;
    let ukr = app.login(&uk_reviewer).await;
    let use_ = app.login(&us_evaluator).await;
    let mut s = Scenario::new(&app);

    // Accounts, administered by the US admin.
    let created = s
        .call(
            ("POST", "/v1/accounts"),
            post(
                &app,
                &usa,
                "/v1/accounts",
                &json!({"kind": "person", "email": "grace@nist.gov", "display_name": "Grace Hopper"}),
            ),
            201,
            us_admin.id,
            Object::InBody("/account/id"),
        )
        .await;
    let grace = uuid_at(&created.body, "/account/id");
    assert!(created.body["one_time_password"].is_string());
    let grace_path = format!("/v1/accounts/{grace}");
    let updated = s
        .call(
            ("PATCH", "/v1/accounts/{id}"),
            patch(
                &app,
                &usa,
                &grace_path,
                &created.etag.expect("an ETag on the new account"),
                &json!({"display_name": "Grace B. Hopper"}),
            ),
            200,
            us_admin.id,
            Object::Is(grace),
        )
        .await;
    assert_eq!(updated.body["display_name"], "Grace B. Hopper");
    let granted = s
        .call(
            ("POST", "/v1/accounts/{id}/memberships"),
            post(
                &app,
                &usa,
                &format!("{grace_path}/memberships"),
                &json!({"role": "viewer"}),
            ),
            201,
            us_admin.id,
            Object::InBody("/id"),
        )
        .await;
    assert_eq!(granted.body["role"], "viewer");
    let membership = uuid_at(&granted.body, "/id");
    let revoked = s
        .call(
            (
                "POST",
                "/v1/accounts/{id}/memberships/{membership_id}/revoke",
            ),
            post(
                &app,
                &usa,
                &format!("{grace_path}/memberships/{membership}/revoke"),
                &json!({}),
            ),
            200,
            us_admin.id,
            Object::Is(membership),
        )
        .await;
    assert!(revoked.body["revoked_at"].is_string(), "{}", revoked.body);
    let disabled = s
        .call(
            ("POST", "/v1/accounts/{id}/disable"),
            post(&app, &usa, &format!("{grace_path}/disable"), &json!({})),
            200,
            us_admin.id,
            Object::Is(grace),
        )
        .await;
    assert_eq!(disabled.body["status"], "disabled");
    let enabled = s
        .call(
            ("POST", "/v1/accounts/{id}/enable"),
            post(&app, &usa, &format!("{grace_path}/enable"), &json!({})),
            200,
            us_admin.id,
            Object::Is(grace),
        )
        .await;
    assert_eq!(enabled.body["status"], "active");
    let reset = s
        .call(
            ("POST", "/v1/accounts/{id}/reset-password"),
            post(
                &app,
                &usa,
                &format!("{grace_path}/reset-password"),
                &json!({}),
            ),
            200,
            us_admin.id,
            Object::Is(grace),
        )
        .await;
    let one_time = text_at(&reset.body, "/one_time_password");
    // Grace logs in with it, and replaces it.
    let token = s
        .call(
            ("POST", "/v1/auth/token"),
            password_login(&app, "grace@nist.gov", &one_time),
            200,
            grace,
            Object::Is(grace),
        )
        .await;
    let grace_token = text_at(&token.body, "/access_token");
    let changed = s
        .call(
            ("POST", "/v1/me/password"),
            post(
                &app,
                &grace_token,
                "/v1/me/password",
                &json!({"current_password": one_time, "new_password": "a brand new passphrase"}),
            ),
            204,
            grace,
            Object::Is(grace),
        )
        .await;
    assert_eq!(changed.body, Value::Null);
    let service = s
        .call(
            ("POST", "/v1/accounts"),
            post(
                &app,
                &usa,
                "/v1/accounts",
                &json!({"kind": "service", "display_name": "Inspect runner",
                        "scopes": ["runs:write", "results:write"]}),
            ),
            201,
            us_admin.id,
            Object::InBody("/account/id"),
        )
        .await;
    let service_id = uuid_at(&service.body, "/client_id");
    let rotated = s
        .call(
            ("POST", "/v1/accounts/{id}/rotate-secret"),
            post(
                &app,
                &usa,
                &format!("/v1/accounts/{service_id}/rotate-secret"),
                &json!({}),
            ),
            200,
            us_admin.id,
            Object::Is(service_id),
        )
        .await;
    assert!(rotated.body["client_secret"].is_string());
    assert_ne!(rotated.body["client_secret"], service.body["client_secret"]);

    // Exchanges: proposed by the UK, approved (then ended) or rejected by the US.
    let now = chrono::Utc::now();
    let proposal = |account: Uuid| {
        json!({"account_id": account, "home_institute": "UK", "host_institute": "US",
               "roles": ["author"], "starts_at": (now - chrono::Duration::minutes(1)).to_rfc3339(),
               "ends_at": (now + chrono::Duration::days(30)).to_rfc3339()})
    };
    let proposed = s
        .call(
            ("POST", "/v1/exchanges"),
            post(&app, &uka, "/v1/exchanges", &proposal(visitor.id)),
            201,
            uk_admin.id,
            Object::InBody("/id"),
        )
        .await;
    assert_eq!(proposed.body["status"], "proposed");
    let exchange = uuid_at(&proposed.body, "/id");
    let approved = s
        .call(
            ("POST", "/v1/exchanges/{id}/approve"),
            post(
                &app,
                &usa,
                &format!("/v1/exchanges/{exchange}/approve"),
                &json!({}),
            ),
            200,
            us_admin.id,
            Object::Is(exchange),
        )
        .await;
    assert_eq!(approved.body["status"], "approved");
    let ended = s
        .call(
            ("POST", "/v1/exchanges/{id}/end"),
            post(
                &app,
                &uka,
                &format!("/v1/exchanges/{exchange}/end"),
                &json!({}),
            ),
            200,
            uk_admin.id,
            Object::Is(exchange),
        )
        .await;
    assert_eq!(ended.body["status"], "ended");
    let proposed = s
        .call(
            ("POST", "/v1/exchanges"),
            post(&app, &uka, "/v1/exchanges", &proposal(declined.id)),
            201,
            uk_admin.id,
            Object::InBody("/id"),
        )
        .await;
    let exchange = uuid_at(&proposed.body, "/id");
    let rejected = s
        .call(
            ("POST", "/v1/exchanges/{id}/reject"),
            post(
                &app,
                &usa,
                &format!("/v1/exchanges/{exchange}/reject"),
                &json!({}),
            ),
            200,
            us_admin.id,
            Object::Is(exchange),
        )
        .await;
    assert_eq!(rejected.body["status"], "rejected");

    // A protocol co-written by the US and the UK, reviewed and approved by both.
    let created = s
        .call(
            ("POST", "/v1/protocols"),
            post(&app, &usw, "/v1/protocols", &new_protocol("audit-trail")),
            201,
            us_author.id,
            Object::InBody("/id"),
        )
        .await;
    let protocol = uuid_at(&created.body, "/id");
    let base = format!("/v1/protocols/{protocol}");
    let drafted = s
        .call(
            ("POST", "/v1/protocols/{id}/versions"),
            post(
                &app,
                &usw,
                &format!("{base}/versions"),
                &json!({"content": {"objective": "Draft"}}),
            ),
            201,
            us_author.id,
            Object::Version(protocol, 1),
        )
        .await;
    assert_eq!(drafted.body["status"], "draft");
    let v1 = format!("{base}/versions/1");
    let edited = s
        .call(
            ("PATCH", "/v1/protocols/{id}/versions/{number}"),
            patch(
                &app,
                &ukw,
                &v1,
                &drafted.etag.expect("an ETag on the draft"),
                &json!({"content": protocol_content()}),
            ),
            200,
            uk_author.id,
            Object::Version(protocol, 1),
        )
        .await;
    assert_eq!(edited.body["editors"], json!([us_author.id, uk_author.id]));
    let commented = s
        .call(
            ("POST", "/v1/protocols/{id}/versions/{number}/comments"),
            post(
                &app,
                &usr,
                &format!("{v1}/comments"),
                &json!({"body": "Is one epoch enough?", "anchor": "/tasks/0/epochs"}),
            ),
            201,
            us_reviewer.id,
            Object::Version(protocol, 1),
        )
        .await;
    assert_eq!(commented.body["author_id"], json!(us_reviewer.id));
    let submitted = s
        .call(
            ("POST", "/v1/protocols/{id}/versions/{number}/submit"),
            post(&app, &usw, &format!("{v1}/submit"), &json!({})),
            200,
            us_author.id,
            Object::Version(protocol, 1),
        )
        .await;
    assert_eq!(submitted.body["status"], "in_review");
    let hash = submitted.body["content_sha256"]
        .as_str()
        .expect("content_sha256");
    for (token, reviewer, status) in [
        (&usr, us_reviewer.id, "in_review"),
        (&ukr, uk_reviewer.id, "approved"),
    ] {
        let reviewed = s
            .call(
                ("POST", "/v1/protocols/{id}/versions/{number}/reviews"),
                post(
                    &app,
                    token,
                    &format!("{v1}/reviews"),
                    &json!({"verdict": "approve"}),
                )
                .header("if-match", format!("\"{hash}\"")),
                201,
                reviewer,
                Object::Version(protocol, 1),
            )
            .await;
        assert_eq!(reviewed.body["version_status"], status);
    }

    // A second protocol whose participants change before it is retired.
    let created = s
        .call(
            ("POST", "/v1/protocols"),
            post(&app, &usw, "/v1/protocols", &new_protocol("audit-retired")),
            201,
            us_author.id,
            Object::InBody("/id"),
        )
        .await;
    let retiring = uuid_at(&created.body, "/id");
    let set = s
        .call(
            ("PUT", "/v1/protocols/{id}/participants"),
            put(
                &app,
                &usa,
                &format!("/v1/protocols/{retiring}/participants"),
                &json!({"participants": ["US", "UK", "JP"]}),
            ),
            200,
            us_admin.id,
            Object::Is(retiring),
        )
        .await;
    assert_eq!(set.body["participants"], json!(["JP", "UK", "US"]));
    let retired = s
        .call(
            ("POST", "/v1/protocols/{id}/retire"),
            post(
                &app,
                &usa,
                &format!("/v1/protocols/{retiring}/retire"),
                &json!({}),
            ),
            200,
            us_admin.id,
            Object::Is(retiring),
        )
        .await;
    assert_eq!(retired.body["status"], "retired");

    // An exercise on it: planned, re-planned, agreed by both, run, completed.
    let plan = |title: &str| {
        json!({
            "title": title,
            "model": {"provider": "Inspect", "name": "mockllm", "version": "model", "access": "public_api"},
            "protocol_versions": [{"protocol_id": protocol, "number": 1}],
            "participants": ["US", "UK"],
            "starts_at": now.to_rfc3339(), "ends_at": (now + chrono::Duration::days(7)).to_rfc3339()
        })
    };
    let planned = s
        .call(
            ("POST", "/v1/exercises"),
            post(&app, &usw, "/v1/exercises", &plan("Joint test")),
            201,
            us_author.id,
            Object::InBody("/id"),
        )
        .await;
    assert_eq!(planned.body["status"], "planned");
    let exercise = uuid_at(&planned.body, "/id");
    let exercise_path = format!("/v1/exercises/{exercise}");
    let replanned = s
        .call(
            ("PATCH", "/v1/exercises/{id}"),
            patch(
                &app,
                &usw,
                &exercise_path,
                &planned.etag.expect("an ETag on the exercise"),
                &plan("Joint test, revised"),
            ),
            200,
            us_author.id,
            Object::Is(exercise),
        )
        .await;
    assert_eq!(replanned.body["plan_revision"], 2);
    for (token, admin, status) in [
        (&usa, us_admin.id, "planned"),
        (&uka, uk_admin.id, "active"),
    ] {
        let read = app.get_as(token, &exercise_path).await.headers()["etag"]
            .to_str()
            .expect("etag")
            .to_owned();
        let agreed = s
            .call(
                ("POST", "/v1/exercises/{id}/agree"),
                post(&app, token, &format!("{exercise_path}/agree"), &json!({}))
                    .header("if-match", read),
                200,
                admin,
                Object::Is(exercise),
            )
            .await;
        assert_eq!(agreed.body["status"], status);
    }

    let protocol_text = protocol.to_string();
    let run = s
        .call(
            ("POST", "/v1/exercises/{id}/runs"),
            post(
                &app,
                &use_,
                &format!("{exercise_path}/runs"),
                &new_run(&protocol_text),
            ),
            201,
            us_evaluator.id,
            Object::InBody("/id"),
        )
        .await;
    assert_eq!(run.body["status"], "queued");
    let run = uuid_at(&run.body, "/id");
    let run_path = format!("/v1/runs/{run}");
    let started = s
        .call(
            ("POST", "/v1/runs/{id}/start"),
            post(&app, &use_, &format!("{run_path}/start"), &json!({})),
            200,
            us_evaluator.id,
            Object::Is(run),
        )
        .await;
    assert_eq!(started.body["status"], "running");
    let metrics = s
        .call(
            ("POST", "/v1/runs/{id}/metrics"),
            post(
                &app,
                &use_,
                &format!("{run_path}/metrics"),
                &json!({"metrics": [{"scorer": "match", "metric": "accuracy", "value": 0.85}]}),
            ),
            200,
            us_evaluator.id,
            Object::Is(run),
        )
        .await;
    assert_eq!(metrics.body["written"], 1);
    let samples = s
        .call(
            ("POST", "/v1/runs/{id}/samples"),
            post(
                &app,
                &use_,
                &format!("{run_path}/samples"),
                &json!([{"sample_id": "s1", "epoch": 1, "scorer": "match", "value": "C"}]),
            ),
            200,
            us_evaluator.id,
            Object::Is(run),
        )
        .await;
    assert_eq!(samples.body, json!({"lines": 1, "stored": 1}));
    let finished = s
        .call(
            ("POST", "/v1/runs/{id}/finish"),
            post(
                &app,
                &use_,
                &format!("{run_path}/finish"),
                &json!({"outcome": "succeeded"}),
            ),
            200,
            us_evaluator.id,
            Object::Is(run),
        )
        .await;
    assert_eq!(finished.body["status"], "succeeded");
    let digest = finished.body["digest"].as_str().expect("digest");
    let released = s
        .call(
            ("POST", "/v1/runs/{id}/release"),
            post(&app, &usr, &format!("{run_path}/release"), &json!({}))
                .header("if-match", format!("\"{digest}\"")),
            200,
            us_reviewer.id,
            Object::Is(run),
        )
        .await;
    assert_eq!(released.body["released_to"], json!(["UK"]));
    let second = s
        .call(
            ("POST", "/v1/exercises/{id}/runs"),
            post(
                &app,
                &use_,
                &format!("{exercise_path}/runs"),
                &new_run(&protocol_text),
            ),
            201,
            us_evaluator.id,
            Object::InBody("/id"),
        )
        .await;
    let second = uuid_at(&second.body, "/id");
    let cancelled = s
        .call(
            ("POST", "/v1/runs/{id}/cancel"),
            post(
                &app,
                &use_,
                &format!("/v1/runs/{second}/cancel"),
                &json!({}),
            ),
            200,
            us_evaluator.id,
            Object::Is(second),
        )
        .await;
    assert_eq!(cancelled.body["status"], "cancelled");
    // A harness claims the next queued run and renews its lease.
    let third = post(
        &app,
        &use_,
        &format!("{exercise_path}/runs"),
        &new_run(&protocol_text),
    )
    .send()
    .await
    .expect("send");
    assert_eq!(third.status(), 201);
    let third = uuid_at(&third.json::<Value>().await.expect("json"), "/id");
    let harness_id = app
        .service(
            "US",
            "audit harness secret",
            &[Scope::RunsExecute, Scope::RunsWrite, Scope::ResultsWrite],
            &[Role::Evaluator],
        )
        .await;
    let harness = app.service_login(harness_id, "audit harness secret").await;
    let claimed = s
        .call(
            ("POST", "/v1/runs/claim"),
            post(&app, &harness, "/v1/runs/claim", &json!({})),
            200,
            harness_id,
            Object::Is(third),
        )
        .await;
    assert_eq!(claimed.body["lease"]["holder"], harness_id.to_string());
    let renewed = s
        .call(
            ("POST", "/v1/runs/{id}/heartbeat"),
            post(
                &app,
                &harness,
                &format!("/v1/runs/{third}/heartbeat"),
                &json!({"lease_seconds": 600}),
            ),
            200,
            harness_id,
            Object::Is(third),
        )
        .await;
    assert_eq!(renewed.body["status"], "running");
    let log = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/inspect/arith_small.json"
    ))
    .expect("fixture");
    let imported = s
        .call(
            ("POST", "/v1/runs/{id}/inspect-log"),
            app.client
                .post(app.url(&format!("/v1/runs/{third}/inspect-log")))
                .bearer_auth(&harness)
                .header("content-type", "application/json")
                .body(log),
            200,
            harness_id,
            Object::Is(third),
        )
        .await;
    assert_eq!(imported.body["scores"], 40);
    let eval = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/inspect/arith_small.eval"
    ))
    .expect("fixture");
    let from_log = s
        .call(
            ("POST", "/v1/exercises/{id}/runs/inspect-log"),
            app.client
                .post(app.url(&format!(
                    "{exercise_path}/runs/inspect-log?protocol_id={protocol}&protocol_version=1"
                )))
                .bearer_auth(&use_)
                .header("content-type", "application/zip")
                .body(eval),
            201,
            us_evaluator.id,
            Object::InBody("/run/id"),
        )
        .await;
    assert_eq!(from_log.body["run"]["status"], "succeeded");
    let completed = s
        .call(
            ("POST", "/v1/exercises/{id}/complete"),
            post(&app, &usw, &format!("{exercise_path}/complete"), &json!({})),
            200,
            us_author.id,
            Object::Is(exercise),
        )
        .await;
    assert_eq!(completed.body["status"], "completed");

    // Another exercise, called off before anyone agreed.
    let planned = s
        .call(
            ("POST", "/v1/exercises"),
            post(&app, &usw, "/v1/exercises", &plan("Called off")),
            201,
            us_author.id,
            Object::InBody("/id"),
        )
        .await;
    let called_off = uuid_at(&planned.body, "/id");
    let cancelled = s
        .call(
            ("POST", "/v1/exercises/{id}/cancel"),
            post(
                &app,
                &usw,
                &format!("/v1/exercises/{called_off}/cancel"),
                &json!({}),
            ),
            200,
            us_author.id,
            Object::Is(called_off),
        )
        .await;
    assert_eq!(cancelled.body["status"], "cancelled");

    // Every mutating route of the contract was called, and wrote its one event.
    let spec: Value = app
        .get("/openapi.json")
        .await
        .json()
        .await
        .expect("the OpenAPI document");
    let mut documented: BTreeSet<(String, String)> = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("a path item").keys() {
            let method = method.to_ascii_uppercase();
            if ["POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
                documented.insert((method, path.clone()));
            }
        }
    }
    let listing = |routes: Vec<&(String, String)>| -> Vec<String> {
        routes.iter().map(|(m, p)| format!("{m} {p}")).collect()
    };
    let missing = listing(documented.difference(&s.exercised).collect());
    assert!(
        missing.is_empty(),
        "mutating routes this test does not call, so nothing shows they write their audit event \
         (add each to ROUTES and to the scenario): {missing:#?}"
    );
    let undocumented = listing(s.exercised.difference(&documented).collect());
    assert!(
        undocumented.is_empty(),
        "routes called here that the OpenAPI document does not list: {undocumented:#?}"
    );
    let table: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(table.len(), ROUTES.len(), "a route is in ROUTES twice");
    assert_eq!(table, documented, "ROUTES and the OpenAPI document differ");

    // And the whole trail, helpers' logins included, is one valid chain.
    let events = s.trail.all().await;
    let head = verify(&events);
    assert_eq!(head.seq, s.trail.count().await);
}

#[tokio::test]
async fn events_carry_who_where_and_the_request_id() {
    let app = TestApp::spawn().await;
    let us = app.institute("US").await;
    let uk = app.institute("UK").await;
    let author = app.person("author@nist.gov", "US", &[Role::Author]).await;
    let admin = app.person("admin@nist.gov", "US", &[Role::Admin]).await;
    let trail = Trail::of(&app);
    let mut secrets: Vec<String> = vec![PASSWORD.to_owned()];

    let token = app.login(&author).await;
    secrets.push(token.clone());
    let before = trail.count().await;
    let response = app
        .client
        .post(app.url("/v1/protocols"))
        .bearer_auth(&token)
        .header("x-request-id", "audit-test-1")
        .json(&new_protocol("who-and-where"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["x-request-id"], "audit-test-1");
    let protocol: Value = response.json().await.expect("json");
    assert_eq!(trail.count().await, before + 1);
    let event = trail.newest().await;
    assert_eq!(event.action, "protocol.created");
    assert_eq!(event.object_type, "protocol");
    assert_eq!(event.object_id, text_at(&protocol, "/id"));
    assert_eq!(event.actor, author.id.to_string(), "who");
    assert_eq!(
        event.institute_id,
        Some(us),
        "in which institute's capacity"
    );
    assert_eq!(event.request_id.as_deref(), Some("audit-test-1"));
    assert_eq!(
        event.client_addr.as_deref(),
        Some("127.0.0.1"),
        "from where"
    );
    let visible: BTreeSet<Uuid> = event.visible_to.iter().copied().collect();
    assert_eq!(visible, BTreeSet::from([us, uk]), "the participants see it");
    let summary: Value = serde_json::from_str(&event.summary).expect("the summary is JSON");
    assert_eq!(summary["slug"], "who-and-where");
    assert_eq!(summary["title"], "who-and-where");
    assert_eq!(
        event.summary.as_bytes(),
        jointeval_domain::canonical::to_bytes(&summary).as_slice(),
        "the summary is stored as canonical JSON"
    );
    assert_eq!(event.hash, event.expected_hash());
    assert!(chrono::Utc::now() - event.at < chrono::Duration::minutes(1));

    // A request without an id of its own gets the one the service generated.
    let response = post(
        &app,
        &token,
        "/v1/protocols",
        &new_protocol("no-request-id"),
    )
    .send()
    .await
    .expect("send");
    assert_eq!(response.status(), 201);
    let generated = response.headers()["x-request-id"]
        .to_str()
        .expect("a request id")
        .to_owned();
    assert!(!generated.is_empty());
    assert_eq!(
        trail.newest().await.request_id.as_deref(),
        Some(generated.as_str())
    );

    // Credentials the API hands out or takes in never reach the trail.
    let admin_token = app.login(&admin).await;
    secrets.push(admin_token.clone());
    let response = post(
        &app,
        &admin_token,
        "/v1/accounts",
        &json!({"kind": "person", "email": "grace@nist.gov", "display_name": "Grace Hopper"}),
    )
    .send()
    .await
    .expect("send");
    assert_eq!(response.status(), 201);
    let person: Value = response.json().await.expect("json");
    let grace = uuid_at(&person, "/account/id");
    secrets.push(text_at(&person, "/one_time_password"));
    let response = post(
        &app,
        &admin_token,
        "/v1/accounts",
        &json!({"kind": "service", "display_name": "Inspect runner", "scopes": ["runs:write", "results:write"]}),
    )
    .send()
    .await
    .expect("send");
    assert_eq!(response.status(), 201);
    let service: Value = response.json().await.expect("json");
    let service_id = uuid_at(&service, "/client_id");
    secrets.push(text_at(&service, "/client_secret"));
    let created = trail.newest().await;
    assert_eq!(created.action, "account.created");
    assert_eq!(created.institute_id, Some(us));
    assert_eq!(created.visible_to, vec![us]);
    let reset: Value = post(
        &app,
        &admin_token,
        &format!("/v1/accounts/{grace}/reset-password"),
        &json!({}),
    )
    .send()
    .await
    .expect("send")
    .json()
    .await
    .expect("json");
    let one_time = text_at(&reset, "/one_time_password");
    secrets.push(one_time.clone());
    let rotated: Value = post(
        &app,
        &admin_token,
        &format!("/v1/accounts/{service_id}/rotate-secret"),
        &json!({}),
    )
    .send()
    .await
    .expect("send")
    .json()
    .await
    .expect("json");
    let secret = text_at(&rotated, "/client_secret");
    secrets.push(secret.clone());

    // Logins, with a request id of their own: the token endpoint records it too.
    let response = password_login(&app, "grace@nist.gov", &one_time)
        .header("x-request-id", "audit-test-2")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let grace_token = text_at(
        &response.json::<Value>().await.expect("json"),
        "/access_token",
    );
    secrets.push(grace_token.clone());
    let issued = trail.newest().await;
    assert_eq!(issued.action, "token.issued");
    assert_eq!(issued.actor, grace.to_string());
    assert_eq!(issued.object_id, grace.to_string());
    assert_eq!(issued.institute_id, Some(us));
    assert_eq!(issued.request_id.as_deref(), Some("audit-test-2"));
    assert_eq!(issued.client_addr.as_deref(), Some("127.0.0.1"));
    let new_password = "grace's own long passphrase";
    secrets.push(new_password.to_owned());
    let response = post(
        &app,
        &grace_token,
        "/v1/me/password",
        &json!({"current_password": one_time, "new_password": new_password}),
    )
    .send()
    .await
    .expect("send");
    assert_eq!(response.status(), 204);
    let response = app
        .client
        .post(app.url("/v1/auth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", service_id.to_string().as_str()),
            ("client_secret", secret.as_str()),
        ])
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    secrets.push(text_at(
        &response.json::<Value>().await.expect("json"),
        "/access_token",
    ));
    let issued = trail.newest().await;
    assert_eq!(issued.action, "token.issued");
    assert_eq!(issued.actor, service_id.to_string());

    let events = trail.all().await;
    for action in [
        "account.created",
        "account.password_reset",
        "account.secret_rotated",
        "account.password_changed",
        "token.issued",
    ] {
        assert!(
            events.iter().any(|e| e.action == action),
            "no {action} event"
        );
    }
    let forbidden_keys = [
        "password",
        "one_time_password",
        "new_password",
        "current_password",
        "client_secret",
        "secret",
        "access_token",
        "token",
        "password_hash",
        "secret_hash",
    ];
    for e in &events {
        let summary: Value = serde_json::from_str(&e.summary).expect("a JSON summary");
        let keys: Vec<&String> = summary.as_object().expect("an object").keys().collect();
        assert!(
            keys.iter().all(|k| !forbidden_keys.contains(&k.as_str())),
            "event {} ({}) has a credential field: {}",
            e.seq,
            e.action,
            e.summary
        );
    }
    let rows = trail.rows_as_text().await;
    assert_eq!(rows.len(), events.len());
    for secret in &secrets {
        for row in &rows {
            assert!(
                !row.contains(secret.as_str()),
                "a credential handed out or sent is in the audit trail: {row}"
            );
        }
    }
    verify(&events);
}

#[tokio::test]
async fn a_failed_login_and_a_denial_are_recorded() {
    let app = TestApp::spawn().await;
    let (exercise, protocol) = active_exercise(&app).await;
    let us = app.institute("US").await;
    let uk = app.institute("UK").await;
    let viewer = app.person("viewer@nist.gov", "US", &[Role::Viewer]).await;
    let us_evaluator = app.person("eval@nist.gov", "US", &[Role::Evaluator]).await;
    let uk_evaluator = app
        .person("eval@aisi.gov.uk", "UK", &[Role::Evaluator])
        .await;
    let trail = Trail::of(&app);

    // A wrong password: 401, and one event by the login system, seen by the home
    // institute, without the password tried.
    let before = trail.count().await;
    let wrong = "not the password at all";
    let p = problem(
        password_login(&app, "viewer@nist.gov", wrong)
            .header("x-request-id", "audit-login-1")
            .send()
            .await
            .expect("send"),
        401,
    )
    .await;
    assert_eq!(p["type"], "urn:jointeval:problem:invalid-credentials");
    let failed = trail.newest_at(before + 1).await;
    assert_eq!(failed.action, "login.failed");
    assert_eq!(failed.object_type, "login");
    assert_eq!(failed.actor, "system:login");
    assert_eq!(failed.object_id, viewer.id.to_string());
    assert_eq!(failed.request_id.as_deref(), Some("audit-login-1"));
    assert_eq!(failed.institute_id, None);
    assert_eq!(failed.visible_to, vec![us]);
    assert_eq!(failed.client_addr.as_deref(), Some("127.0.0.1"));
    assert_eq!(
        serde_json::from_str::<Value>(&failed.summary).expect("json"),
        json!({"grant_type": "password", "login": "viewer@nist.gov"})
    );
    // An unknown login fails the same way; no institute sees it, and what was typed is
    // not kept (it may be a password typed into the wrong field).
    let before = trail.count().await;
    problem(
        password_login(&app, "nobody@nist.gov", wrong)
            .send()
            .await
            .expect("send"),
        401,
    )
    .await;
    let unknown = trail.newest_at(before + 1).await;
    assert_eq!(
        (unknown.action.as_str(), unknown.actor.as_str()),
        ("login.failed", "system:login")
    );
    assert_eq!(unknown.object_id, "unknown");
    assert!(crate::support::every(trail.rows_as_text().await, |row| {
        !row.contains("nobody@nist.gov")
    }));
    assert!(unknown.visible_to.is_empty(), "{:?}", unknown.visible_to);
    assert!(
        trail
            .rows_as_text()
            .await
            .iter()
            .all(|row| !row.contains(wrong))
            && !trail.rows_as_text().await.is_empty(),
        "the password tried is in the trail"
    );

    // A US viewer may not create a protocol: 403, one access.denied event, no protocol.
    let viewer_token = app.login(&viewer).await;
    let protocols = trail.scalar("select count(*) from protocols").await;
    let versions = trail.scalar("select count(*) from protocol_versions").await;
    let before = trail.count().await;
    let p = problem(
        post(
            &app,
            &viewer_token,
            "/v1/protocols",
            &new_protocol("not-allowed"),
        )
        .header("x-request-id", "audit-denied-1")
        .send()
        .await
        .expect("send"),
        403,
    )
    .await;
    assert_eq!(p["type"], "urn:jointeval:problem:forbidden");
    let denied = trail.newest_at(before + 1).await;
    assert_eq!(denied.action, "access.denied");
    assert_eq!(denied.object_type, "access");
    assert_eq!(denied.actor, viewer.id.to_string());
    assert_eq!(denied.object_id, "POST /v1/protocols");
    assert_eq!(denied.request_id.as_deref(), Some("audit-denied-1"));
    assert_eq!(denied.visible_to, vec![us]);
    assert_eq!(denied.client_addr.as_deref(), Some("127.0.0.1"));
    assert_eq!(
        serde_json::from_str::<Value>(&denied.summary).expect("json"),
        json!({"method": "POST", "route": "/v1/protocols", "status": 403})
    );
    assert_eq!(
        trail.scalar("select count(*) from protocols").await,
        protocols
    );
    assert_eq!(
        trail.scalar("select count(*) from protocol_versions").await,
        versions
    );

    // A US run before release does not exist for the UK: 404 to reading it and to
    // starting it, each recorded, and the run stays as it was.
    let us_token = app.login(&us_evaluator).await;
    let created = app
        .post_as(
            &us_token,
            &format!("/v1/exercises/{exercise}/runs"),
            &new_run(&protocol),
        )
        .await;
    assert_eq!(created.status(), 201);
    let run = uuid_at(&created.json::<Value>().await.expect("json"), "/id");
    let uk_token = app.login(&uk_evaluator).await;
    let state = |trail: &Trail| {
        let owner = trail.owner.clone();
        async move {
            sqlx::query_as::<_, (String, chrono::DateTime<chrono::Utc>)>(
                "select status, updated_at from runs where id = $1",
            )
            .bind(run)
            .fetch_one(&owner)
            .await
            .expect("the run")
        }
    };
    let run_before = state(&trail).await;
    let runs = trail.scalar("select count(*) from runs").await;
    for (method, path, route) in [
        ("GET", format!("/v1/runs/{run}"), "/v1/runs/{id}"),
        (
            "POST",
            format!("/v1/runs/{run}/start"),
            "/v1/runs/{id}/start",
        ),
    ] {
        let before = trail.count().await;
        let response = if method == "GET" {
            app.get_as(&uk_token, &path).await
        } else {
            app.post_as(&uk_token, &path, &json!({})).await
        };
        problem(response, 404).await;
        let denied = trail.newest_at(before + 1).await;
        assert_eq!(denied.action, "access.denied", "{method} {path}");
        assert_eq!(denied.actor, uk_evaluator.id.to_string());
        // Named by route: the UK's trail does not learn the US run's id.
        assert_eq!(denied.object_id, format!("{method} {route}"));
        assert_eq!(denied.visible_to, vec![uk]);
        assert!(
            !trail
                .rows_as_text()
                .await
                .iter()
                .any(|row| row.contains(&run.to_string()) && row.contains("access.denied"))
        );
        assert_eq!(
            serde_json::from_str::<Value>(&denied.summary).expect("json"),
            json!({"method": method, "route": route, "status": 404})
        );
        assert_eq!(state(&trail).await, run_before, "{method} {path}");
    }
    assert_eq!(trail.scalar("select count(*) from runs").await, runs);
    assert_eq!(
        trail
            .scalar("select count(*) from runs where status <> 'queued'")
            .await,
        0
    );
    verify(&trail.all().await);
}

type Outcome<'a> = Pin<Box<dyn Future<Output = (&'static str, u16)> + 'a>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_make_one_valid_chain() {
    let app = TestApp::spawn().await;
    let mut tokens = Vec::new();
    for (email, code) in [
        ("a1@nist.gov", "US"),
        ("a2@nist.gov", "US"),
        ("a1@aisi.gov.uk", "UK"),
        ("a2@aisi.gov.uk", "UK"),
    ] {
        let author = app.person(email, code, &[Role::Author]).await;
        tokens.push(app.login(&author).await);
    }
    let viewer = app
        .login(&app.person("viewer@nist.gov", "US", &[Role::Viewer]).await)
        .await;
    let trail = Trail::of(&app);
    let before = trail.count().await;

    // 32 protocols from four authors, 4 refusals and 4 failed logins, all at once.
    let app = &app;
    let mut requests: Vec<Outcome<'_>> = Vec::new();
    for i in 0..32 {
        let token = &tokens[i % tokens.len()];
        let body = new_protocol(&format!("concurrent-{i}"));
        requests.push(Box::pin(async move {
            let response = app.post_as(token, "/v1/protocols", &body).await;
            ("protocol.created", response.status().as_u16())
        }));
    }
    for i in 0..4 {
        let viewer = &viewer;
        requests.push(Box::pin(async move {
            let response = app
                .post_as(
                    viewer,
                    "/v1/protocols",
                    &new_protocol(&format!("refused-{i}")),
                )
                .await;
            ("access.denied", response.status().as_u16())
        }));
        requests.push(Box::pin(async move {
            let response = password_login(app, "a1@nist.gov", "a wrong password")
                .send()
                .await
                .expect("send");
            ("login.failed", response.status().as_u16())
        }));
    }
    let outcomes = futures_util::future::join_all(requests).await;
    let mut expected: BTreeMap<&str, usize> = BTreeMap::new();
    for (action, status) in &outcomes {
        let wanted = match *action {
            "protocol.created" => 201,
            "access.denied" => 403,
            _ => 401,
        };
        assert_eq!(*status, wanted, "{action}");
        *expected.entry(action).or_default() += 1;
    }

    let events = trail.all().await;
    let n = events.len() as i64;
    assert_eq!(n, trail.count().await);
    assert_eq!(n, before + 40, "40 requests, 40 events");
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=n).collect::<Vec<_>>(), "contiguous from 1");
    let distinct: BTreeSet<i64> = seqs.iter().copied().collect();
    assert_eq!(distinct.len() as i64, n, "no position twice");
    let head = verify(&events);
    assert_eq!(head.seq, n);
    assert_eq!(trail.head().await, (head.seq, head.hash.clone()));

    let mut written: BTreeMap<&str, usize> = BTreeMap::new();
    for e in events.iter().filter(|e| e.seq > before) {
        *written.entry(e.action.as_str()).or_default() += 1;
    }
    assert_eq!(written, expected);
    // One event per protocol, naming it.
    let protocols: BTreeSet<String> = sqlx::query_scalar::<_, Uuid>("select id from protocols")
        .fetch_all(&trail.owner)
        .await
        .expect("protocols")
        .iter()
        .map(Uuid::to_string)
        .collect();
    let created: BTreeSet<String> = events
        .iter()
        .filter(|e| e.action == "protocol.created")
        .map(|e| e.object_id.clone())
        .collect();
    assert_eq!(protocols.len(), 32);
    assert_eq!(created, protocols);
}

#[tokio::test]
async fn the_audit_trail_is_append_only_in_the_database() {
    let app = TestApp::spawn().await;
    let user = app.person("viewer@nist.gov", "US", &[Role::Viewer]).await;
    app.login(&user).await;
    app.login(&user).await;
    let trail = Trail::of(&app);
    let events = trail.all().await;
    assert!(events.len() >= 3, "{events:?}");
    let head = trail.head().await;

    for statement in [
        "update audit_events set actor = 'someone else' where seq = 1",
        "update audit_events set summary = '{}'",
        "delete from audit_events where seq = (select max(seq) from audit_events)",
        "delete from audit_events",
        "truncate audit_events",
        "update audit_head set seq = 0, hash = repeat('0', 64)",
        "delete from audit_head",
        "truncate audit_head",
    ] {
        let error = sqlx::query(statement)
            .execute(&trail.owner)
            .await
            .expect_err(statement)
            .to_string();
        assert!(
            error.contains("append-only"),
            "{statement} failed, but not as append-only: {error}"
        );
    }

    // Nor does an event go in anywhere but at the head, with the head's hash.
    let last = events.last().expect("an event").clone();
    for (seq, prev_hash) in [
        (last.seq + 2, last.hash.clone()),
        (last.seq, last.prev_hash.clone()),
        (last.seq + 1, "f".repeat(64)),
    ] {
        let forged = Event {
            seq,
            at: chrono::Utc::now(),
            action: "protocol.created".into(),
            object_type: "protocol".into(),
            ..last.clone()
        }
        .seal(&prev_hash);
        let error = sqlx::query(
            "insert into audit_events (seq, at, actor, institute_id, action, object_type, object_id,
                                       visible_to, summary, request_id, client_addr, prev_hash, hash)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(forged.seq)
        .bind(forged.at)
        .bind(&forged.actor)
        .bind(forged.institute_id)
        .bind(&forged.action)
        .bind(&forged.object_type)
        .bind(&forged.object_id)
        .bind(&forged.visible_to)
        .bind(&forged.summary)
        .bind(&forged.request_id)
        .bind(&forged.client_addr)
        .bind(&forged.prev_hash)
        .bind(&forged.hash)
        .execute(&trail.owner)
        .await
        .expect_err("a forged event")
        .to_string();
        assert!(
            error.contains("does not extend the chain") || error.contains("duplicate key"),
            "seq {seq}: {error}"
        );
    }

    // All of it left the trail as it was.
    assert_eq!(trail.all().await, events);
    assert_eq!(trail.head().await, head);
    let verified = verify(&events);
    assert_eq!((verified.seq, verified.hash), head);
}
