//! `Idempotency-Key` on every operation that creates: a retry with the same key and
//! request answers the first answer and makes nothing more; the same key with another
//! request is refused and makes nothing; without a key, each request makes its own.

use jointeval_domain::Role;
use serde_json::{Value, json};

use crate::support::story::{approved_protocol, default_content};
use crate::support::{TestApp, problem};

/// A creating request: who sends it, where, bound to what (`If-Match`), a body, another
/// body, and the table whose rows it makes.
struct Creation {
    name: &'static str,
    token: String,
    path: String,
    if_match: Option<String>,
    body: Value,
    other: Value,
    table: &'static str,
}

async fn send(app: &TestApp, c: &Creation, key: Option<&str>, body: &Value) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url(&c.path))
        .bearer_auth(&c.token)
        .json(body);
    if let Some(tag) = &c.if_match {
        request = request.header("if-match", tag);
    }
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    request.send().await.expect("send")
}

async fn rows(app: &TestApp, table: &str) -> i64 {
    sqlx::query_scalar(&format!("select count(*) from {table}"))
        .fetch_one(&app.pool)
        .await
        .expect("count")
}

#[tokio::test]
async fn every_creating_operation_answers_a_retry_with_its_first_answer() {
    let app = TestApp::spawn().await;
    let author = app
        .login(
            &app.person("idem-author@nist.gov", "US", &[Role::Author])
                .await,
        )
        .await;
    let uk_author = app
        .login(
            &app.person("idem-author@aisi.gov.uk", "UK", &[Role::Author])
                .await,
        )
        .await;
    let admin = app
        .login(
            &app.person("idem-admin@nist.gov", "US", &[Role::Admin])
                .await,
        )
        .await;
    let reviewer = app
        .login(
            &app.person("idem-rev@nist.gov", "US", &[Role::Reviewer])
                .await,
        )
        .await;
    let staff = app.person("idem-staff@nist.gov", "US", &[]).await;
    let approved = approved_protocol(&app, "idem-approved", &["US", "UK"]).await;

    // A protocol with a draft in review, for the comment and review requests.
    let reviewed: Value = app
        .post_as(&author, "/v1/protocols", &json!({"slug": "idem-reviewed", "title": "r", "risk_area": "cyber", "participants": ["US", "UK"]}))
        .await
        .json()
        .await
        .expect("json");
    let reviewed = reviewed["id"].as_str().expect("id").to_owned();
    let versions = format!("/v1/protocols/{reviewed}/versions");
    for (path, body) in [
        (versions.clone(), json!({"content": default_content()})),
        (format!("{versions}/1/submit"), json!({})),
    ] {
        assert!(
            app.post_as(&uk_author, &path, &body)
                .await
                .status()
                .is_success()
        );
    }
    let in_review: Value = app
        .get_as(&reviewer, &format!("{versions}/1"))
        .await
        .json()
        .await
        .expect("json");
    let content_hash = format!(
        "\"{}\"",
        in_review["content_sha256"]
            .as_str()
            .expect("content_sha256")
    );
    let empty: Value = app
        .post_as(&author, "/v1/protocols", &json!({"slug": "idem-empty", "title": "e", "risk_area": "cyber", "participants": ["US", "UK"]}))
        .await
        .json()
        .await
        .expect("json");
    let empty = empty["id"].as_str().expect("id").to_owned();

    let start = chrono::Utc::now() + chrono::Duration::days(1);
    let window = |days: i64| {
        (
            start.to_rfc3339(),
            (start + chrono::Duration::days(days)).to_rfc3339(),
        )
    };
    let plan = |title: &str| {
        let (starts_at, ends_at) = window(7);
        json!({
            "title": title,
            "model": {"provider": "ExampleAI", "name": "example-large", "version": "1", "access": "public_api"},
            "protocol_versions": [{"protocol_id": approved, "number": 1}],
            "participants": ["US", "UK"], "starts_at": starts_at, "ends_at": ends_at
        })
    };
    let exchange = |days: i64| {
        let (starts_at, ends_at) = window(days);
        json!({"account_id": staff.id, "home_institute": "US", "host_institute": "UK",
               "roles": ["viewer"], "starts_at": starts_at, "ends_at": ends_at})
    };
    let grant = |role: &str| json!({"role": role});
    let creations = [
        Creation {
            name: "a protocol",
            token: author.clone(),
            path: "/v1/protocols".into(),
            if_match: None,
            body: json!({"slug": "idem-new", "title": "n", "risk_area": "cyber", "participants": ["US", "UK"]}),
            other: json!({"slug": "idem-other", "title": "o", "risk_area": "cyber", "participants": ["US", "UK"]}),
            table: "protocols",
        },
        Creation {
            name: "a draft",
            token: author.clone(),
            path: format!("/v1/protocols/{empty}/versions"),
            if_match: None,
            body: json!({"content": default_content()}),
            other: json!({"content": {"objective": "another"}}),
            table: "protocol_versions",
        },
        Creation {
            name: "an exercise",
            token: author.clone(),
            path: "/v1/exercises".into(),
            if_match: None,
            body: plan("idem plan"),
            other: plan("another plan"),
            table: "exercises",
        },
        Creation {
            name: "an exchange",
            token: admin.clone(),
            path: "/v1/exchanges".into(),
            if_match: None,
            body: exchange(30),
            other: exchange(60),
            table: "exchanges",
        },
        Creation {
            name: "a membership",
            token: admin.clone(),
            path: format!("/v1/accounts/{}/memberships", staff.id),
            if_match: None,
            body: grant("viewer"),
            other: grant("author"),
            table: "memberships",
        },
        Creation {
            name: "a comment",
            token: reviewer.clone(),
            path: format!("{versions}/1/comments"),
            if_match: None,
            body: json!({"body": "Three epochs are not enough."}),
            other: json!({"body": "Something else."}),
            table: "protocol_comments",
        },
        Creation {
            name: "a review",
            token: reviewer.clone(),
            path: format!("{versions}/1/reviews"),
            if_match: Some(content_hash),
            body: json!({"verdict": "approve"}),
            other: json!({"verdict": "request_changes", "comment": "more epochs"}),
            table: "protocol_reviews",
        },
    ];
    for c in &creations {
        let before = rows(&app, c.table).await;
        let key = format!("retry-of-{}", c.name.replace(' ', "-"));
        let first = send(&app, c, Some(&key), &c.body).await;
        assert_eq!(first.status(), 201, "{}", c.name);
        assert!(
            first.headers().get("idempotent-replayed").is_none(),
            "{}",
            c.name
        );
        let first: Value = first.json().await.expect("json");
        assert_eq!(rows(&app, c.table).await, before + 1, "{}", c.name);

        let retry = send(&app, c, Some(&key), &c.body).await;
        assert_eq!(retry.status(), 201, "{}: the retry", c.name);
        assert_eq!(
            retry
                .headers()
                .get("idempotent-replayed")
                .map(|v| v.as_bytes()),
            Some(b"true".as_slice()),
            "{}",
            c.name
        );
        assert_eq!(
            retry.json::<Value>().await.expect("json"),
            first,
            "{}",
            c.name
        );
        assert_eq!(
            rows(&app, c.table).await,
            before + 1,
            "{}: the retry made one",
            c.name
        );

        let reused = problem(send(&app, c, Some(&key), &c.other).await, 422).await;
        assert_eq!(
            reused["errors"][0]["field"], "Idempotency-Key",
            "{}",
            c.name
        );
        assert_eq!(
            rows(&app, c.table).await,
            before + 1,
            "{}: the reuse made none",
            c.name
        );
    }

    // A key is the request's, not the operation's: the same key on another operation is
    // another request, refused.
    let exercise = &creations[2];
    let moved = problem(
        app.client
            .post(app.url("/v1/exercises"))
            .bearer_auth(&exercise.token)
            .header("idempotency-key", "retry-of-a-protocol")
            .json(&plan("a third plan"))
            .send()
            .await
            .expect("send"),
        422,
    )
    .await;
    assert_eq!(moved["errors"][0]["field"], "Idempotency-Key");

    // Without a key, each request is its own.
    let exercises = &creations[2];
    let before = rows(&app, "exercises").await;
    for _ in 0..2 {
        assert_eq!(
            send(&app, exercises, None, &exercises.body).await.status(),
            201
        );
    }
    assert_eq!(rows(&app, "exercises").await, before + 2);
}
