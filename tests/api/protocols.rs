//! The protocol story over HTTP: co-authoring, review, approval, discussion, and what a
//! third institute does not see.

use jointeval_domain::Role;
use jointeval_domain::protocol::ProtocolContent;
use serde_json::{Value, json};

use crate::support::{TestApp, problem};

fn content(epochs: u32) -> Value {
    json!({
        "objective": "Measure uplift on capture-the-flag tasks",
        "tasks": [{
            "name": "ctf-easy", "description": "Twenty entry-level challenges",
            "dataset": {"name": "ctf-suite", "version": "2026.10", "sha256": null, "sample_count": 20},
            "harness": {"name": "inspect", "task_ref": "inspect_evals/ctf_easy"},
            "scorers": ["match"], "metrics": ["accuracy"], "epochs": epochs
        }],
        "metrics": [{"name": "accuracy", "description": "Share solved", "higher_is_better": true,
                     "threshold": {"value": 0.5, "meaning": "report to both leads"}}],
        "model_requirements": "Tool use", "notes": ""
    })
}

async fn patch(
    app: &TestApp,
    token: &str,
    path: &str,
    etag: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    let mut request = app
        .client
        .patch(app.url(path))
        .bearer_auth(token)
        .json(body);
    if let Some(etag) = etag {
        request = request.header("if-match", etag);
    }
    request.send().await.expect("send")
}

fn etag_of(response: &reqwest::Response) -> String {
    let Some(etag) = response.headers().get("etag") else {
        panic!(
            "no ETag on a {} answer to {}",
            response.status(),
            response.url()
        );
    };
    etag.to_str().expect("etag").to_owned()
}

async fn versions_in_db(app: &TestApp) -> i64 {
    sqlx::query_scalar("select count(*) from protocol_versions")
        .fetch_one(&app.pool)
        .await
        .expect("count")
}

#[tokio::test]
async fn two_institutes_write_review_and_approve_a_protocol_that_a_third_never_sees() {
    let app = TestApp::spawn().await;
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
    let us_viewer = app.person("viewer@nist.gov", "US", &[Role::Viewer]).await;
    let jp_author = app
        .person("author@aisi.go.jp", "JP", &[Role::Author, Role::Reviewer])
        .await;
    let (ua, ka, ur, kr, uv, ja) = (
        app.login(&us_author).await,
        app.login(&uk_author).await,
        app.login(&us_reviewer).await,
        app.login(&uk_reviewer).await,
        app.login(&us_viewer).await,
        app.login(&jp_author).await,
    );

    // A US author creates the protocol with the UK.
    let created = app
        .post_as(&ua, "/v1/protocols", &json!({"slug": "cyber-ctf-uplift", "title": "Cyber CTF uplift",
            "risk_area": "cyber", "summary": "CTF with and without tools", "participants": ["US", "UK"]}))
        .await;
    assert_eq!(created.status(), 201);
    let protocol: Value = created.json().await.expect("json");
    assert_eq!(protocol["lead_institute"], "US");
    assert_eq!(protocol["participants"], json!(["UK", "US"]));
    let id = protocol["id"].as_str().expect("id").to_owned();
    let base = format!("/v1/protocols/{id}");

    // The third institute finds nothing, anywhere.
    problem(app.get_as(&ja, &base).await, 404).await;
    let listed: Value = app
        .get_as(&ja, "/v1/protocols")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(listed["items"], json!([]));
    let listed: Value = app
        .get_as(&kr, "/v1/protocols")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(listed["items"][0]["id"], json!(id));

    // Co-writing a draft, with a concurrent edit on the way.
    let draft = app
        .post_as(
            &ua,
            &format!("{base}/versions"),
            &json!({"content": {"objective": "Draft"}}),
        )
        .await;
    assert_eq!(draft.status(), 201);
    let first_etag = etag_of(&draft);
    let v1 = format!("{base}/versions/1");
    let us_edit = patch(
        &app,
        &ua,
        &v1,
        Some(&first_etag),
        &json!({"content": content(1)}),
    )
    .await;
    assert_eq!(us_edit.status(), 200);
    let stale = patch(
        &app,
        &ka,
        &v1,
        Some(&first_etag),
        &json!({"content": content(2)}),
    )
    .await;
    problem(stale, 412).await;
    problem(
        patch(&app, &ka, &v1, None, &json!({"content": content(2)})).await,
        428,
    )
    .await;
    let read = app.get_as(&ka, &v1).await;
    let current = etag_of(&read);
    let read: Value = read.json().await.expect("json");
    assert_eq!(
        read["content"]["tasks"][0]["epochs"], 1,
        "the stale edit changed nothing"
    );
    let uk_edit = patch(
        &app,
        &ka,
        &v1,
        Some(&current),
        &json!({"content": content(2)}),
    )
    .await;
    assert_eq!(uk_edit.status(), 200);
    let v: Value = uk_edit.json().await.expect("json");
    assert_eq!(v["editors"], json!([us_author.id, uk_author.id]));
    // Viewers read; they do not write.
    problem(
        patch(
            &app,
            &uv,
            &v1,
            Some(&current),
            &json!({"content": content(3)}),
        )
        .await,
        403,
    )
    .await;

    // Submitting freezes it and records the hash of what was submitted.
    let submitted = app.post_as(&ka, &format!("{v1}/submit"), &json!({})).await;
    assert_eq!(submitted.status(), 200);
    let v: Value = submitted.json().await.expect("json");
    assert_eq!(v["status"], "in_review");
    let frozen: ProtocolContent = serde_json::from_value(v["content"].clone()).expect("content");
    assert_eq!(v["content_sha256"], json!(frozen.sha256()));
    let now_etag = etag_of(&app.get_as(&ua, &v1).await);
    problem(
        patch(
            &app,
            &ua,
            &v1,
            Some(&now_etag),
            &json!({"content": content(9)}),
        )
        .await,
        409,
    )
    .await;

    // Authors do not review their own work; a non-participant cannot review at all.
    let approve = json!({"verdict": "approve"});
    problem(app.review(&ua, &v1, &approve).await, 403).await;
    problem(app.review(&ka, &v1, &approve).await, 403).await;
    problem(app.review(&ja, &v1, &approve).await, 404).await;

    // The UK reviewer asks for changes.
    let changes = app
        .review(
            &kr,
            &v1,
            &json!({"verdict": "request_changes", "comment": "Three epochs at least."}),
        )
        .await;
    assert_eq!(changes.status(), 201);
    let outcome: Value = changes.json().await.expect("json");
    assert_eq!(outcome["version_status"], "changes_requested");
    assert_eq!(outcome["review"]["institute"], "UK");
    problem(app.review(&ur, &v1, &approve).await, 409).await;

    // A new draft follows, copied from the last version.
    let second = app
        .post_as(&ua, &format!("{base}/versions"), &json!({"from": "latest"}))
        .await;
    assert_eq!(second.status(), 201);
    let second_etag = etag_of(&second);
    let v: Value = second.json().await.expect("json");
    assert_eq!(
        (v["number"].as_i64(), v["based_on"].as_i64()),
        (Some(2), Some(1))
    );
    problem(
        app.post_as(&ka, &format!("{base}/versions"), &json!({}))
            .await,
        409,
    )
    .await;
    let v2 = format!("{base}/versions/2");
    assert_eq!(
        patch(
            &app,
            &ua,
            &v2,
            Some(&second_etag),
            &json!({"content": content(3)})
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        app.post_as(&ua, &format!("{v2}/submit"), &json!({}))
            .await
            .status(),
        200
    );

    // Discussion: anchored to a field, with a reply; viewers read it, the third institute does not.
    let comment = app
        .post_as(
            &kr,
            &format!("{v2}/comments"),
            &json!({"body": "Is 3 enough?", "anchor": "/tasks/0/epochs"}),
        )
        .await;
    assert_eq!(comment.status(), 201);
    let comment: Value = comment.json().await.expect("json");
    let reply = app
        .post_as(
            &ua,
            &format!("{v2}/comments"),
            &json!({"body": "Yes, for this variance.", "parent_id": comment["id"]}),
        )
        .await;
    assert_eq!(reply.status(), 201);
    problem(
        app.post_as(&uv, &format!("{v2}/comments"), &json!({"body": "+1"}))
            .await,
        403,
    )
    .await;
    problem(
        app.post_as(
            &ua,
            &format!("{v2}/comments"),
            &json!({"body": "?", "anchor": "/tasks/7"}),
        )
        .await,
        422,
    )
    .await;
    let thread: Value = app
        .get_as(&uv, &format!("{v2}/comments"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(thread.as_array().expect("comments").len(), 2);
    assert_eq!(thread[1]["parent_id"], comment["id"]);
    problem(app.get_as(&ja, &format!("{v2}/comments")).await, 404).await;

    // Reviewers see what changed.
    let diff: Value = app
        .get_as(&ur, &format!("{base}/diff?from=1&to=2"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        diff["changes"],
        json!([{"path": "/tasks/0/epochs", "op": "changed", "from": 2, "to": 3}])
    );

    // Both institutes approve: the version is approved, and immutable.
    let us_ok: Value = app
        .review(&ur, &v2, &approve)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(us_ok["version_status"], "in_review");
    let uk_ok: Value = app
        .review(&kr, &v2, &approve)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(uk_ok["version_status"], "approved");
    let approved = app.get_as(&uv, &v2).await;
    let approved_etag = etag_of(&approved);
    let approved: Value = approved.json().await.expect("json");
    assert_eq!(approved["status"], "approved");
    problem(
        patch(
            &app,
            &ua,
            &v2,
            Some(&approved_etag),
            &json!({"content": content(4)}),
        )
        .await,
        409,
    )
    .await;
    let tampered = sqlx::query("update protocol_versions set content = '{}' where number = 2")
        .execute(&app.pool)
        .await;
    assert!(
        tampered.is_err(),
        "the database itself refuses to change an approved version"
    );
    let reviews: Value = app
        .get_as(&ua, &format!("{v2}/reviews"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(reviews.as_array().expect("reviews").len(), 2);

    // Participants are fixed once a version is approved.
    let admin = app.person("admin@nist.gov", "US", &[Role::Admin]).await;
    let admin = app.login(&admin).await;
    let fixed = app
        .client
        .put(app.url(&format!("{base}/participants")))
        .bearer_auth(&admin)
        .json(&json!({"participants": ["US", "UK", "JP"]}))
        .send()
        .await
        .expect("send");
    problem(fixed, 409).await;
    problem(app.get_as(&ja, &v2).await, 404).await;
}

#[tokio::test]
async fn invalid_content_is_refused_by_field_and_nothing_is_written() {
    let app = TestApp::spawn().await;
    let author = app.person("author@nist.gov", "US", &[Role::Author]).await;
    app.institute("UK").await;
    let token = app.login(&author).await;
    let created: Value = app
        .post_as(&token, "/v1/protocols", &json!({"slug": "bio-uplift", "title": "Bio", "risk_area": "chemical_biological", "participants": ["US", "UK"]}))
        .await
        .json()
        .await
        .expect("json");
    let base = format!("/v1/protocols/{}", created["id"].as_str().expect("id"));

    let mut dangling = content(1);
    dangling["tasks"][0]["metrics"] = json!(["accuracy", "recall"]);
    let mut duplicate = content(1);
    duplicate["tasks"] = json!([duplicate["tasks"][0].clone(), duplicate["tasks"][0].clone()]);
    let mut oversized = content(1);
    oversized["notes"] = json!("x".repeat(50_001));
    let mut missing = content(1);
    missing["tasks"][0]
        .as_object_mut()
        .expect("task")
        .remove("harness");
    let mut unknown = content(1);
    unknown["owner"] = json!("me");
    for (body, field) in [
        (dangling, "/tasks/0/metrics/1"),
        (duplicate, "/tasks/1/name"),
        (oversized, "/notes"),
        (missing, "content.tasks[0]"),
        (unknown, "content"),
    ] {
        let response = app
            .post_as(
                &token,
                &format!("{base}/versions"),
                &json!({"content": body}),
            )
            .await;
        let p = problem(response, 422).await;
        assert!(
            p["errors"][0]["field"]
                .as_str()
                .expect("field")
                .starts_with(field),
            "{p}"
        );
    }
    assert_eq!(versions_in_db(&app).await, 0);

    // An empty draft is fine to write, not to submit.
    assert_eq!(
        app.post_as(&token, &format!("{base}/versions"), &json!({}))
            .await
            .status(),
        201
    );
    let empty = problem(
        app.post_as(&token, &format!("{base}/versions/1/submit"), &json!({}))
            .await,
        422,
    )
    .await;
    let fields: Vec<&str> = empty["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["field"].as_str().expect("f"))
        .collect();
    assert_eq!(fields, ["/objective", "/tasks", "/metrics"]);
    let status: String = sqlx::query_scalar("select status from protocol_versions")
        .fetch_one(&app.pool)
        .await
        .expect("status");
    assert_eq!(status, "draft");
}

#[tokio::test]
async fn protocols_need_an_author_of_the_lead_and_two_known_participants() {
    let app = TestApp::spawn().await;
    let author = app.person("author@nist.gov", "US", &[Role::Author]).await;
    let reviewer = app
        .person("reviewer@nist.gov", "US", &[Role::Reviewer])
        .await;
    app.institute("UK").await;
    let (a, r) = (app.login(&author).await, app.login(&reviewer).await);
    let body = |slug: &str, participants: Value| json!({"slug": slug, "title": "T", "risk_area": "autonomy", "participants": participants});
    problem(
        app.post_as(&r, "/v1/protocols", &body("auto-one", json!(["US", "UK"])))
            .await,
        403,
    )
    .await;
    let p = problem(
        app.post_as(&a, "/v1/protocols", &body("auto-one", json!(["US"])))
            .await,
        422,
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "participants");
    let p = problem(
        app.post_as(&a, "/v1/protocols", &body("auto-one", json!(["US", "XX"])))
            .await,
        422,
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "participants[1]");
    let p = problem(
        app.post_as(&a, "/v1/protocols", &body("Auto One", json!(["US", "UK"])))
            .await,
        422,
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "slug");
    let p = problem(
        app.post_as(&a, "/v1/protocols", &json!({"slug": "auto-two", "title": "T", "risk_area": "weather", "participants": ["US", "UK"]})).await,
        422,
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "risk_area");
    assert_eq!(
        app.post_as(&a, "/v1/protocols", &body("auto-one", json!(["US", "UK"])))
            .await
            .status(),
        201
    );
    problem(
        app.post_as(&a, "/v1/protocols", &body("auto-one", json!(["US", "UK"])))
            .await,
        409,
    )
    .await;
    let count: i64 = sqlx::query_scalar("select count(*) from protocols")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(count, 1);
}

async fn protocol(
    app: &TestApp,
    token: &str,
    slug: &str,
    risk: &str,
    participants: Value,
) -> String {
    let response = app
        .post_as(
            token,
            "/v1/protocols",
            &json!({"slug": slug, "title": format!("Title of {slug}"),
            "risk_area": risk, "summary": format!("About {slug}"), "participants": participants}),
        )
        .await;
    assert_eq!(response.status(), 201, "{slug}");
    let body: Value = response.json().await.expect("json");
    body["id"].as_str().expect("id").to_owned()
}

fn slugs(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| p["slug"].as_str().expect("slug").to_owned())
        .collect()
}

#[tokio::test]
async fn the_protocol_list_filters_pages_and_shows_only_what_ones_institutes_take_part_in() {
    let app = TestApp::spawn().await;
    let us = app
        .login(&app.person("author@nist.gov", "US", &[Role::Author]).await)
        .await;
    let uk = app
        .login(
            &app.person("author@aisi.gov.uk", "UK", &[Role::Author])
                .await,
        )
        .await;
    app.institute("JP").await;
    protocol(&app, &us, "us-uk-cyber", "cyber", json!(["US", "UK"])).await;
    protocol(
        &app,
        &us,
        "us-jp-bio",
        "chemical_biological",
        json!(["US", "JP"]),
    )
    .await;
    protocol(&app, &us, "us-uk-autonomy", "autonomy", json!(["US", "UK"])).await;
    protocol(
        &app,
        &uk,
        "uk-jp-safeguards",
        "safeguards",
        json!(["UK", "JP"]),
    )
    .await;

    let all: Value = app
        .get_as(&uk, "/v1/protocols")
        .await
        .json()
        .await
        .expect("json");
    let mut seen = slugs(&all);
    seen.sort();
    assert_eq!(
        seen,
        ["uk-jp-safeguards", "us-uk-autonomy", "us-uk-cyber"],
        "no US-JP protocol for the UK"
    );
    let cyber: Value = app
        .get_as(&uk, "/v1/protocols?risk_area=cyber")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(slugs(&cyber), ["us-uk-cyber"]);
    let jp: Value = app
        .get_as(&uk, "/v1/protocols?institute=JP")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(slugs(&jp), ["uk-jp-safeguards"]);
    let text: Value = app
        .get_as(&uk, "/v1/protocols?q=autonomy")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(slugs(&text), ["us-uk-autonomy"]);

    let first: Value = app
        .get_as(&us, "/v1/protocols?limit=2")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(slugs(&first).len(), 2);
    let cursor = first["next_cursor"].as_str().expect("a second page");
    let second: Value = app
        .get_as(&us, &format!("/v1/protocols?limit=2&cursor={cursor}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(slugs(&second).len(), 1);
    assert!(second["next_cursor"].is_null());
    problem(
        app.get_as(&us, "/v1/protocols?risk_area=weather").await,
        422,
    )
    .await;
}

#[tokio::test]
async fn the_lead_admin_manages_participants_until_approval_and_retires_the_protocol() {
    let app = TestApp::spawn().await;
    let author = app
        .login(&app.person("author@nist.gov", "US", &[Role::Author]).await)
        .await;
    let us_admin = app
        .login(&app.person("admin@nist.gov", "US", &[Role::Admin]).await)
        .await;
    let uk_admin = app
        .login(&app.person("admin@aisi.gov.uk", "UK", &[Role::Admin]).await)
        .await;
    let jp = app
        .login(&app.person("viewer@aisi.go.jp", "JP", &[Role::Viewer]).await)
        .await;
    let id = protocol(&app, &author, "joint-cyber", "cyber", json!(["US", "UK"])).await;
    let put = |token: &str, participants: Value| {
        app.client
            .put(app.url(&format!("/v1/protocols/{id}/participants")))
            .bearer_auth(token.to_owned())
            .json(&json!({"participants": participants}))
            .send()
    };
    problem(app.get_as(&jp, &format!("/v1/protocols/{id}")).await, 404).await;
    problem(
        put(&uk_admin, json!(["US", "UK", "JP"]))
            .await
            .expect("send"),
        403,
    )
    .await;
    problem(
        put(&author, json!(["US", "UK", "JP"])).await.expect("send"),
        403,
    )
    .await;
    let p = problem(
        put(&us_admin, json!(["UK", "JP"])).await.expect("send"),
        422,
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "participants");
    let set = put(&us_admin, json!(["US", "UK", "JP"]))
        .await
        .expect("send");
    assert_eq!(set.status(), 200);
    let seen: Value = app
        .get_as(&jp, &format!("/v1/protocols/{id}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(seen["participants"], json!(["JP", "UK", "US"]));

    problem(
        app.post_as(&author, &format!("/v1/protocols/{id}/retire"), &json!({}))
            .await,
        403,
    )
    .await;
    let retired = app
        .post_as(&us_admin, &format!("/v1/protocols/{id}/retire"), &json!({}))
        .await;
    assert_eq!(retired.status(), 200);
    let retired: Value = retired.json().await.expect("json");
    assert_eq!(retired["status"], "retired");
    problem(
        app.post_as(&author, &format!("/v1/protocols/{id}/versions"), &json!({}))
            .await,
        409,
    )
    .await;
    problem(
        app.post_as(&us_admin, &format!("/v1/protocols/{id}/retire"), &json!({}))
            .await,
        409,
    )
    .await;
}

#[tokio::test]
async fn a_reviewer_reviews_a_version_once_and_a_service_account_reads_only_with_its_scope() {
    let app = TestApp::spawn().await;
    let author = app
        .login(&app.person("author@nist.gov", "US", &[Role::Author]).await)
        .await;
    let reviewer = app
        .login(
            &app.person("reviewer@nist.gov", "US", &[Role::Reviewer])
                .await,
        )
        .await;
    app.institute("UK").await;
    let id = protocol(&app, &author, "one-review", "other", json!(["US", "UK"])).await;
    let base = format!("/v1/protocols/{id}/versions");
    assert_eq!(
        app.post_as(&author, &base, &json!({"content": content(1)}))
            .await
            .status(),
        201
    );
    assert_eq!(
        app.post_as(&author, &format!("{base}/1/submit"), &json!({}))
            .await
            .status(),
        200
    );
    let first = app
        .review(
            &reviewer,
            &format!("{base}/1"),
            &json!({"verdict": "approve"}),
        )
        .await;
    assert_eq!(first.status(), 201);
    let again = app
        .review(
            &reviewer,
            &format!("{base}/1"),
            &json!({"verdict": "approve"}),
        )
        .await;
    problem(again, 409).await;
    let empty_objection = app
        .review(
            &reviewer,
            &format!("{base}/1"),
            &json!({"verdict": "request_changes"}),
        )
        .await;
    problem(empty_objection, 422).await;
    let count: i64 = sqlx::query_scalar("select count(*) from protocol_reviews")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(count, 1);

    use jointeval_domain::Scope;
    let reader = app
        .service("US", "jes_reader", &[Scope::ProtocolsRead], &[Role::Viewer])
        .await;
    let blind = app
        .service("US", "jes_blind", &[Scope::RunsWrite], &[Role::Viewer])
        .await;
    // Without the scope, a read and a list alike name the scope the token lacks.
    for (client, secret, status) in [(reader, "jes_reader", 200), (blind, "jes_blind", 403)] {
        let token = &app.service_login(client, secret).await;
        for path in [format!("/v1/protocols/{id}"), "/v1/protocols".to_owned()] {
            let read = app.get_as(token, &path).await;
            assert_eq!(read.status(), status, "{secret} {path}");
            if status == 403 {
                assert_eq!(
                    read.headers()["www-authenticate"],
                    r#"Bearer realm="jointeval", error="insufficient_scope", scope="protocols:read""#
                );
            } else if path == "/v1/protocols" {
                let list: Value = read.json().await.expect("json");
                assert_eq!(list["items"].as_array().expect("items").len(), 1);
            }
        }
    }
}

#[tokio::test]
async fn a_review_binds_to_the_content_hash_read_and_a_refused_one_records_nothing() {
    let app = TestApp::spawn().await;
    let author = app
        .login(&app.person("author@nist.gov", "US", &[Role::Author]).await)
        .await;
    let reviewer = app
        .login(
            &app.person("reviewer@nist.gov", "US", &[Role::Reviewer])
                .await,
        )
        .await;
    app.institute("UK").await;
    let id = protocol(&app, &author, "bound-review", "other", json!(["US", "UK"])).await;
    let v1 = format!("/v1/protocols/{id}/versions/1");
    assert_eq!(
        app.post_as(
            &author,
            &format!("/v1/protocols/{id}/versions"),
            &json!({"content": content(1)})
        )
        .await
        .status(),
        201
    );
    assert_eq!(
        app.post_as(&author, &format!("{v1}/submit"), &json!({}))
            .await
            .status(),
        200
    );

    // The reviewer reads the version: its body shows the hash a review binds to; its
    // ETag is the draft's, for editing, and binds nothing here.
    let read = app.get_as(&reviewer, &v1).await;
    let draft_etag = etag_of(&read);
    let read: Value = read.json().await.expect("json");
    assert_eq!(read["status"], "in_review");
    let hash = read["content_sha256"].as_str().expect("a content hash");
    let reviews = format!("{v1}/reviews");
    let approve = json!({"verdict": "approve"});
    for (what, if_match, status) in [
        ("no If-Match", None, 428),
        ("*", Some("*".to_owned()), 428),
        ("another hash", Some(format!("\"{}\"", "0".repeat(64))), 412),
        ("the hash unquoted", Some(hash.to_owned()), 412),
        ("the version's ETag", Some(draft_etag), 412),
    ] {
        let refused = app
            .post_if_match(&reviewer, &reviews, if_match.as_deref(), &approve)
            .await;
        let body = problem(refused, status).await;
        assert!(
            !body["detail"].as_str().expect("detail").is_empty(),
            "{what}"
        );
    }
    let listed: Value = app
        .get_as(&reviewer, &reviews)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(listed, json!([]), "a refused review is not recorded");

    let bound = format!("\"{hash}\"");
    let recorded = app
        .post_if_match(&reviewer, &reviews, Some(&bound), &approve)
        .await;
    assert_eq!(recorded.status(), 201);
    let outcome: Value = recorded.json().await.expect("json");
    assert_eq!(outcome["version_status"], "in_review");
    let listed: Value = app
        .get_as(&reviewer, &reviews)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(listed.as_array().expect("reviews").len(), 1);

    // A version in review with no hash has nothing a review could bind to.
    let uk_reviewer = app
        .login(
            &app.person("reviewer@aisi.gov.uk", "UK", &[Role::Reviewer])
                .await,
        )
        .await;
    sqlx::query("update protocol_versions set content_sha256 = null where protocol_id = $1")
        .bind(uuid::Uuid::parse_str(&id).expect("id"))
        .execute(&app.pool)
        .await
        .expect("the hash removed");
    problem(
        app.post_if_match(&uk_reviewer, &reviews, Some("\"\""), &approve)
            .await,
        409,
    )
    .await;
    let unchanged: Value = app
        .get_as(&uk_reviewer, &v1)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(unchanged["status"], "in_review");
}

#[tokio::test]
async fn a_nul_character_in_content_is_422_and_nothing_is_written() {
    let app = TestApp::spawn().await;
    let author = app
        .login(&app.person("author@nist.gov", "US", &[Role::Author]).await)
        .await;
    app.institute("UK").await;
    let bad = app
        .post_as(&author, "/v1/protocols", &json!({"slug": "nul-title", "title": "a\u{0}b", "risk_area": "other", "participants": ["US", "UK"]}))
        .await;
    problem(bad, 422).await;
    let id = protocol(&app, &author, "nul-content", "other", json!(["US", "UK"])).await;
    let mut body = content(1);
    body["objective"] = json!("zero \u{0} byte");
    problem(
        app.post_as(
            &author,
            &format!("/v1/protocols/{id}/versions"),
            &json!({"content": body}),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(versions_in_db(&app).await, 0);
    let count: i64 = sqlx::query_scalar("select count(*) from protocols")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(count, 1);
}
