//! The authorization matrix: every identity endpoint against every kind of caller
//! (allowed calls change what they should; every refused call gets the documented status
//! and changes nothing in the database), and the reads of runs that depend on what was
//! released (the original log, the transcripts export, the errored samples, comparisons,
//! disagreements and whose answers they show) against every kind of reader.

use chrono::{Duration, Utc};
use jointeval_domain::{Role, Scope};
use jointeval_store::exchanges::NewExchange;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{PASSWORD, TestApp, forge_token, identity_digest};

/// The callers, in the order of every row of expectations below. The UK person during
/// their exchange to the US is a US admin only through it: they work on the US's day to
/// day, never on its governance.
const ACTORS: [&str; 12] = [
    "US admin",
    "UK admin",
    "US viewer",
    "UK person before exchange to US",
    "UK person during exchange to US",
    "UK person after exchange to US",
    "disabled US admin",
    "US service account",
    "anonymous",
    "expired token",
    "forged token",
    "JP admin",
];

struct Cast {
    tokens: Vec<Option<String>>,
    us_admin: Uuid,
    uk_admin: Uuid,
}

/// Everyone in the matrix, logged in (or not) as the table says. The exchanged person's
/// exchange would make them a US admin while it is active.
async fn cast(app: &TestApp) -> Cast {
    let us_admin = app.person("us-admin@nist.gov", "US", &[Role::Admin]).await;
    let uk_admin = app
        .person("uk-admin@aisi.gov.uk", "UK", &[Role::Admin])
        .await;
    let us_viewer = app.person("viewer@nist.gov", "US", &[Role::Viewer]).await;
    let before = app
        .person("before@aisi.gov.uk", "UK", &[Role::Viewer])
        .await;
    let during = app
        .person("during@aisi.gov.uk", "UK", &[Role::Viewer])
        .await;
    let after = app.person("after@aisi.gov.uk", "UK", &[Role::Viewer]).await;
    let disabled = app.person("gone@nist.gov", "US", &[Role::Admin]).await;
    let jp_admin = app.person("admin@aist.go.jp", "JP", &[Role::Admin]).await;
    let (us, uk) = (app.institute("US").await, app.institute("UK").await);
    let now = Utc::now();
    for (person, starts, ends) in [
        (&before, now + Duration::days(1), now + Duration::days(30)),
        (&during, now - Duration::hours(1), now + Duration::days(30)),
        (&after, now - Duration::days(30), now - Duration::days(1)),
    ] {
        app.exchange(
            &NewExchange {
                account_id: person.id,
                home_institute_id: uk,
                host_institute_id: us,
                roles: &[Role::Admin],
                starts_at: starts,
                ends_at: ends,
                proposed_by: uk_admin.id,
                proposed_by_institute_id: uk,
            },
            Some(us_admin.id),
        )
        .await;
    }
    let service = app
        .service(
            "US",
            "jes_matrix-secret",
            &[Scope::RunsWrite],
            &[Role::Admin],
        )
        .await;

    let mut tokens = Vec::new();
    for user in [
        &us_admin, &uk_admin, &us_viewer, &before, &during, &after, &disabled,
    ] {
        tokens.push(Some(app.login(user).await));
    }
    sqlx::query("update accounts set status = 'disabled' where id = $1")
        .bind(disabled.id)
        .execute(&app.pool)
        .await
        .expect("disable");
    tokens.push(Some(app.service_login(service, "jes_matrix-secret").await));
    tokens.push(None);
    tokens.push(Some(forge_token(&app.pool, us_admin.id, -600, true).await));
    tokens.push(Some(forge_token(&app.pool, us_admin.id, 600, false).await));
    tokens.push(Some(app.login(&jp_admin).await));
    Cast {
        tokens,
        us_admin: us_admin.id,
        uk_admin: uk_admin.id,
    }
}

/// What a call is expected to answer.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    /// This status.
    S(u16),
    /// 200 and a list in which the target is present (true) or absent (false).
    Listed(bool),
}
use Want::{Listed, S};

/// A row of expectations, one word per actor: a status, or `L+` / `L-` for a list
/// with or without the target.
fn wants(row: &str) -> Vec<Want> {
    let wants: Vec<Want> = row
        .split_whitespace()
        .map(|w| match w {
            "L+" => Listed(true),
            "L-" => Listed(false),
            status => S(status.parse().expect("a status")),
        })
        .collect();
    assert_eq!(wants.len(), ACTORS.len(), "{row}");
    wants
}

/// The object a call acts on, made fresh for each caller.
struct Target {
    id: Uuid,
    /// A second id: a membership of the target, or an exchange.
    other: Uuid,
    etag: String,
}

/// A person of the US, with a viewer membership, and what they need.
async fn us_person(app: &TestApp, cast: &Cast) -> Target {
    let email = format!("target-{}@nist.gov", Uuid::now_v7().simple());
    let user = app.person(&email, "US", &[Role::Viewer]).await;
    us_person_target(app, cast, user.id).await
}

async fn us_person_target(app: &TestApp, cast: &Cast, id: Uuid) -> Target {
    let membership: Uuid = sqlx::query_scalar("select id from memberships where account_id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .expect("membership");
    let us_admin_token = cast.tokens[0].as_deref().expect("token");
    let read = app
        .get_as(us_admin_token, &format!("/v1/accounts/{id}"))
        .await;
    let etag = read.headers()["etag"].to_str().expect("etag").to_owned();
    Target {
        id,
        other: membership,
        etag,
    }
}

async fn us_service(app: &TestApp, _cast: &Cast) -> Target {
    Target {
        id: app
            .service("US", "jes_matrix-secret", &[Scope::RunsWrite], &[])
            .await,
        other: Uuid::nil(),
        etag: String::new(),
    }
}

/// A UK person, and a proposal by the UK admin to exchange them to the US.
async fn uk_proposal(app: &TestApp, cast: &Cast) -> Target {
    let user = app
        .person(
            &format!("p-{}@aisi.gov.uk", Uuid::now_v7().simple()),
            "UK",
            &[Role::Viewer],
        )
        .await;
    let (us, uk) = (app.institute("US").await, app.institute("UK").await);
    let now = Utc::now();
    let id = app
        .exchange(
            &NewExchange {
                account_id: user.id,
                home_institute_id: uk,
                host_institute_id: us,
                roles: &[Role::Admin],
                starts_at: now + Duration::days(2),
                ends_at: now + Duration::days(20),
                proposed_by: cast.uk_admin,
                proposed_by_institute_id: uk,
            },
            None,
        )
        .await;
    Target {
        id: user.id,
        other: id,
        etag: String::new(),
    }
}

/// A UK person on an active exchange to the US.
async fn uk_active_exchange(app: &TestApp, cast: &Cast) -> Target {
    let user = app
        .person(
            &format!("a-{}@aisi.gov.uk", Uuid::now_v7().simple()),
            "UK",
            &[Role::Viewer],
        )
        .await;
    let (us, uk) = (app.institute("US").await, app.institute("UK").await);
    let now = Utc::now();
    let id = app
        .exchange(
            &NewExchange {
                account_id: user.id,
                home_institute_id: uk,
                host_institute_id: us,
                roles: &[Role::Admin],
                starts_at: now - Duration::hours(1),
                ends_at: now + Duration::days(20),
                proposed_by: cast.uk_admin,
                proposed_by_institute_id: uk,
            },
            Some(cast.us_admin),
        )
        .await;
    Target {
        id: user.id,
        other: id,
        etag: String::new(),
    }
}

/// A UK person without any exchange yet.
async fn uk_person(app: &TestApp, _cast: &Cast) -> Target {
    let user = app
        .person(
            &format!("n-{}@aisi.gov.uk", Uuid::now_v7().simple()),
            "UK",
            &[Role::Viewer],
        )
        .await;
    Target {
        id: user.id,
        other: Uuid::nil(),
        etag: String::new(),
    }
}

/// A US admin, and their admin membership.
async fn us_admin_person(app: &TestApp, cast: &Cast) -> Target {
    let email = format!("admin-{}@nist.gov", Uuid::now_v7().simple());
    let user = app.person(&email, "US", &[Role::Admin]).await;
    let mut target = us_person_target(app, cast, user.id).await;
    target.other = sqlx::query_scalar("select id from memberships where account_id = $1")
        .bind(user.id)
        .fetch_one(&app.pool)
        .await
        .expect("membership");
    target
}

/// A disabled US person.
async fn us_disabled(app: &TestApp, cast: &Cast) -> Target {
    let target = us_person(app, cast).await;
    sqlx::query("update accounts set status = 'disabled' where id = $1")
        .bind(target.id)
        .execute(&app.pool)
        .await
        .expect("disable");
    target
}

/// A US person, and a proposal by the US admin to exchange them to the UK.
async fn us_proposal(app: &TestApp, cast: &Cast) -> Target {
    us_exchange(app, cast, false).await
}

/// A US person on an active exchange to the UK.
async fn us_active_exchange(app: &TestApp, cast: &Cast) -> Target {
    us_exchange(app, cast, true).await
}

async fn us_exchange(app: &TestApp, cast: &Cast, active: bool) -> Target {
    let mut target = us_person(app, cast).await;
    let (us, uk) = (app.institute("US").await, app.institute("UK").await);
    let now = Utc::now();
    let (starts, approver) = if active {
        (now - Duration::hours(1), Some(cast.uk_admin))
    } else {
        (now + Duration::days(2), None)
    };
    target.other = app
        .exchange(
            &NewExchange {
                account_id: target.id,
                home_institute_id: us,
                host_institute_id: uk,
                roles: &[Role::Admin],
                starts_at: starts,
                ends_at: now + Duration::days(20),
                proposed_by: cast.us_admin,
                proposed_by_institute_id: us,
            },
            approver,
        )
        .await;
    target
}

async fn no_target(_app: &TestApp, _cast: &Cast) -> Target {
    Target {
        id: Uuid::nil(),
        other: Uuid::nil(),
        etag: String::new(),
    }
}

type MakeTarget = for<'a> fn(
    &'a TestApp,
    &'a Cast,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Target> + 'a>>;

macro_rules! target {
    ($f:ident) => {{
        fn make<'a>(
            app: &'a TestApp,
            cast: &'a Cast,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Target> + 'a>> {
            Box::pin($f(app, cast))
        }
        make as MakeTarget
    }};
}

struct Row {
    method: Method,
    path: fn(&Target) -> String,
    body: fn(&Target) -> Option<Value>,
    target: MakeTarget,
    /// Whether an allowed call changes the database.
    mutates: bool,
    /// What each of [`ACTORS`] gets, in order (see [`wants`]).
    want: &'static str,
}

/// A proposal to exchange the target from `home` to `host`.
fn exchange_body(home: &str, host: &str, t: &Target) -> Value {
    json!({"account_id": t.id, "home_institute": home, "host_institute": host, "roles": ["viewer"],
           "starts_at": (Utc::now() + Duration::days(3)).to_rfc3339(),
           "ends_at": (Utc::now() + Duration::days(60)).to_rfc3339()})
}

fn rows() -> Vec<Row> {
    // Columns: US admin, UK admin, US viewer, UK before, UK during (a US admin through
    // the exchange), UK after, disabled, service, anonymous, expired, forged, JP admin.
    vec![
        Row {
            method: Method::GET,
            path: |_| "/v1/me".into(),
            body: |_| None,
            target: target!(no_target),
            mutates: false,
            want: "200 200 200 200 200 200 401 200 401 401 401 200",
        },
        Row {
            method: Method::POST,
            path: |_| "/v1/me/password".into(),
            body: |_| {
                Some(
                    json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"}),
                )
            },
            target: target!(no_target),
            mutates: true,
            want: "204 204 204 204 204 204 401 403 401 401 401 204",
        },
        Row {
            method: Method::GET,
            path: |_| "/v1/institutes".into(),
            body: |_| None,
            target: target!(no_target),
            mutates: false,
            want: "200 200 200 200 200 200 401 200 401 401 401 200",
        },
        Row {
            method: Method::POST,
            path: |_| "/v1/accounts".into(),
            body: |_| {
                Some(
                    json!({"kind": "person", "email": format!("new-{}@nist.gov", Uuid::now_v7().simple()),
                                    "display_name": "New Person", "home_institute": "US"}),
                )
            },
            target: target!(no_target),
            mutates: true,
            want: "201 403 403 403 403 403 401 403 401 401 401 403",
        },
        Row {
            method: Method::GET,
            path: |_| "/v1/accounts?limit=200".into(),
            body: |_| None,
            target: target!(us_person),
            mutates: false,
            want: "L+ L- L- L- L+ L- 401 L- 401 401 401 L-",
        },
        Row {
            method: Method::GET,
            path: |t| format!("/v1/accounts/{}", t.id),
            body: |_| None,
            target: target!(us_person),
            mutates: false,
            want: "200 404 404 404 200 404 401 404 401 401 401 404",
        },
        Row {
            method: Method::PATCH,
            path: |t| format!("/v1/accounts/{}", t.id),
            body: |_| Some(json!({"display_name": "Renamed"})),
            target: target!(us_person),
            mutates: true,
            want: "200 404 404 404 200 404 401 404 401 401 401 404",
        },
        Row {
            method: Method::PATCH,
            path: |t| format!("/v1/accounts/{}", t.id),
            body: |_| Some(json!({"email": format!("moved-{}@nist.gov", Uuid::now_v7().simple())})),
            target: target!(us_person),
            mutates: true,
            want: "200 404 404 404 403 404 401 404 401 401 401 404",
        },
        Row {
            method: Method::POST,
            path: |t| format!("/v1/accounts/{}/disable", t.id),
            body: |_| None,
            target: target!(us_person),
            mutates: true,
            want: "200 404 404 404 403 404 401 404 401 401 401 404",
        },
        Row {
            method: Method::POST,
            path: |t| format!("/v1/accounts/{}/disable", t.id),
            body: |_| None,
            target: target!(us_admin_person),
            mutates: true,
            want: "200 404 404 404 403 404 401 404 401 401 401 404",
        },
        Row {
            method: Method::POST,
            path: |t| format!("/v1/accounts/{}/enable", t.id),
            body: |_| None,
            target: target!(us_disabled),
            mutates: true,
            want: "200 404 404 404 403 404 401 404 401 401 401 404",
        },
        Row {
            method: Method::POST,
            path: |t| format!("/v1/accounts/{}/reset-password", t.id),
            body: |_| None,
            target: target!(us_person),
            mutates: true,
            want: "200 404 404 404 403 404 401 404 401 401 401 404",
        },
        Row {
            method: Method::POST,
            path: |t| format!("/v1/accounts/{}/rotate-secret", t.id),
            body: |_| None,
            target: target!(us_service),
            mutates: true,
            want: "200 404 404 404 403 404 401 404 401 401 401 404",
        },
        Row {
            method: Method::GET,
            path: |t| format!("/v1/accounts/{}/memberships", t.id),
            body: |_| None,
            target: target!(us_person),
            mutates: false,
            want: "200 404 404 404 200 404 401 404 401 401 401 404",
        },
        Row {
            method: Method::POST,
            path: |t| format!("/v1/accounts/{}/memberships", t.id),
            body: |_| Some(json!({"role": "author"})),
            target: target!(us_person),
            mutates: true,
            want: "201 404 404 404 201 404 401 404 401 401 401 404",
        },
        Row {
            method: Method::POST,
            path: |t| format!("/v1/accounts/{}/memberships", t.id),
            body: |_| Some(json!({"role": "admin"})),
            target: target!(us_person),
            mutates: true,
            want: "201 404 404 404 403 404 401 404 401 401 401 404",
        },
        Row {
            method: Method::POST,
            path: |t| format!("/v1/accounts/{}/memberships/{}/revoke", t.id, t.other),
            body: |_| None,
            target: target!(us_person),
            mutates: true,
            want: "200 404 404 404 200 404 401 404 401 401 401 404",
        },
        Row {
            method: Method::POST,
            path: |t| format!("/v1/accounts/{}/memberships/{}/revoke", t.id, t.other),
            body: |_| None,
            target: target!(us_admin_person),
            mutates: true,
            want: "200 404 404 404 403 404 401 404 401 401 401 404",
        },
        Row {
            method: Method::POST,
            path: |_| "/v1/exchanges".into(),
            body: |t| Some(exchange_body("UK", "US", t)),
            target: target!(uk_person),
            mutates: true,
            want: "201 201 403 403 403 403 401 403 401 401 401 403",
        },
        Row {
            method: Method::POST,
            path: |_| "/v1/exchanges".into(),
            body: |t| Some(exchange_body("US", "UK", t)),
            target: target!(us_person),
            mutates: true,
            want: "201 201 403 403 403 403 401 403 401 401 401 403",
        },
        Row {
            method: Method::GET,
            path: |_| "/v1/exchanges?limit=200".into(),
            body: |_| None,
            target: target!(uk_proposal),
            mutates: false,
            want: "L+ L+ L- L- L+ L- 401 L- 401 401 401 L-",
        },
        Row {
            method: Method::GET,
            path: |t| format!("/v1/exchanges/{}", t.other),
            body: |_| None,
            target: target!(uk_proposal),
            mutates: false,
            want: "200 200 404 404 200 404 401 404 401 401 401 404",
        },
        Row {
            method: Method::POST,
            path: |t| format!("/v1/exchanges/{}/approve", t.other),
            body: |_| None,
            target: target!(uk_proposal),
            mutates: true,
            want: "200 403 404 404 403 404 401 404 401 401 401 404",
        },
        Row {
            method: Method::POST,
            path: |t| format!("/v1/exchanges/{}/reject", t.other),
            body: |_| None,
            target: target!(uk_proposal),
            mutates: true,
            want: "200 403 404 404 403 404 401 404 401 401 401 404",
        },
        Row {
            method: Method::POST,
            path: |t| format!("/v1/exchanges/{}/approve", t.other),
            body: |_| None,
            target: target!(us_proposal),
            mutates: true,
            want: "403 200 404 404 403 404 401 404 401 401 401 404",
        },
        Row {
            method: Method::POST,
            path: |t| format!("/v1/exchanges/{}/reject", t.other),
            body: |_| None,
            target: target!(us_proposal),
            mutates: true,
            want: "403 200 404 404 403 404 401 404 401 401 401 404",
        },
        Row {
            method: Method::POST,
            path: |t| format!("/v1/exchanges/{}/end", t.other),
            body: |_| None,
            target: target!(uk_active_exchange),
            mutates: true,
            want: "200 200 404 404 403 404 401 404 401 401 401 404",
        },
        Row {
            method: Method::POST,
            path: |t| format!("/v1/exchanges/{}/end", t.other),
            body: |_| None,
            target: target!(us_active_exchange),
            mutates: true,
            want: "200 200 404 404 403 404 401 404 401 401 401 404",
        },
    ]
}

#[tokio::test]
async fn every_identity_endpoint_against_every_kind_of_caller() {
    let mut failures = Vec::new();
    let rows = rows();
    let cells = rows.len() * ACTORS.len();
    for row in rows {
        // A fresh service for each endpoint, so that allowed calls do not disturb the next.
        let app = TestApp::spawn().await;
        let cast = cast(&app).await;
        for (actor, (token, want)) in ACTORS.iter().zip(cast.tokens.iter().zip(wants(row.want))) {
            let target = (row.target)(&app, &cast).await;
            let path = (row.path)(&target);
            let before = identity_digest(&app.pool).await;
            let mut request = app.client.request(row.method.clone(), app.url(&path));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            if row.method == Method::PATCH {
                request = request.header("if-match", &target.etag);
            }
            if let Some(body) = (row.body)(&target) {
                request = request.json(&body);
            }
            let response = request.send().await.expect("send");
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            let got = match want {
                Listed(_) if status == 200 => {
                    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    let id = target.other.to_string();
                    let account = target.id.to_string();
                    // A 200 that is not a page is no list at all, not a list without it.
                    match body["items"].as_array() {
                        Some(items) => Listed(
                            items
                                .iter()
                                .any(|i| i["id"] == json!(id) || i["id"] == json!(account)),
                        ),
                        None => S(200),
                    }
                }
                _ => S(status),
            };
            let after = identity_digest(&app.pool).await;
            let changed = before != after;
            let allowed = matches!(got, S(200..=299) | Listed(_));
            if got != want {
                failures.push(format!(
                    "{} {path} as {actor}: wanted {want:?}, got {got:?} {text}",
                    row.method
                ));
            } else if allowed && row.mutates && !changed {
                failures.push(format!(
                    "{} {path} as {actor}: allowed but changed nothing",
                    row.method
                ));
            } else if (!allowed || !row.mutates) && changed {
                failures.push(format!(
                    "{} {path} as {actor}: answered {got:?} but changed the database",
                    row.method
                ));
            }
            if !allowed && status != 200 && !text.contains("\"status\"") {
                failures.push(format!(
                    "{} {path} as {actor}: {status} without a problem body",
                    row.method
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cells} cells wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The callers of the run-reads matrix, in the order of its rows. The runs are the US's
/// and the UK's in a US–UK exercise; the exchanged UK person holds the US admin role only
/// while the exchange runs.
const RUN_READERS: [&str; 11] = [
    "US evaluator",
    "US viewer",
    "US service account with runs:read",
    "US service account without it",
    "UK viewer",
    "UK reviewer",
    "UK viewer during exchange to US as admin",
    "UK viewer after exchange to US",
    "disabled US viewer",
    "JP admin",
    "anonymous",
];

/// What a run read is expected to answer.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Read {
    S(u16),
    /// 404 of type `not-released`: the run is visible, its transcripts are not.
    NotReleased,
    /// 200, a page of disagreements whose sides a and b show their answers (true) or
    /// withhold them (false).
    Shown(bool, bool),
}

fn reads(row: &str) -> Vec<Read> {
    let wants: Vec<Read> = row
        .split_whitespace()
        .map(|w| match w {
            "NR" => Read::NotReleased,
            "A+B+" => Read::Shown(true, true),
            "A+B-" => Read::Shown(true, false),
            "A-B+" => Read::Shown(false, true),
            "A-B-" => Read::Shown(false, false),
            status => Read::S(status.parse().expect("a status")),
        })
        .collect();
    assert_eq!(wants.len(), RUN_READERS.len(), "{row}");
    wants
}

/// Runs in every state of release: the US's `unreleased`, `results` (released to the UK
/// without its transcripts) and `transcripts` (with them), each with an Inspect log; and
/// the UK's `uk`, released to the US without its transcripts, scored unlike the others.
struct Runs {
    exercise: String,
    unreleased: String,
    results: String,
    transcripts: String,
    uk: String,
}

/// A finished US run with `arith_small.json` imported under its own eval id.
async fn us_run_with_log(app: &TestApp, evaluator: &str, exercise: &str, protocol: &str) -> String {
    let body = crate::support::story::new_run(protocol);
    let run: Value = app
        .post_as(evaluator, &format!("/v1/exercises/{exercise}/runs"), &body)
        .await
        .json()
        .await
        .expect("run");
    let id = run["id"].as_str().expect("id").to_owned();
    let mut log: Value = serde_json::from_slice(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/inspect/arith_small.json"
        ))
        .expect("fixture"),
    )
    .expect("a JSON log");
    log["eval"]["eval_id"] = json!(Uuid::now_v7().simple().to_string());
    let started = app
        .post_as(evaluator, &format!("/v1/runs/{id}/start"), &json!({}))
        .await;
    assert_eq!(started.status(), 200);
    let imported = app
        .post_as(evaluator, &format!("/v1/runs/{id}/inspect-log"), &log)
        .await;
    assert_eq!(imported.status(), 200, "import");
    let finished = app
        .post_as(
            evaluator,
            &format!("/v1/runs/{id}/finish"),
            &json!({"outcome": "succeeded"}),
        )
        .await;
    assert_eq!(finished.status(), 200);
    id
}

async fn runs(app: &TestApp) -> Runs {
    let (exercise, protocol) = crate::support::story::active_exercise(app).await;
    let us = app
        .login(
            &app.person("m-eval@nist.gov", "US", &[Role::Evaluator])
                .await,
        )
        .await;
    let us_reviewer = app
        .login(&app.person("m-rev@nist.gov", "US", &[Role::Reviewer]).await)
        .await;
    let uk = app
        .login(
            &app.person("m-eval@aisi.gov.uk", "UK", &[Role::Evaluator])
                .await,
        )
        .await;
    let uk_reviewer = app
        .login(
            &app.person("m-rev@aisi.gov.uk", "UK", &[Role::Reviewer])
                .await,
        )
        .await;
    let unreleased = us_run_with_log(app, &us, &exercise, &protocol).await;
    let results = us_run_with_log(app, &us, &exercise, &protocol).await;
    let transcripts = us_run_with_log(app, &us, &exercise, &protocol).await;
    for (run, body) in [
        (&results, json!({})),
        (&transcripts, json!({"transcripts": true})),
    ] {
        let released = app
            .release(&us_reviewer, &format!("/v1/runs/{run}"), &body)
            .await;
        assert_eq!(released.status(), 200);
    }
    // The UK's run: every sample of the US's scored the other way.
    let scores: Value = app
        .get_as(
            &us,
            &format!("/v1/runs/{unreleased}/samples?scorer=match&limit=1000"),
        )
        .await
        .json()
        .await
        .expect("scores");
    let flipped: Vec<Value> = scores["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|s| {
            let other = if s["value"] == json!("C") { "I" } else { "C" };
            json!({"sample_id": s["sample_id"], "epoch": s["epoch"], "scorer": "match",
                   "value": other, "answer": "a UK answer", "explanation": "a UK reason"})
        })
        .collect();
    assert!(!flipped.is_empty());
    let run: Value = app
        .post_as(
            &uk,
            &format!("/v1/exercises/{exercise}/runs"),
            &crate::support::story::new_run(&protocol),
        )
        .await
        .json()
        .await
        .expect("run");
    let uk_run = run["id"].as_str().expect("id").to_owned();
    for (path, body) in [
        ("start", json!({})),
        ("samples", json!(flipped)),
        ("finish", json!({"outcome": "succeeded"})),
    ] {
        let done = app
            .post_as(&uk, &format!("/v1/runs/{uk_run}/{path}"), &body)
            .await;
        assert_eq!(done.status(), 200, "{path}");
    }
    let released = app
        .release(&uk_reviewer, &format!("/v1/runs/{uk_run}"), &json!({}))
        .await;
    assert_eq!(released.status(), 200);
    Runs {
        exercise,
        unreleased,
        results,
        transcripts,
        uk: uk_run,
    }
}

/// The tokens of [`RUN_READERS`], in order.
async fn run_readers(app: &TestApp) -> Vec<Option<String>> {
    let (us, uk) = (app.institute("US").await, app.institute("UK").await);
    let us_admin = app.person("m-admin@nist.gov", "US", &[Role::Admin]).await;
    let uk_admin = app
        .person("m-admin@aisi.gov.uk", "UK", &[Role::Admin])
        .await;
    let people = [
        app.person("r-eval@nist.gov", "US", &[Role::Evaluator])
            .await,
        app.person("r-viewer@nist.gov", "US", &[Role::Viewer]).await,
    ];
    let uk_people = [
        app.person("r-viewer@aisi.gov.uk", "UK", &[Role::Viewer])
            .await,
        app.person("r-rev@aisi.gov.uk", "UK", &[Role::Reviewer])
            .await,
        app.person("r-during@aisi.gov.uk", "UK", &[Role::Viewer])
            .await,
        app.person("r-after@aisi.gov.uk", "UK", &[Role::Viewer])
            .await,
    ];
    let now = Utc::now();
    for (person, starts, ends) in [
        (
            &uk_people[2],
            now - Duration::hours(1),
            now + Duration::days(30),
        ),
        (
            &uk_people[3],
            now - Duration::days(30),
            now - Duration::days(1),
        ),
    ] {
        app.exchange(
            &NewExchange {
                account_id: person.id,
                home_institute_id: uk,
                host_institute_id: us,
                roles: &[Role::Admin],
                starts_at: starts,
                ends_at: ends,
                proposed_by: uk_admin.id,
                proposed_by_institute_id: uk,
            },
            Some(us_admin.id),
        )
        .await;
    }
    let disabled = app.person("r-gone@nist.gov", "US", &[Role::Viewer]).await;
    let jp = app.person("r-admin@aist.go.jp", "JP", &[Role::Admin]).await;
    let reader = app
        .service(
            "US",
            "jes_reader-secret",
            &[Scope::RunsRead],
            &[Role::Viewer],
        )
        .await;
    let unscoped = app
        .service(
            "US",
            "jes_writer-secret",
            &[Scope::ResultsWrite],
            &[Role::Viewer],
        )
        .await;
    let mut tokens = Vec::new();
    for person in &people {
        tokens.push(Some(app.login(person).await));
    }
    tokens.push(Some(app.service_login(reader, "jes_reader-secret").await));
    tokens.push(Some(app.service_login(unscoped, "jes_writer-secret").await));
    for person in &uk_people {
        tokens.push(Some(app.login(person).await));
    }
    tokens.push(Some(app.login(&disabled).await));
    sqlx::query("update accounts set status = 'disabled' where id = $1")
        .bind(disabled.id)
        .execute(&app.pool)
        .await
        .expect("disable");
    tokens.push(Some(app.login(&jp).await));
    tokens.push(None);
    tokens
}

struct ReadRow {
    path: fn(&Runs) -> String,
    /// What each of [`RUN_READERS`] gets, in order (see [`reads`]).
    want: &'static str,
}

fn read_rows() -> Vec<ReadRow> {
    // Columns: US evaluator, US viewer, US service (runs:read), US service (without),
    // UK viewer, UK reviewer, UK during exchange (a US admin through it), UK after
    // exchange, disabled, JP admin, anonymous.
    vec![
        ReadRow {
            path: |r| format!("/v1/runs/{}/inspect-log", r.unreleased),
            want: "200 200 200 403 404 404 200 404 401 404 401",
        },
        ReadRow {
            path: |r| format!("/v1/runs/{}/inspect-log", r.results),
            want: "200 200 200 403 NR NR 200 NR 401 404 401",
        },
        ReadRow {
            path: |r| format!("/v1/runs/{}/inspect-log", r.transcripts),
            want: "200 200 200 403 200 200 200 200 401 404 401",
        },
        ReadRow {
            // The UK's run has no log: its own readers are told so, the US that it may
            // not read its transcripts, whether there is one or not.
            path: |r| format!("/v1/runs/{}/inspect-log", r.uk),
            want: "NR NR NR 403 404 404 404 404 401 404 401",
        },
        // The transcripts export and the errored samples are transcripts, as the log is;
        // the results export is the results, for whoever may read the run.
        ReadRow {
            path: |r| format!("/v1/runs/{}/export?transcripts=true", r.unreleased),
            want: "200 200 200 403 404 404 200 404 401 404 401",
        },
        ReadRow {
            path: |r| format!("/v1/runs/{}/export?transcripts=true", r.results),
            want: "200 200 200 403 NR NR 200 NR 401 404 401",
        },
        ReadRow {
            path: |r| format!("/v1/runs/{}/export?format=csv&transcripts=true", r.results),
            want: "200 200 200 403 NR NR 200 NR 401 404 401",
        },
        ReadRow {
            path: |r| format!("/v1/runs/{}/export?transcripts=true", r.transcripts),
            want: "200 200 200 403 200 200 200 200 401 404 401",
        },
        ReadRow {
            path: |r| format!("/v1/runs/{}/export", r.results),
            want: "200 200 200 403 200 200 200 200 401 404 401",
        },
        ReadRow {
            path: |r| format!("/v1/runs/{}/sample-errors", r.results),
            want: "200 200 200 403 NR NR 200 NR 401 404 401",
        },
        ReadRow {
            path: |r| format!("/v1/runs/{}/sample-errors", r.transcripts),
            want: "200 200 200 403 200 200 200 200 401 404 401",
        },
        ReadRow {
            path: |r| format!("/v1/comparisons?a={}&b={}&scorer=match", r.unreleased, r.uk),
            want: "200 200 200 403 404 404 200 404 401 404 401",
        },
        ReadRow {
            path: |r| format!("/v1/comparisons?a={}&b={}&scorer=match", r.results, r.uk),
            want: "200 200 200 403 200 200 200 200 401 404 401",
        },
        ReadRow {
            path: |r| {
                format!(
                    "/v1/comparisons/disagreements?a={}&b={}&scorer=match",
                    r.unreleased, r.uk
                )
            },
            want: "A+B- A+B- A+B- 403 404 404 A+B+ 404 401 404 401",
        },
        ReadRow {
            path: |r| {
                format!(
                    "/v1/comparisons/disagreements?a={}&b={}&scorer=match",
                    r.results, r.uk
                )
            },
            want: "A+B- A+B- A+B- 403 A-B+ A-B+ A+B+ A-B+ 401 404 401",
        },
        ReadRow {
            path: |r| {
                format!(
                    "/v1/comparisons/disagreements?a={}&b={}&scorer=match",
                    r.transcripts, r.uk
                )
            },
            want: "A+B- A+B- A+B- 403 A+B+ A+B+ A+B+ A+B+ 401 404 401",
        },
        // Every comparable pair of the exercise: whoever may read the exercise and its
        // runs (a service account needs the exercise's scope too, as for its summary),
        // each seeing only the runs it may read (checked below).
        ReadRow {
            path: |r| format!("/v1/exercises/{}/comparisons?scorer=match", r.exercise),
            want: "200 200 403 403 200 200 200 200 401 404 401",
        },
        // A run against itself: no disagreement, for whoever may read it.
        ReadRow {
            path: |r| {
                format!(
                    "/v1/comparisons/disagreements?a={}&b={}&scorer=match",
                    r.uk, r.uk
                )
            },
            want: "200 200 200 403 200 200 200 200 401 404 401",
        },
    ]
}

#[tokio::test]
async fn every_run_read_against_every_kind_of_caller() {
    let app = TestApp::spawn().await;
    let runs = runs(&app).await;
    let tokens = run_readers(&app).await;
    let mut failures = Vec::new();
    let rows = read_rows();
    let cells = rows.len() * RUN_READERS.len();
    for row in rows {
        let path = (row.path)(&runs);
        for (reader, (token, want)) in RUN_READERS.iter().zip(tokens.iter().zip(reads(row.want))) {
            let mut request = app.client.get(app.url(&path));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.expect("send");
            let status = response.status().as_u16();
            let bytes = response.bytes().await.unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let got = match (status, want) {
                (404, _) if body["type"] == "urn:jointeval:problem:not-released" => {
                    Read::NotReleased
                }
                (200, Read::Shown(..)) => match body["items"].as_array() {
                    Some(items) if !items.is_empty() => {
                        let shown = |side: &str| {
                            items.iter().all(|i| {
                                i[side]["transcripts_withheld"] == false
                                    && i[side]["answer"].is_string()
                            })
                        };
                        let withheld = |side: &str| {
                            items.iter().all(|i| {
                                i[side]["transcripts_withheld"] == true
                                    && i[side]["answer"].is_null()
                                    && i[side]["explanation"].is_null()
                            })
                        };
                        match (shown("a") || withheld("a"), shown("b") || withheld("b")) {
                            (true, true) => Read::Shown(shown("a"), shown("b")),
                            _ => Read::S(200),
                        }
                    }
                    _ => Read::S(200),
                },
                _ => Read::S(status),
            };
            if got != want {
                failures.push(format!(
                    "GET {path} as {reader}: wanted {want:?}, got {got:?}"
                ));
            }
            if status >= 400 && body["status"] != status {
                failures.push(format!(
                    "GET {path} as {reader}: {status} without a problem body"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cells} cells wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The exercise's pairs as the UK (its viewer, and an admin of the US through an
    // exchange that ended) see them: the unreleased US run is in no pair and not left out.
    let path = format!("/v1/exercises/{}/comparisons?scorer=match", runs.exercise);
    for token in [&tokens[4], &tokens[7]] {
        let token = token.as_deref().expect("a UK reader");
        let seen = crate::support::expect(app.get_as(token, &path).await, 200).await;
        assert!(
            !seen.to_string().contains(&runs.unreleased),
            "an unreleased US run shows: {seen}"
        );
    }
}
