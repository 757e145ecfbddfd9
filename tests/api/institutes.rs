use jointeval_domain::{InstituteCode, Role};

use crate::support::{TestApp, problem};

/// A token of a US viewer: anyone signed in lists the institutes.
async fn viewer_token(app: &TestApp) -> String {
    let viewer = app.person("viewer@nist.gov", "US", &[Role::Viewer]).await;
    app.login(&viewer).await
}

async fn add(app: &TestApp, code: &str, name: &str) {
    let code = InstituteCode::parse("code", code).expect("code");
    jointeval_store::institutes::insert(&app.pool, &code, name)
        .await
        .expect("insert");
}

#[tokio::test]
async fn institutes_are_listed_by_code() {
    let app = TestApp::spawn().await;
    add(&app, "US", "U.S. AI Safety Institute").await;
    add(&app, "UK", "UK AI Safety Institute").await;
    let token = viewer_token(&app).await;

    let response = app.get_as(&token, "/v1/institutes").await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    let codes: Vec<&str> = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["code"].as_str().expect("code"))
        .collect();
    assert_eq!(codes, ["UK", "US"]);
    assert_eq!(body["items"][0]["name"], "UK AI Safety Institute");
    assert!(
        body["items"][0]["id"]
            .as_str()
            .is_some_and(|id| id.len() == 36)
    );
    assert!(body["next_cursor"].is_null());
}

#[tokio::test]
async fn institutes_page_with_a_cursor_until_the_last_page() {
    let app = TestApp::spawn().await;
    for code in ["AA", "BB", "CC", "DD", "EE"] {
        add(&app, code, &format!("Institute {code}")).await;
    }
    let viewer = app.person("viewer@aa.example", "AA", &[Role::Viewer]).await;
    let token = app.login(&viewer).await;
    let mut seen = Vec::new();
    let mut path = "/v1/institutes?limit=2".to_owned();
    loop {
        let body: serde_json::Value = app.get_as(&token, &path).await.json().await.expect("json");
        let items = body["items"].as_array().expect("items");
        assert!(items.len() <= 2);
        seen.extend(
            items
                .iter()
                .map(|i| i["code"].as_str().expect("code").to_owned()),
        );
        match body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/institutes?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ["AA", "BB", "CC", "DD", "EE"]);
}

#[tokio::test]
async fn out_of_range_limits_and_bad_cursors_are_named() {
    let app = TestApp::spawn().await;
    let token = viewer_token(&app).await;
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=-1", "limit"),
        ("limit=ten", "limit"),
        ("cursor=%25%25", "cursor"),
        ("color=blue", "color"),
    ] {
        let body = problem(
            app.get_as(&token, &format!("/v1/institutes?{query}")).await,
            422,
        )
        .await;
        assert_eq!(body["type"], "urn:jointeval:problem:validation", "{query}");
        assert_eq!(body["errors"][0]["field"], field, "{query}: {body}");
    }
}

#[tokio::test]
async fn outsiders_and_forged_tokens_list_nothing() {
    let app = TestApp::spawn().await;
    add(&app, "US", "U.S. AI Safety Institute").await;
    let anonymous = app.get("/v1/institutes").await;
    assert_eq!(
        anonymous.headers()["www-authenticate"],
        r#"Bearer realm="jointeval""#
    );
    let body = problem(anonymous, 401).await;
    assert!(!body.to_string().contains("U.S. AI"));
    problem(app.get_as("not-a-token", "/v1/institutes").await, 401).await;
}
