//! Logging in, the tokens, and what every authenticated request checks.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jointeval_domain::{Role, Scope};
use jointeval_store::PgPool;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::support::{PASSWORD, TestApp, problem};

fn decode_part(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).expect("a JWT part");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("json")
}

async fn login_form(app: &TestApp, username: &str, password: &str) -> reqwest::Response {
    app.client
        .post(app.url("/v1/auth/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", username),
            ("password", password),
        ])
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn a_password_login_answers_a_short_lived_eddsa_access_token() {
    let app = TestApp::spawn().await;
    let user = app.person("ada@aisi.gov.uk", "UK", &[Role::Author]).await;
    let response = login_form(&app, "ADA@aisi.gov.uk", PASSWORD).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    let token = body["access_token"].as_str().expect("token");

    let header = decode_part(token, 0);
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], "at+jwt");
    let claims = decode_part(token, 1);
    assert_eq!(claims["iss"], "jointeval");
    assert_eq!(claims["aud"], "jointeval-api");
    assert_eq!(claims["sub"], user.id.to_string());
    assert!(claims["jti"].is_string());
    assert_eq!(
        claims["exp"].as_u64().expect("exp") - claims["iat"].as_u64().expect("iat"),
        900
    );
    assert_eq!(claims["nbf"], claims["iat"]);

    let jwks: Value = app
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .expect("json");
    let key = &jwks["keys"][0];
    assert_eq!(key["kid"], header["kid"]);
    assert_eq!(
        (
            key["kty"].as_str(),
            key["crv"].as_str(),
            key["alg"].as_str()
        ),
        (Some("OKP"), Some("Ed25519"), Some("EdDSA"))
    );
    // The signature verifies with the published key, by an independent check.
    let decoding =
        jsonwebtoken::DecodingKey::from_ed_components(key["x"].as_str().expect("x")).expect("key");
    let mut validation = jsonwebtoken::Validation::new(Algorithm::EdDSA);
    validation.set_audience(&["jointeval-api"]);
    jsonwebtoken::decode::<Value>(token, &decoding, &validation).expect("valid signature");
}

#[tokio::test]
async fn the_token_request_may_be_json() {
    let app = TestApp::spawn().await;
    app.person("ada@aisi.gov.uk", "UK", &[Role::Viewer]).await;
    let response = app
        .client
        .post(app.url("/v1/auth/token"))
        .json(
            &json!({"grant_type": "password", "username": "ada@aisi.gov.uk", "password": PASSWORD}),
        )
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn unknown_accounts_wrong_passwords_and_disabled_accounts_get_one_answer() {
    let app = TestApp::spawn().await;
    let user = app.person("ada@aisi.gov.uk", "UK", &[Role::Viewer]).await;
    let disabled = app.person("old@aisi.gov.uk", "UK", &[Role::Viewer]).await;
    set_status(&app.pool, disabled.id, "disabled").await;

    let mut answers = Vec::new();
    for (username, password) in [
        ("nobody@aisi.gov.uk", PASSWORD),
        (user.email.as_str(), "wrong password entirely"),
        (disabled.email.as_str(), PASSWORD),
    ] {
        let response = login_form(&app, username, password).await;
        answers.push(problem(response, 401).await);
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[1], answers[2]);
    assert_eq!(
        answers[0]["type"],
        "urn:jointeval:problem:invalid-credentials"
    );
}

#[tokio::test]
async fn malformed_token_requests_are_refused_by_name() {
    let app = TestApp::spawn().await;
    let post_form = |pairs: Vec<(&'static str, &'static str)>| {
        app.client
            .post(app.url("/v1/auth/token"))
            .form(&pairs)
            .send()
    };
    let grant = problem(
        post_form(vec![("grant_type", "implicit")])
            .await
            .expect("send"),
        400,
    )
    .await;
    assert_eq!(
        grant["type"],
        "urn:jointeval:problem:unsupported-grant-type"
    );
    let missing = problem(
        post_form(vec![("grant_type", "password"), ("username", "a@b.org")])
            .await
            .expect("send"),
        422,
    )
    .await;
    assert_eq!(missing["errors"][0]["field"], "password");
    let unknown = problem(
        post_form(vec![
            ("grant_type", "password"),
            ("username", "a@b.org"),
            ("password", "x"),
            ("role", "admin"),
        ])
        .await
        .expect("send"),
        422,
    )
    .await;
    assert_eq!(unknown["errors"][0]["field"], "role");
    let text = app
        .client
        .post(app.url("/v1/auth/token"))
        .header("content-type", "text/plain")
        .body("grant_type=password")
        .send()
        .await
        .expect("send");
    problem(text, 415).await;
    let count: i64 = sqlx::query_scalar("select count(*) from login_failures")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(count, 0, "refused requests are not login attempts");
}

async fn set_status(pool: &PgPool, id: uuid::Uuid, status: &str) {
    sqlx::query("update accounts set status = $2 where id = $1")
        .bind(id)
        .bind(status)
        .execute(pool)
        .await
        .expect("update status");
}

/// Signs `claims` with the service's own private key, under `header`.
async fn sign(pool: &PgPool, header: &Header, claims: &Value) -> String {
    let (kid, der): (String, Vec<u8>) =
        sqlx::query_as("select kid, private_key from signing_keys where retired_at is null")
            .fetch_one(pool)
            .await
            .expect("the signing key");
    let mut header = header.clone();
    if header.kid.is_none() {
        header.kid = Some(kid);
    }
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(&der)).expect("sign")
}

fn good_claims(sub: uuid::Uuid) -> Value {
    let now = jsonwebtoken::get_current_timestamp();
    json!({"iss": "jointeval", "aud": "jointeval-api", "sub": sub.to_string(), "iat": now,
           "nbf": now, "exp": now + 600, "jti": "test"})
}

fn at_jwt() -> Header {
    let mut header = Header::new(Algorithm::EdDSA);
    header.typ = Some("at+jwt".into());
    header
}

#[tokio::test]
async fn every_kind_of_bad_token_is_refused_with_401() {
    let app = TestApp::spawn().await;
    let user = app.person("ada@aisi.gov.uk", "UK", &[Role::Admin]).await;
    let pool = &app.pool;
    let claims = good_claims(user.id);
    let good = sign(pool, &at_jwt(), &claims).await;
    assert_eq!(
        app.get_as(&good, "/v1/me").await.status(),
        200,
        "the forged-by-us control token works"
    );

    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims.clone();
        f(&mut c);
        c
    };
    let now = jsonwebtoken::get_current_timestamp();
    let public: Vec<u8> = sqlx::query_scalar("select public_key from signing_keys")
        .fetch_one(pool)
        .await
        .expect("public key");

    let mut cases: Vec<(&str, String)> = vec![
        (
            "expired",
            sign(
                pool,
                &at_jwt(),
                &with(&|c| {
                    c["exp"] = json!(now - 3600);
                    c["iat"] = json!(now - 4000);
                    c["nbf"] = json!(now - 4000);
                }),
            )
            .await,
        ),
        (
            "not yet valid",
            sign(pool, &at_jwt(), &with(&|c| c["nbf"] = json!(now + 3600))).await,
        ),
        (
            "string exp",
            sign(
                pool,
                &at_jwt(),
                &with(&|c| c["exp"] = json!((now + 600).to_string())),
            )
            .await,
        ),
        (
            "no exp",
            sign(
                pool,
                &at_jwt(),
                &with(&|c| {
                    c.as_object_mut().expect("obj").remove("exp");
                }),
            )
            .await,
        ),
        (
            "no nbf",
            sign(
                pool,
                &at_jwt(),
                &with(&|c| {
                    c.as_object_mut().expect("obj").remove("nbf");
                }),
            )
            .await,
        ),
        (
            "no iss",
            sign(
                pool,
                &at_jwt(),
                &with(&|c| {
                    c.as_object_mut().expect("obj").remove("iss");
                }),
            )
            .await,
        ),
        (
            "no aud",
            sign(
                pool,
                &at_jwt(),
                &with(&|c| {
                    c.as_object_mut().expect("obj").remove("aud");
                }),
            )
            .await,
        ),
        (
            "no sub",
            sign(
                pool,
                &at_jwt(),
                &with(&|c| {
                    c.as_object_mut().expect("obj").remove("sub");
                }),
            )
            .await,
        ),
        (
            "wrong aud",
            sign(pool, &at_jwt(), &with(&|c| c["aud"] = json!("another-api"))).await,
        ),
        (
            "wrong iss",
            sign(
                pool,
                &at_jwt(),
                &with(&|c| c["iss"] = json!("https://evil.example")),
            )
            .await,
        ),
        (
            "sub not an account",
            sign(pool, &at_jwt(), &with(&|c| c["sub"] = json!("root"))).await,
        ),
        (
            "unknown sub",
            sign(
                pool,
                &at_jwt(),
                &with(&|c| c["sub"] = json!(uuid::Uuid::now_v7().to_string())),
            )
            .await,
        ),
        (
            "typ JWT",
            sign(
                pool,
                &{
                    let mut h = at_jwt();
                    h.typ = Some("JWT".into());
                    h
                },
                &claims,
            )
            .await,
        ),
        (
            "no typ",
            sign(
                pool,
                &{
                    let mut h = at_jwt();
                    h.typ = None;
                    h
                },
                &claims,
            )
            .await,
        ),
        (
            "jku header",
            sign(
                pool,
                &{
                    let mut h = at_jwt();
                    h.jku = Some("https://evil.example/jwks".into());
                    h
                },
                &claims,
            )
            .await,
        ),
        (
            "x5u header",
            sign(
                pool,
                &{
                    let mut h = at_jwt();
                    h.x5u = Some("https://evil.example/cert".into());
                    h
                },
                &claims,
            )
            .await,
        ),
        (
            "unknown kid",
            sign(
                pool,
                &{
                    let mut h = at_jwt();
                    h.kid = Some("someone-elses-key".into());
                    h
                },
                &claims,
            )
            .await,
        ),
    ];
    // alg none: no signature at all.
    let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"at+jwt"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    cases.push(("alg none", format!("{none_header}.{body}.")));
    // HS256 keyed with the public key: the classic algorithm confusion.
    let mut hs = Header::new(Algorithm::HS256);
    hs.typ = Some("at+jwt".into());
    hs.kid = decode_part(&good, 0)["kid"].as_str().map(str::to_owned);
    cases.push((
        "HS256 with the public key",
        jsonwebtoken::encode(&hs, &claims, &EncodingKey::from_secret(&public)).expect("hs"),
    ));
    // A valid token with its payload swapped for another account's.
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    parts[1] = URL_SAFE_NO_PAD
        .encode(with(&|c| c["sub"] = json!(uuid::Uuid::nil().to_string())).to_string());
    cases.push(("tampered payload", parts.join(".")));
    cases.push(("garbage", "not.a.token".into()));
    // An Ed25519 token from a key of our own making.
    let foreign = ed25519_dalek_key();
    cases.push((
        "foreign key",
        jsonwebtoken::encode(
            &{
                let mut h = at_jwt();
                h.kid = decode_part(&good, 0)["kid"].as_str().map(str::to_owned);
                h
            },
            &claims,
            &EncodingKey::from_ed_der(&foreign),
        )
        .expect("sign"),
    ));

    for (name, token) in cases {
        let response = app.get_as(&token, "/v1/me").await;
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().expect("ascii").to_owned())
            .unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer") && challenge.contains(r#"error="invalid_token""#),
            "{name}: {challenge}"
        );
        problem(response, 401).await;
    }
}

/// A PKCS#8 Ed25519 key that is not the service's.
fn ed25519_dalek_key() -> Vec<u8> {
    // RFC 8410's example private key.
    let pem_body = "MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC";
    base64::engine::general_purpose::STANDARD
        .decode(pem_body)
        .expect("der")
}

#[tokio::test]
async fn a_disabled_account_loses_access_on_its_next_request() {
    let app = TestApp::spawn().await;
    let user = app.person("ada@aisi.gov.uk", "UK", &[Role::Viewer]).await;
    let token = app.login(&user).await;
    assert_eq!(app.get_as(&token, "/v1/me").await.status(), 200);
    set_status(&app.pool, user.id, "disabled").await;
    let response = app.get_as(&token, "/v1/institutes").await;
    problem(response, 401).await;
}

#[tokio::test]
async fn an_ended_membership_is_gone_from_the_next_request() {
    let app = TestApp::spawn().await;
    let user = app
        .person("ada@aisi.gov.uk", "UK", &[Role::Reviewer, Role::Viewer])
        .await;
    let token = app.login(&user).await;
    let me: Value = app
        .get_as(&token, "/v1/me")
        .await
        .json()
        .await
        .expect("json");
    let roles: Vec<&str> = me["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .map(|r| r["role"].as_str().expect("role"))
        .collect();
    assert_eq!(roles.len(), 2, "{me}");
    assert!(
        me["permissions"][0]["actions"]
            .as_array()
            .expect("actions")
            .contains(&json!("protocols:review"))
    );

    sqlx::query(
        "update memberships set valid_until = now() where account_id = $1 and role = 'reviewer'",
    )
    .bind(user.id)
    .execute(&app.pool)
    .await
    .expect("end membership");
    let me: Value = app
        .get_as(&token, "/v1/me")
        .await
        .json()
        .await
        .expect("json");
    let roles: Vec<&str> = me["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .map(|r| r["role"].as_str().expect("role"))
        .collect();
    assert_eq!(roles, ["viewer"]);
    assert!(
        !me["permissions"][0]["actions"]
            .as_array()
            .expect("actions")
            .contains(&json!("protocols:review"))
    );
}

#[tokio::test]
async fn me_shows_the_account_its_institute_and_what_it_may_do() {
    let app = TestApp::spawn().await;
    let user = app.person("ada@aisi.gov.uk", "UK", &[Role::Admin]).await;
    let token = app.login(&user).await;
    let me: Value = app
        .get_as(&token, "/v1/me")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(me["account"]["id"], user.id.to_string());
    assert_eq!(me["account"]["email"], "ada@aisi.gov.uk");
    assert_eq!(me["home_institute"], "UK");
    assert_eq!(me["roles"][0]["institute"], "UK");
    assert_eq!(me["memberships"][0]["role"], "admin");
    assert_eq!(me["permissions"][0]["institute"], "UK");
    assert!(
        me["permissions"][0]["actions"]
            .as_array()
            .expect("actions")
            .contains(&json!("accounts:manage"))
    );
    assert_eq!(me["must_change_password"], false);
    assert!(!me.to_string().contains("argon2"), "no hash in {me}");
}

#[tokio::test]
async fn changing_ones_password_needs_the_current_one() {
    let app = TestApp::spawn().await;
    let user = app.person("ada@aisi.gov.uk", "UK", &[Role::Viewer]).await;
    let token = app.login(&user).await;
    let change =
        |current: &str, new: &str| json!({"current_password": current, "new_password": new});

    let wrong = problem(
        app.post_as(
            &token,
            "/v1/me/password",
            &change("not it at all", "a brand new passphrase"),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(wrong["errors"][0]["field"], "current_password");
    let short = problem(
        app.post_as(&token, "/v1/me/password", &change(PASSWORD, "short"))
            .await,
        422,
    )
    .await;
    assert_eq!(short["errors"][0]["field"], "new_password");
    let long = problem(
        app.post_as(
            &token,
            "/v1/me/password",
            &change(PASSWORD, &"x".repeat(129)),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(long["errors"][0]["field"], "new_password");
    let extra = problem(
        app.post_as(&token, "/v1/me/password", &json!({"current_password": PASSWORD, "new_password": "a brand new passphrase", "status": "active"})).await,
        422,
    )
    .await;
    assert_eq!(extra["errors"][0]["field"], "status");
    assert_eq!(
        login_form(&app, &user.email, PASSWORD).await.status(),
        200,
        "nothing changed yet"
    );

    let ok = app
        .post_as(
            &token,
            "/v1/me/password",
            &change(PASSWORD, "a brand new passphrase"),
        )
        .await;
    assert_eq!(ok.status(), 204);
    assert_eq!(login_form(&app, &user.email, PASSWORD).await.status(), 401);
    assert_eq!(
        login_form(&app, &user.email, "a brand new passphrase")
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn repeated_failures_for_an_account_are_throttled() {
    let app = TestApp::spawn().await;
    let user = app.person("ada@aisi.gov.uk", "UK", &[Role::Viewer]).await;
    let other = app.person("grace@aisi.gov.uk", "UK", &[Role::Viewer]).await;
    for _ in 0..5 {
        assert_eq!(
            login_form(&app, &user.email, "a wrong password!")
                .await
                .status(),
            401
        );
    }
    // Even the right password waits now.
    let throttled = login_form(&app, &user.email, PASSWORD).await;
    let retry_after: u64 = throttled.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    let body = problem(throttled, 429).await;
    assert_eq!(body["type"], "urn:jointeval:problem:login-throttled");
    // Another account from the same address is not locked out by them.
    assert_eq!(login_form(&app, &other.email, PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn failures_from_one_address_are_throttled_across_accounts() {
    let app = TestApp::with_auth(
        crate::support::TestDatabase::migrated().await,
        jointeval_api::HttpSettings::default(),
        jointeval_api::AuthSettings {
            max_failures_per_addr: 3,
            ..jointeval_api::AuthSettings::default()
        },
    )
    .await;
    let user = app.person("ada@aisi.gov.uk", "UK", &[Role::Viewer]).await;
    for i in 0..3 {
        let response =
            login_form(&app, &format!("guess{i}@aisi.gov.uk"), "a wrong password!").await;
        assert_eq!(response.status(), 401);
    }
    problem(login_form(&app, &user.email, PASSWORD).await, 429).await;
}

#[tokio::test]
async fn tokens_of_a_rotated_key_verify_until_they_expire() {
    let app = TestApp::spawn().await;
    let user = app.person("ada@aisi.gov.uk", "UK", &[Role::Viewer]).await;
    let before = app.login(&user).await;
    let new_kid = jointeval_api::auth::tokens::rotate_signing_key(&app.pool)
        .await
        .expect("rotate");
    let after = app.login(&user).await;
    assert_eq!(decode_part(&after, 0)["kid"], new_kid.as_str());
    assert_ne!(decode_part(&before, 0)["kid"], new_kid.as_str());
    assert_eq!(app.get_as(&before, "/v1/me").await.status(), 200);
    assert_eq!(app.get_as(&after, "/v1/me").await.status(), 200);
    let jwks: Value = app
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(jwks["keys"].as_array().expect("keys").len(), 2);

    // Once the old key retired longer ago than a token lives, its tokens are refused.
    sqlx::query("update signing_keys set retired_at = now() - interval '1 hour' where retired_at is not null")
        .execute(&app.pool)
        .await
        .expect("age the old key");
    problem(app.get_as(&before, "/v1/me").await, 401).await;
    let jwks: Value = app
        .get("/.well-known/jwks.json")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(jwks["keys"].as_array().expect("keys").len(), 1);
}

#[tokio::test]
async fn service_accounts_get_tokens_with_at_most_their_scopes() {
    let app = TestApp::spawn().await;
    let id = app
        .service(
            "UK",
            "jes_the-secret",
            &[Scope::RunsWrite, Scope::ResultsWrite],
            &[],
        )
        .await;
    let ask = |secret: &'static str, scope: Option<&'static str>| {
        let mut form = vec![
            ("grant_type", "client_credentials".to_owned()),
            ("client_id", id.to_string()),
            ("client_secret", secret.to_owned()),
        ];
        if let Some(scope) = scope {
            form.push(("scope", scope.to_owned()));
        }
        app.client
            .post(app.url("/v1/auth/token"))
            .form(&form)
            .send()
    };
    let all: Value = ask("jes_the-secret", None)
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(all["scope"], "runs:write results:write");
    let token = all["access_token"].as_str().expect("token");
    assert_eq!(decode_part(token, 1)["scope"], "runs:write results:write");
    let me: Value = app
        .get_as(token, "/v1/me")
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(me["account"]["kind"], "service");
    assert_eq!(me["scopes"], json!(["runs:write", "results:write"]));

    let narrow: Value = ask("jes_the-secret", Some("runs:write"))
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(narrow["scope"], "runs:write");
    let more = problem(
        ask("jes_the-secret", Some("runs:write protocols:read"))
            .await
            .expect("send"),
        400,
    )
    .await;
    assert_eq!(more["type"], "urn:jointeval:problem:invalid-scope");
    problem(ask("jes_wrong", None).await.expect("send"), 401).await;

    // A person's id is not a client id.
    let person = app.person("ada@aisi.gov.uk", "UK", &[Role::Viewer]).await;
    let response = app
        .client
        .post(app.url("/v1/auth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &person.id.to_string()),
            ("client_secret", PASSWORD),
        ])
        .send()
        .await
        .expect("send");
    problem(response, 401).await;
    // Nor does a service account change a password.
    let forbidden = app
        .post_as(
            token,
            "/v1/me/password",
            &json!({"current_password": "x", "new_password": "a brand new passphrase"}),
        )
        .await;
    problem(forbidden, 403).await;
}

/// `exp`, `nbf` and `iat` mean what they say, give or take the clock skew allowed
/// (`--token-clock-skew`, here 3 s): the probe's tokens of 27-29 s past `exp` worked.
#[tokio::test]
async fn token_times_are_exact_within_the_clock_skew_allowance() {
    let app = TestApp::with_auth(
        crate::support::TestDatabase::migrated().await,
        jointeval_api::HttpSettings::default(),
        jointeval_api::AuthSettings {
            tokens: jointeval_api::TokenSettings {
                clock_skew: std::time::Duration::from_secs(3),
                ..jointeval_api::TokenSettings::default()
            },
            ..jointeval_api::AuthSettings::default()
        },
    )
    .await;
    let admin = app.person("ada@aisi.gov.uk", "UK", &[Role::Admin]).await;
    let now = jsonwebtoken::get_current_timestamp();
    let token = |claim: &'static str, value: u64| {
        let mut claims = good_claims(admin.id);
        claims["iat"] = json!(now - 60);
        claims["nbf"] = json!(now - 60);
        claims[claim] = json!(value);
        let pool = app.pool.clone();
        async move { sign(&pool, &at_jwt(), &claims).await }
    };
    let cases = [
        ("exp", now - 1, 200),
        ("exp", now - 5, 401),
        ("exp", now - 30, 401),
        ("nbf", now + 1, 200),
        ("nbf", now + 5, 401),
        ("nbf", now + 30, 401),
        ("iat", now + 1, 200),
        ("iat", now + 5, 401),
        ("iat", now + 30, 401),
    ];
    for (claim, value, want) in cases {
        let token = token(claim, value).await;
        let offset = value as i64 - now as i64;
        let read = app.get_as(&token, "/v1/me").await;
        assert_eq!(read.status(), want, "{claim} {offset:+} s: a read");
        if want == 401 {
            let header = read.headers()["www-authenticate"]
                .to_str()
                .expect("ascii")
                .to_owned();
            assert!(header.contains(r#"error="invalid_token""#), "{header}");
            problem(read, 401).await;
            // Writes too: nothing is created with such a token.
            let email = format!("{claim}{offset}@aisi.gov.uk");
            let write = app
                .post_as(
                    &token,
                    "/v1/accounts",
                    &json!({"kind": "person", "email": email, "display_name": "Nobody"}),
                )
                .await;
            assert_eq!(write.status(), 401, "{claim} {offset:+} s: a write");
            let created: i64 = sqlx::query_scalar("select count(*) from accounts where email = $1")
                .bind(&email)
                .fetch_one(&app.pool)
                .await
                .expect("count");
            assert_eq!(created, 0);
        }
    }
}

#[tokio::test]
async fn by_default_a_token_seconds_past_exp_is_refused() {
    let app = TestApp::spawn().await;
    let user = app.person("ada@aisi.gov.uk", "UK", &[Role::Viewer]).await;
    let now = jsonwebtoken::get_current_timestamp();
    for past in [5, 27, 29] {
        let mut claims = good_claims(user.id);
        claims["iat"] = json!(now - 600);
        claims["nbf"] = json!(now - 600);
        claims["exp"] = json!(now - past);
        let token = sign(&app.pool, &at_jwt(), &claims).await;
        let body = problem(app.get_as(&token, "/v1/institutes").await, 401).await;
        assert_eq!(body["detail"], "the token is expired", "{past} s past");
    }
}

/// Disabling ends every token for good: enabling again does not bring them back, and
/// neither does any other way back to `active`.
#[tokio::test]
async fn tokens_issued_before_a_disable_stay_refused_after_the_enable() {
    let app = TestApp::spawn().await;
    let admin = app.person("admin@aisi.gov.uk", "UK", &[Role::Admin]).await;
    let user = app.person("ada@aisi.gov.uk", "UK", &[Role::Viewer]).await;
    let admin_token = app.login(&admin).await;
    let old = app.login(&user).await;
    assert_eq!(app.get_as(&old, "/v1/me").await.status(), 200);

    for verb in ["disable", "enable"] {
        let response = app
            .post_as(
                &admin_token,
                &format!("/v1/accounts/{}/{verb}", user.id),
                &json!({}),
            )
            .await;
        assert_eq!(response.status(), 200, "{verb}");
    }
    let body = problem(app.get_as(&old, "/v1/me").await, 401).await;
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("log in again"),
        "{body}"
    );
    // A fresh login works at once, even within the same second.
    let fresh = app.login(&user).await;
    assert_eq!(app.get_as(&fresh, "/v1/me").await.status(), 200);

    // A disable made some other way (here, straight in the database) and an enable
    // through the API: the tokens of before still do not come back.
    set_status(&app.pool, user.id, "disabled").await;
    problem(app.get_as(&fresh, "/v1/me").await, 401).await;
    let enabled = app
        .post_as(
            &admin_token,
            &format!("/v1/accounts/{}/enable", user.id),
            &json!({}),
        )
        .await;
    assert_eq!(enabled.status(), 200);
    problem(app.get_as(&fresh, "/v1/me").await, 401).await;
}

#[tokio::test]
async fn a_password_reset_or_a_secret_rotation_ends_the_tokens_of_before() {
    let app = TestApp::spawn().await;
    let admin = app.person("admin@aisi.gov.uk", "UK", &[Role::Admin]).await;
    let user = app.person("ada@aisi.gov.uk", "UK", &[Role::Viewer]).await;
    let service = app
        .service(
            "UK",
            "jes_lifetime-secret",
            &[Scope::RunsRead],
            &[Role::Viewer],
        )
        .await;
    let admin_token = app.login(&admin).await;
    let person_token = app.login(&user).await;
    let service_token = app.service_login(service, "jes_lifetime-secret").await;
    let etag_before = app
        .get_as(&admin_token, &format!("/v1/accounts/{}", user.id))
        .await
        .headers()["etag"]
        .clone();

    let reset = app
        .post_as(
            &admin_token,
            &format!("/v1/accounts/{}/reset-password", user.id),
            &json!({}),
        )
        .await;
    assert_eq!(reset.status(), 200);
    problem(app.get_as(&person_token, "/v1/me").await, 401).await;
    // The account itself did not change: its version stays.
    let etag_after = app
        .get_as(&admin_token, &format!("/v1/accounts/{}", user.id))
        .await
        .headers()["etag"]
        .clone();
    assert_eq!(etag_before, etag_after);

    let rotated: Value = app
        .post_as(
            &admin_token,
            &format!("/v1/accounts/{service}/rotate-secret"),
            &json!({}),
        )
        .await
        .json()
        .await
        .expect("json");
    problem(app.get_as(&service_token, "/v1/me").await, 401).await;
    let secret = rotated["client_secret"].as_str().expect("secret");
    let renewed = app.service_login(service, secret).await;
    assert_eq!(app.get_as(&renewed, "/v1/me").await.status(), 200);
    // The admin's own token, used for all of it, still works.
    assert_eq!(app.get_as(&admin_token, "/v1/me").await.status(), 200);
}
