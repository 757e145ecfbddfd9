//! Reading the audit trail over HTTP: each institute's admins see their institute's
//! events only, reviewers the history of what they review, and nobody else anything.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jointeval_domain::{Role, Scope};
use serde_json::{Value, json};

use crate::support::story::{active_exercise, new_run};
use crate::support::{TestApp, problem};

async fn events(app: &TestApp, token: &str, query: &str) -> Vec<Value> {
    let response = app
        .get_as(token, &format!("/v1/audit?limit=200&{query}"))
        .await;
    assert_eq!(response.status(), 200, "GET /v1/audit?{query}");
    let page: Value = response.json().await.expect("json");
    page["items"].as_array().expect("items").clone()
}

fn objects(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["object_id"].as_str().expect("object_id").to_owned())
        .collect()
}

async fn create_person(app: &TestApp, admin: &str, email: &str) -> String {
    let created = app
        .post_as(
            admin,
            "/v1/accounts",
            &json!({"kind": "person", "email": email, "display_name": "Someone"}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let body: Value = created.json().await.expect("json");
    body["account"]["id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn each_institute_reads_its_own_events_and_nobody_else_reads_any() {
    let app = TestApp::spawn().await;
    let (exercise, protocol) = active_exercise(&app).await;
    let us_admin = app
        .login(
            &app.person("audit-admin@nist.gov", "US", &[Role::Admin])
                .await,
        )
        .await;
    let uk_admin = app
        .login(
            &app.person("audit-admin@aisi.gov.uk", "UK", &[Role::Admin])
                .await,
        )
        .await;
    let us_viewer = app
        .login(
            &app.person("audit-viewer@nist.gov", "US", &[Role::Viewer])
                .await,
        )
        .await;
    let uk_reviewer = app
        .login(
            &app.person("audit-rev@aisi.gov.uk", "UK", &[Role::Reviewer])
                .await,
        )
        .await;
    let us_reviewer = app
        .login(
            &app.person("audit-rev@nist.gov", "US", &[Role::Reviewer])
                .await,
        )
        .await;
    let us_evaluator = app
        .login(
            &app.person("audit-eval@nist.gov", "US", &[Role::Evaluator])
                .await,
        )
        .await;
    let service = app
        .service(
            "US",
            "audit service secret",
            &[Scope::RunsRead],
            &[Role::Admin],
        )
        .await;
    let service = app.service_login(service, "audit service secret").await;
    let jp_admin = app
        .login(
            &app.person("audit-admin@aisi.go.jp", "JP", &[Role::Admin])
                .await,
        )
        .await;

    let us_person = create_person(&app, &us_admin, "new@nist.gov").await;
    let uk_person = create_person(&app, &uk_admin, "new@aisi.gov.uk").await;
    let us_accounts = objects(&events(&app, &us_admin, "action=account.created").await);
    let uk_accounts = objects(&events(&app, &uk_admin, "action=account.created").await);
    assert!(us_accounts.contains(&us_person), "{us_accounts:?}");
    assert!(!us_accounts.contains(&uk_person), "{us_accounts:?}");
    assert!(uk_accounts.contains(&uk_person), "{uk_accounts:?}");
    assert!(!uk_accounts.contains(&us_person), "{uk_accounts:?}");

    // A US run is the US's alone until released; then the UK sees its release.
    let run = app
        .post_as(
            &us_evaluator,
            &format!("/v1/exercises/{exercise}/runs"),
            &new_run(&protocol),
        )
        .await;
    assert_eq!(run.status(), 201);
    let run = run.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let history = format!("/v1/audit/objects/run/{run}");
    for (path, body) in [
        ("start", json!({})),
        ("finish", json!({"outcome": "succeeded"})),
    ] {
        let moved = app
            .post_as(&us_evaluator, &format!("/v1/runs/{run}/{path}"), &body)
            .await;
        assert_eq!(moved.status(), 200, "{path}");
    }
    let seen = |events: &[Value]| -> Vec<String> {
        events
            .iter()
            .map(|e| e["action"].as_str().expect("action").to_owned())
            .collect()
    };
    let us_view: Value = app
        .get_as(&us_admin, &history)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        seen(us_view["items"].as_array().expect("items")),
        ["run.created", "run.started", "run.finished"]
    );
    for token in [&uk_admin, &uk_reviewer, &jp_admin] {
        let page: Value = app
            .get_as(token, &history)
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(
            page["items"],
            json!([]),
            "an unreleased run's history is the US's"
        );
        // Empty is right here: no run of theirs need exist; the US's must not be in it.
        assert!(
            events(&app, token, "object_type=run")
                .await
                .iter()
                .all(|e| e["object_id"] != run.as_str())
        );
    }
    let released = app
        .release(&us_reviewer, &format!("/v1/runs/{run}"), &json!({}))
        .await;
    assert_eq!(released.status(), 200);
    let uk_view: Value = app
        .get_as(&uk_reviewer, &history)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        seen(uk_view["items"].as_array().expect("items")),
        ["run.released"]
    );
    let jp_view: Value = app
        .get_as(&jp_admin, &history)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        jp_view["items"],
        json!([]),
        "a third institute sees nothing"
    );

    // Reviewers read what they review, not the accounts of their institute.
    let reviewed = events(&app, &us_reviewer, "").await;
    assert!(!reviewed.is_empty());
    assert!(reviewed.iter().all(|e| {
        ["protocol", "protocol_version", "exercise", "run"]
            .contains(&e["object_type"].as_str().expect("type"))
    }));
    let protocol_history: Value = app
        .get_as(
            &uk_reviewer,
            &format!("/v1/audit/objects/protocol/{protocol}"),
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(protocol_history["items"][0]["action"], "protocol.created");
    // A version is named in the trail by the id its view carries.
    let version: Value = app
        .get_as(
            &uk_reviewer,
            &format!("/v1/protocols/{protocol}/versions/1"),
        )
        .await
        .json()
        .await
        .expect("json");
    let version_id = version["id"].as_str().expect("a version has an id");
    let version_history: Value = app
        .get_as(
            &uk_reviewer,
            &format!("/v1/audit/objects/protocol_version/{version_id}"),
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        seen(version_history["items"].as_array().expect("items")),
        [
            "protocol_version.drafted",
            "protocol_version.submitted",
            "protocol_version.reviewed",
            "protocol_version.reviewed"
        ]
    );

    // Viewers, evaluators and service accounts (whatever roles they hold) read none of it.
    for token in [&us_viewer, &us_evaluator, &service] {
        for path in ["/v1/audit", "/v1/audit/checkpoint", history.as_str()] {
            let body = problem(app.get_as(token, path).await, 403).await;
            assert_eq!(body["type"], "urn:jointeval:problem:forbidden", "{path}");
        }
    }
    assert_eq!(app.get("/v1/audit").await.status(), 401);
}

#[tokio::test]
async fn events_are_paged_in_chain_order_and_bad_queries_are_refused() {
    let app = TestApp::spawn().await;
    let admin = app
        .login(&app.person("pager@nist.gov", "US", &[Role::Admin]).await)
        .await;
    let person = create_person(&app, &admin, "paged@nist.gov").await;
    for name in ["One", "Two", "Three"] {
        let read = app.get_as(&admin, &format!("/v1/accounts/{person}")).await;
        let etag = read.headers()["etag"].to_str().expect("etag").to_owned();
        let response = app
            .client
            .patch(app.url(&format!("/v1/accounts/{person}")))
            .bearer_auth(&admin)
            .header("if-match", etag)
            .json(&json!({"display_name": name}))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 200);
    }
    let me: Value = app.get_as(&admin, "/v1/me").await.json().await.expect("me");
    let mut seqs = Vec::new();
    let mut actions = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/audit/objects/account/{person}?limit=1&cursor={c}"),
            None => format!("/v1/audit/objects/account/{person}?limit=1"),
        };
        let page: Value = app.get_as(&admin, &path).await.json().await.expect("json");
        let items = page["items"].as_array().expect("items");
        assert!(items.len() <= 1);
        for e in items {
            seqs.push(e["seq"].as_i64().expect("seq"));
            actions.push(e["action"].as_str().expect("action").to_owned());
            assert_eq!(e["actor"], me["account"]["id"]);
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        actions,
        [
            "account.created",
            "account.updated",
            "account.updated",
            "account.updated"
        ]
    );
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let names: Vec<Value> = events(
        &app,
        &admin,
        &format!("object_id={person}&action=account.updated"),
    )
    .await
    .iter()
    .map(|e| e["summary"]["display_name"].clone())
    .collect();
    assert_eq!(names, [json!("One"), json!("Two"), json!("Three")]);

    let long = "x".repeat(201);
    for query in [
        "limit=0".to_owned(),
        "limit=201".to_owned(),
        "cursor=not-a-cursor".to_owned(),
        format!("cursor={}", URL_SAFE_NO_PAD.encode("seven")),
        format!("action={long}"),
        "since=yesterday".to_owned(),
        "colour=blue".to_owned(),
    ] {
        let response = app.get_as(&admin, &format!("/v1/audit?{query}")).await;
        assert!(
            [400, 422].contains(&response.status().as_u16()),
            "{query}: {}",
            response.status()
        );
        let body: Value = response.json().await.expect("problem body");
        assert!(body["status"].is_number(), "{query}: {body}");
    }
    let after_everything = events(&app, &admin, "since=2999-01-01T00:00:00Z").await;
    assert!(after_everything.is_empty());
}

#[tokio::test]
async fn a_checkpoint_is_signed_by_a_key_of_the_jwks() {
    let app = TestApp::spawn().await;
    let admin = app
        .login(&app.person("signer@nist.gov", "US", &[Role::Admin]).await)
        .await;
    let checkpoint: Value = app
        .get_as(&admin, "/v1/audit/checkpoint")
        .await
        .json()
        .await
        .expect("json");
    let seq = checkpoint["seq"].as_i64().expect("seq");
    let events = events(&app, &admin, "").await;
    let last = events
        .iter()
        .rev()
        .find(|e| e["seq"] == seq)
        .expect("the head is an event the admin sees");
    assert_eq!(checkpoint["hash"], last["hash"]);

    let signed = checkpoint["signed"].as_str().expect("signed");
    let header = jsonwebtoken::decode_header(signed).expect("a JWS");
    assert_eq!(header.typ.as_deref(), Some("audit-checkpoint+jwt"));
    let jwks: Value = app
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .expect("jwks");
    let key = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"].as_str() == header.kid.as_deref())
        .expect("the signing key is published");
    let x = URL_SAFE_NO_PAD
        .decode(key["x"].as_str().expect("x"))
        .expect("base64url");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_required_spec_claims(&["iss"]);
    validation.validate_exp = false;
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<Value>(
        signed,
        &jsonwebtoken::DecodingKey::from_ed_der(&x),
        &validation,
    )
    .expect("the signature verifies")
    .claims;
    assert_eq!(claims["seq"], seq);
    assert_eq!(claims["hash"], checkpoint["hash"]);
    // A checkpoint is never a token.
    assert_eq!(app.get_as(signed, "/v1/me").await.status(), 401);
}
