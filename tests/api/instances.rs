//! Two instances of the service on one database, requests split between them: the
//! guarantees that live in the database hold across instances.

use jointeval_domain::Role;
use jointeval_domain::audit::ChainCheck;
use serde_json::{Value, json};

use crate::audit::{EVENT_COLUMNS, event_of};
use crate::support::TestApp;
use crate::support::story::{active_exercise, new_run};

#[tokio::test]
async fn idempotency_approvals_and_the_audit_chain_hold_across_instances() {
    let app = TestApp::spawn().await;
    let second = app.second_instance().await;
    let bases = [app.url(""), second];
    let (exercise, protocol) = active_exercise(&app).await;
    let evaluator = app
        .login(
            &app.person("instances@nist.gov", "US", &[Role::Evaluator])
                .await,
        )
        .await;

    // One run, however many times and wherever the same request is retried.
    let body = new_run(&protocol);
    let sends: Vec<_> = (0..10)
        .map(|i| {
            app.client
                .post(format!("{}/v1/exercises/{exercise}/runs", bases[i % 2]))
                .bearer_auth(&evaluator)
                .header("idempotency-key", "instances-retry-1")
                .json(&body)
                .send()
        })
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    for response in futures_util::future::join_all(sends).await {
        let response = response.expect("send");
        assert_eq!(response.status(), 201);
        let run: Value = response.json().await.expect("json");
        ids.insert(run["id"].as_str().expect("id").to_owned());
    }
    assert_eq!(ids.len(), 1, "every retry answered the same run");
    let runs: i64 = sqlx::query_scalar("select count(*) from runs")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(runs, 1);

    // A version approved by reviewers of both participants at once, on both instances.
    let author = app
        .login(
            &app.person("instances-author@nist.gov", "US", &[Role::Author])
                .await,
        )
        .await;
    let created: Value = app
        .post_as(
            &author,
            "/v1/protocols",
            &json!({"slug": "two-instances", "title": "t",
            "risk_area": "cyber", "participants": ["US", "UK"]}),
        )
        .await
        .json()
        .await
        .expect("json");
    let id = created["id"].as_str().expect("id").to_owned();
    let versions = format!("/v1/protocols/{id}/versions");
    let content = crate::support::story::default_content();
    app.post_as(&author, &versions, &json!({"content": content}))
        .await;
    let submitted: Value = crate::support::expect(
        app.post_as(&author, &format!("{versions}/1/submit"), &json!({}))
            .await,
        200,
    )
    .await;
    let bound = format!(
        "\"{}\"",
        submitted["content_sha256"]
            .as_str()
            .expect("content_sha256")
    );
    let mut reviewers = Vec::new();
    for code in ["US", "UK"] {
        let reviewer = app
            .person(
                &format!("instances-rev@{code}.example"),
                code,
                &[Role::Reviewer],
            )
            .await;
        reviewers.push(app.login(&reviewer).await);
    }
    let reviews: Vec<_> = reviewers
        .iter()
        .enumerate()
        .map(|(i, token)| {
            app.client
                .post(format!("{}{versions}/1/reviews", bases[i % 2]))
                .bearer_auth(token)
                .header("if-match", &bound)
                .json(&json!({"verdict": "approve"}))
                .send()
        })
        .collect();
    for response in futures_util::future::join_all(reviews).await {
        assert_eq!(response.expect("send").status(), 201);
    }
    let version: Value = app
        .get_as(&author, &format!("{versions}/1"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(version["status"], "approved", "both approvals counted");

    // Writers on both instances at once make one chain.
    let writes: Vec<_> = (0..20)
        .map(|i| {
            app.client
                .post(format!("{}/v1/protocols", bases[i % 2]))
                .bearer_auth(&author)
                .json(&json!({"slug": format!("chain-{i}"), "title": "t",
                              "risk_area": "cyber", "participants": ["US", "UK"]}))
                .send()
        })
        .collect();
    for response in futures_util::future::join_all(writes).await {
        assert_eq!(response.expect("send").status(), 201);
    }
    let rows = sqlx::query(&format!(
        "select {EVENT_COLUMNS} from audit_events order by seq"
    ))
    .fetch_all(&app.pool)
    .await
    .expect("events");
    let mut check = ChainCheck::new(None);
    for row in &rows {
        check.push(&event_of(row)).expect("one unbroken chain");
    }
    assert_eq!(check.finish().expect("head").seq, rows.len() as i64);
}
