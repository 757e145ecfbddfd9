//! Governance stays home: the probe's story of an exchanged admin who renewed their own
//! exchange and took over the host's administration, step by step. Every refused step
//! answers 403 and leaves the identity tables as they were.

use chrono::{Duration, Utc};
use jointeval_domain::Role;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{TestApp, expect, identity_digest, problem};

fn proposal(account: Uuid, home: &str, host: &str, lasting: Duration) -> Value {
    let now = Utc::now();
    json!({"account_id": account, "home_institute": home, "host_institute": host,
           "roles": ["admin"], "starts_at": (now - Duration::minutes(1)).to_rfc3339(),
           "ends_at": (now + lasting).to_rfc3339()})
}

/// `POST` as `token`, expecting a refusal of the policy that changes nothing.
async fn refused(app: &TestApp, token: &str, path: &str, body: &Value) -> String {
    let before = identity_digest(&app.pool).await;
    let answer = problem(app.post_as(token, path, body).await, 403).await;
    assert_eq!(
        identity_digest(&app.pool).await,
        before,
        "{path} was refused but wrote"
    );
    answer["detail"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn an_exchanged_admin_cannot_renew_their_exchange_or_govern_the_host() {
    let app = TestApp::spawn().await;
    let us_admin = app.person("admin@nist.gov", "US", &[Role::Admin]).await;
    let us_second_admin = app.person("deputy@nist.gov", "US", &[Role::Admin]).await;
    let us_viewer = app.person("viewer@nist.gov", "US", &[Role::Viewer]).await;
    let uk_admin = app.person("admin@aisi.gov.uk", "UK", &[Role::Admin]).await;
    let p = app.person("p@aisi.gov.uk", "UK", &[Role::Viewer]).await;
    let q = app.person("q@aisi.gov.uk", "UK", &[Role::Viewer]).await;
    let (us_token, uk_token) = (app.login(&us_admin).await, app.login(&uk_admin).await);

    // The UK proposes P to the US as an admin for an hour; the US approves.
    let first = expect(
        app.post_as(
            &uk_token,
            "/v1/exchanges",
            &proposal(p.id, "UK", "US", Duration::hours(1)),
        )
        .await,
        201,
    )
    .await;
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
    let p_token = app.login(&p).await;
    let me = expect(app.get_as(&p_token, "/v1/me").await, 200).await;
    let us_roles: Vec<&Value> = me["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .filter(|r| r["institute"] == "US")
        .collect();
    assert_eq!(us_roles.len(), 1, "{me}");
    assert_eq!(us_roles[0]["role"], "admin");
    assert!(us_roles[0]["exchange_id"].is_string(), "{me}");
    let us_permissions = me["permissions"]
        .as_array()
        .expect("permissions")
        .iter()
        .find(|p| p["institute"] == "US")
        .expect("US permissions")["actions"]
        .clone();
    assert!(
        !us_permissions
            .as_array()
            .expect("actions")
            .contains(&json!("exchanges:manage")),
        "{me}"
    );

    // P proposes, as a US admin, a year of the same for themselves: refused.
    let detail = refused(
        &app,
        &p_token,
        "/v1/exchanges",
        &proposal(p.id, "UK", "US", Duration::days(365)),
    )
    .await;
    assert!(detail.contains("home"), "{detail}");
    // Nor may P bring in a second UK person as a US admin in the US's name.
    refused(
        &app,
        &p_token,
        "/v1/exchanges",
        &proposal(q.id, "UK", "US", Duration::days(365)),
    )
    .await;

    // The UK proposes Q as a US admin: P may not approve it for the US; a US admin may.
    let second = expect(
        app.post_as(
            &uk_token,
            "/v1/exchanges",
            &proposal(q.id, "UK", "US", Duration::days(30)),
        )
        .await,
        201,
    )
    .await;
    let second_id = second["id"].as_str().expect("id").to_owned();
    refused(
        &app,
        &p_token,
        &format!("/v1/exchanges/{second_id}/approve"),
        &json!({}),
    )
    .await;
    refused(
        &app,
        &p_token,
        &format!("/v1/exchanges/{second_id}/reject"),
        &json!({}),
    )
    .await;
    refused(
        &app,
        &p_token,
        &format!("/v1/exchanges/{}/end", first["id"].as_str().expect("id")),
        &json!({}),
    )
    .await;

    // The US's own administration: P may not disable, reset or demote its admins, make a
    // US person an admin, or create US accounts.
    refused(
        &app,
        &p_token,
        &format!("/v1/accounts/{}/disable", us_second_admin.id),
        &json!({}),
    )
    .await;
    refused(
        &app,
        &p_token,
        &format!("/v1/accounts/{}/reset-password", us_second_admin.id),
        &json!({}),
    )
    .await;
    let admin_membership: Uuid =
        sqlx::query_scalar("select id from memberships where account_id = $1 and role = 'admin'")
            .bind(us_second_admin.id)
            .fetch_one(&app.pool)
            .await
            .expect("membership");
    refused(
        &app,
        &p_token,
        &format!(
            "/v1/accounts/{}/memberships/{admin_membership}/revoke",
            us_second_admin.id
        ),
        &json!({}),
    )
    .await;
    refused(
        &app,
        &p_token,
        &format!("/v1/accounts/{}/memberships", us_viewer.id),
        &json!({"role": "admin"}),
    )
    .await;
    refused(
        &app,
        &p_token,
        "/v1/accounts",
        &json!({"kind": "person", "email": "sock@nist.gov", "display_name": "Sock Puppet"}),
    )
    .await;

    // The day-to-day of the host stays P's to do: a role that is not admin.
    expect(
        app.post_as(
            &p_token,
            &format!("/v1/accounts/{}/memberships", us_viewer.id),
            &json!({"role": "author"}),
        )
        .await,
        201,
    )
    .await;

    // After all that, the US's admins are as they were, and only the US's own admin
    // makes Q a US admin.
    let admins: i64 = sqlx::query_scalar(
        "select count(*) from memberships m join accounts a on a.id = m.account_id
         where m.role = 'admin' and m.revoked_at is null and a.status = 'active'
           and a.id = any($1)",
    )
    .bind(vec![us_admin.id, us_second_admin.id])
    .fetch_one(&app.pool)
    .await
    .expect("admins");
    assert_eq!(admins, 2);
    expect(
        app.post_as(
            &us_token,
            &format!("/v1/exchanges/{second_id}/approve"),
            &json!({}),
        )
        .await,
        200,
    )
    .await;
}

#[tokio::test]
async fn nobody_proposes_or_approves_an_exchange_of_themselves() {
    let app = TestApp::spawn().await;
    let us_admin = app.person("admin@nist.gov", "US", &[Role::Admin]).await;
    let uk_admin = app.person("admin@aisi.gov.uk", "UK", &[Role::Admin]).await;
    let uk_token = app.login(&uk_admin).await;

    // A UK admin proposing their own secondment to the US.
    let detail = refused(
        &app,
        &uk_token,
        "/v1/exchanges",
        &proposal(uk_admin.id, "UK", "US", Duration::days(30)),
    )
    .await;
    assert!(detail.contains("themselves"), "{detail}");

    // A proposal of oneself written before the rule existed stands undecidable.
    let (us, uk) = (app.institute("US").await, app.institute("UK").await);
    let mut conn = app.pool.acquire().await.expect("connection");
    let legacy = jointeval_store::exchanges::insert(
        &mut conn,
        &jointeval_store::exchanges::NewExchange {
            account_id: uk_admin.id,
            home_institute_id: uk,
            host_institute_id: us,
            roles: &[Role::Admin],
            starts_at: Utc::now() + Duration::days(1),
            ends_at: Utc::now() + Duration::days(300),
            proposed_by: uk_admin.id,
            proposed_by_institute_id: uk,
        },
    )
    .await
    .expect("legacy proposal");
    drop(conn);
    let us_token = app.login(&us_admin).await;
    let detail = refused(
        &app,
        &us_token,
        &format!("/v1/exchanges/{}/approve", legacy.id),
        &json!({}),
    )
    .await;
    assert!(detail.contains("themselves"), "{detail}");
}
