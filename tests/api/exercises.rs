//! Exercises over HTTP: planned by the lead, started only by everyone's agreement.

use jointeval_domain::{Role, Scope};
use serde_json::{Value, json};

use crate::support::story::approved_protocol;
use crate::support::{TestApp, problem};

fn plan(protocol: &str, participants: &[&str], days: i64) -> Value {
    let start = chrono::Utc::now() + chrono::Duration::days(1);
    json!({
        "title": "Autumn joint test",
        "model": {"provider": "ExampleAI", "name": "example-large", "version": "2026-10-01", "access": "public_api"},
        "protocol_versions": [{"protocol_id": protocol, "number": 1}],
        "participants": participants,
        "starts_at": start.to_rfc3339(),
        "ends_at": (start + chrono::Duration::days(days)).to_rfc3339()
    })
}

async fn patch(
    app: &TestApp,
    token: &str,
    path: &str,
    etag: &str,
    body: &Value,
) -> reqwest::Response {
    app.client
        .patch(app.url(path))
        .bearer_auth(token)
        .header("if-match", etag)
        .json(body)
        .send()
        .await
        .expect("send")
}

#[tokio::test]
async fn an_exercise_starts_when_every_participant_agrees_to_its_current_plan() {
    let app = TestApp::spawn().await;
    let protocol = approved_protocol(&app, "joint-cyber", &["US", "UK"]).await;
    let us_author = app
        .login(&app.person("lead@nist.gov", "US", &[Role::Author]).await)
        .await;
    let uk_author = app
        .login(
            &app.person("author@aisi.gov.uk", "UK", &[Role::Author])
                .await,
        )
        .await;
    let us_reviewer = app
        .login(&app.person("rev@nist.gov", "US", &[Role::Reviewer]).await)
        .await;
    let us_admin = app
        .login(&app.person("admin@nist.gov", "US", &[Role::Admin]).await)
        .await;
    let uk_reviewer = app
        .login(&app.person("rev@aisi.gov.uk", "UK", &[Role::Reviewer]).await)
        .await;
    let jp_admin = app
        .login(&app.person("admin@aisi.go.jp", "JP", &[Role::Admin]).await)
        .await;

    let created = app
        .post_as(
            &us_author,
            "/v1/exercises",
            &plan(&protocol, &["US", "UK"], 14),
        )
        .await;
    assert_eq!(created.status(), 201);
    let etag = created.headers()["etag"].to_str().expect("etag").to_owned();
    let exercise: Value = created.json().await.expect("json");
    assert_eq!(
        (
            exercise["status"].as_str(),
            exercise["lead_institute"].as_str()
        ),
        (Some("planned"), Some("US"))
    );
    let path = format!("/v1/exercises/{}", exercise["id"].as_str().expect("id"));

    // The third institute knows nothing of it.
    problem(app.get_as(&jp_admin, &path).await, 404).await;
    let listed: Value = app
        .get_as(&jp_admin, "/v1/exercises")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(listed["items"], json!([]));
    problem(app.agree(&jp_admin, &path, &json!({})).await, 404).await;

    // Only the lead changes the plan; authors do not agree.
    problem(
        patch(
            &app,
            &uk_author,
            &path,
            &etag,
            &plan(&protocol, &["US", "UK"], 10),
        )
        .await,
        403,
    )
    .await;
    problem(app.agree(&us_author, &path, &json!({})).await, 403).await;

    let agreed: Value = app
        .agree(&us_reviewer, &path, &json!({}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        (agreed["agreed"].clone(), agreed["status"].clone()),
        (json!(["US"]), json!("planned"))
    );

    // Changing the plan withdraws the agreements given so far.
    problem(
        patch(
            &app,
            &us_author,
            &path,
            &etag,
            &plan(&protocol, &["US", "UK"], 10),
        )
        .await,
        412,
    )
    .await;
    let current = app.get_as(&us_author, &path).await.headers()["etag"]
        .to_str()
        .expect("etag")
        .to_owned();
    let changed = patch(
        &app,
        &us_author,
        &path,
        &current,
        &plan(&protocol, &["US", "UK"], 10),
    )
    .await;
    assert_eq!(changed.status(), 200);
    let changed: Value = changed.json().await.expect("json");
    assert_eq!(
        (changed["plan_revision"].as_i64(), changed["agreed"].clone()),
        (Some(2), json!([]))
    );

    let us: Value = app
        .agree(&us_admin, &path, &json!({}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(us["status"], "planned");
    // An agreement with nothing to add needs no body.
    let read = app.get_as(&uk_reviewer, &path).await.headers()["etag"]
        .to_str()
        .expect("etag")
        .to_owned();
    let uk: Value = app
        .client
        .post(app.url(&format!("{path}/agree")))
        .bearer_auth(&uk_reviewer)
        .header("if-match", read)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(
        (uk["status"].clone(), uk["agreed"].clone()),
        (json!("active"), json!(["UK", "US"]))
    );

    // Active: the plan is fixed; the lead completes it.
    problem(app.agree(&uk_reviewer, &path, &json!({})).await, 409).await;
    let now = app.get_as(&us_author, &path).await.headers()["etag"]
        .to_str()
        .expect("etag")
        .to_owned();
    problem(
        patch(
            &app,
            &us_author,
            &path,
            &now,
            &plan(&protocol, &["US", "UK"], 3),
        )
        .await,
        409,
    )
    .await;
    problem(
        app.post_as(&uk_author, &format!("{path}/complete"), &json!({}))
            .await,
        403,
    )
    .await;
    let done: Value = app
        .post_as(&us_author, &format!("{path}/complete"), &json!({}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(done["status"], "completed");
    problem(
        app.post_as(&us_author, &format!("{path}/cancel"), &json!({}))
            .await,
        409,
    )
    .await;
}

/// An agreement binds to the plan its reviewer read. Reviewer A reads the plan; the lead
/// changes the model version; reviewer B reads the new plan and agrees; A's agreement with
/// what A read is refused (412), and the exercise stays planned until A reads the plan it
/// would start on and agrees to that. Without `If-Match`, or with `*`, an agreement is 428.
#[tokio::test]
async fn an_agreement_counts_only_for_the_plan_its_reviewer_read() {
    let app = TestApp::spawn().await;
    let protocol = approved_protocol(&app, "joint-cyber", &["US", "UK"]).await;
    let lead = app
        .login(&app.person("lead@nist.gov", "US", &[Role::Author]).await)
        .await;
    let reviewer_a = app
        .login(&app.person("rev@aisi.gov.uk", "UK", &[Role::Reviewer]).await)
        .await;
    let reviewer_b = app
        .login(&app.person("rev@nist.gov", "US", &[Role::Reviewer]).await)
        .await;
    let created = app
        .post_as(&lead, "/v1/exercises", &plan(&protocol, &["US", "UK"], 14))
        .await;
    assert_eq!(created.status(), 201);
    let lead_read = created.headers()["etag"].to_str().expect("etag").to_owned();
    let created: Value = created.json().await.expect("json");
    let path = format!("/v1/exercises/{}", created["id"].as_str().expect("id"));

    let a_read = app.get_as(&reviewer_a, &path).await;
    let a_etag = a_read.headers()["etag"].to_str().expect("etag").to_owned();
    let a_plan: Value = a_read.json().await.expect("json");
    assert_eq!(a_plan["model"]["version"], "2026-10-01");

    let mut changed = plan(&protocol, &["US", "UK"], 14);
    changed["model"]["version"] = json!("2026-11-15");
    assert_eq!(
        patch(&app, &lead, &path, &lead_read, &changed)
            .await
            .status(),
        200
    );
    let b: Value = app
        .agree(&reviewer_b, &path, &json!({}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        (b["agreed"].clone(), b["status"].clone()),
        (json!(["US"]), json!("planned"))
    );

    let stale = app
        .post_if_match(
            &reviewer_a,
            &format!("{path}/agree"),
            Some(&a_etag),
            &json!({}),
        )
        .await;
    problem(stale, 412).await;
    for missing in [None, Some("*"), Some(" * ")] {
        let agreed = app
            .post_if_match(&reviewer_a, &format!("{path}/agree"), missing, &json!({}))
            .await;
        problem(agreed, 428).await;
    }
    let unchanged: Value = app
        .get_as(&reviewer_a, &path)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        (unchanged["agreed"].clone(), unchanged["status"].clone()),
        (json!(["US"]), json!("planned"))
    );
    let agreements: i64 =
        sqlx::query_scalar("select count(*) from exercise_agreements where exercise_id = $1")
            .bind(uuid::Uuid::parse_str(created["id"].as_str().expect("id")).expect("uuid"))
            .fetch_one(&app.pool)
            .await
            .expect("count");
    assert_eq!(agreements, 1, "the refused agreements wrote nothing");

    // Having read the plan it starts on, A agrees, and the exercise is active.
    let read_again = app.get_as(&reviewer_a, &path).await;
    let etag = read_again.headers()["etag"]
        .to_str()
        .expect("etag")
        .to_owned();
    let seen: Value = read_again.json().await.expect("json");
    assert_eq!(seen["model"]["version"], "2026-11-15");
    // A weak ETag does not bind (If-Match compares strongly); an outsider who sends `*`
    // learns nothing of the exercise.
    let weak = app
        .post_if_match(
            &reviewer_a,
            &format!("{path}/agree"),
            Some(&format!("W/{etag}")),
            &json!({}),
        )
        .await;
    problem(weak, 412).await;
    let outsider = app
        .login(&app.person("rev@inria.fr", "FR", &[Role::Reviewer]).await)
        .await;
    let p = problem(
        app.post_if_match(&outsider, &format!("{path}/agree"), Some("*"), &json!({}))
            .await,
        404,
    )
    .await;
    assert!(!p.to_string().contains("If-Match"), "{p}");
    let a: Value = app
        .post_if_match(
            &reviewer_a,
            &format!("{path}/agree"),
            Some(&etag),
            &json!({}),
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        (a["agreed"].clone(), a["status"].clone()),
        (json!(["UK", "US"]), json!("active"))
    );
}

#[tokio::test]
async fn a_plan_that_breaks_a_rule_is_refused_by_field_and_nothing_is_written() {
    let app = TestApp::spawn().await;
    let protocol = approved_protocol(&app, "us-uk-only", &["US", "UK"]).await;
    app.institute("JP").await;
    let author = app
        .login(&app.person("lead@nist.gov", "US", &[Role::Author]).await)
        .await;
    // A protocol with a version still in draft.
    let draft: Value = app
        .post_as(&author, "/v1/protocols", &json!({"slug": "drafty", "title": "D", "risk_area": "other", "participants": ["US", "UK"]}))
        .await
        .json()
        .await
        .expect("json");
    let draft_id = draft["id"].as_str().expect("id").to_owned();
    assert_eq!(
        app.post_as(
            &author,
            &format!("/v1/protocols/{draft_id}/versions"),
            &json!({})
        )
        .await
        .status(),
        201
    );

    let mut unknown_field = plan(&protocol, &["US", "UK"], 5);
    unknown_field["status"] = json!("active");
    let mut inverted = plan(&protocol, &["US", "UK"], 5);
    inverted["ends_at"] = json!("2020-01-01T00:00:00Z");
    let mut bad_model = plan(&protocol, &["US", "UK"], 5);
    bad_model["model"]["name"] = json!("");
    for (body, field) in [
        (
            plan(&protocol, &["US", "UK", "JP"], 5),
            "protocol_versions[0]",
        ),
        (plan(&draft_id, &["US", "UK"], 5), "protocol_versions[0]"),
        (
            plan(&uuid::Uuid::now_v7().to_string(), &["US", "UK"], 5),
            "protocol_versions[0]",
        ),
        (plan(&protocol, &["US"], 5), "participants"),
        (plan(&protocol, &["US", "XX"], 5), "participants[1]"),
        (unknown_field, "status"),
        (inverted, "ends_at"),
        (bad_model, "model.name"),
    ] {
        let p = problem(app.post_as(&author, "/v1/exercises", &body).await, 422).await;
        assert_eq!(p["errors"][0]["field"], field, "{p}");
    }
    let count: i64 = sqlx::query_scalar("select count(*) from exercises")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(count, 0);
}

#[tokio::test]
async fn a_planned_exercise_is_cancelled_by_the_lead_and_read_by_tools_with_the_scope() {
    let app = TestApp::spawn().await;
    let protocol = approved_protocol(&app, "scoped", &["US", "UK"]).await;
    let author = app
        .login(&app.person("lead@nist.gov", "US", &[Role::Author]).await)
        .await;
    let created: Value = app
        .post_as(&author, "/v1/exercises", &plan(&protocol, &["US", "UK"], 5))
        .await
        .json()
        .await
        .expect("json");
    let id = created["id"].as_str().expect("id").to_owned();

    let reader = app
        .service("UK", "jes_reader", &[Scope::ExercisesRead], &[Role::Viewer])
        .await;
    let blind = app
        .service("UK", "jes_blind", &[Scope::RunsWrite], &[Role::Viewer])
        .await;
    // Without the scope, the tool is told which one its token lacks: the exercise is its
    // institute's to see.
    for (client, secret, status) in [(reader, "jes_reader", 200), (blind, "jes_blind", 403)] {
        let token = &app.service_login(client, secret).await;
        let read = app.get_as(token, &format!("/v1/exercises/{id}")).await;
        assert_eq!(read.status(), status, "{secret}");
        if status == 403 {
            assert_eq!(
                read.headers()["www-authenticate"],
                r#"Bearer realm="jointeval", error="insufficient_scope", scope="exercises:read""#
            );
            assert_eq!(
                problem(read, 403).await["type"],
                "urn:jointeval:problem:insufficient-scope"
            );
        }
    }

    let cancelled: Value = app
        .post_as(&author, &format!("/v1/exercises/{id}/cancel"), &json!({}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(cancelled["status"], "cancelled");
    let listed: Value = app
        .get_as(&author, "/v1/exercises?status=cancelled")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(listed["items"][0]["id"], json!(id));
    let planned: Value = app
        .get_as(&author, "/v1/exercises?status=planned")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(planned["items"], json!([]));
}
