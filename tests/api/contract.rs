//! The contract says what the service answers. Every operation of `openapi.yaml` is sent
//! the failures any operation can meet (no token, a bad one, an expired one, a password
//! still to change, a scope missing, an outsider, unknown and malformed ids, bodies of the
//! wrong type, shape or size, bad query parameters, heads HTTP cannot read, too many
//! connections), and then, operation by operation, the failures of its own (conflicts of
//! state, stale versions). Every answer must be a status the contract lists for that
//! operation, with a problem body when it is an error; and every failure the contract
//! lists must be one the service was seen to give.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use jointeval_api::{ConnectionLimits, HttpSettings};
use jointeval_domain::{Role, Scope};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use uuid::Uuid;

use crate::support::story::{active_exercise, default_content, new_run};
use crate::support::{TestApp, expect, forge_token};

/// An operation of the contract, as `METHOD /template`.
type Op = String;

/// What the contract lists, per operation.
fn documented() -> BTreeMap<Op, BTreeSet<u16>> {
    let spec = serde_json::to_value(jointeval_api::openapi()).expect("spec");
    let mut ops = BTreeMap::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            let statuses = op["responses"]
                .as_object()
                .expect("responses")
                .keys()
                .map(|s| s.parse().expect("a status"))
                .collect();
            ops.insert(format!("{} {path}", method.to_uppercase()), statuses);
        }
    }
    ops
}

fn takes_body(op: &str) -> bool {
    let spec = serde_json::to_value(jointeval_api::openapi()).expect("spec");
    let (method, path) = op.split_once(' ').expect("op");
    spec["paths"][path][method.to_lowercase()]["requestBody"].is_object()
}

/// Whether the operation names `If-Match` among its parameters.
fn takes_if_match(op: &str) -> bool {
    let spec = serde_json::to_value(jointeval_api::openapi()).expect("spec");
    let (method, path) = op.split_once(' ').expect("op");
    spec["paths"][path][method.to_lowercase()]["parameters"]
        .as_array()
        .is_some_and(|ps| {
            ps.iter()
                .any(|p| p["in"] == "header" && p["name"] == "If-Match")
        })
}

/// The method `op` (`"POST /v1/…"`) names.
fn method_of(op: &str) -> Method {
    op.split(' ')
        .next()
        .expect("method")
        .parse()
        .expect("method")
}

fn takes_query(op: &str) -> bool {
    let spec = serde_json::to_value(jointeval_api::openapi()).expect("spec");
    let (method, path) = op.split_once(' ').expect("op");
    spec["paths"][path][method.to_lowercase()]["parameters"]
        .as_array()
        .is_some_and(|ps| ps.iter().any(|p| p["in"] == "query"))
}

/// The objects the probes name, and the callers they send.
struct World {
    admin: String,
    uk_admin: String,
    author: String,
    reviewer: String,
    evaluator: String,
    viewer: String,
    outsider: String,
    one_time: String,
    unscoped: String,
    expired: String,
    person: Uuid,
    uk_person: Uuid,
    membership: Uuid,
    service: Uuid,
    exchange: String,
    exercise: String,
    protocol: String,
    run: String,
}

impl World {
    /// `template` with its ids filled from the world, or with `other` for every id.
    fn path(&self, template: &str, other: Option<&str>) -> String {
        let (prefix, object) = if template.starts_with("/v1/accounts/") {
            ("account", self.person.to_string())
        } else if template.starts_with("/v1/exchanges/") {
            ("exchange", self.exchange.clone())
        } else if template.starts_with("/v1/protocols/") {
            ("protocol", self.protocol.clone())
        } else if template.starts_with("/v1/exercises/") {
            ("exercise", self.exercise.clone())
        } else {
            ("run", self.run.clone())
        };
        let fill = |real: String| other.map_or(real, str::to_owned);
        template
            .replace("{id}", &fill(object))
            .replace("{membership_id}", &fill(self.membership.to_string()))
            .replace("{number}", other.unwrap_or("1"))
            .replace("{object_type}", prefix)
            .replace("{object_id}", &fill(self.run.clone()))
    }
}

async fn login_as(app: &TestApp, email: &str, home: &str, roles: &[Role]) -> String {
    app.login(&app.person(email, home, roles).await).await
}

async fn world(app: &TestApp) -> World {
    let admin = login_as(app, "admin@nist.gov", "US", &[Role::Admin]).await;
    let uk_admin = login_as(app, "admin@aisi.gov.uk", "UK", &[Role::Admin]).await;
    let (exercise, protocol) = active_exercise(app).await;
    let author = login_as(app, "writer@nist.gov", "US", &[Role::Author]).await;
    let reviewer = login_as(app, "checker@nist.gov", "US", &[Role::Reviewer]).await;
    let evaluator = login_as(app, "runner@nist.gov", "US", &[Role::Evaluator]).await;
    let viewer = login_as(app, "reader@nist.gov", "US", &[Role::Viewer]).await;
    let outsider = login_as(app, "admin@aist.go.jp", "JP", &[Role::Admin]).await;
    let run: Value = app
        .post_as(
            &evaluator,
            &format!("/v1/exercises/{exercise}/runs"),
            &new_run(&protocol),
        )
        .await
        .json()
        .await
        .expect("run");
    let run = run["id"].as_str().expect("run id").to_owned();

    // A person with a one-time password, logged in with it.
    let created: Value = app
        .post_as(
            &admin,
            "/v1/accounts",
            &json!({"kind": "person", "email": "new@nist.gov", "display_name": "New"}),
        )
        .await
        .json()
        .await
        .expect("created");
    let otp = created["one_time_password"].as_str().expect("otp");
    let one_time: Value = app
        .client
        .post(app.url("/v1/auth/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", "new@nist.gov"),
            ("password", otp),
        ])
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("token");
    let one_time = one_time["access_token"].as_str().expect("token").to_owned();

    let harness = app
        .service(
            "US",
            "jes_contract-secret",
            &[Scope::RunsExecute],
            &[Role::Evaluator],
        )
        .await;
    let unscoped = app.service_login(harness, "jes_contract-secret").await;
    let person = app.person("target@nist.gov", "US", &[Role::Viewer]).await;
    let membership: Uuid = sqlx::query_scalar("select id from memberships where account_id = $1")
        .bind(person.id)
        .fetch_one(&app.pool)
        .await
        .expect("membership");
    let service = app
        .service("US", "jes_contract-other", &[Scope::RunsRead], &[])
        .await;
    let uk_person = app
        .person("seconded@aisi.gov.uk", "UK", &[Role::Viewer])
        .await;
    let now = chrono::Utc::now();
    let exchange: Value = app
        .post_as(
            &uk_admin,
            "/v1/exchanges",
            &json!({"account_id": uk_person.id, "home_institute": "UK", "host_institute": "US",
                    "roles": ["viewer"], "starts_at": (now + chrono::Duration::days(1)).to_rfc3339(),
                    "ends_at": (now + chrono::Duration::days(30)).to_rfc3339()}),
        )
        .await
        .json()
        .await
        .expect("exchange");
    let expired = forge_token(&app.pool, person.id, -600, true).await;
    World {
        admin,
        uk_admin,
        author,
        reviewer,
        evaluator,
        viewer,
        outsider,
        one_time,
        unscoped,
        expired,
        person: person.id,
        uk_person: uk_person.id,
        membership,
        service,
        exchange: exchange["id"].as_str().expect("exchange id").to_owned(),
        exercise,
        protocol,
        run,
    }
}

/// What one probe got.
struct Answer {
    probe: String,
    status: u16,
    problem: bool,
    text: String,
}

async fn answer(probe: impl Into<String>, response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let problem = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    let text = response.text().await.unwrap_or_default();
    Answer {
        probe: probe.into(),
        status,
        problem,
        text,
    }
}

/// Sends `op` with `path`, as `token`, with `body` as `content_type`.
async fn send(
    app: &TestApp,
    op: &str,
    path: &str,
    token: Option<&str>,
    body: Option<(&'static str, Vec<u8>)>,
) -> reqwest::Response {
    let mut request = app.client.request(method_of(op), app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if takes_if_match(op) {
        // The body is read before the version is compared.
        request = request.header("if-match", "\"0\"");
    }
    if let Some((content_type, bytes)) = body {
        request = request.header("content-type", content_type).body(bytes);
    } else if takes_body(op) {
        request = request.json(&json!({}));
    }
    request.send().await.expect("send")
}

/// A raw connection from `from`.
async fn connect(addr: SocketAddr, from: Ipv4Addr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::from((from, 0))).expect("bind");
    socket.connect(addr).await.expect("connect")
}

/// Sends raw bytes and reads the answer to the close.
async fn raw(addr: SocketAddr, from: Ipv4Addr, request: &[u8]) -> Answer {
    let mut stream = connect(addr, from).await;
    let _ = stream.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Answer {
        probe: String::new(),
        status: head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        problem: head
            .to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        text: body.to_owned(),
    }
}

/// The probes any operation can meet; the answers, by operation.
async fn common_probes(app: &TestApp, w: &World, ops: &[Op]) -> Vec<(Op, Answer)> {
    let mut answers = Vec::new();
    for op in ops {
        let template = op.split_once(' ').expect("op").1;
        let path = w.path(template, None);
        let with_ids = template.contains('{');
        let mut probes: Vec<(String, reqwest::Response)> = vec![
            ("anonymous".into(), send(app, op, &path, None, None).await),
            (
                "a token that is no JWT".into(),
                send(app, op, &path, Some("not-a-jwt"), None).await,
            ),
            (
                "an expired token".into(),
                send(app, op, &path, Some(&w.expired), None).await,
            ),
            (
                "a one-time password".into(),
                send(app, op, &path, Some(&w.one_time), None).await,
            ),
            (
                "a token without the scope".into(),
                send(app, op, &path, Some(&w.unscoped), None).await,
            ),
            (
                "an outsider".into(),
                send(app, op, &path, Some(&w.outsider), None).await,
            ),
        ];
        for (who, token) in [
            ("a US admin", &w.admin),
            ("a UK admin", &w.uk_admin),
            ("a viewer", &w.viewer),
        ] {
            probes.push((who.into(), send(app, op, &path, Some(token), None).await));
        }
        if with_ids {
            let unknown = Uuid::now_v7().to_string();
            probes.push((
                "an unknown id".into(),
                send(
                    app,
                    op,
                    &w.path(template, Some(&unknown)),
                    Some(&w.admin),
                    None,
                )
                .await,
            ));
            probes.push((
                "a malformed id".into(),
                send(
                    app,
                    op,
                    &w.path(template, Some("not-an-id")),
                    Some(&w.admin),
                    None,
                )
                .await,
            ));
        }
        if takes_body(op) {
            for (what, content_type, bytes) in [
                ("a text body", "text/plain", b"hello".to_vec()),
                ("malformed JSON", "application/json", b"{\"a\":".to_vec()),
                (
                    "JSON of the wrong shape",
                    "application/json",
                    b"[[]]".to_vec(),
                ),
                (
                    "an oversized body",
                    "application/json",
                    vec![b' '; 512 * 1024],
                ),
            ] {
                for token in [&w.admin, &w.evaluator, &w.author] {
                    probes.push((
                        what.into(),
                        send(
                            app,
                            op,
                            &path,
                            Some(token),
                            Some((content_type, bytes.clone())),
                        )
                        .await,
                    ));
                }
            }
        }
        if takes_query(op) {
            for query in ["no_such_parameter=1", "limit=0"] {
                let sep = if path.contains('?') { '&' } else { '?' };
                probes.push((
                    format!("?{query}"),
                    send(
                        app,
                        op,
                        &format!("{path}{sep}{query}"),
                        Some(&w.admin),
                        None,
                    )
                    .await,
                ));
            }
        }
        if takes_if_match(op) {
            let method = method_of(op);
            for (what, if_match) in [("no If-Match", None), ("a stale If-Match", Some("\"0\""))] {
                for token in [&w.admin, &w.author] {
                    let mut request = app
                        .client
                        .request(method.clone(), app.url(&path))
                        .bearer_auth(token)
                        .json(&json!({}));
                    if let Some(tag) = if_match {
                        request = request.header("if-match", tag);
                    }
                    probes.push((what.into(), request.send().await.expect("send")));
                }
            }
        }
        for (probe, response) in probes {
            answers.push((op.clone(), answer(probe, response).await));
        }
        // Heads HTTP cannot read.
        let method = op.split(' ').next().expect("method");
        for (what, line) in [
            (
                "a NUL in Authorization",
                b"Authorization: Bearer a\0b\r\n".to_vec(),
            ),
            (
                "a control character in If-Match",
                b"If-Match: \x01\r\n".to_vec(),
            ),
            (
                "a header section too large",
                [b"X-Large: ".as_slice(), &vec![b'a'; 600 * 1024], b"\r\n"].concat(),
            ),
        ] {
            let mut request =
                format!("{method} {path} HTTP/1.1\r\nHost: jointeval\r\n").into_bytes();
            request.extend_from_slice(&line);
            request.extend_from_slice(b"\r\n");
            let mut got = raw(app.addr, Ipv4Addr::LOCALHOST, &request).await;
            got.probe = what.into();
            answers.push((op.clone(), got));
        }
    }
    answers
}

/// Past the caps on connections, every operation is answered before it is read: 429 for
/// an address over its cap, 503 when the service holds all it keeps.
async fn connection_probes(ops: &[Op]) -> Vec<(Op, Answer)> {
    let app = TestApp::with_limits(ConnectionLimits {
        max_connections: 4,
        max_per_client: 2,
        ..ConnectionLimits::default()
    })
    .await;
    let sweep = |what: &'static str, from: Ipv4Addr| {
        let addr = app.addr;
        async move {
            let mut answers = Vec::new();
            for op in ops {
                let (method, template) = op.split_once(' ').expect("op");
                let request = format!(
                    "{method} {} HTTP/1.1\r\nHost: jointeval\r\n\r\n",
                    template.replace(['{', '}'], "")
                );
                let mut got = raw(addr, from, request.as_bytes()).await;
                got.probe = what.into();
                answers.push((op.clone(), got));
            }
            answers
        }
    };
    let (crowded, other) = (Ipv4Addr::new(127, 0, 0, 8), Ipv4Addr::new(127, 0, 0, 9));
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(connect(app.addr, crowded).await);
    }
    let mut answers = sweep("one address over its cap", crowded).await;
    for _ in 0..2 {
        held.push(connect(app.addr, other).await);
    }
    answers.extend(sweep("the service over its cap", Ipv4Addr::new(127, 0, 0, 10)).await);
    drop(held);
    answers
}

#[tokio::test]
async fn every_answer_is_in_the_contract_and_every_failure_it_lists_happens() {
    let documented = documented();
    let ops: Vec<Op> = documented.keys().cloned().collect();
    let app = TestApp::with_settings(HttpSettings {
        body_limit: 256 * 1024,
        ingest_limit: 256 * 1024,
        ..HttpSettings::default()
    })
    .await;
    let w = world(&app).await;
    // The probes of an operation's own first: they need the world as it was made.
    let mut answers = specific_probes(&app, &w).await;
    answers.extend(common_probes(&app, &w, &ops).await);
    answers.extend(connection_probes(&ops).await);

    let mut wrong = Vec::new();
    let mut seen: BTreeMap<&str, BTreeSet<u16>> = BTreeMap::new();
    for (op, a) in &answers {
        let listed = documented
            .get(op)
            .unwrap_or_else(|| panic!("{op} is not in the contract"));
        if !listed.contains(&a.status) {
            wrong.push(format!(
                "{op} with {}: {} is not in the contract ({listed:?}): {}",
                a.probe,
                a.status,
                a.text.chars().take(200).collect::<String>()
            ));
        } else if a.status >= 400 && !a.problem {
            wrong.push(format!(
                "{op} with {}: {} without a problem body",
                a.probe, a.status
            ));
        }
        seen.entry(op).or_default().insert(a.status);
    }
    // A failure of ours (500) is listed everywhere and provoked nowhere.
    let mut never = Vec::new();
    for (op, listed) in &documented {
        for status in listed.iter().filter(|s| **s >= 400 && **s != 500) {
            let got = seen.get(op.as_str());
            if !got.is_some_and(|s| s.contains(status)) {
                never.push(format!("{op} {status} (seen: {got:?})"));
            }
        }
    }
    assert!(
        wrong.is_empty() && never.is_empty(),
        "{} answers disagree with the contract:\n{}\n\n{} listed failures never happened:\n{}",
        wrong.len(),
        wrong.join("\n"),
        never.len(),
        never.join("\n")
    );
}

/// One request of an operation's own failures: `op` sent to `path` as `token`, `times`
/// over (the first may succeed, the next must not).
struct Step<'a> {
    op: &'static str,
    token: &'a str,
    path: String,
    if_match: Option<String>,
    body: Value,
    times: usize,
}

fn step<'a>(op: &'static str, token: &'a str, path: String, body: Value) -> Step<'a> {
    Step {
        op,
        token,
        path,
        if_match: None,
        body,
        times: 1,
    }
}

impl Step<'_> {
    fn twice(self) -> Self {
        Self { times: 2, ..self }
    }

    fn if_match(self, tag: &str) -> Self {
        Self {
            if_match: Some(tag.to_owned()),
            ..self
        }
    }
}

/// Sends one step's request; a `String` body goes as plain text.
async fn send_step(app: &TestApp, step: &Step<'_>) -> Answer {
    let mut request = app
        .client
        .request(method_of(step.op), app.url(&step.path))
        .bearer_auth(step.token);
    request = match &step.body {
        Value::String(text) => request
            .header("content-type", "text/plain")
            .body(text.clone()),
        body => request.json(body),
    };
    if let Some(tag) = &step.if_match {
        request = request.header("if-match", tag);
    }
    answer(&step.path, request.send().await.expect("send")).await
}

async fn etag(app: &TestApp, token: &str, path: &str) -> String {
    let read = app.get_as(token, path).await;
    assert_eq!(read.status(), 200, "{path}");
    read.headers()["etag"].to_str().expect("etag").to_owned()
}

/// The id of what `body` creates as `token` at `path`.
async fn created(app: &TestApp, token: &str, path: &str, body: &Value) -> String {
    let answer: Value = expect(app.post_as(token, path, body).await, 201).await;
    answer["id"].as_str().expect("an id").to_owned()
}

/// The failures of one operation's own: conflicts of state, taken names, stale versions.
/// Each is the answer the contract lists for it; the test checks it was given.
async fn specific_probes(app: &TestApp, w: &World) -> Vec<(Op, Answer)> {
    let now = chrono::Utc::now();
    let start = now + chrono::Duration::days(1);
    let plan = json!({
        "title": "Planned", "participants": ["US", "UK"],
        "model": {"provider": "ExampleAI", "name": "example-large", "version": "1", "access": "public_api"},
        "protocol_versions": [{"protocol_id": w.protocol, "number": 1}],
        "starts_at": start.to_rfc3339(), "ends_at": (start + chrono::Duration::days(5)).to_rfc3339()});
    let account = format!("/v1/accounts/{}", w.person);
    let versions = format!("/v1/protocols/{}/versions", w.protocol);
    let approved = format!("{versions}/1");
    let active = format!("/v1/exercises/{}", w.exercise);
    let run = format!("/v1/runs/{}", w.run);
    let spare = created(app, &w.author, "/v1/protocols",
        &json!({"slug": "spare", "title": "Spare", "risk_area": "cyber", "participants": ["US", "UK"]})).await;
    let planned = format!(
        "/v1/exercises/{}",
        created(app, &w.author, "/v1/exercises", &plan).await
    );
    let from_log = format!(
        "runs/inspect-log?protocol_id={}&protocol_version=1",
        w.protocol
    );
    let finished = format!(
        "/v1/runs/{}",
        created(
            app,
            &w.evaluator,
            &format!("{active}/runs"),
            &new_run(&w.protocol)
        )
        .await
    );
    for (transition, body) in [
        ("start", json!({})),
        ("finish", json!({"outcome": "succeeded"})),
    ] {
        expect(
            app.post_as(&w.evaluator, &format!("{finished}/{transition}"), &body)
                .await,
            200,
        )
        .await;
    }
    let in_review = format!(
        "/v1/protocols/{}/versions",
        created(app, &w.author, "/v1/protocols",
            &json!({"slug": "in-review", "title": "In review", "risk_area": "cyber", "participants": ["US", "UK"]})).await
    );
    expect(
        app.post_as(
            &w.author,
            &in_review,
            &json!({"content": default_content()}),
        )
        .await,
        201,
    )
    .await;
    expect(
        app.post_as(&w.author, &format!("{in_review}/1/submit"), &json!({}))
            .await,
        200,
    )
    .await;
    let (account_tag, approved_tag, active_tag) = (
        etag(app, &w.admin, &account).await,
        etag(app, &w.author, &approved).await,
        etag(app, &w.author, &active).await,
    );
    let steps = vec![
        // Accounts: a taken e-mail address, twice; a role held already; a revocation
        // repeated; a password for an account that has a secret, or reset by a person
        // who has none.
        step("POST /v1/accounts", &w.admin, "/v1/accounts".into(),
             json!({"kind": "person", "email": "TARGET@nist.gov", "display_name": "Again"})),
        step("PATCH /v1/accounts/{id}", &w.admin, account.clone(), json!({"email": "admin@nist.gov"}))
            .if_match(&account_tag),
        step("POST /v1/accounts/{id}/memberships", &w.admin, format!("{account}/memberships"),
             json!({"role": "author"})).twice(),
        step("POST /v1/accounts/{id}/memberships/{membership_id}/revoke", &w.admin,
             format!("{account}/memberships/{}/revoke", w.membership), json!({})).twice(),
        step("POST /v1/accounts/{id}/reset-password", &w.admin,
             format!("/v1/accounts/{}/reset-password", w.service), json!({})),
        step("POST /v1/me/password", &w.unscoped, "/v1/me/password".into(),
             json!({"current_password": "twelve chars at least", "new_password": "another twelve chars"})),
        // Exchanges: the same person to the same host in the same window; a decision made.
        step("POST /v1/exchanges", &w.uk_admin, "/v1/exchanges".into(),
             json!({"account_id": w.uk_person, "home_institute": "UK", "host_institute": "US",
                    "roles": ["viewer"], "starts_at": (now + chrono::Duration::days(40)).to_rfc3339(),
                    "ends_at": (now + chrono::Duration::days(50)).to_rfc3339()})).twice(),
        step("POST /v1/exchanges/{id}/approve", &w.admin,
             format!("/v1/exchanges/{}/approve", w.exchange), json!({})).twice(),
        // Protocols: a taken slug; a second open draft; an approved version edited,
        // submitted or its participants changed; a stale draft; an incomplete one
        // submitted; a draft reviewed; a review bound to another hash; a retirement repeated.
        step("POST /v1/protocols", &w.author, "/v1/protocols".into(),
             json!({"slug": "joint-runs", "title": "Again", "risk_area": "cyber", "participants": ["US", "UK"]})),
        step("POST /v1/protocols/{id}/versions", &w.author, versions.clone(), json!({})).twice(),
        step("PATCH /v1/protocols/{id}/versions/{number}", &w.author, approved.clone(),
             json!({"content": {}})).if_match(&approved_tag),
        step("PATCH /v1/protocols/{id}/versions/{number}", &w.author, format!("{versions}/2"),
             json!({"content": {}})).if_match("\"0\""),
        step("POST /v1/protocols/{id}/versions/{number}/submit", &w.author,
             format!("{versions}/2/submit"), json!({})),
        step("POST /v1/protocols/{id}/versions/{number}/submit", &w.author,
             format!("{approved}/submit"), json!({})),
        step("POST /v1/protocols/{id}/versions/{number}/reviews", &w.reviewer,
             format!("{versions}/2/reviews"), json!({"verdict": "approve"})).if_match("\"0\""),
        step("POST /v1/protocols/{id}/versions/{number}/reviews", &w.reviewer,
             format!("{in_review}/1/reviews"), json!({"verdict": "approve"})).if_match("\"0\""),
        step("PUT /v1/protocols/{id}/participants", &w.admin,
             format!("/v1/protocols/{}/participants", w.protocol), json!({"participants": ["US", "UK", "JP"]})),
        step("POST /v1/protocols/{id}/retire", &w.admin, format!("/v1/protocols/{spare}/retire"), json!({}))
            .twice(),
        // Exercises: an active plan changed; a planned one with a stale version; a
        // cancellation repeated; runs registered in a cancelled exercise; a log that is
        // neither JSON nor a zip.
        step("PATCH /v1/exercises/{id}", &w.author, active.clone(), plan.clone()).if_match(&active_tag),
        step("PATCH /v1/exercises/{id}", &w.author, planned.clone(), plan.clone()).if_match("\"0\""),
        step("POST /v1/exercises/{id}/agree", &w.reviewer, format!("{planned}/agree"), json!({}))
            .if_match("\"0\""),
        step("POST /v1/exercises/{id}/cancel", &w.author, format!("{planned}/cancel"), json!({})).twice(),
        step("POST /v1/exercises/{id}/runs", &w.evaluator, format!("{planned}/runs"), new_run(&w.protocol)),
        step("POST /v1/exercises/{id}/runs/inspect-log", &w.evaluator, format!("{planned}/{from_log}"), json!({})),
        step("POST /v1/exercises/{id}/runs/inspect-log", &w.evaluator, format!("{active}/{from_log}"),
             json!("not a log")),
        // Runs: each transition out of its state, results written outside of running,
        // an invalid score, a release of what is not finished.
        step("POST /v1/runs/{id}/finish", &w.evaluator, format!("{run}/finish"), json!({"outcome": "succeeded"})),
        step("POST /v1/runs/{id}/metrics", &w.evaluator, format!("{run}/metrics"),
             json!({"metrics": [{"scorer": "match", "metric": "accuracy", "value": 0.5}]})),
        step("POST /v1/runs/{id}/heartbeat", &w.evaluator, format!("{run}/heartbeat"), json!({"lease_seconds": 300})),
        step("POST /v1/runs/{id}/release", &w.reviewer, format!("{run}/release"), json!({"institutes": ["UK"]}))
            .if_match("\"0\""),
        step("POST /v1/runs/{id}/release", &w.reviewer, format!("{finished}/release"), json!({}))
            .if_match("\"0\""),
        step("POST /v1/runs/{id}/start", &w.evaluator, format!("{run}/start"), json!({})).twice(),
        step("POST /v1/runs/{id}/samples", &w.evaluator, format!("{run}/samples"),
             json!([{"sample_id": "", "epoch": 0, "scorer": "match", "value": 1.0}])),
        step("POST /v1/runs/{id}/cancel", &w.evaluator, format!("{run}/cancel"), json!({})).twice(),
        // Comparisons: of a run still running, and of runs nobody may read.
        step("GET /v1/comparisons", &w.evaluator,
             format!("/v1/comparisons?a={}&b={}&scorer=match", w.run, &finished["/v1/runs/".len()..]), Value::Null),
        step("GET /v1/comparisons", &w.evaluator,
             format!("/v1/comparisons?a={}&b={}&scorer=match", Uuid::now_v7(), Uuid::now_v7()), Value::Null),
        step("GET /v1/comparisons/disagreements", &w.evaluator,
             format!("/v1/comparisons/disagreements?a={}&b={}&scorer=match", w.run, &finished["/v1/runs/".len()..]), Value::Null),
        step("GET /v1/comparisons/disagreements", &w.evaluator,
             format!("/v1/comparisons/disagreements?a={}&b={}&scorer=match", Uuid::now_v7(), Uuid::now_v7()), Value::Null),
    ];
    let mut out = Vec::new();
    for step in &steps {
        for _ in 0..step.times {
            out.push((step.op.to_owned(), send_step(app, step).await));
        }
    }
    out
}

/// Every answer that makes an object links to the operations on it, the one that reads
/// it among them, and every link names a real operation and fills exactly its path
/// parameters: what a generated client, or the fuzzer's stateful phase, follows to the
/// object just made.
#[test]
fn what_an_answer_makes_is_linked_to_the_operations_on_it() {
    let spec = serde_json::to_value(jointeval_api::openapi()).expect("spec");
    let mut by_id: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        let params: BTreeSet<String> = path
            .split('/')
            .filter_map(|s| Some(s.strip_prefix('{')?.strip_suffix('}')?.to_owned()))
            .collect();
        for (method, op) in item.as_object().expect("item") {
            let id = op["operationId"]
                .as_str()
                .expect("an operationId")
                .to_owned();
            by_id.insert(
                id,
                (format!("{} {path}", method.to_uppercase()), params.clone()),
            );
        }
    }
    let mut creating = 0;
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            let name = format!("{} {path}", method.to_uppercase());
            for (status, answer) in op["responses"].as_object().expect("responses") {
                let links = answer["links"].as_object();
                if status == "201" {
                    creating += 1;
                    let links = links.unwrap_or_else(|| panic!("{name} 201 has no links"));
                    assert!(
                        links
                            .values()
                            .any(|l| by_id[l["operationId"].as_str().expect("operationId")]
                                .0
                                .starts_with("GET ")),
                        "{name}: no link reads what it made"
                    );
                }
                for (key, link) in links.into_iter().flatten() {
                    let target = link["operationId"].as_str().expect("operationId");
                    let (to, params) = by_id
                        .get(target)
                        .unwrap_or_else(|| panic!("{name} {status} links {key} to no operation"));
                    let given: BTreeSet<String> = link["parameters"]
                        .as_object()
                        .expect("parameters")
                        .keys()
                        .cloned()
                        .collect();
                    assert_eq!(&given, params, "{name} {status} → {to}: parameters");
                    for expression in link["parameters"].as_object().expect("parameters").values() {
                        let expression = expression.as_str().expect("an expression");
                        if let Some(pointer) = expression.strip_prefix("$response.body#") {
                            let schema = &answer["content"]["application/json"]["schema"];
                            assert!(
                                schema_has(&spec, schema, pointer),
                                "{name} {status}: the answer has no {pointer}"
                            );
                        } else {
                            let param = expression.strip_prefix("$request.path.").expect("path");
                            assert!(
                                path.contains(&format!("{{{param}}}")),
                                "{name}: {expression}"
                            );
                        }
                    }
                }
            }
        }
    }
    assert!(creating >= 7, "only {creating} operations answer 201");
}

/// Whether `schema` (a `$ref` to a component, or inline) has the property at `pointer`.
fn schema_has(spec: &Value, schema: &Value, pointer: &str) -> bool {
    let Some((name, rest)) = pointer
        .strip_prefix('/')
        .map(|p| p.split_once('/').map_or((p, ""), |(n, r)| (n, r)))
    else {
        return true;
    };
    let mut schema = schema;
    if let Some(reference) = schema["$ref"].as_str() {
        let component = reference.trim_start_matches("#/components/schemas/");
        schema = &spec["components"]["schemas"][component];
    }
    // A composed schema has the property when one of its parts does.
    if let Some(parts) = schema["allOf"].as_array() {
        return parts.iter().any(|part| schema_has(spec, part, pointer));
    }
    let property = &schema["properties"][name];
    !property.is_null() && (rest.is_empty() || schema_has(spec, property, &format!("/{rest}")))
}

/// A body the contract lets a client leave out has nothing a client must send in it.
#[test]
fn a_body_that_may_be_left_out_requires_no_field() {
    let spec = serde_json::to_value(jointeval_api::openapi()).expect("spec");
    let mut optional = Vec::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            let body = &op["requestBody"];
            if body.is_object() && body["required"] != json!(true) {
                let schema = &body["content"]["application/json"]["schema"];
                let name = schema["$ref"].as_str().expect("a named schema");
                let component = name.trim_start_matches("#/components/schemas/");
                let required = &spec["components"]["schemas"][component]["required"];
                assert!(
                    required.as_array().is_none_or(|r| r.is_empty()),
                    "{method} {path}: {component} requires {required}"
                );
                optional.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    optional.sort();
    assert_eq!(
        optional,
        [
            "POST /v1/exercises/{id}/agree",
            "POST /v1/runs/claim",
            "POST /v1/runs/{id}/heartbeat",
            "POST /v1/runs/{id}/release",
        ]
    );
}

/// The answers every operation of a kind shares are in the contract for every one of
/// them, with the headers a client reads: a generated client raises on an answer it was
/// not told of instead of reading its problem body.
#[test]
fn every_operation_lists_the_answers_of_its_kind() {
    let spec = serde_json::to_value(jointeval_api::openapi()).expect("spec");
    let mut seen = 0;
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            seen += 1;
            let name = format!("{} {path}", method.to_uppercase());
            let responses = &op["responses"];
            let has = |status: &str| responses[status].is_object();
            let header =
                |status: &str, header: &str| responses[status]["headers"][header].is_object();
            assert!(has("500") && has("503"), "{name}: 500 and 503");
            assert!(
                header("503", "Retry-After"),
                "{name}: 503 without Retry-After"
            );
            assert!(has("401"), "{name}: 401");
            let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
            if secured {
                assert!(
                    header("401", "WWW-Authenticate"),
                    "{name}: 401 without WWW-Authenticate"
                );
            }
            // An unknown object's history is empty, not missing: it reveals nothing.
            if path.contains('{') && path != "/v1/audit/objects/{object_type}/{object_id}" {
                assert!(has("404"), "{name}: an id in the path, and no 404");
            }
            if op["requestBody"].is_object() {
                for status in ["400", "413", "415", "422"] {
                    assert!(has(status), "{name}: a body, and no {status}");
                }
            }
            for (status, answer) in responses.as_object().expect("responses") {
                if status.starts_with('4') || status.starts_with('5') {
                    assert!(
                        answer["content"]["application/problem+json"].is_object(),
                        "{name} {status}: not a problem body"
                    );
                }
            }
        }
    }
    assert!(seen >= 67, "only {seen} operations");
}
