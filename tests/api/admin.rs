//! Administration over HTTP: accounts, roles and exchanges, end to end.

use jointeval_domain::Role;
use serde_json::{Value, json};

use crate::support::{PASSWORD, TestApp, expect, problem};

#[tokio::test]
async fn an_admin_creates_a_person_who_must_change_the_one_time_password() {
    let app = TestApp::spawn().await;
    let admin = app.person("admin@nist.gov", "US", &[Role::Admin]).await;
    let token = app.login(&admin).await;
    let response = app
        .post_as(
            &token,
            "/v1/accounts",
            &json!({"kind": "person", "email": "grace@nist.gov", "display_name": "Grace Hopper"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let created: Value = response.json().await.expect("json");
    assert_eq!(created["account"]["home_institute"], "US");
    assert_eq!(
        location,
        format!(
            "/v1/accounts/{}",
            created["account"]["id"].as_str().expect("id")
        )
    );
    let one_time = created["one_time_password"]
        .as_str()
        .expect("one-time password");

    let login = app
        .client
        .post(app.url("/v1/auth/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", "grace@nist.gov"),
            ("password", one_time),
        ])
        .send()
        .await
        .expect("send");
    assert_eq!(login.status(), 200);
    let grace: Value = login.json().await.expect("json");
    let grace_token = grace["access_token"].as_str().expect("token");
    let me: Value = app
        .get_as(grace_token, "/v1/me")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(me["must_change_password"], true);
    problem(app.get_as(grace_token, "/v1/institutes").await, 403).await;

    let listed: Value = app
        .get_as(&token, "/v1/accounts")
        .await
        .json()
        .await
        .expect("json");
    let emails: Vec<&str> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|a| a["email"].as_str())
        .collect();
    assert_eq!(emails.len(), 2, "{listed}");
    assert!(emails.contains(&"grace@nist.gov"));
}

// ---------------------------------------------------------------------------------------
// Helpers

fn minutes(n: i64) -> chrono::Duration {
    chrono::Duration::minutes(n)
}

/// Now, to the second: what the service answers round-trips exactly.
fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(0)
}

fn at(value: &Value) -> chrono::DateTime<chrono::Utc> {
    value
        .as_str()
        .unwrap_or_else(|| panic!("a timestamp, not {value}"))
        .parse()
        .expect("an RFC 3339 timestamp")
}

async fn body(response: reqwest::Response) -> Value {
    response.json().await.expect("a JSON body")
}

fn etag_of(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("etag")
        .expect("an ETag")
        .to_str()
        .expect("ascii")
        .to_owned()
}

/// The fields named by a 422 problem.
async fn invalid_fields(response: reqwest::Response) -> Vec<String> {
    let problem = problem(response, 422).await;
    assert_eq!(
        problem["type"], "urn:jointeval:problem:validation",
        "{problem}"
    );
    problem["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("errors in {problem}"))
        .iter()
        .map(|e| e["field"].as_str().expect("a field").to_owned())
        .collect()
}

async fn token_request(app: &TestApp, pairs: &[(&str, &str)]) -> reqwest::Response {
    app.client
        .post(app.url("/v1/auth/token"))
        .form(pairs)
        .send()
        .await
        .expect("request")
}

async fn password_login(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    token_request(
        app,
        &[
            ("grant_type", "password"),
            ("username", email),
            ("password", password),
        ],
    )
    .await
}

async fn client_login(app: &TestApp, client_id: &str, secret: &str) -> reqwest::Response {
    token_request(
        app,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
        ],
    )
    .await
}

async fn access_token(response: reqwest::Response) -> String {
    let body = expect(response, 200).await;
    body["access_token"].as_str().expect("a token").to_owned()
}

async fn patch_as(
    app: &TestApp,
    token: &str,
    path: &str,
    if_match: Option<&str>,
    json: &Value,
) -> reqwest::Response {
    let mut request = app
        .client
        .patch(app.url(path))
        .bearer_auth(token)
        .json(json);
    if let Some(tag) = if_match {
        request = request.header("if-match", tag);
    }
    request.send().await.expect("request")
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn account_status(app: &TestApp, id: uuid::Uuid) -> String {
    sqlx::query_scalar("select status from accounts where id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .expect("the account's status")
}

fn id_of(value: &Value) -> uuid::Uuid {
    value
        .as_str()
        .unwrap_or_else(|| panic!("an id, not {value}"))
        .parse()
        .expect("a uuid")
}

/// The ids of a page's items.
fn item_ids(page: &Value) -> Vec<uuid::Uuid> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("items in {page}"))
        .iter()
        .map(|item| id_of(&item["id"]))
        .collect()
}

fn sorted(mut ids: Vec<uuid::Uuid>) -> Vec<uuid::Uuid> {
    ids.sort();
    ids
}

/// The roles in force of `/v1/me`, as (institute, role, exchange id).
async fn roles_now(app: &TestApp, token: &str) -> Vec<(String, String, Option<String>)> {
    let me = expect(app.get_as(token, "/v1/me").await, 200).await;
    let mut roles: Vec<_> = me["roles"]
        .as_array()
        .unwrap_or_else(|| panic!("roles in {me}"))
        .iter()
        .map(|r| {
            (
                r["institute"].as_str().expect("institute").to_owned(),
                r["role"].as_str().expect("role").to_owned(),
                r["exchange_id"].as_str().map(str::to_owned),
            )
        })
        .collect();
    roles.sort();
    roles
}

/// A service account created over HTTP: (id, secret).
async fn create_service(
    app: &TestApp,
    token: &str,
    name: &str,
    scopes: &[&str],
) -> (String, String) {
    let created = expect(
        app.post_as(
            token,
            "/v1/accounts",
            &json!({"kind": "service", "display_name": name, "scopes": scopes}),
        )
        .await,
        201,
    )
    .await;
    (
        created["client_id"].as_str().expect("client_id").to_owned(),
        created["client_secret"]
            .as_str()
            .expect("client_secret")
            .to_owned(),
    )
}

// ---------------------------------------------------------------------------------------
// Accounts

#[tokio::test]
async fn a_service_account_logs_in_with_its_client_secret_and_holds_its_scopes() {
    let app = TestApp::spawn().await;
    let admin = app.person("admin@nist.gov", "US", &[Role::Admin]).await;
    let token = app.login(&admin).await;

    let response = app
        .post_as(
            &token,
            "/v1/accounts",
            &json!({"kind": "service", "display_name": "Harness runner", "scopes": ["runs:write", "results:read"]}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let created_etag = etag_of(&response);
    let created = body(response).await;
    let id = created["account"]["id"].as_str().expect("id").to_owned();
    assert_eq!(location, format!("/v1/accounts/{id}"));
    assert_eq!(created["client_id"], id.as_str());
    assert_eq!(created["account"]["kind"], "service");
    assert_eq!(created["account"]["home_institute"], "US");
    assert_eq!(created["account"]["status"], "active");
    assert!(created["account"].get("email").is_none(), "{created}");
    assert!(created.get("one_time_password").is_none(), "{created}");
    let secret = created["client_secret"]
        .as_str()
        .expect("secret")
        .to_owned();

    // The ETag of the creation is the one a read answers.
    let read = app.get_as(&token, &location).await;
    assert_eq!(read.status(), 200);
    assert_eq!(etag_of(&read), created_etag);

    // Only a hash is stored, with the scopes; a service account has no password.
    let (stored_hash, scopes): (String, Vec<String>) = sqlx::query_as(
        "select secret_hash, scopes from service_credentials where account_id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&app.pool)
    .await
    .expect("the stored secret");
    assert_ne!(stored_hash, secret);
    assert!(!stored_hash.contains(&secret));
    assert_eq!(sorted_strings(scopes), ["results:read", "runs:write"]);
    assert_eq!(
        count(
            &app,
            &format!("select count(*) from password_credentials where account_id = '{id}'")
        )
        .await,
        0
    );

    let login = expect(client_login(&app, &id, &secret).await, 200).await;
    assert_eq!(login["token_type"], "Bearer");
    let granted: Vec<&str> = login["scope"].as_str().expect("scope").split(' ').collect();
    assert_eq!(sorted_strings(granted), ["results:read", "runs:write"]);
    let service_token = login["access_token"].as_str().expect("token");
    let me = expect(app.get_as(service_token, "/v1/me").await, 200).await;
    assert_eq!(me["account"]["id"], id.as_str());
    let held: Vec<&str> = me["scopes"]
        .as_array()
        .expect("scopes")
        .iter()
        .map(|s| s.as_str().expect("scope"))
        .collect();
    assert_eq!(sorted_strings(held), ["results:read", "runs:write"]);

    // A narrower token is allowed, a wider one is not.
    let narrow = expect(
        token_request(
            &app,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", &secret),
                ("scope", "runs:write"),
            ],
        )
        .await,
        200,
    )
    .await;
    assert_eq!(narrow["scope"], "runs:write");
    let wider = problem(
        token_request(
            &app,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", &secret),
                ("scope", "runs:read"),
            ],
        )
        .await,
        400,
    )
    .await;
    assert_eq!(wider["type"], "urn:jointeval:problem:invalid-scope");
    // A wrong secret is refused.
    problem(client_login(&app, &id, "jes_not-the-secret").await, 401).await;
}

fn sorted_strings<S: AsRef<str>>(items: Vec<S>) -> Vec<String> {
    let mut items: Vec<String> = items.iter().map(|s| s.as_ref().to_owned()).collect();
    items.sort();
    items
}

#[tokio::test]
async fn invalid_new_accounts_are_422_naming_the_field_and_write_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.person("admin@nist.gov", "US", &[Role::Admin]).await;
    let token = app.login(&admin).await;
    let before = count(&app, "select count(*) from accounts").await;

    let cases: Vec<(Value, Vec<&str>)> = vec![
        (
            json!({"kind": "person", "display_name": "No Mail"}),
            vec!["email"],
        ),
        (
            json!({"kind": "person", "email": null, "display_name": "No Mail"}),
            vec!["email"],
        ),
        (
            json!({"kind": "service", "email": "bot@nist.gov", "display_name": "Bot", "scopes": ["runs:read"]}),
            vec!["email"],
        ),
        (
            json!({"kind": "person", "email": "not-an-address", "display_name": "Bad Mail"}),
            vec!["email"],
        ),
        (
            json!({"kind": "person", "email": "a@b", "display_name": "Bad Domain"}),
            vec!["email"],
        ),
        (
            json!({"kind": "service", "display_name": "Bot", "scopes": ["runs:read", "root"]}),
            vec!["scopes[1]"],
        ),
        (
            json!({"kind": "service", "display_name": "Bot"}),
            vec!["scopes"],
        ),
        (
            json!({"kind": "service", "display_name": "Bot", "scopes": []}),
            vec!["scopes"],
        ),
        (
            json!({"kind": "person", "email": "p@nist.gov", "display_name": "P", "scopes": ["runs:read"]}),
            vec!["scopes"],
        ),
        (
            json!({"kind": "person", "email": "p@nist.gov", "display_name": "   "}),
            vec!["display_name"],
        ),
        (
            json!({"kind": "person", "email": "p@nist.gov", "display_name": "P", "home_institute": "XX"}),
            vec!["home_institute"],
        ),
        (
            json!({"kind": "person", "email": "p@nist.gov", "display_name": "P", "status": "disabled"}),
            vec!["status"],
        ),
        (
            json!({"kind": "person", "email": "p@nist.gov", "display_name": "P", "role": "admin"}),
            vec!["role"],
        ),
        (
            json!({"kind": "person", "email": "p@nist.gov", "display_name": "P", "id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d12"}),
            vec!["id"],
        ),
        (
            json!({"kind": "robot", "email": "p@nist.gov", "display_name": "P"}),
            vec!["kind"],
        ),
    ];
    for (request, fields) in cases {
        let response = app.post_as(&token, "/v1/accounts", &request).await;
        assert_eq!(invalid_fields(response).await, fields, "for {request}");
    }
    assert_eq!(count(&app, "select count(*) from accounts").await, before);
    assert_eq!(
        count(&app, "select count(*) from service_credentials").await,
        0
    );
    assert_eq!(
        count(&app, "select count(*) from password_credentials").await,
        before
    );
}

#[tokio::test]
async fn a_taken_email_in_any_case_is_409_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.person("admin@nist.gov", "US", &[Role::Admin]).await;
    app.person("grace@nist.gov", "US", &[Role::Viewer]).await;
    let token = app.login(&admin).await;
    let before = count(&app, "select count(*) from accounts").await;
    let passwords = count(&app, "select count(*) from password_credentials").await;

    for email in [
        "grace@nist.gov",
        "GRACE@NIST.GOV",
        "Grace@Nist.Gov",
        "  grace@nist.gov ",
    ] {
        let response = app
            .post_as(
                &token,
                "/v1/accounts",
                &json!({"kind": "person", "email": email, "display_name": "Another Grace"}),
            )
            .await;
        let problem = problem(response, 409).await;
        assert_eq!(
            problem["type"], "urn:jointeval:problem:email-taken",
            "{email}: {problem}"
        );
    }
    assert_eq!(count(&app, "select count(*) from accounts").await, before);
    assert_eq!(
        count(&app, "select count(*) from password_credentials").await,
        passwords
    );
    assert_eq!(
        count(
            &app,
            "select count(*) from accounts where display_name = 'Another Grace'"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn changing_an_email_to_a_taken_one_in_another_case_is_409_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.person("admin@nist.gov", "US", &[Role::Admin]).await;
    app.person("grace@nist.gov", "US", &[Role::Viewer]).await;
    let alan = app.person("alan@nist.gov", "US", &[Role::Viewer]).await;
    let token = app.login(&admin).await;
    let path = format!("/v1/accounts/{}", alan.id);
    let read = app.get_as(&token, &path).await;
    let tag = etag_of(&read);

    let response = patch_as(
        &app,
        &token,
        &path,
        Some(&tag),
        &json!({"email": "GRACE@nist.gov"}),
    )
    .await;
    let problem = problem(response, 409).await;
    assert_eq!(problem["type"], "urn:jointeval:problem:email-taken");
    let email: String = sqlx::query_scalar("select email from accounts where id = $1")
        .bind(alan.id)
        .fetch_one(&app.pool)
        .await
        .expect("email");
    assert_eq!(email, "alan@nist.gov");
    // Unchanged, so the ETag read before still applies.
    assert_eq!(etag_of(&app.get_as(&token, &path).await), tag);
}

#[tokio::test]
async fn accounts_are_filtered_by_kind_status_text_and_institute() {
    let app = TestApp::spawn().await;
    let admin = app.person("admin@nist.gov", "US", &[Role::Admin]).await;
    // The admin also administers UK; JP is nobody's business here.
    let uk = app.institute("UK").await;
    sqlx::query(
        "insert into memberships (id, account_id, institute_id, role, valid_from)
         values ($1, $2, $3, 'admin', now() - interval '1 minute')",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(admin.id)
    .bind(uk)
    .execute(&app.pool)
    .await
    .expect("admin at UK");
    let grace = app.person("grace@nist.gov", "US", &[Role::Author]).await;
    let alan = app.person("alan@nist.gov", "US", &[Role::Viewer]).await;
    let ada = app.person("ada@aisi.gov.uk", "UK", &[Role::Viewer]).await;
    let hiro = app.person("hiro@aisi.go.jp", "JP", &[Role::Admin]).await;
    let token = app.login(&admin).await;

    // An admin role away from home creates nothing there: a new account lives at the
    // caller's own home, and naming another is refused.
    let away = app
        .post_as(
            &token,
            "/v1/accounts",
            &json!({"kind": "service", "display_name": "UK Runner", "scopes": ["runs:read"], "home_institute": "UK"}),
        )
        .await;
    problem(away, 403).await;
    let bot = expect(
        app.post_as(
            &token,
            "/v1/accounts",
            &json!({"kind": "service", "display_name": "US Runner", "scopes": ["runs:read"]}),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(bot["account"]["home_institute"], "US", "{bot}");
    let bot = id_of(&bot["account"]["id"]);
    expect(
        app.post_as(
            &token,
            &format!("/v1/accounts/{}/disable", alan.id),
            &json!({}),
        )
        .await,
        200,
    )
    .await;

    let list = |query: &'static str| {
        let app = &app;
        let token = token.clone();
        async move {
            let page = expect(
                app.get_as(&token, &format!("/v1/accounts{query}")).await,
                200,
            )
            .await;
            assert!(page["next_cursor"].is_null(), "{page}");
            sorted(item_ids(&page))
        }
    };
    assert_eq!(
        list("").await,
        sorted(vec![admin.id, grace.id, alan.id, ada.id, bot])
    );
    assert!(!list("").await.contains(&hiro.id));
    assert_eq!(list("?kind=service").await, vec![bot]);
    assert_eq!(
        list("?kind=person").await,
        sorted(vec![admin.id, grace.id, alan.id, ada.id])
    );
    assert_eq!(list("?status=disabled").await, vec![alan.id]);
    assert_eq!(
        list("?status=active").await,
        sorted(vec![admin.id, grace.id, ada.id, bot])
    );
    // Text in the e-mail address or the display name, in any case.
    assert_eq!(list("?q=GRACE").await, vec![grace.id]);
    assert_eq!(list("?q=aisi.gov").await, vec![ada.id]);
    assert_eq!(list("?q=runner").await, vec![bot]);
    // LIKE wildcards are text, not patterns.
    assert_eq!(list("?q=%25").await, Vec::<uuid::Uuid>::new());
    assert_eq!(list("?q=_").await, Vec::<uuid::Uuid>::new());
    assert_eq!(list("?institute=UK").await, vec![ada.id]);
    assert_eq!(
        list("?institute=US").await,
        sorted(vec![admin.id, grace.id, alan.id, bot])
    );
    assert_eq!(list("?institute=JP").await, Vec::<uuid::Uuid>::new());
    assert_eq!(list("?institute=ZZ").await, Vec::<uuid::Uuid>::new());
    assert_eq!(
        list("?institute=US&kind=person&status=active").await,
        sorted(vec![admin.id, grace.id])
    );

    let wrong = app.get_as(&token, "/v1/accounts?kind=robot").await;
    assert_eq!(invalid_fields(wrong).await, ["kind"]);
    let unknown = app.get_as(&token, "/v1/accounts?role=admin").await;
    assert_eq!(problem(unknown, 422).await["errors"][0]["field"], "role");
}

#[tokio::test]
async fn accounts_page_through_with_limit_two_without_gaps_or_repeats() {
    let app = TestApp::spawn().await;
    let admin = app.person("admin@nist.gov", "US", &[Role::Admin]).await;
    for name in ["b", "c", "d", "e"] {
        app.person(&format!("{name}@nist.gov"), "US", &[Role::Viewer])
            .await;
    }
    app.person("ada@aisi.gov.uk", "UK", &[Role::Admin]).await;
    let token = app.login(&admin).await;

    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut path = "/v1/accounts?limit=2".to_owned();
    loop {
        let page = expect(app.get_as(&token, &path).await, 200).await;
        let ids = item_ids(&page);
        sizes.push(ids.len());
        seen.extend(ids);
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/accounts?limit=2&cursor={cursor}"),
            None => break,
        }
        assert!(sizes.len() < 10, "the pages never end");
    }
    assert_eq!(sizes, [2, 2, 1]);
    let expected: Vec<uuid::Uuid> = sqlx::query_scalar(
        "select a.id from accounts a join institutes i on i.id = a.home_institute_id
         where i.code = 'US' order by a.id",
    )
    .fetch_all(&app.pool)
    .await
    .expect("the US accounts");
    assert_eq!(expected.len(), 5);
    assert_eq!(seen, expected, "every US account once, in order");

    assert_eq!(
        invalid_fields(app.get_as(&token, "/v1/accounts?cursor=!!!").await).await,
        ["cursor"]
    );
    assert_eq!(
        invalid_fields(app.get_as(&token, "/v1/accounts?limit=0").await).await,
        ["limit"]
    );
    assert_eq!(
        invalid_fields(app.get_as(&token, "/v1/accounts?limit=201").await).await,
        ["limit"]
    );
}

#[tokio::test]
async fn a_patch_without_if_match_is_428_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.person("admin@nist.gov", "US", &[Role::Admin]).await;
    let grace = app.person("grace@nist.gov", "US", &[Role::Viewer]).await;
    let token = app.login(&admin).await;
    let path = format!("/v1/accounts/{}", grace.id);
    let before: (String, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as("select display_name, updated_at from accounts where id = $1")
            .bind(grace.id)
            .fetch_one(&app.pool)
            .await
            .expect("row");

    let response = patch_as(
        &app,
        &token,
        &path,
        None,
        &json!({"display_name": "Grace Hopper"}),
    )
    .await;
    problem(response, 428).await;
    let after: (String, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as("select display_name, updated_at from accounts where id = $1")
            .bind(grace.id)
            .fetch_one(&app.pool)
            .await
            .expect("row");
    assert_eq!(after, before);
}

#[tokio::test]
async fn a_stale_if_match_is_412_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.person("admin@nist.gov", "US", &[Role::Admin]).await;
    let grace = app.person("grace@nist.gov", "US", &[Role::Viewer]).await;
    let token = app.login(&admin).await;
    let path = format!("/v1/accounts/{}", grace.id);
    let stale = etag_of(&app.get_as(&token, &path).await);
    expect(
        patch_as(
            &app,
            &token,
            &path,
            Some(&stale),
            &json!({"display_name": "Grace Hopper"}),
        )
        .await,
        200,
    )
    .await;

    let response = patch_as(
        &app,
        &token,
        &path,
        Some(&stale),
        &json!({"display_name": "Amazing Grace", "email": "amazing@nist.gov"}),
    )
    .await;
    problem(response, 412).await;
    let (name, email): (String, String) =
        sqlx::query_as("select display_name, email from accounts where id = $1")
            .bind(grace.id)
            .fetch_one(&app.pool)
            .await
            .expect("row");
    assert_eq!(
        (name.as_str(), email.as_str()),
        ("Grace Hopper", "grace@nist.gov")
    );
    // An ETag that was never given out is stale too.
    problem(
        patch_as(
            &app,
            &token,
            &path,
            Some("\"12345\""),
            &json!({"display_name": "X"}),
        )
        .await,
        412,
    )
    .await;
}

#[tokio::test]
async fn a_patch_with_the_etag_just_read_succeeds_and_gives_a_new_etag() {
    let app = TestApp::spawn().await;
    let admin = app.person("admin@nist.gov", "US", &[Role::Admin]).await;
    let grace = app.person("grace@nist.gov", "US", &[Role::Viewer]).await;
    let token = app.login(&admin).await;
    let path = format!("/v1/accounts/{}", grace.id);
    let read = app.get_as(&token, &path).await;
    assert_eq!(read.status(), 200);
    let tag = etag_of(&read);

    let response = patch_as(
        &app,
        &token,
        &path,
        Some(&tag),
        &json!({"display_name": "Grace B. Hopper", "email": "Grace.Hopper@nist.gov"}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let new_tag = etag_of(&response);
    assert_ne!(new_tag, tag);
    let updated = body(response).await;
    assert_eq!(updated["display_name"], "Grace B. Hopper");
    assert_eq!(updated["email"], "Grace.Hopper@nist.gov");
    let (name, email): (String, String) =
        sqlx::query_as("select display_name, email from accounts where id = $1")
            .bind(grace.id)
            .fetch_one(&app.pool)
            .await
            .expect("row");
    assert_eq!(
        (name.as_str(), email.as_str()),
        ("Grace B. Hopper", "Grace.Hopper@nist.gov")
    );
    // The new ETag is the current one: a read answers it, and it allows the next update.
    assert_eq!(etag_of(&app.get_as(&token, &path).await), new_tag);
    expect(
        patch_as(
            &app,
            &token,
            &path,
            Some(&new_tag),
            &json!({"display_name": "Grace"}),
        )
        .await,
        200,
    )
    .await;
    // She logs in with the new address.
    assert_eq!(
        password_login(&app, "grace.hopper@nist.gov", PASSWORD)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn a_disabled_person_loses_their_token_and_login_until_enabled() {
    let app = TestApp::spawn().await;
    let admin = app.person("admin@nist.gov", "US", &[Role::Admin]).await;
    let grace = app.person("grace@nist.gov", "US", &[Role::Viewer]).await;
    let token = app.login(&admin).await;
    let grace_token = app.login(&grace).await;
    assert_eq!(app.get_as(&grace_token, "/v1/me").await.status(), 200);

    let disabled = expect(
        app.post_as(
            &token,
            &format!("/v1/accounts/{}/disable", grace.id),
            &json!({}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(disabled["status"], "disabled");
    assert_eq!(account_status(&app, grace.id).await, "disabled");
    let refused = problem(app.get_as(&grace_token, "/v1/me").await, 401).await;
    assert_eq!(refused["type"], "urn:jointeval:problem:unauthorized");
    problem(app.get_as(&grace_token, "/v1/institutes").await, 401).await;
    let login = problem(password_login(&app, &grace.email, PASSWORD).await, 401).await;
    assert_eq!(login["type"], "urn:jointeval:problem:invalid-credentials");

    let enabled = expect(
        app.post_as(
            &token,
            &format!("/v1/accounts/{}/enable", grace.id),
            &json!({}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(enabled["status"], "active");
    assert_eq!(account_status(&app, grace.id).await, "active");
    let fresh = access_token(password_login(&app, &grace.email, PASSWORD).await).await;
    let me = expect(app.get_as(&fresh, "/v1/me").await, 200).await;
    assert_eq!(me["account"]["status"], "active");
    assert_eq!(
        roles_now(&app, &fresh).await,
        [("US".to_owned(), "viewer".to_owned(), None)]
    );
}

#[tokio::test]
async fn nobody_disables_their_own_account() {
    let app = TestApp::spawn().await;
    let admin = app.person("admin@nist.gov", "US", &[Role::Admin]).await;
    let token = app.login(&admin).await;
    problem(
        app.post_as(
            &token,
            &format!("/v1/accounts/{}/disable", admin.id),
            &json!({}),
        )
        .await,
        403,
    )
    .await;
    assert_eq!(account_status(&app, admin.id).await, "active");
    problem(
        app.post_as(
            &token,
            &format!("/v1/accounts/{}/reset-password", admin.id),
            &json!({}),
        )
        .await,
        403,
    )
    .await;
    assert_eq!(
        password_login(&app, &admin.email, PASSWORD).await.status(),
        200
    );
}

#[tokio::test]
async fn a_password_reset_gives_a_one_time_password_that_must_be_changed() {
    let app = TestApp::spawn().await;
    let admin = app.person("admin@nist.gov", "US", &[Role::Admin]).await;
    let grace = app.person("grace@nist.gov", "US", &[Role::Viewer]).await;
    let token = app.login(&admin).await;

    let response = app
        .post_as(
            &token,
            &format!("/v1/accounts/{}/reset-password", grace.id),
            &json!({}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let reset = body(response).await;
    let one_time = reset["one_time_password"]
        .as_str()
        .expect("a one-time password")
        .to_owned();
    assert!(reset.get("client_secret").is_none(), "{reset}");
    let must_change: bool =
        sqlx::query_scalar("select must_change from password_credentials where account_id = $1")
            .bind(grace.id)
            .fetch_one(&app.pool)
            .await
            .expect("credential");
    assert!(must_change);

    problem(password_login(&app, &grace.email, PASSWORD).await, 401).await;
    let grace_token = access_token(password_login(&app, &grace.email, &one_time).await).await;
    let me = expect(app.get_as(&grace_token, "/v1/me").await, 200).await;
    assert_eq!(me["must_change_password"], true);
    let blocked = problem(app.get_as(&grace_token, "/v1/institutes").await, 403).await;
    assert_eq!(
        blocked["type"],
        "urn:jointeval:problem:password-change-required"
    );
}

#[tokio::test]
async fn a_rotated_secret_replaces_the_old_one_and_keeps_the_scopes() {
    let app = TestApp::spawn().await;
    let admin = app.person("admin@nist.gov", "US", &[Role::Admin]).await;
    let token = app.login(&admin).await;
    let (id, old_secret) =
        create_service(&app, &token, "Runner", &["runs:read", "runs:write"]).await;
    assert_eq!(client_login(&app, &id, &old_secret).await.status(), 200);

    let response = app
        .post_as(
            &token,
            &format!("/v1/accounts/{id}/rotate-secret"),
            &json!({}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let rotated = body(response).await;
    assert_eq!(rotated["client_id"], id.as_str());
    let new_secret = rotated["client_secret"]
        .as_str()
        .expect("a new secret")
        .to_owned();
    assert_ne!(new_secret, old_secret);

    let refused = problem(client_login(&app, &id, &old_secret).await, 401).await;
    assert_eq!(refused["type"], "urn:jointeval:problem:invalid-credentials");
    let login = expect(client_login(&app, &id, &new_secret).await, 200).await;
    let scopes: Vec<&str> = login["scope"].as_str().expect("scope").split(' ').collect();
    assert_eq!(sorted_strings(scopes), ["runs:read", "runs:write"]);
}

#[tokio::test]
async fn resetting_a_service_password_or_rotating_a_person_secret_is_409() {
    let app = TestApp::spawn().await;
    let admin = app.person("admin@nist.gov", "US", &[Role::Admin]).await;
    let grace = app.person("grace@nist.gov", "US", &[Role::Viewer]).await;
    let token = app.login(&admin).await;
    let (id, secret) = create_service(&app, &token, "Runner", &["runs:read"]).await;

    let reset = problem(
        app.post_as(
            &token,
            &format!("/v1/accounts/{id}/reset-password"),
            &json!({}),
        )
        .await,
        409,
    )
    .await;
    assert_eq!(reset["type"], "urn:jointeval:problem:wrong-account-kind");
    let rotate = problem(
        app.post_as(
            &token,
            &format!("/v1/accounts/{}/rotate-secret", grace.id),
            &json!({}),
        )
        .await,
        409,
    )
    .await;
    assert_eq!(rotate["type"], "urn:jointeval:problem:wrong-account-kind");

    assert_eq!(
        count(
            &app,
            &format!("select count(*) from password_credentials where account_id = '{id}'")
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &app,
            &format!(
                "select count(*) from service_credentials where account_id = '{}'",
                grace.id
            )
        )
        .await,
        0
    );
    // Both credentials still work as before.
    assert_eq!(client_login(&app, &id, &secret).await.status(), 200);
    assert_eq!(
        password_login(&app, &grace.email, PASSWORD).await.status(),
        200
    );
    let must_change: bool =
        sqlx::query_scalar("select must_change from password_credentials where account_id = $1")
            .bind(grace.id)
            .fetch_one(&app.pool)
            .await
            .expect("credential");
    assert!(!must_change);
}

#[tokio::test]
async fn admins_of_another_institute_neither_see_nor_manage_its_accounts() {
    let app = TestApp::spawn().await;
    let us_admin = app.person("admin@nist.gov", "US", &[Role::Admin]).await;
    let ada = app.person("ada@aisi.gov.uk", "UK", &[Role::Viewer]).await;
    let author = app.person("grace@nist.gov", "US", &[Role::Author]).await;
    let token = app.login(&us_admin).await;
    let path = format!("/v1/accounts/{}", ada.id);
    problem(app.get_as(&token, &path).await, 404).await;
    problem(
        patch_as(
            &app,
            &token,
            &path,
            Some("*"),
            &json!({"display_name": "X"}),
        )
        .await,
        404,
    )
    .await;
    problem(
        app.post_as(&token, &format!("{path}/disable"), &json!({}))
            .await,
        404,
    )
    .await;
    problem(
        app.post_as(&token, &format!("{path}/reset-password"), &json!({}))
            .await,
        404,
    )
    .await;
    problem(
        app.post_as(
            &token,
            &format!("{path}/memberships"),
            &json!({"role": "viewer"}),
        )
        .await,
        404,
    )
    .await;
    let created = app
        .post_as(&token, "/v1/accounts", &json!({"kind": "person", "email": "x@aisi.gov.uk", "display_name": "X", "home_institute": "UK"}))
        .await;
    problem(created, 403).await;
    // A person without the admin role creates nothing either.
    let author_token = app.login(&author).await;
    let created = app
        .post_as(
            &author_token,
            "/v1/accounts",
            &json!({"kind": "person", "email": "y@nist.gov", "display_name": "Y"}),
        )
        .await;
    problem(created, 403).await;
    assert_eq!(account_status(&app, ada.id).await, "active");
    assert_eq!(count(&app, "select count(*) from accounts").await, 3);
    assert_eq!(
        count(
            &app,
            &format!(
                "select count(*) from memberships where account_id = '{}'",
                ada.id
            )
        )
        .await,
        1
    );
}

// ---------------------------------------------------------------------------------------
// Memberships

async fn grant(
    app: &TestApp,
    token: &str,
    account: uuid::Uuid,
    request: &Value,
) -> reqwest::Response {
    app.post_as(
        token,
        &format!("/v1/accounts/{account}/memberships"),
        request,
    )
    .await
}

async fn membership_count(app: &TestApp, account: uuid::Uuid) -> i64 {
    sqlx::query_scalar("select count(*) from memberships where account_id = $1")
        .bind(account)
        .fetch_one(&app.pool)
        .await
        .expect("count")
}

#[tokio::test]
async fn a_role_granted_for_a_window_is_listed_and_in_force() {
    let app = TestApp::spawn().await;
    let admin = app.person("admin@nist.gov", "US", &[Role::Admin]).await;
    let grace = app.person("grace@nist.gov", "US", &[Role::Viewer]).await;
    let token = app.login(&admin).await;
    let grace_token = app.login(&grace).await;
    let (from, until) = (now() - minutes(1), now() + chrono::Duration::days(30));

    let response = grant(
        &app,
        &token,
        grace.id,
        &json!({"role": "reviewer", "valid_from": from.to_rfc3339(), "valid_until": until.to_rfc3339()}),
    )
    .await;
    let granted = expect(response, 201).await;
    assert_eq!(granted["role"], "reviewer");
    assert_eq!(granted["institute"], "US");
    assert_eq!(granted["account_id"], grace.id.to_string());
    assert_eq!(granted["granted_by"], admin.id.to_string());
    assert_eq!(granted["active"], true);
    assert!(granted["revoked_at"].is_null());
    assert_eq!(at(&granted["valid_from"]), from);
    assert_eq!(at(&granted["valid_until"]), until);

    let (db_from, db_until, granted_by): (
        chrono::DateTime<chrono::Utc>,
        Option<chrono::DateTime<chrono::Utc>>,
        Option<uuid::Uuid>,
    ) = sqlx::query_as("select valid_from, valid_until, granted_by from memberships where id = $1")
        .bind(id_of(&granted["id"]))
        .fetch_one(&app.pool)
        .await
        .expect("the membership");
    assert_eq!(
        (db_from, db_until, granted_by),
        (from, Some(until), Some(admin.id))
    );

    let listed = expect(
        app.get_as(&token, &format!("/v1/accounts/{}/memberships", grace.id))
            .await,
        200,
    )
    .await;
    let roles: Vec<&str> = listed
        .as_array()
        .expect("a list")
        .iter()
        .map(|m| m["role"].as_str().expect("role"))
        .collect();
    assert_eq!(sorted_strings(roles), ["reviewer", "viewer"]);

    assert_eq!(
        roles_now(&app, &grace_token).await,
        [
            ("US".to_owned(), "reviewer".to_owned(), None),
            ("US".to_owned(), "viewer".to_owned(), None)
        ]
    );
}

#[tokio::test]
async fn an_overlapping_grant_of_the_same_role_is_409_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.person("admin@nist.gov", "US", &[Role::Admin]).await;
    let grace = app.person("grace@nist.gov", "US", &[Role::Viewer]).await;
    let token = app.login(&admin).await;
    let start = now();
    expect(
        grant(
            &app,
            &token,
            grace.id,
            &json!({"role": "reviewer", "valid_from": (start + minutes(60)).to_rfc3339(), "valid_until": (start + minutes(600)).to_rfc3339()}),
        )
        .await,
        201,
    )
    .await;
    let before = membership_count(&app, grace.id).await;

    for (from, until) in [
        (Some(start + minutes(120)), Some(start + minutes(180))), // inside
        (None, Some(start + minutes(90))),                        // from now into it
        (Some(start + minutes(599)), None),                       // open-ended from its last minute
    ] {
        let mut request = json!({"role": "reviewer"});
        if let Some(from) = from {
            request["valid_from"] = json!(from.to_rfc3339());
        }
        if let Some(until) = until {
            request["valid_until"] = json!(until.to_rfc3339());
        }
        let problem = problem(grant(&app, &token, grace.id, &request).await, 409).await;
        assert_eq!(
            problem["type"], "urn:jointeval:problem:membership-overlap",
            "{request}"
        );
    }
    // The open-ended viewer role she holds overlaps any new viewer window.
    let viewer = problem(
        grant(&app, &token, grace.id, &json!({"role": "viewer"})).await,
        409,
    )
    .await;
    assert_eq!(viewer["type"], "urn:jointeval:problem:membership-overlap");
    assert_eq!(membership_count(&app, grace.id).await, before);

    // Another role over the same window, and the same role right after, are fine.
    expect(
        grant(
            &app,
            &token,
            grace.id,
            &json!({"role": "author", "valid_from": (start + minutes(60)).to_rfc3339(), "valid_until": (start + minutes(600)).to_rfc3339()}),
        )
        .await,
        201,
    )
    .await;
    expect(
        grant(
            &app,
            &token,
            grace.id,
            &json!({"role": "reviewer", "valid_from": (start + minutes(600)).to_rfc3339()}),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(membership_count(&app, grace.id).await, before + 2);
}

#[tokio::test]
async fn an_inverted_or_past_window_is_422_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.person("admin@nist.gov", "US", &[Role::Admin]).await;
    let grace = app.person("grace@nist.gov", "US", &[Role::Viewer]).await;
    let token = app.login(&admin).await;
    let start = now();
    let before = membership_count(&app, grace.id).await;

    for request in [
        json!({"role": "reviewer", "valid_from": (start + minutes(120)).to_rfc3339(), "valid_until": (start + minutes(60)).to_rfc3339()}),
        json!({"role": "reviewer", "valid_from": (start + minutes(60)).to_rfc3339(), "valid_until": (start + minutes(60)).to_rfc3339()}),
        json!({"role": "reviewer", "valid_from": (start - minutes(120)).to_rfc3339(), "valid_until": (start - minutes(60)).to_rfc3339()}),
        json!({"role": "reviewer", "valid_until": (start - minutes(1)).to_rfc3339()}),
    ] {
        assert_eq!(
            invalid_fields(grant(&app, &token, grace.id, &request).await).await,
            ["valid_until"],
            "{request}"
        );
    }
    assert_eq!(
        invalid_fields(grant(&app, &token, grace.id, &json!({"role": "root"})).await).await,
        ["role"]
    );
    assert_eq!(
        invalid_fields(
            grant(
                &app,
                &token,
                grace.id,
                &json!({"role": "viewer", "institute": "UK"})
            )
            .await
        )
        .await,
        ["institute"]
    );
    assert_eq!(membership_count(&app, grace.id).await, before);
}

#[tokio::test]
async fn a_future_membership_gives_no_role_until_it_starts() {
    let app = TestApp::spawn().await;
    let admin = app.person("admin@nist.gov", "US", &[Role::Admin]).await;
    let grace = app.person("grace@nist.gov", "US", &[Role::Viewer]).await;
    let token = app.login(&admin).await;
    let grace_token = app.login(&grace).await;

    let granted = expect(
        grant(
            &app,
            &token,
            grace.id,
            &json!({"role": "evaluator", "valid_from": (now() + minutes(60)).to_rfc3339()}),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(granted["active"], false);
    assert_eq!(
        roles_now(&app, &grace_token).await,
        [("US".to_owned(), "viewer".to_owned(), None)]
    );
    let me = expect(app.get_as(&grace_token, "/v1/me").await, 200).await;
    let memberships: Vec<&str> = me["memberships"]
        .as_array()
        .expect("memberships")
        .iter()
        .map(|m| m["role"].as_str().expect("role"))
        .collect();
    assert_eq!(memberships, ["viewer"]);
    assert!(
        !me["permissions"].to_string().contains("runs:execute"),
        "{me}"
    );
    // It is there, waiting.
    let listed = expect(
        app.get_as(&token, &format!("/v1/accounts/{}/memberships", grace.id))
            .await,
        200,
    )
    .await;
    let evaluator = listed
        .as_array()
        .expect("list")
        .iter()
        .find(|m| m["role"] == "evaluator")
        .expect("the evaluator role");
    assert_eq!(evaluator["active"], false);
}

#[tokio::test]
async fn a_revoked_role_is_gone_on_the_next_request_and_cannot_be_revoked_twice() {
    let app = TestApp::spawn().await;
    let admin = app.person("admin@nist.gov", "US", &[Role::Admin]).await;
    let grace = app.person("grace@nist.gov", "US", &[Role::Viewer]).await;
    let token = app.login(&admin).await;
    let grace_token = app.login(&grace).await;
    let granted = expect(
        grant(&app, &token, grace.id, &json!({"role": "reviewer"})).await,
        201,
    )
    .await;
    assert_eq!(granted["active"], true);
    let membership = granted["id"].as_str().expect("id").to_owned();
    assert_eq!(
        roles_now(&app, &grace_token).await,
        [
            ("US".to_owned(), "reviewer".to_owned(), None),
            ("US".to_owned(), "viewer".to_owned(), None)
        ]
    );

    let revoke_path = format!("/v1/accounts/{}/memberships/{membership}/revoke", grace.id);
    let revoked = expect(app.post_as(&token, &revoke_path, &json!({})).await, 200).await;
    assert_eq!(revoked["active"], false);
    assert!(revoked["revoked_at"].is_string());
    assert_eq!(
        roles_now(&app, &grace_token).await,
        [("US".to_owned(), "viewer".to_owned(), None)]
    );
    let (revoked_at, revoked_by): (Option<chrono::DateTime<chrono::Utc>>, Option<uuid::Uuid>) =
        sqlx::query_as("select revoked_at, revoked_by from memberships where id = $1::uuid")
            .bind(&membership)
            .fetch_one(&app.pool)
            .await
            .expect("the membership");
    assert!(revoked_at.is_some());
    assert_eq!(revoked_by, Some(admin.id));

    let again = problem(app.post_as(&token, &revoke_path, &json!({})).await, 409).await;
    assert_eq!(again["type"], "urn:jointeval:problem:already-revoked");
    let unchanged: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("select revoked_at from memberships where id = $1::uuid")
            .bind(&membership)
            .fetch_one(&app.pool)
            .await
            .expect("the membership");
    assert_eq!(unchanged, revoked_at);
    // Still in the history.
    let listed = expect(
        app.get_as(&token, &format!("/v1/accounts/{}/memberships", grace.id))
            .await,
        200,
    )
    .await;
    assert_eq!(listed.as_array().expect("list").len(), 2);
    // A membership of somebody else is not found under her account.
    let other = app.person("alan@nist.gov", "US", &[Role::Viewer]).await;
    let other_membership: uuid::Uuid =
        sqlx::query_scalar("select id from memberships where account_id = $1")
            .bind(other.id)
            .fetch_one(&app.pool)
            .await
            .expect("membership");
    problem(
        app.post_as(
            &token,
            &format!(
                "/v1/accounts/{}/memberships/{other_membership}/revoke",
                grace.id
            ),
            &json!({}),
        )
        .await,
        404,
    )
    .await;
    assert_eq!(
        count(&app, &format!("select count(*) from memberships where id = '{other_membership}' and revoked_at is null")).await,
        1
    );
}

#[tokio::test]
async fn an_admin_cannot_grant_or_revoke_their_own_roles() {
    let app = TestApp::spawn().await;
    let admin = app.person("admin@nist.gov", "US", &[Role::Admin]).await;
    let token = app.login(&admin).await;
    let before = membership_count(&app, admin.id).await;

    let refused = problem(
        grant(&app, &token, admin.id, &json!({"role": "reviewer"})).await,
        403,
    )
    .await;
    assert_eq!(refused["type"], "urn:jointeval:problem:forbidden");
    assert_eq!(membership_count(&app, admin.id).await, before);

    let own: uuid::Uuid = sqlx::query_scalar("select id from memberships where account_id = $1")
        .bind(admin.id)
        .fetch_one(&app.pool)
        .await
        .expect("the admin membership");
    problem(
        app.post_as(
            &token,
            &format!("/v1/accounts/{}/memberships/{own}/revoke", admin.id),
            &json!({}),
        )
        .await,
        403,
    )
    .await;
    assert_eq!(
        count(
            &app,
            &format!("select count(*) from memberships where id = '{own}' and revoked_at is null")
        )
        .await,
        1
    );
}

// ---------------------------------------------------------------------------------------
// Exchanges

fn proposal(
    account: uuid::Uuid,
    home: &str,
    host: &str,
    roles: &[&str],
    starts: chrono::DateTime<chrono::Utc>,
    ends: chrono::DateTime<chrono::Utc>,
) -> Value {
    json!({
        "account_id": account, "home_institute": home, "host_institute": host, "roles": roles,
        "starts_at": starts.to_rfc3339(), "ends_at": ends.to_rfc3339(),
    })
}

async fn exchange_status(app: &TestApp, id: uuid::Uuid) -> String {
    sqlx::query_scalar("select status from exchanges where id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .expect("the exchange")
}

/// US and UK admins, a UK person, and a proposal by the UK admin to send them to the US
/// as an author from a minute ago to a month ahead.
struct Exchanged {
    app: TestApp,
    us_admin: crate::support::TestUser,
    uk_admin: crate::support::TestUser,
    person: crate::support::TestUser,
    us_token: String,
    uk_token: String,
    person_token: String,
}

async fn two_institutes() -> Exchanged {
    let app = TestApp::spawn().await;
    let us_admin = app.person("admin@nist.gov", "US", &[Role::Admin]).await;
    let uk_admin = app.person("admin@aisi.gov.uk", "UK", &[Role::Admin]).await;
    let person = app.person("ada@aisi.gov.uk", "UK", &[Role::Viewer]).await;
    let us_token = app.login(&us_admin).await;
    let uk_token = app.login(&uk_admin).await;
    let person_token = app.login(&person).await;
    Exchanged {
        app,
        us_admin,
        uk_admin,
        person,
        us_token,
        uk_token,
        person_token,
    }
}

#[tokio::test]
async fn an_exchange_runs_from_proposal_through_approval_to_its_end() {
    let Exchanged {
        app,
        us_admin,
        uk_admin,
        person,
        us_token,
        uk_token,
        person_token,
    } = two_institutes().await;
    let uk_other = app.person("alan@aisi.gov.uk", "UK", &[Role::Viewer]).await;
    let (starts, ends) = (now() - minutes(1), now() + chrono::Duration::days(30));

    // Proposed by the UK side.
    let response = app
        .post_as(
            &uk_token,
            "/v1/exchanges",
            &proposal(person.id, "UK", "US", &["author"], starts, ends),
        )
        .await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let proposed = body(response).await;
    let id = id_of(&proposed["id"]);
    assert_eq!(location, format!("/v1/exchanges/{id}"));
    assert_eq!(proposed["phase"], "proposed");
    assert_eq!(proposed["status"], "proposed");
    assert_eq!(proposed["home_institute"], "UK");
    assert_eq!(proposed["host_institute"], "US");
    assert_eq!(proposed["roles"], json!(["author"]));
    assert_eq!(proposed["proposed_by"], uk_admin.id.to_string());
    assert_eq!(proposed["proposed_by_institute"], "UK");
    assert_eq!(at(&proposed["starts_at"]), starts);
    assert_eq!(at(&proposed["ends_at"]), ends);
    assert_eq!(exchange_status(&app, id).await, "proposed");
    // A proposal gives nothing yet.
    assert!(crate::support::every(
        roles_now(&app, &person_token).await,
        |(institute, _, _)| { institute == "UK" }
    ));
    problem(
        app.get_as(&us_token, &format!("/v1/accounts/{}", person.id))
            .await,
        404,
    )
    .await;
    // Both sides and the person see the proposal.
    for token in [&us_token, &uk_token, &person_token] {
        let read = expect(app.get_as(token, &location).await, 200).await;
        assert_eq!(read["phase"], "proposed");
    }

    // Nobody approves their own side's proposal, nor their own exchange.
    let own_side = problem(
        app.post_as(&uk_token, &format!("{location}/approve"), &json!({}))
            .await,
        403,
    )
    .await;
    assert_eq!(own_side["type"], "urn:jointeval:problem:forbidden");
    problem(
        app.post_as(&person_token, &format!("{location}/approve"), &json!({}))
            .await,
        403,
    )
    .await;
    assert_eq!(exchange_status(&app, id).await, "proposed");

    // The other side approves: the exchange is in force.
    let approved = expect(
        app.post_as(&us_token, &format!("{location}/approve"), &json!({}))
            .await,
        200,
    )
    .await;
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["phase"], "active");
    assert_eq!(approved["decided_by"], us_admin.id.to_string());
    let (status, decided_by): (String, Option<uuid::Uuid>) =
        sqlx::query_as("select status, decided_by from exchanges where id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .expect("the exchange");
    assert_eq!(
        (status.as_str(), decided_by),
        ("approved", Some(us_admin.id))
    );

    assert_eq!(
        roles_now(&app, &person_token).await,
        [
            ("UK".to_owned(), "viewer".to_owned(), None),
            ("US".to_owned(), "author".to_owned(), Some(id.to_string()))
        ]
    );
    let me = expect(app.get_as(&person_token, "/v1/me").await, 200).await;
    assert_eq!(me["exchanges"][0]["id"], id.to_string());
    assert_eq!(me["exchanges"][0]["phase"], "active");

    // The host's admin sees the person, and no other account of the home institute.
    let listed = expect(app.get_as(&us_token, "/v1/accounts").await, 200).await;
    let ids = item_ids(&listed);
    assert!(ids.contains(&person.id), "{listed}");
    assert!(
        !ids.contains(&uk_admin.id) && !ids.contains(&uk_other.id),
        "{listed}"
    );
    let uk_items: Vec<&Value> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|a| a["home_institute"] != "US")
        .collect();
    assert_eq!(uk_items.len(), 1, "{listed}");
    assert_eq!(
        item_ids(
            &expect(
                app.get_as(&us_token, "/v1/accounts?institute=UK").await,
                200
            )
            .await
        ),
        [person.id]
    );
    let read = expect(
        app.get_as(&us_token, &format!("/v1/accounts/{}", person.id))
            .await,
        200,
    )
    .await;
    assert_eq!(read["home_institute"], "UK");
    problem(
        app.get_as(&us_token, &format!("/v1/accounts/{}", uk_admin.id))
            .await,
        404,
    )
    .await;
    problem(
        app.get_as(&us_token, &format!("/v1/accounts/{}", uk_other.id))
            .await,
        404,
    )
    .await;

    // ... but does not manage them: that stays with the home institute.
    let disable = problem(
        app.post_as(
            &us_token,
            &format!("/v1/accounts/{}/disable", person.id),
            &json!({}),
        )
        .await,
        403,
    )
    .await;
    assert_eq!(disable["type"], "urn:jointeval:problem:forbidden");
    problem(
        app.post_as(
            &us_token,
            &format!("/v1/accounts/{}/reset-password", person.id),
            &json!({}),
        )
        .await,
        403,
    )
    .await;
    problem(
        patch_as(
            &app,
            &us_token,
            &format!("/v1/accounts/{}", person.id),
            Some("*"),
            &json!({"display_name": "X"}),
        )
        .await,
        403,
    )
    .await;
    problem(
        grant(&app, &us_token, person.id, &json!({"role": "reviewer"})).await,
        403,
    )
    .await;
    assert_eq!(account_status(&app, person.id).await, "active");
    assert_eq!(membership_count(&app, person.id).await, 1);
    assert_eq!(
        password_login(&app, &person.email, PASSWORD).await.status(),
        200
    );

    // Both sides list it, filtered by status.
    for token in [&us_token, &uk_token] {
        let page = expect(
            app.get_as(token, "/v1/exchanges?status=approved").await,
            200,
        )
        .await;
        assert_eq!(item_ids(&page), [id]);
        let page = expect(
            app.get_as(token, "/v1/exchanges?status=proposed").await,
            200,
        )
        .await;
        assert_eq!(item_ids(&page), Vec::<uuid::Uuid>::new());
        let page = expect(
            app.get_as(token, &format!("/v1/exchanges?account_id={}", person.id))
                .await,
            200,
        )
        .await;
        assert_eq!(item_ids(&page), [id]);
    }

    // Either side ends it: here the home side. The host roles end with it.
    let ended = expect(
        app.post_as(&uk_token, &format!("{location}/end"), &json!({}))
            .await,
        200,
    )
    .await;
    assert_eq!(ended["status"], "ended");
    assert_eq!(ended["phase"], "ended");
    assert_eq!(ended["ended_by"], uk_admin.id.to_string());
    assert_eq!(exchange_status(&app, id).await, "ended");
    assert_eq!(
        roles_now(&app, &person_token).await,
        [("UK".to_owned(), "viewer".to_owned(), None)]
    );
    problem(
        app.get_as(&us_token, &format!("/v1/accounts/{}", person.id))
            .await,
        404,
    )
    .await;
    assert!(
        !item_ids(&expect(app.get_as(&us_token, "/v1/accounts").await, 200).await)
            .contains(&person.id)
    );

    // Over is over.
    let late = problem(
        app.post_as(&us_token, &format!("{location}/approve"), &json!({}))
            .await,
        409,
    )
    .await;
    assert_eq!(late["type"], "urn:jointeval:problem:exchange-state");
    problem(
        app.post_as(&us_token, &format!("{location}/end"), &json!({}))
            .await,
        409,
    )
    .await;
    assert_eq!(exchange_status(&app, id).await, "ended");
    let ended_by: Option<uuid::Uuid> =
        sqlx::query_scalar("select ended_by from exchanges where id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .expect("ended_by");
    assert_eq!(ended_by, Some(uk_admin.id));
}

#[tokio::test]
async fn the_host_side_may_end_an_exchange_too() {
    let Exchanged {
        app,
        us_admin,
        person,
        us_token,
        uk_token,
        person_token,
        ..
    } = two_institutes().await;
    let created = expect(
        app.post_as(
            &uk_token,
            "/v1/exchanges",
            &proposal(
                person.id,
                "UK",
                "US",
                &["author", "viewer"],
                now() - minutes(1),
                now() + minutes(600),
            ),
        )
        .await,
        201,
    )
    .await;
    let id = id_of(&created["id"]);
    expect(
        app.post_as(
            &us_token,
            &format!("/v1/exchanges/{id}/approve"),
            &json!({}),
        )
        .await,
        200,
    )
    .await;
    let held: Vec<String> = roles_now(&app, &person_token)
        .await
        .into_iter()
        .filter(|r| r.0 == "US")
        .map(|r| r.1)
        .collect();
    assert_eq!(held, ["author", "viewer"]);
    expect(
        app.get_as(&us_token, &format!("/v1/accounts/{}", person.id))
            .await,
        200,
    )
    .await;

    let ended = expect(
        app.post_as(&us_token, &format!("/v1/exchanges/{id}/end"), &json!({}))
            .await,
        200,
    )
    .await;
    assert_eq!(ended["phase"], "ended");
    assert_eq!(ended["ended_by"], us_admin.id.to_string());
    assert!(crate::support::every(
        roles_now(&app, &person_token).await,
        |(institute, _, _)| { institute == "UK" }
    ));
    problem(
        app.get_as(&us_token, &format!("/v1/accounts/{}", person.id))
            .await,
        404,
    )
    .await;
}

#[tokio::test]
async fn invalid_proposals_are_422_naming_the_field_and_write_nothing() {
    let Exchanged {
        app,
        person,
        uk_token,
        us_admin,
        ..
    } = two_institutes().await;
    let (starts, ends) = (now() - minutes(1), now() + chrono::Duration::days(30));
    let cases = [
        (
            proposal(person.id, "UK", "UK", &["author"], starts, ends),
            vec!["host_institute"],
        ),
        (
            proposal(person.id, "UK", "US", &[], starts, ends),
            vec!["roles"],
        ),
        (
            proposal(person.id, "UK", "US", &["author", "author"], starts, ends),
            vec!["roles"],
        ),
        (
            proposal(person.id, "UK", "US", &["author"], ends, starts),
            vec!["ends_at"],
        ),
        (
            proposal(person.id, "UK", "US", &["author"], starts, starts),
            vec!["ends_at"],
        ),
        (
            proposal(
                person.id,
                "UK",
                "US",
                &["author"],
                starts - minutes(600),
                starts - minutes(60),
            ),
            vec!["ends_at"],
        ),
        (
            proposal(person.id, "UK", "ZZ", &["author"], starts, ends),
            vec!["host_institute"],
        ),
        (
            proposal(person.id, "UK", "US", &["root"], starts, ends),
            vec!["roles[0]"],
        ),
        // Not a person of the home institute.
        (
            proposal(us_admin.id, "UK", "US", &["author"], starts, ends),
            vec!["account_id"],
        ),
        (
            proposal(uuid::Uuid::now_v7(), "UK", "US", &["author"], starts, ends),
            vec!["account_id"],
        ),
    ];
    for (request, fields) in cases {
        let response = app.post_as(&uk_token, "/v1/exchanges", &request).await;
        assert_eq!(invalid_fields(response).await, fields, "for {request}");
    }
    let mut unknown = proposal(person.id, "UK", "US", &["author"], starts, ends);
    unknown["status"] = json!("approved");
    assert_eq!(
        invalid_fields(app.post_as(&uk_token, "/v1/exchanges", &unknown).await).await,
        ["status"]
    );
    assert_eq!(count(&app, "select count(*) from exchanges").await, 0);
}

#[tokio::test]
async fn an_overlapping_proposal_for_the_same_person_and_host_is_409() {
    let Exchanged {
        app,
        person,
        us_token,
        uk_token,
        ..
    } = two_institutes().await;
    let start = now();
    let first = expect(
        app.post_as(
            &uk_token,
            "/v1/exchanges",
            &proposal(
                person.id,
                "UK",
                "US",
                &["author"],
                start - minutes(1),
                start + minutes(600),
            ),
        )
        .await,
        201,
    )
    .await;

    for (token, window) in [
        (&uk_token, (start + minutes(60), start + minutes(120))),
        (&uk_token, (start + minutes(300), start + minutes(1200))),
        // From the host's side too.
        (&us_token, (start - minutes(1), start + minutes(10))),
    ] {
        let response = app
            .post_as(
                token,
                "/v1/exchanges",
                &proposal(person.id, "UK", "US", &["viewer"], window.0, window.1),
            )
            .await;
        let problem = problem(response, 409).await;
        assert_eq!(problem["type"], "urn:jointeval:problem:exchange-overlap");
    }
    assert_eq!(count(&app, "select count(*) from exchanges").await, 1);

    // Once approved it still blocks; the same window after it does not.
    expect(
        app.post_as(
            &us_token,
            &format!(
                "/v1/exchanges/{}/approve",
                first["id"].as_str().expect("id")
            ),
            &json!({}),
        )
        .await,
        200,
    )
    .await;
    problem(
        app.post_as(
            &uk_token,
            "/v1/exchanges",
            &proposal(
                person.id,
                "UK",
                "US",
                &["viewer"],
                start + minutes(5),
                start + minutes(50),
            ),
        )
        .await,
        409,
    )
    .await;
    expect(
        app.post_as(
            &uk_token,
            "/v1/exchanges",
            &proposal(
                person.id,
                "UK",
                "US",
                &["viewer"],
                start + minutes(600),
                start + minutes(900),
            ),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(count(&app, "select count(*) from exchanges").await, 2);
}

#[tokio::test]
async fn a_third_institute_sees_nothing_of_an_exchange_and_cannot_decide_it() {
    let Exchanged {
        app,
        person,
        us_token,
        uk_token,
        ..
    } = two_institutes().await;
    let jp_admin = app.person("admin@aisi.go.jp", "JP", &[Role::Admin]).await;
    let jp_token = app.login(&jp_admin).await;
    let created = expect(
        app.post_as(
            &uk_token,
            "/v1/exchanges",
            &proposal(
                person.id,
                "UK",
                "US",
                &["author"],
                now() - minutes(1),
                now() + chrono::Duration::days(30),
            ),
        )
        .await,
        201,
    )
    .await;
    let id = id_of(&created["id"]);
    let path = format!("/v1/exchanges/{id}");

    problem(app.get_as(&jp_token, &path).await, 404).await;
    for filter in ["", "?institute=UK", "?institute=US", "?status=proposed"] {
        let page = expect(
            app.get_as(&jp_token, &format!("/v1/exchanges{filter}"))
                .await,
            200,
        )
        .await;
        assert_eq!(item_ids(&page), Vec::<uuid::Uuid>::new(), "{filter}");
    }
    let page = expect(
        app.get_as(
            &jp_token,
            &format!("/v1/exchanges?account_id={}", person.id),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(item_ids(&page), Vec::<uuid::Uuid>::new());
    for action in ["approve", "reject", "end"] {
        problem(
            app.post_as(&jp_token, &format!("{path}/{action}"), &json!({}))
                .await,
            404,
        )
        .await;
    }
    assert_eq!(exchange_status(&app, id).await, "proposed");
    // Nor may JP propose for institutes it does not administer.
    problem(
        app.post_as(
            &jp_token,
            "/v1/exchanges",
            &proposal(
                person.id,
                "UK",
                "US",
                &["author"],
                now() + chrono::Duration::days(40),
                now() + chrono::Duration::days(50),
            ),
        )
        .await,
        403,
    )
    .await;
    assert_eq!(count(&app, "select count(*) from exchanges").await, 1);

    // After approval, JP still sees neither the exchange nor the person.
    expect(
        app.post_as(&us_token, &format!("{path}/approve"), &json!({}))
            .await,
        200,
    )
    .await;
    problem(app.get_as(&jp_token, &path).await, 404).await;
    problem(
        app.get_as(&jp_token, &format!("/v1/accounts/{}", person.id))
            .await,
        404,
    )
    .await;
    assert!(
        !item_ids(&expect(app.get_as(&jp_token, "/v1/accounts").await, 200).await)
            .contains(&person.id)
    );
}

#[tokio::test]
async fn a_rejected_proposal_gives_nothing_and_cannot_be_approved() {
    let Exchanged {
        app,
        person,
        us_token,
        uk_token,
        person_token,
        ..
    } = two_institutes().await;
    let created = expect(
        app.post_as(
            &uk_token,
            "/v1/exchanges",
            &proposal(
                person.id,
                "UK",
                "US",
                &["author"],
                now() - minutes(1),
                now() + minutes(600),
            ),
        )
        .await,
        201,
    )
    .await;
    let path = format!("/v1/exchanges/{}", created["id"].as_str().expect("id"));
    problem(
        app.post_as(&uk_token, &format!("{path}/reject"), &json!({}))
            .await,
        403,
    )
    .await;
    let rejected = expect(
        app.post_as(&us_token, &format!("{path}/reject"), &json!({}))
            .await,
        200,
    )
    .await;
    assert_eq!(rejected["phase"], "rejected");
    assert_eq!(
        exchange_status(&app, id_of(&created["id"])).await,
        "rejected"
    );
    problem(
        app.post_as(&us_token, &format!("{path}/approve"), &json!({}))
            .await,
        409,
    )
    .await;
    assert_eq!(
        exchange_status(&app, id_of(&created["id"])).await,
        "rejected"
    );
    assert!(crate::support::every(
        roles_now(&app, &person_token).await,
        |(institute, _, _)| { institute == "UK" }
    ));
    problem(
        app.get_as(&us_token, &format!("/v1/accounts/{}", person.id))
            .await,
        404,
    )
    .await;
}

#[tokio::test]
async fn a_new_accounts_credential_is_sent_with_no_store() {
    let app = TestApp::spawn().await;
    let admin = app.person("admin@nist.gov", "US", &[Role::Admin]).await;
    let token = app.login(&admin).await;
    // Like the token endpoint, reset-password and rotate-secret, the one answer that
    // carries a new account's password or secret must not be kept by any cache.
    for request in [
        json!({"kind": "person", "email": "grace@nist.gov", "display_name": "Grace Hopper"}),
        json!({"kind": "service", "display_name": "Runner", "scopes": ["runs:read"]}),
    ] {
        let response = app.post_as(&token, "/v1/accounts", &request).await;
        assert_eq!(response.status(), 201);
        let cache_control = response
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let created = body(response).await;
        assert!(
            created.get("one_time_password").is_some() || created.get("client_secret").is_some(),
            "{created}"
        );
        assert_eq!(cache_control.as_deref(), Some("no-store"), "for {request}");
    }
}

#[tokio::test]
async fn a_disabled_service_account_loses_its_token_and_its_secret_until_enabled() {
    let app = TestApp::spawn().await;
    let admin = app.person("admin@nist.gov", "US", &[Role::Admin]).await;
    let token = app.login(&admin).await;
    let (id, secret) = create_service(&app, &token, "Runner", &["runs:read"]).await;
    let service_token = access_token(client_login(&app, &id, &secret).await).await;
    assert_eq!(app.get_as(&service_token, "/v1/me").await.status(), 200);

    expect(
        app.post_as(&token, &format!("/v1/accounts/{id}/disable"), &json!({}))
            .await,
        200,
    )
    .await;
    assert_eq!(
        account_status(&app, id.parse().expect("uuid")).await,
        "disabled"
    );
    problem(app.get_as(&service_token, "/v1/me").await, 401).await;
    problem(client_login(&app, &id, &secret).await, 401).await;

    expect(
        app.post_as(&token, &format!("/v1/accounts/{id}/enable"), &json!({}))
            .await,
        200,
    )
    .await;
    let fresh = access_token(client_login(&app, &id, &secret).await).await;
    assert_eq!(app.get_as(&fresh, "/v1/me").await.status(), 200);
}

#[tokio::test]
async fn invalid_patches_are_422_naming_the_field_and_change_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.person("admin@nist.gov", "US", &[Role::Admin]).await;
    let grace = app.person("grace@nist.gov", "US", &[Role::Viewer]).await;
    let token = app.login(&admin).await;
    let (bot, _) = create_service(&app, &token, "Runner", &["runs:read"]).await;
    let grace_path = format!("/v1/accounts/{}", grace.id);
    let bot_path = format!("/v1/accounts/{bot}");
    let grace_tag = etag_of(&app.get_as(&token, &grace_path).await);
    let bot_tag = etag_of(&app.get_as(&token, &bot_path).await);

    for (path, tag, request, field) in [
        (
            &grace_path,
            &grace_tag,
            json!({"status": "disabled"}),
            "status",
        ),
        (
            &grace_path,
            &grace_tag,
            json!({"home_institute": "UK"}),
            "home_institute",
        ),
        (
            &grace_path,
            &grace_tag,
            json!({"email": "not an address"}),
            "email",
        ),
        (
            &grace_path,
            &grace_tag,
            json!({"display_name": ""}),
            "display_name",
        ),
        (
            &bot_path,
            &bot_tag,
            json!({"email": "bot@nist.gov"}),
            "email",
        ),
    ] {
        let response = patch_as(&app, &token, path, Some(tag), &request).await;
        assert_eq!(invalid_fields(response).await, [field], "for {request}");
    }
    let (name, email, status): (String, Option<String>, String) =
        sqlx::query_as("select display_name, email, status from accounts where id = $1")
            .bind(grace.id)
            .fetch_one(&app.pool)
            .await
            .expect("row");
    assert_eq!(
        (name.as_str(), email.as_deref(), status.as_str()),
        ("grace@nist.gov", Some("grace@nist.gov"), "active")
    );
    let bot_email: Option<String> =
        sqlx::query_scalar("select email from accounts where id = $1::uuid")
            .bind(&bot)
            .fetch_one(&app.pool)
            .await
            .expect("row");
    assert_eq!(bot_email, None);
    // Nothing changed, so the ETags read before still hold.
    assert_eq!(etag_of(&app.get_as(&token, &grace_path).await), grace_tag);
    assert_eq!(etag_of(&app.get_as(&token, &bot_path).await), bot_tag);
}

#[tokio::test]
async fn a_revoked_role_may_be_granted_again() {
    let app = TestApp::spawn().await;
    let admin = app.person("admin@nist.gov", "US", &[Role::Admin]).await;
    let grace = app.person("grace@nist.gov", "US", &[Role::Viewer]).await;
    let token = app.login(&admin).await;
    let grace_token = app.login(&grace).await;
    let viewer: uuid::Uuid = sqlx::query_scalar("select id from memberships where account_id = $1")
        .bind(grace.id)
        .fetch_one(&app.pool)
        .await
        .expect("membership");
    expect(
        app.post_as(
            &token,
            &format!("/v1/accounts/{}/memberships/{viewer}/revoke", grace.id),
            &json!({}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(roles_now(&app, &grace_token).await, []);
    let again = expect(
        grant(&app, &token, grace.id, &json!({"role": "viewer"})).await,
        201,
    )
    .await;
    assert_ne!(id_of(&again["id"]), viewer);
    assert_eq!(
        roles_now(&app, &grace_token).await,
        [("US".to_owned(), "viewer".to_owned(), None)]
    );
    assert_eq!(membership_count(&app, grace.id).await, 2);
}

#[tokio::test]
async fn a_host_side_proposal_is_approved_by_the_home_side() {
    let Exchanged {
        app,
        uk_admin,
        person,
        us_token,
        uk_token,
        person_token,
        ..
    } = two_institutes().await;
    let created = expect(
        app.post_as(
            &us_token,
            "/v1/exchanges",
            &proposal(
                person.id,
                "UK",
                "US",
                &["reviewer"],
                now() - minutes(1),
                now() + minutes(600),
            ),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(created["proposed_by_institute"], "US");
    let path = format!("/v1/exchanges/{}", created["id"].as_str().expect("id"));
    problem(
        app.post_as(&us_token, &format!("{path}/approve"), &json!({}))
            .await,
        403,
    )
    .await;
    assert_eq!(
        exchange_status(&app, id_of(&created["id"])).await,
        "proposed"
    );
    // Proposing reveals nothing: the host admin still does not see the person.
    problem(
        app.get_as(&us_token, &format!("/v1/accounts/{}", person.id))
            .await,
        404,
    )
    .await;

    let approved = expect(
        app.post_as(&uk_token, &format!("{path}/approve"), &json!({}))
            .await,
        200,
    )
    .await;
    assert_eq!(approved["phase"], "active");
    assert_eq!(approved["decided_by"], uk_admin.id.to_string());
    let us_roles: Vec<String> = roles_now(&app, &person_token)
        .await
        .into_iter()
        .filter(|r| r.0 == "US")
        .map(|r| r.1)
        .collect();
    assert_eq!(us_roles, ["reviewer"]);
    expect(
        app.get_as(&us_token, &format!("/v1/accounts/{}", person.id))
            .await,
        200,
    )
    .await;
}

#[tokio::test]
async fn an_approved_exchange_gives_nothing_before_its_start_or_after_its_end() {
    let Exchanged {
        app,
        us_admin,
        uk_admin,
        person,
        us_token,
        uk_token,
        person_token,
    } = two_institutes().await;
    // Upcoming: approved, starting in an hour.
    let upcoming = expect(
        app.post_as(
            &uk_token,
            "/v1/exchanges",
            &proposal(
                person.id,
                "UK",
                "US",
                &["author"],
                now() + minutes(60),
                now() + minutes(600),
            ),
        )
        .await,
        201,
    )
    .await;
    let approved = expect(
        app.post_as(
            &us_token,
            &format!(
                "/v1/exchanges/{}/approve",
                upcoming["id"].as_str().expect("id")
            ),
            &json!({}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(approved["phase"], "upcoming");
    // Past: approved, and over an hour ago (written directly: the API refuses past windows).
    let past = uuid::Uuid::now_v7();
    let (us, uk) = (app.institute("US").await, app.institute("UK").await);
    sqlx::query(
        "insert into exchanges (id, account_id, home_institute_id, host_institute_id, roles, starts_at, ends_at,
                                status, proposed_by, proposed_by_institute_id, decided_by, decided_at)
         values ($1, $2, $3, $4, array['admin'], now() - interval '2 days', now() - interval '1 hour',
                 'approved', $5, $3, $6, now() - interval '3 days')",
    )
    .bind(past)
    .bind(person.id)
    .bind(uk)
    .bind(us)
    .bind(uk_admin.id)
    .bind(us_admin.id)
    .execute(&app.pool)
    .await
    .expect("a past exchange");
    let read = expect(
        app.get_as(&us_token, &format!("/v1/exchanges/{past}"))
            .await,
        200,
    )
    .await;
    assert_eq!(read["phase"], "ended");

    assert_eq!(
        roles_now(&app, &person_token).await,
        [("UK".to_owned(), "viewer".to_owned(), None)]
    );
    problem(
        app.get_as(&us_token, &format!("/v1/accounts/{}", person.id))
            .await,
        404,
    )
    .await;
    assert!(
        !item_ids(&expect(app.get_as(&us_token, "/v1/accounts").await, 200).await)
            .contains(&person.id)
    );
    // The person's past admin role gives them nothing at the US now.
    let listed = expect(app.get_as(&person_token, "/v1/accounts").await, 200).await;
    assert_eq!(item_ids(&listed), Vec::<uuid::Uuid>::new());
    // Over is over: neither approved again nor ended.
    problem(
        app.post_as(&us_token, &format!("/v1/exchanges/{past}/end"), &json!({}))
            .await,
        409,
    )
    .await;
    assert_eq!(exchange_status(&app, past).await, "approved");
}

// ---------------------------------------------------------------------------------------
// Two requests at once

/// Holds a row lock (`lock_sql`, a `select … for update` of the row `id`) on a connection
/// of its own while `requests` run, and releases it once `waiters` backends wait on a
/// lock: the requests have all read the row and now queue to write it.
async fn with_row_locked<T>(
    app: &TestApp,
    lock_sql: &str,
    id: uuid::Uuid,
    waiters: i64,
    requests: impl std::future::Future<Output = T>,
) -> T {
    use sqlx::Connection;
    let mut locker = sqlx::PgConnection::connect_with(&app.db.options)
        .await
        .expect("connect");
    let mut watcher = sqlx::PgConnection::connect_with(&app.db.options)
        .await
        .expect("connect");
    sqlx::raw_sql("begin")
        .execute(&mut locker)
        .await
        .expect("begin");
    sqlx::query(lock_sql)
        .bind(id)
        .execute(&mut locker)
        .await
        .expect("lock the row");
    let release = async move {
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "select count(*) from pg_stat_activity
                 where datname = current_database() and wait_event_type = 'Lock'",
            )
            .fetch_one(&mut watcher)
            .await
            .expect("waiting backends");
            if waiting >= waiters {
                break;
            }
            tokio::task::yield_now().await;
        }
        sqlx::raw_sql("commit")
            .execute(&mut locker)
            .await
            .expect("release the row");
    };
    let both = async { tokio::join!(requests, release).0 };
    tokio::time::timeout(std::time::Duration::from_secs(60), both)
        .await
        .expect("the requests reach the locked row")
}

#[tokio::test]
async fn two_patches_with_the_same_etag_at_once_let_only_one_through() {
    let app = TestApp::spawn().await;
    let admin = app.person("admin@nist.gov", "US", &[Role::Admin]).await;
    let grace = app.person("grace@nist.gov", "US", &[Role::Viewer]).await;
    let token = app.login(&admin).await;
    let path = format!("/v1/accounts/{}", grace.id);
    let tag = etag_of(&app.get_as(&token, &path).await);

    let first_body = json!({"display_name": "First Writer"});
    let second_body = json!({"display_name": "Second Writer"});
    let (first, second) = with_row_locked(
        &app,
        "select 1 from accounts where id = $1 for update",
        grace.id,
        2,
        async {
            tokio::join!(
                patch_as(&app, &token, &path, Some(&tag), &first_body),
                patch_as(&app, &token, &path, Some(&tag), &second_body)
            )
        },
    )
    .await;
    let (first, second) = (first.status().as_u16(), second.status().as_u16());
    let name: String = sqlx::query_scalar("select display_name from accounts where id = $1")
        .bind(grace.id)
        .fetch_one(&app.pool)
        .await
        .expect("name");
    // Both read the same version: the second write must not silently replace the first.
    let mut statuses = [first, second];
    statuses.sort();
    assert_eq!(
        statuses,
        [200, 412],
        "first {first}, second {second}; the name is now {name:?}"
    );
    let winner = if first == 200 {
        "First Writer"
    } else {
        "Second Writer"
    };
    assert_eq!(name, winner);
}

#[tokio::test]
async fn two_revokes_of_one_membership_at_once_answer_200_and_409() {
    let app = TestApp::spawn().await;
    let admin = app.person("admin@nist.gov", "US", &[Role::Admin]).await;
    let grace = app.person("grace@nist.gov", "US", &[Role::Viewer]).await;
    let token = app.login(&admin).await;
    let membership: uuid::Uuid =
        sqlx::query_scalar("select id from memberships where account_id = $1")
            .bind(grace.id)
            .fetch_one(&app.pool)
            .await
            .expect("membership");
    let path = format!("/v1/accounts/{}/memberships/{membership}/revoke", grace.id);
    let empty = json!({});

    let (first, second) = with_row_locked(
        &app,
        "select 1 from memberships where id = $1 for update",
        membership,
        2,
        async {
            tokio::join!(
                app.post_as(&token, &path, &empty),
                app.post_as(&token, &path, &empty)
            )
        },
    )
    .await;
    let mut statuses = [first.status().as_u16(), second.status().as_u16()];
    statuses.sort();
    assert_eq!(
        statuses,
        [200, 409],
        "one revokes, the other finds it revoked"
    );
    assert_eq!(
        count(&app, &format!("select count(*) from memberships where id = '{membership}' and revoked_at is not null")).await,
        1
    );
}
