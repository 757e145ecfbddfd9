//! What the black-box tests stand on: a PostgreSQL server (DATABASE_URL, or one private
//! cluster per test process started by the same launcher as `jointeval serve`), a fresh
//! database per test cloned from a migrated template, and the real router served on
//! 127.0.0.1:0, driven over HTTP.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use jointeval_api::{AppState, AuthSettings, ConnectionLimits, HttpSettings};
use jointeval_domain::{AccountKind, DisplayName, Email, InstituteCode, Role, Scope};
use jointeval_embedded_pg::{Cluster, ClusterConfig};
use jointeval_store::{PgPool, PoolSettings};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use tokio::sync::{OnceCell, oneshot};

/// The server every test database lives on.
static SERVER: OnceCell<PgConnectOptions> = OnceCell::const_new();
/// The migrated database each test database is cloned from.
static TEMPLATE: OnceCell<String> = OnceCell::const_new();

/// Options reaching the test server's maintenance database.
pub async fn server() -> &'static PgConnectOptions {
    SERVER
        .get_or_init(|| async {
            match std::env::var("DATABASE_URL") {
                Ok(url) => {
                    PgConnectOptions::from_str(&url).expect("DATABASE_URL is a PostgreSQL URL")
                }
                Err(_) => start_private_cluster().await,
            }
        })
        .await
}

/// One throwaway cluster for this test process. The launcher asks it to shut down when
/// the process exits; its folder is removed by the next test process.
async fn start_private_cluster() -> PgConnectOptions {
    let root = scratch_root();
    remove_leftovers(&root);
    let dir = root.join(std::process::id().to_string());
    std::fs::create_dir_all(&dir).expect("create the test cluster folder");
    let cluster = Cluster::start(&ClusterConfig {
        data_dir: dir,
        user_when_root: "postgres".into(),
        bin_dir: None,
        durable: false,
    })
    .await
    .expect("start a private PostgreSQL for the tests (or set DATABASE_URL)");
    let options = cluster.connect_options("postgres");
    // The cluster lives as long as this process: its keeper thread stops it when the
    // process exits.
    std::mem::forget(cluster);
    options
}

/// Under /tmp, which the unprivileged cluster user can reach when tests run as root.
pub fn scratch_root() -> PathBuf {
    let root = std::env::temp_dir().join("jointeval-tests");
    std::fs::create_dir_all(&root).expect("create the scratch folder");
    open_to_all(&root);
    root
}

pub fn open_to_all(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// Folders of test processes that are gone.
fn remove_leftovers(root: &std::path::Path) {
    for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
        let cluster_running = entry.path().join("pg/postmaster.pid").exists();
        if !alive && !cluster_running {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

async fn admin_connection() -> PgConnection {
    server()
        .await
        .connect()
        .await
        .expect("connect to the test server")
}

/// A template migrated with this build's migrations, shared by every test process of
/// the same build (its name carries a digest of the migrations).
async fn template() -> &'static str {
    TEMPLATE
        .get_or_init(|| async {
            let name = format!("jointeval_template_{}", migrations_digest());
            let mut admin = admin_connection().await;
            // Serialises template creation between test processes.
            sqlx::query("select pg_advisory_lock(727072)")
                .execute(&mut admin)
                .await
                .expect("lock");
            let exists: bool =
                sqlx::query_scalar("select exists(select 1 from pg_database where datname = $1)")
                    .bind(&name)
                    .fetch_one(&mut admin)
                    .await
                    .expect("look for the template");
            if !exists {
                let building = format!("{name}_building");
                sqlx::raw_sql(&format!("drop database if exists {building} with (force)"))
                    .execute(&mut admin)
                    .await
                    .expect("drop a half-built template");
                sqlx::raw_sql(&format!("create database {building}"))
                    .execute(&mut admin)
                    .await
                    .expect("create the template");
                let pool = PgPool::connect_with(server().await.clone().database(&building))
                    .await
                    .expect("connect to the template");
                jointeval_store::migrate(&pool)
                    .await
                    .expect("migrate the template");
                jointeval_store::roles::ensure_service_login(
                    &pool,
                    jointeval_store::roles::SERVICE_LOGIN,
                )
                .await
                .expect("the service's login role");
                pool.close().await;
                publish(&mut admin, &building, &name).await;
            }
            sqlx::query("select pg_advisory_unlock(727072)")
                .execute(&mut admin)
                .await
                .expect("unlock");
            let _ = admin.close().await;
            name
        })
        .await
}

/// Renames the built template into place. A closed pool's server processes can linger
/// for a moment, and a rename refuses to run beside them: they are ended first.
async fn publish(admin: &mut PgConnection, building: &str, name: &str) {
    let rename = format!("alter database {building} rename to {name}");
    for attempt in 0.. {
        sqlx::query(
            "select pg_terminate_backend(pid) from pg_stat_activity
             where datname = $1 and pid <> pg_backend_pid()",
        )
        .bind(building)
        .execute(&mut *admin)
        .await
        .expect("end the sessions on the template");
        match sqlx::raw_sql(&rename).execute(&mut *admin).await {
            Ok(_) => return,
            Err(sqlx::Error::Database(e))
                if e.code().as_deref() == Some("55006") && attempt < 50 =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("publish the template: {e}"),
        }
    }
}

fn migrations_digest() -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for m in jointeval_store::MIGRATOR.iter() {
        m.version.hash(&mut hasher);
        m.checksum.hash(&mut hasher);
    }
    format!("{:016x}", hasher.finish())
}

/// A database of its own for one test, dropped when the value is dropped.
pub struct TestDatabase {
    pub name: String,
    pub options: PgConnectOptions,
}

impl TestDatabase {
    /// A migrated database.
    pub async fn migrated() -> Self {
        let template = template().await;
        Self::create(&format!("template {template}")).await
    }

    /// A database with no schema at all.
    pub async fn empty() -> Self {
        Self::create("").await
    }

    async fn create(clause: &str) -> Self {
        let name = format!("jointeval_test_{}", uuid::Uuid::now_v7().simple());
        let mut admin = admin_connection().await;
        sqlx::raw_sql(&format!("create database {name} {clause}"))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        let _ = admin.close().await;
        let options = server().await.clone().database(&name);
        Self { name, options }
    }

    /// A pool of the tables' owner: what tests arrange and inspect with, past the
    /// row-level security.
    pub fn pool(&self) -> PgPool {
        Self::connect(self.options.clone())
    }

    /// A pool of the service's own role, held by row-level security: what the server
    /// under test uses.
    pub fn service_pool(&self) -> PgPool {
        self.service_pool_with(&Self::settings())
    }

    /// The service's pool with other settings (timeouts, size).
    pub fn service_pool_with(&self, settings: &PoolSettings) -> PgPool {
        jointeval_store::connect(
            self.options
                .clone()
                .username(jointeval_store::roles::SERVICE_LOGIN),
            settings,
        )
    }

    pub fn settings() -> PoolSettings {
        PoolSettings {
            max_connections: 5,
            acquire_timeout: Duration::from_secs(5),
            ..PoolSettings::default()
        }
    }

    fn connect(options: PgConnectOptions) -> PgPool {
        jointeval_store::connect(options, &Self::settings())
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot be blocked on: drop the
        // database from a thread with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let mut admin = admin_connection().await;
                sqlx::raw_sql(&format!("drop database if exists {name} with (force)"))
                    .execute(&mut admin)
                    .await
                    .expect("drop the test database");
            });
        })
        .join();
        if dropped.is_err() && !std::thread::panicking() {
            panic!("could not drop the test database {}", self.name);
        }
    }
}

/// The real service on its own database, listening on 127.0.0.1:0.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    /// The owner's pool, for arranging and inspecting; the server has its own.
    pub pool: PgPool,
    stop: Option<oneshot::Sender<()>>,
    // Dropped last: the server's connections go before the database does.
    pub db: TestDatabase,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::with_settings(HttpSettings::default()).await
    }

    pub async fn with_settings(settings: HttpSettings) -> Self {
        Self::on(TestDatabase::migrated().await, settings).await
    }

    pub async fn on(db: TestDatabase, settings: HttpSettings) -> Self {
        Self::with_auth(db, settings, AuthSettings::default()).await
    }

    /// The server connects as the service's role; `pool` is the owner's, for the test.
    pub async fn with_auth(db: TestDatabase, settings: HttpSettings, auth: AuthSettings) -> Self {
        let pool = db.pool();
        let migrated = jointeval_store::migrations_current(&pool)
            .await
            .unwrap_or(false);
        let service = if migrated {
            jointeval_api::auth::tokens::ensure_signing_key(&pool)
                .await
                .expect("signing key");
            db.service_pool()
        } else {
            pool.clone()
        };
        let router = jointeval_api::router(AppState::new(service, settings, auth));
        Self::serve(router, pool, db).await
    }

    /// Serves any router (e.g. one built around a test route) the same way.
    pub async fn serve(router: axum::Router, pool: PgPool, db: TestDatabase) -> Self {
        Self::serve_with(router, pool, db, ConnectionLimits::default()).await
    }

    /// The service under `limits` of its listener.
    pub async fn with_limits(limits: ConnectionLimits) -> Self {
        let db = TestDatabase::migrated().await;
        let pool = db.pool();
        jointeval_api::auth::tokens::ensure_signing_key(&pool)
            .await
            .expect("signing key");
        let router = jointeval_api::router(AppState::new(
            db.service_pool(),
            HttpSettings::default(),
            AuthSettings::default(),
        ));
        Self::serve_with(router, pool, db, limits).await
    }

    async fn serve_with(
        router: axum::Router,
        pool: PgPool,
        db: TestDatabase,
        limits: ConnectionLimits,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(jointeval_api::serve(listener, router, limits, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            client: reqwest::Client::new(),
            pool,
            stop: Some(stop),
            db,
        }
    }

    /// A second instance of the service on this one's database; its base URL.
    pub async fn second_instance(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let router = jointeval_api::router(AppState::new(
            self.db.service_pool(),
            HttpSettings::default(),
            AuthSettings::default(),
        ));
        tokio::spawn(jointeval_api::serve(
            listener,
            router,
            ConnectionLimits::default(),
            std::future::pending(),
        ));
        base
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    /// A GET with a bearer token.
    pub async fn get_as(&self, token: &str, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    /// A POST of JSON with a bearer token.
    pub async fn post_as(
        &self,
        token: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// A POST with no body at all (no `Content-Type` either): a transition asked with
    /// nothing to add.
    pub async fn post_empty(&self, token: &str, path: &str) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request")
    }

    /// The caller's agreement to an exercise (`path`, `/v1/exercises/{id}`) as they read
    /// it now: its `ETag` as `If-Match`, or one that matches nothing when they may not read
    /// it, so that the service's own refusal shows.
    pub async fn agree(
        &self,
        token: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        let read = self.get_as(token, path).await;
        let etag = read
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("\"unread\"")
            .to_owned();
        self.post_if_match(token, &format!("{path}/agree"), Some(&etag), body)
            .await
    }

    /// The caller's release of a run (`path`, `/v1/runs/{id}`) bound to its `digest` as
    /// they read it now, or to one that matches nothing when they may not read it.
    pub async fn release(
        &self,
        token: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        let read = self.get_as(token, path).await;
        let digest = match read.json::<serde_json::Value>().await {
            Ok(run) => run["digest"].as_str().unwrap_or("unread").to_owned(),
            Err(_) => "unread".to_owned(),
        };
        let bound = format!("\"{digest}\"");
        self.post_if_match(token, &format!("{path}/release"), Some(&bound), body)
            .await
    }

    /// The caller's review of a protocol version (`path`, `/v1/protocols/{id}/versions/{n}`)
    /// bound to its `content_sha256` as they read it now, or to one that matches nothing
    /// when they may not read it or it has none.
    pub async fn review(
        &self,
        token: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        let read = self.get_as(token, path).await;
        let hash = match read.json::<serde_json::Value>().await {
            Ok(version) => version["content_sha256"]
                .as_str()
                .unwrap_or("unread")
                .to_owned(),
            Err(_) => "unread".to_owned(),
        };
        let bound = format!("\"{hash}\"");
        self.post_if_match(token, &format!("{path}/reviews"), Some(&bound), body)
            .await
    }

    /// A POST of JSON with `If-Match` when given: an act bound to what was read.
    pub async fn post_if_match(
        &self,
        token: &str,
        path: &str,
        if_match: Option<&str>,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(self.url(path))
            .bearer_auth(token)
            .json(body);
        if let Some(tag) = if_match {
            request = request.header("if-match", tag);
        }
        request.send().await.expect("request")
    }

    /// An exchange as `new` proposes it; approved by `approved_by` when given.
    pub async fn exchange(
        &self,
        new: &jointeval_store::exchanges::NewExchange<'_>,
        approved_by: Option<uuid::Uuid>,
    ) -> uuid::Uuid {
        let mut conn = self.pool.acquire().await.expect("connection");
        let e = jointeval_store::exchanges::insert(&mut conn, new)
            .await
            .expect("exchange");
        if let Some(by) = approved_by {
            jointeval_store::exchanges::decide(&mut conn, e.id, true, by)
                .await
                .expect("approve");
        }
        e.id
    }

    /// The institute with `code`, created on first use.
    pub async fn institute(&self, code: &str) -> uuid::Uuid {
        if let Some(i) = jointeval_store::institutes::get_by_code(&self.pool, code)
            .await
            .expect("look up institute")
        {
            return i.id;
        }
        let parsed = InstituteCode::parse("code", code).expect("code");
        jointeval_store::institutes::insert(
            &self.pool,
            &parsed,
            &format!("{code} AI Safety Institute"),
        )
        .await
        .expect("insert institute")
        .id
    }

    /// A person of `home` with `roles` there (from a minute ago, open-ended), who logs
    /// in with [`PASSWORD`].
    pub async fn person(&self, email: &str, home: &str, roles: &[Role]) -> TestUser {
        let email_value = Email::parse("email", email).expect("email");
        let id = self
            .account(AccountKind::Person, Some(&email_value), email, home, roles)
            .await;
        let mut conn = self.pool.acquire().await.expect("connection");
        jointeval_store::credentials::set_password(&mut conn, id, password_hash().await, false)
            .await
            .expect("password");
        TestUser {
            id,
            email: email.to_owned(),
        }
    }

    /// A service account of `home` that logs in with `secret`, holding `scopes` and
    /// (though service accounts never administer) `roles`.
    pub async fn service(
        &self,
        home: &str,
        secret: &str,
        scopes: &[Scope],
        roles: &[Role],
    ) -> uuid::Uuid {
        let id = self
            .account(AccountKind::Service, None, "Inspect runner", home, roles)
            .await;
        let mut conn = self.pool.acquire().await.expect("connection");
        let hash = jointeval_api::auth::secrets::hash_service_secret(secret);
        jointeval_store::credentials::set_service_secret(&mut conn, id, &hash, scopes)
            .await
            .expect("secret");
        id
    }

    async fn account(
        &self,
        kind: AccountKind,
        email: Option<&Email>,
        name: &str,
        home: &str,
        roles: &[Role],
    ) -> uuid::Uuid {
        let home_id = self.institute(home).await;
        let mut conn = self.pool.acquire().await.expect("connection");
        let account = jointeval_store::accounts::insert(
            &mut conn,
            &jointeval_store::accounts::NewAccount {
                kind,
                email,
                display_name: &DisplayName::parse("name", name).expect("name"),
                home_institute_id: home_id,
            },
        )
        .await
        .expect("insert account");
        for role in roles {
            jointeval_store::memberships::grant(
                &mut conn,
                &jointeval_store::memberships::NewMembership {
                    account_id: account.id,
                    institute_id: home_id,
                    role: *role,
                    valid_from: chrono::Utc::now() - chrono::Duration::minutes(1),
                    valid_until: None,
                    granted_by: None,
                },
            )
            .await
            .expect("grant");
        }
        account.id
    }

    /// Logs `user` in with [`PASSWORD`] and answers the access token.
    pub async fn login(&self, user: &TestUser) -> String {
        let response = self
            .client
            .post(self.url("/v1/auth/token"))
            .form(&[
                ("grant_type", "password"),
                ("username", user.email.as_str()),
                ("password", PASSWORD),
            ])
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200, "login of {}", user.email);
        let body: serde_json::Value = response.json().await.expect("json");
        body["access_token"].as_str().expect("token").to_owned()
    }
}

impl TestApp {
    /// Logs a service account in with `client_credentials` and answers the access token.
    pub async fn service_login(&self, id: uuid::Uuid, secret: &str) -> String {
        let response = self
            .client
            .post(self.url("/v1/auth/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", &id.to_string()),
                ("client_secret", secret),
            ])
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200, "login of service account {id}");
        let body: serde_json::Value = response.json().await.expect("json");
        body["access_token"].as_str().expect("token").to_owned()
    }
}

/// The password of every test person.
pub const PASSWORD: &str = "correct horse battery staple";

/// Hashed once per test process: argon2 is slow on purpose.
async fn password_hash() -> &'static str {
    static HASH: OnceCell<String> = OnceCell::const_new();
    HASH.get_or_init(|| jointeval_api::auth::secrets::hash_password(PASSWORD.to_owned()))
        .await
}

#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: uuid::Uuid,
    pub email: String,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Whether `holds` is true of every item, of which there must be one at least: a check
/// over an empty list proves nothing, and that is a failure of the test's own setup.
pub fn every<T>(items: impl IntoIterator<Item = T>, mut holds: impl FnMut(&T) -> bool) -> bool {
    let mut any = false;
    for item in items {
        any = true;
        if !holds(&item) {
            return false;
        }
    }
    assert!(any, "the list to check is empty");
    true
}

/// Asserts the status, then answers the JSON body (`null` when there is none).
pub async fn expect(response: reqwest::Response, status: u16) -> serde_json::Value {
    let actual = response.status().as_u16();
    let text = response.text().await.expect("a body");
    assert_eq!(actual, status, "status; the body was {text}");
    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
}

/// A digest of every identity row (accounts, memberships, exchanges, credentials), to
/// prove that a refused call wrote nothing.
pub async fn identity_digest(pool: &PgPool) -> String {
    sqlx::query_scalar(
        "select md5(concat(
            (select string_agg(a::text, '|' order by a.id) from accounts a),
            (select string_agg(m::text, '|' order by m.id) from memberships m),
            (select string_agg(e::text, '|' order by e.id) from exchanges e),
            (select string_agg(c::text, '|' order by c.account_id) from password_credentials c),
            (select string_agg(s::text, '|' order by s.account_id) from service_credentials s)))",
    )
    .fetch_one(pool)
    .await
    .expect("the identity digest")
}

/// The body of a problem answer, after checking that it is one.
pub async fn problem(response: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: serde_json::Value = response.json().await.expect("a JSON problem body");
    assert_eq!(body["status"], status, "status in the body: {body}");
    assert!(
        body["type"].is_string() && body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    body
}

/// A token for `account`, expiring `expires_in_secs` from now (negative: already
/// expired), signed with the service's own current key or, with `own_key` false, with
/// a key the service never had.
pub async fn forge_token(
    pool: &PgPool,
    account: uuid::Uuid,
    expires_in_secs: i64,
    own_key: bool,
) -> String {
    let (kid, der): (String, Vec<u8>) =
        sqlx::query_as("select kid, private_key from signing_keys where retired_at is null")
            .fetch_one(pool)
            .await
            .expect("the signing key");
    let der = if own_key {
        der
    } else {
        // RFC 8410's example private key.
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode("MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC")
            .expect("der")
    };
    let now = jsonwebtoken::get_current_timestamp() as i64;
    let claims = serde_json::json!({
        "iss": "jointeval", "aud": "jointeval-api", "sub": account.to_string(),
        "iat": now - 1200, "nbf": now - 1200, "exp": now + expires_in_secs, "jti": "forged"
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.typ = Some("at+jwt".into());
    header.kid = Some(kid);
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ed_der(&der),
    )
    .expect("sign")
}

/// Fixtures through the API: an approved protocol, an active exercise, a run.
pub mod story {
    use jointeval_domain::Role;
    use serde_json::{Value, json};

    use super::TestApp;

    /// A protocol of `participants`, led by the first, with version 1 approved by a
    /// reviewer of each participant, all through the API. Answers its id.
    pub async fn approved_protocol(app: &TestApp, slug: &str, participants: &[&str]) -> String {
        approved_protocol_with(app, slug, participants, default_content()).await
    }

    /// The content [`approved_protocol`] approves: one task, `arith` in Inspect.
    pub fn default_content() -> Value {
        json!({
            "objective": "Measure uplift",
            "tasks": [{"name": "t", "dataset": {"name": "d", "version": "1", "sha256": null, "sample_count": 20},
                       "harness": {"name": "inspect", "task_ref": "arith"}, "scorers": ["match"],
                       "metrics": ["accuracy"], "epochs": 1}],
            "metrics": [{"name": "accuracy", "higher_is_better": true, "threshold": null}]
        })
    }

    /// A protocol like [`approved_protocol`]'s, with version 1 of this content.
    pub async fn approved_protocol_with(
        app: &TestApp,
        slug: &str,
        participants: &[&str],
        content: Value,
    ) -> String {
        let lead = participants[0];
        let author = app
            .person(
                &format!("author-{slug}@{lead}.example"),
                lead,
                &[Role::Author],
            )
            .await;
        let author = app.login(&author).await;
        for code in participants {
            app.institute(code).await;
        }
        let created = app
            .post_as(&author, "/v1/protocols", &json!({"slug": slug, "title": slug, "risk_area": "cyber", "participants": participants}))
            .await;
        assert_eq!(created.status(), 201);
        let id = created.json::<Value>().await.expect("json")["id"]
            .as_str()
            .expect("id")
            .to_owned();

        let versions = format!("/v1/protocols/{id}/versions");
        assert_eq!(
            app.post_as(&author, &versions, &json!({"content": content}))
                .await
                .status(),
            201
        );
        assert_eq!(
            app.post_as(&author, &format!("{versions}/1/submit"), &json!({}))
                .await
                .status(),
            200
        );
        for code in participants {
            let reviewer = app
                .person(
                    &format!("reviewer-{slug}@{code}.example"),
                    code,
                    &[Role::Reviewer],
                )
                .await;
            let reviewer = app.login(&reviewer).await;
            let review = app
                .review(
                    &reviewer,
                    &format!("{versions}/1"),
                    &json!({"verdict": "approve"}),
                )
                .await;
            assert_eq!(review.status(), 201);
        }
        id
    }

    /// An active US–UK exercise on one approved protocol: (exercise id, protocol id).
    pub async fn active_exercise(app: &TestApp) -> (String, String) {
        active_exercise_with(app, default_content()).await
    }

    /// An active US–UK exercise on a protocol of this content.
    pub async fn active_exercise_with(app: &TestApp, content: Value) -> (String, String) {
        active_exercise_among(app, &["US", "UK"], content).await
    }

    /// The mail domain of an institute's staff in the fixtures.
    fn domain(code: &str) -> String {
        match code {
            "US" => "nist.gov".to_owned(),
            "UK" => "aisi.gov.uk".to_owned(),
            other => format!("{}.example", other.to_lowercase()),
        }
    }

    /// An active exercise of `participants` (the first leads it), each agreeing by an
    /// admin of its own, on a protocol of this content: (exercise id, protocol id).
    pub async fn active_exercise_among(
        app: &TestApp,
        participants: &[&str],
        content: Value,
    ) -> (String, String) {
        let protocol = approved_protocol_with(app, "joint-runs", participants, content).await;
        let lead_code = participants[0];
        let lead = app
            .login(
                &app.person(
                    &format!("lead@{}", domain(lead_code)),
                    lead_code,
                    &[Role::Author],
                )
                .await,
            )
            .await;
        let start = chrono::Utc::now();
        let created: Value = app
            .post_as(&lead, "/v1/exercises", &json!({
                "title": "Joint test",
                "model": {"provider": "Inspect", "name": "mockllm", "version": "model", "access": "public_api"},
                "protocol_versions": [{"protocol_id": protocol, "number": 1}],
                "participants": participants,
                "starts_at": start.to_rfc3339(), "ends_at": (start + chrono::Duration::days(7)).to_rfc3339()
            }))
            .await
            .json()
            .await
            .expect("json");
        let id = created["id"].as_str().expect("id").to_owned();
        for code in participants {
            let email = format!("agree@{}", domain(code));
            let admin = app
                .login(&app.person(&email, code, &[Role::Admin]).await)
                .await;
            assert_eq!(
                app.agree(&admin, &format!("/v1/exercises/{id}"), &json!({}))
                    .await
                    .status(),
                200
            );
        }
        (id, protocol)
    }

    pub fn new_run(protocol: &str) -> Value {
        json!({"protocol_id": protocol, "protocol_version": 1, "harness": {"name": "inspect", "version": "0.3.285"},
               "config": {"temperature": 0}, "model_version": "mockllm/model"})
    }

    /// A run of the caller's institute on version 1 of `protocol`, started: its id.
    pub async fn running_run(app: &TestApp, token: &str, exercise: &str, protocol: &str) -> String {
        let run = crate::support::expect(
            app.post_as(
                token,
                &format!("/v1/exercises/{exercise}/runs"),
                &new_run(protocol),
            )
            .await,
            201,
        )
        .await;
        let id = run["id"].as_str().expect("id").to_owned();
        crate::support::expect(
            app.post_as(token, &format!("/v1/runs/{id}/start"), &json!({}))
                .await,
            200,
        )
        .await;
        id
    }

    /// A [`running_run`] with these per-sample scores, finished as succeeded: its id.
    pub async fn finished_run(
        app: &TestApp,
        token: &str,
        exercise: &str,
        protocol: &str,
        scores: Vec<Value>,
    ) -> String {
        let id = running_run(app, token, exercise, protocol).await;
        for (path, body) in [
            ("samples", json!(scores)),
            ("finish", json!({"outcome": "succeeded"})),
        ] {
            crate::support::expect(
                app.post_as(token, &format!("/v1/runs/{id}/{path}"), &body)
                    .await,
                200,
            )
            .await;
        }
        id
    }
}
