//! The `jointeval` binary itself, run as a newcomer runs it: on the embedded default
//! (no DATABASE_URL), stopped with signals, restarted, and with its database pulled away.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use jointeval_api::{AppState, AuthSettings, HttpSettings};
use jointeval_embedded_pg::{Cluster, ClusterConfig};
use jointeval_store::PoolSettings;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use jointeval_domain::Role;
use serde_json::{Value, json};
use support::{TestApp, TestDatabase, problem, story};

/// A fresh folder for one test, reachable by the unprivileged cluster user.
fn scratch(name: &str) -> PathBuf {
    let dir = support::scratch_root().join(format!("{name}-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    support::open_to_all(&dir);
    dir
}

fn jointeval() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_jointeval"));
    command
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true);
    command
}

/// `jointeval serve` on the embedded default, once it answers /readyz.
struct Service {
    child: Child,
    base: String,
    data_dir: PathBuf,
    /// What it printed before it listened (first-start logins among it).
    printed: Vec<String>,
}

/// The first admins' password, given through the environment so tests can log in.
const ADMIN_PASSWORD: &str = "bootstrap admin passphrase";

impl Service {
    async fn start(data_dir: &Path) -> Service {
        Self::start_logging_to(data_dir, Stdio::inherit()).await
    }

    /// With JSON log lines written to `logs`.
    async fn start_logging_to(data_dir: &Path, logs: impl Into<Stdio>) -> Service {
        let mut command = jointeval();
        command
            .env("JOINTEVAL_ADMIN_PASSWORD_US", ADMIN_PASSWORD)
            .env("JOINTEVAL_ADMIN_PASSWORD_UK", ADMIN_PASSWORD);
        Self::start_with(command, data_dir, logs).await
    }

    async fn start_with(command: Command, data_dir: &Path, logs: impl Into<Stdio>) -> Service {
        Self::start_serving(command, data_dir, logs, &[]).await
    }

    /// With more flags for `serve`.
    async fn start_serving(
        mut command: Command,
        data_dir: &Path,
        logs: impl Into<Stdio>,
        flags: &[&str],
    ) -> Service {
        let mut child = command
            .args([
                "serve",
                "--bind",
                "127.0.0.1:0",
                "--log-format",
                "json",
                "--data-dir",
            ])
            .arg(data_dir)
            .args(flags)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(logs)
            .spawn()
            .expect("run jointeval");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut printed = Vec::new();
        let base = tokio::time::timeout(Duration::from_secs(120), async {
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                if let Some(url) = line.strip_prefix("jointeval listening on ") {
                    return url.to_owned();
                }
                printed.push(line);
            }
            panic!("jointeval exited before listening")
        })
        .await
        .expect("jointeval listens within two minutes");
        let service = Service {
            child,
            base,
            data_dir: data_dir.to_path_buf(),
            printed,
        };
        let ready = service.get("/readyz").await;
        assert_eq!(ready.status(), 200, "ready once listening");
        service
    }

    async fn login(&self, email: &str, password: &str) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}/v1/auth/token", self.base))
            .form(&[
                ("grant_type", "password"),
                ("username", email),
                ("password", password),
            ])
            .send()
            .await
            .expect("request")
    }

    async fn admin_token(&self) -> String {
        let response = self
            .login("admin@us.jointeval.invalid", ADMIN_PASSWORD)
            .await;
        assert_eq!(response.status(), 200, "the bootstrapped US admin logs in");
        let body: serde_json::Value = response.json().await.expect("json");
        body["access_token"].as_str().expect("token").to_owned()
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        reqwest::get(format!("{}{path}", self.base))
            .await
            .expect("request")
    }

    fn postmaster_pid(&self) -> i32 {
        let text =
            std::fs::read_to_string(self.data_dir.join("pg/postmaster.pid")).expect("pid file");
        text.lines()
            .next()
            .and_then(|l| l.parse().ok())
            .expect("a pid")
    }

    fn database(&self) -> PgConnectOptions {
        PgConnectOptions::new()
            .socket(self.data_dir.join("pg"))
            .username("postgres")
            .database("jointeval")
    }

    async fn signal_and_wait(self, signal: Signal) -> std::process::ExitStatus {
        self.signal(signal);
        self.wait().await
    }

    fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(self.child.id().expect("running") as i32);
        kill(pid, signal).expect("signal jointeval");
    }

    async fn wait(mut self) -> std::process::ExitStatus {
        tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("jointeval exits within a minute")
            .expect("wait")
    }
}

fn is_running(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
}

/// The institutes, as the bootstrapped US admin sees them through the API.
async fn institute_codes(service: &Service) -> Vec<String> {
    let token = service.admin_token().await;
    let response = reqwest::Client::new()
        .get(format!("{}/v1/institutes", service.base))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    let body: serde_json::Value = response.json().await.expect("json");
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["code"].as_str().expect("code").to_owned())
        .collect()
}

#[tokio::test]
async fn the_embedded_default_stops_cleanly_and_keeps_its_data() {
    let dir = scratch("embedded");
    let data_dir = dir.join("data");

    let first = Service::start(&data_dir).await;
    let mut conn = first
        .database()
        .connect()
        .await
        .expect("reach the private cluster");
    sqlx::query(
        "insert into institutes (id, code, name) values ($1, 'JP', 'Japan AI Safety Institute')",
    )
    .bind(uuid::Uuid::now_v7())
    .execute(&mut conn)
    .await
    .expect("write");
    conn.close().await.expect("close");
    assert_eq!(institute_codes(&first).await, ["JP", "UK", "US"]);
    let postgres = first.postmaster_pid();

    let status = first.signal_and_wait(Signal::SIGTERM).await;
    assert!(status.success(), "jointeval exits 0 on SIGTERM: {status}");
    assert!(
        !is_running(postgres),
        "PostgreSQL {postgres} still runs after jointeval stopped"
    );
    assert!(
        !data_dir.join("pg/postmaster.pid").exists(),
        "the cluster did not shut down cleanly"
    );

    let second = Service::start(&data_dir).await;
    assert_eq!(
        institute_codes(&second).await,
        ["JP", "UK", "US"],
        "the data survives a restart"
    );
    let status = second.signal_and_wait(Signal::SIGINT).await;
    assert!(status.success(), "jointeval exits 0 on SIGINT: {status}");
    std::fs::remove_dir_all(dir).expect("cleanup");
}

#[tokio::test]
async fn every_log_line_of_a_request_carries_its_id_and_route() {
    let dir = scratch("logs");
    let log_path = dir.join("jointeval.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let service = Service::start_logging_to(&dir.join("data"), log).await;
    let response = reqwest::Client::new()
        .get(format!("{}/v1/institutes", service.base))
        .header("x-request-id", "trace-me-7")
        .send()
        .await
        .expect("request");
    assert_eq!(response.headers()["x-request-id"], "trace-me-7");
    assert!(service.signal_and_wait(Signal::SIGTERM).await.success());

    let text = std::fs::read_to_string(&log_path).expect("logs");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("every log line is JSON"))
        .collect();
    let of_request: Vec<_> = lines
        .iter()
        .filter(|l| l["span"]["request_id"] == "trace-me-7")
        .collect();
    assert!(
        !of_request.is_empty(),
        "no log line carries the request id:\n{text}"
    );
    for line in of_request {
        assert_eq!(line["span"]["route"], "/v1/institutes", "{line}");
    }
    std::fs::remove_dir_all(dir).expect("cleanup");
}

#[tokio::test]
async fn a_pg_bin_dir_without_the_programs_is_named() {
    let dir = scratch("bindir");
    let stderr = serve_fails(
        &["serve", "--pg-bin-dir", "/nonexistent/bin"],
        &dir.join("data"),
    )
    .await;
    assert!(
        stderr.contains("/nonexistent/bin does not hold the PostgreSQL server programs"),
        "{stderr}"
    );
    std::fs::remove_dir_all(dir).expect("cleanup");
}

/// The README's first-login walk-through, as a newcomer follows it.
#[tokio::test]
async fn the_first_start_prints_one_time_logins_that_must_be_changed() {
    let dir = scratch("first-login");
    let service = Service::start_with(jointeval(), &dir.join("data"), Stdio::inherit()).await;
    let line = service
        .printed
        .iter()
        .find(|l| l.starts_with("US: admin admin@us.jointeval.invalid created; one-time password"))
        .unwrap_or_else(|| panic!("no US login printed: {:?}", service.printed));
    let one_time = line.rsplit(": ").next().expect("password").to_owned();
    assert!(
        service
            .printed
            .iter()
            .any(|l| l.starts_with("UK: admin admin@uk.jointeval.invalid"))
    );

    let response = service.login("admin@us.jointeval.invalid", &one_time).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    let token = body["access_token"].as_str().expect("token").to_owned();
    let client = reqwest::Client::new();
    let blocked = client
        .get(format!("{}/v1/institutes", service.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    let problem = problem(blocked, 403).await;
    assert_eq!(
        problem["type"],
        "urn:jointeval:problem:password-change-required"
    );

    let changed = client
        .post(format!("{}/v1/me/password", service.base))
        .bearer_auth(&token)
        .json(&serde_json::json!({"current_password": one_time, "new_password": "my own long passphrase"}))
        .send()
        .await
        .expect("request");
    assert_eq!(changed.status(), 204);
    let listed = client
        .get(format!("{}/v1/institutes", service.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(listed.status(), 200);
    assert_eq!(
        service
            .login("admin@us.jointeval.invalid", &one_time)
            .await
            .status(),
        401
    );
    assert_eq!(
        service
            .login("admin@us.jointeval.invalid", "my own long passphrase")
            .await
            .status(),
        200
    );
    assert!(service.signal_and_wait(Signal::SIGTERM).await.success());

    // The second start bootstraps nothing and prints no password.
    let again = Service::start_with(jointeval(), &dir.join("data"), Stdio::inherit()).await;
    // Nothing at all before it listens, so no password either.
    assert!(again.printed.is_empty(), "{:?}", again.printed);
    assert!(again.signal_and_wait(Signal::SIGTERM).await.success());
    std::fs::remove_dir_all(dir).expect("cleanup");
}

#[tokio::test]
async fn a_killed_service_does_not_block_the_next_start() {
    let dir = scratch("killed");
    let data_dir = dir.join("data");
    let first = Service::start(&data_dir).await;
    let postgres = first.postmaster_pid();
    first.signal_and_wait(Signal::SIGKILL).await;

    let second = Service::start(&data_dir).await;
    assert_ne!(second.postmaster_pid(), postgres);
    assert!(
        !is_running(postgres),
        "the orphaned PostgreSQL was left running"
    );
    let status = second.signal_and_wait(Signal::SIGTERM).await;
    assert!(status.success());

    // A lock file naming a process that is gone, as a power cut leaves it.
    let lock = data_dir.join("pg/postmaster.pid");
    std::fs::write(
        &lock,
        format!("{postgres}\n{}\n", data_dir.join("pg").display()),
    )
    .expect("write");
    let third = Service::start(&data_dir).await;
    assert!(third.signal_and_wait(Signal::SIGTERM).await.success());
    std::fs::remove_dir_all(dir).expect("cleanup");
}

async fn serve_fails(args: &[&str], data_dir: &Path) -> String {
    let output = jointeval()
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .await
        .expect("run jointeval");
    assert!(
        !output.status.success(),
        "jointeval should have refused to start"
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn a_socket_path_over_the_limit_is_refused_with_advice() {
    let dir = scratch("long");
    let data_dir = dir.join("d".repeat(100));
    let stderr = serve_fails(&["serve", "--bind", "127.0.0.1:0"], &data_dir).await;
    assert!(stderr.contains("socket path"), "{stderr}");
    assert!(stderr.contains("shorter --data-dir"), "{stderr}");
    std::fs::remove_dir_all(dir).expect("cleanup");
}

/// Only a root service hands the cluster to another user: ignored for others (the harness
/// says so), run as root by `.ci/run` with `--ignored`.
#[tokio::test]
#[ignore = "needs root: cargo test --test embedded -- --ignored, as root"]
async fn a_data_dir_closed_to_the_cluster_user_is_named() {
    assert!(nix::unistd::geteuid().is_root(), "run as root");
    let dir = scratch("closed");
    let closed = dir.join("closed");
    std::fs::create_dir(&closed).expect("mkdir");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let stderr = serve_fails(&["serve", "--bind", "127.0.0.1:0"], &closed.join("data")).await;
    assert!(stderr.contains("cannot reach the data folder"), "{stderr}");
    assert!(
        stderr.contains(&format!("{} is closed to it", closed.display())),
        "{stderr}"
    );
    std::fs::remove_dir_all(dir).expect("cleanup");
}

#[tokio::test]
#[ignore = "needs root: cargo test --test embedded -- --ignored, as root"]
async fn an_unknown_cluster_user_is_named() {
    assert!(nix::unistd::geteuid().is_root(), "run as root");
    let dir = scratch("nouser");
    let stderr = serve_fails(
        &["serve", "--pg-user", "no-such-user-here"],
        &dir.join("data"),
    )
    .await;
    assert!(stderr.contains("`no-such-user-here`"), "{stderr}");
    std::fs::remove_dir_all(dir).expect("cleanup");
}

/// A URL for `DATABASE_URL` that reaches `options` (over TCP or a Unix socket).
fn url_of(options: &PgConnectOptions) -> String {
    let db = options.get_database().expect("database");
    let user = options.get_username();
    match options.get_socket() {
        Some(socket) => format!("postgres:///{db}?host={}&user={user}", socket.display()),
        None => format!(
            "postgres://{user}@{}:{}/{db}",
            options.get_host(),
            options.get_port()
        ),
    }
}

#[tokio::test]
async fn migrate_applies_the_schema_once() {
    let db = TestDatabase::empty().await;
    for _ in 0..2 {
        let output = jointeval()
            .arg("migrate")
            .env("DATABASE_URL", url_of(&db.options))
            .output()
            .await
            .expect("run jointeval migrate");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let pool = db.pool();
    assert!(
        jointeval_store::migrations_current(&pool)
            .await
            .expect("check")
    );
    let runs: i64 = sqlx::query_scalar("select count(*) from _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(runs as usize, jointeval_store::MIGRATOR.iter().count());
    pool.close().await;
}

#[tokio::test]
async fn openapi_prints_the_committed_contract() {
    let output = jointeval()
        .arg("openapi")
        .output()
        .await
        .expect("run jointeval openapi");
    assert!(output.status.success());
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml"))
        .expect("openapi.yaml");
    assert_eq!(String::from_utf8_lossy(&output.stdout), committed);
}

/// A cluster of the test's own, started, with the service's database in it.
async fn own_cluster(name: &str, durable: bool) -> (ClusterConfig, Cluster) {
    let config = ClusterConfig {
        data_dir: scratch(name).join("data"),
        user_when_root: "postgres".into(),
        bin_dir: None,
        durable,
    };
    let cluster = Cluster::start(&config).await.expect("start a cluster");
    cluster
        .ensure_database("jointeval")
        .await
        .expect("create the database");
    (config, cluster)
}

#[tokio::test]
async fn the_service_answers_503_while_its_database_is_down_and_recovers() {
    let (config, cluster) = own_cluster("outage", false).await;
    let pool = jointeval_store::connect(
        cluster.connect_options("jointeval"),
        &PoolSettings {
            max_connections: 4,
            acquire_timeout: Duration::from_millis(500),
            ..PoolSettings::default()
        },
    );
    jointeval_store::migrate(&pool).await.expect("migrate");
    let router = jointeval_api::router(AppState::new(
        pool.clone(),
        HttpSettings::default(),
        AuthSettings::default(),
    ));
    let app = TestApp::serve(router, pool, TestDatabase::empty().await).await;
    assert_eq!(app.get("/.well-known/jwks.json").await.status(), 200);

    cluster.stop().await.expect("stop the cluster");
    for path in ["/readyz", "/.well-known/jwks.json"] {
        let response = tokio::time::timeout(Duration::from_secs(10), app.get(path))
            .await
            .expect("an answer, not a hang");
        assert!(response.headers().contains_key("retry-after"), "{path}");
        let body = problem(response, 503).await;
        assert_eq!(body["type"], "urn:jointeval:problem:database-unavailable");
    }

    let cluster = Cluster::start(&config).await.expect("restart the cluster");
    let mut ready = false;
    for _ in 0..100 {
        if app.get("/readyz").await.status() == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "the same server recovers once the database returns");
    assert_eq!(app.get("/.well-known/jwks.json").await.status(), 200);
    drop(app);
    cluster.stop().await.expect("stop");
    std::fs::remove_dir_all(config.data_dir.parent().expect("its scratch folder"))
        .expect("cleanup");
}

/// What one writer saw: the writes the service acknowledged, and every refusal.
#[derive(Default)]
struct Acknowledged {
    /// Idempotency key → the run the service answered for it.
    runs: Vec<(String, String)>,
    /// Sample ids of the writer's own run the service acknowledged.
    samples: Vec<String>,
    /// Answers that were not a success, each checked to be a 503 problem to retry.
    refusals: usize,
    /// The slowest answer.
    slowest: Duration,
}

/// Sends `request` until the service acknowledges it; every refusal on the way must be
/// a 503 problem with Retry-After. Answers the acknowledged body.
async fn until_acknowledged(
    seen: &mut Acknowledged,
    request: impl Fn() -> reqwest::RequestBuilder,
) -> Value {
    for _ in 0..600 {
        let started = std::time::Instant::now();
        let response = request()
            .send()
            .await
            .expect("an answer, not a dropped connection");
        seen.slowest = seen.slowest.max(started.elapsed());
        if response.status().is_success() {
            return response.json().await.expect("json");
        }
        assert!(
            response.headers().contains_key("retry-after"),
            "a refusal says when to retry"
        );
        problem(response, 503).await;
        seen.refusals += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("a write was never acknowledged")
}

/// `pg_ctl stop -m immediate` on the cluster: PostgreSQL's crash, without a checkpoint.
fn crash(config: &ClusterConfig) {
    let bin = jointeval_embedded_pg::find_bin_dir().expect("PostgreSQL binaries");
    let mut pg_ctl = std::process::Command::new(bin.join("pg_ctl"));
    pg_ctl
        .arg("stop")
        .args(["-m", "immediate", "-D"])
        .arg(config.data_dir.join("pg"));
    jointeval_embedded_pg::ClusterUser::resolve(&config.user_when_root)
        .expect("cluster user")
        .apply(&mut pg_ctl);
    let output = pg_ctl.output().expect("run pg_ctl");
    assert!(
        output.status.success(),
        "pg_ctl stop: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn acknowledged_writes_survive_a_database_crash_under_load() {
    const WRITERS: usize = 4;
    const ROUNDS: usize = 12;
    const BATCH: usize = 50;
    // Acknowledged means flushed: the guarantee under test.
    let (config, cluster) = own_cluster("crash", true).await;
    let settings = PoolSettings {
        max_connections: 8,
        acquire_timeout: Duration::from_millis(500),
        ..PoolSettings::default()
    };
    let owner = jointeval_store::connect(cluster.connect_options("jointeval"), &settings);
    jointeval_store::migrate(&owner).await.expect("migrate");
    jointeval_store::roles::ensure_service_login(&owner, jointeval_store::roles::SERVICE_LOGIN)
        .await
        .expect("service login");
    jointeval_api::auth::tokens::ensure_signing_key(&owner)
        .await
        .expect("signing key");
    let service = jointeval_store::connect(
        cluster
            .connect_options("jointeval")
            .username(jointeval_store::roles::SERVICE_LOGIN),
        &settings,
    );
    // What "acknowledged means flushed" rests on: a commit is answered only once its WAL
    // is on disk. (`pg_ctl stop -m immediate` keeps the page cache, so the crash alone
    // could not tell a flushed write from a buffered one; these settings can.)
    for (setting, wanted) in [
        ("fsync", "on"),
        ("synchronous_commit", "on"),
        ("full_page_writes", "on"),
    ] {
        let value: String = sqlx::query_scalar(&format!("show {setting}"))
            .fetch_one(&service)
            .await
            .expect("a setting");
        assert_eq!(value, wanted, "{setting} of the service's connections");
    }
    let request_timeout = Duration::from_secs(5);
    let router = jointeval_api::router(AppState::new(
        service,
        HttpSettings {
            request_timeout,
            ..HttpSettings::default()
        },
        AuthSettings::default(),
    ));
    let app = TestApp::serve(router, owner.clone(), TestDatabase::empty().await).await;

    let (exercise, protocol) = story::active_exercise(&app).await;
    let evaluator = app
        .login(&app.person("crash@nist.gov", "US", &[Role::Evaluator]).await)
        .await;
    // Each writer has a running run of its own for its scores.
    let mut own_runs = Vec::new();
    for _ in 0..WRITERS {
        let run: Value = app
            .post_as(
                &evaluator,
                &format!("/v1/exercises/{exercise}/runs"),
                &story::new_run(&protocol),
            )
            .await
            .json()
            .await
            .expect("json");
        let path = format!("/v1/runs/{}", run["id"].as_str().expect("id"));
        let started = app
            .post_as(&evaluator, &format!("{path}/start"), &json!({}))
            .await;
        assert_eq!(started.status(), 200);
        own_runs.push(path);
    }

    // Readiness, watched throughout.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (client, url, done) = (app.client.clone(), app.url("/readyz"), done.clone());
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let status = client
                    .get(&url)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await
                    .expect("readyz answers")
                    .status()
                    .as_u16();
                if statuses.last() != Some(&status) {
                    statuses.push(status);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            statuses
        })
    };

    let acknowledged = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writers: Vec<_> = own_runs
        .iter()
        .enumerate()
        .map(|(w, own_run)| {
            let client = reqwest::Client::builder()
                .timeout(request_timeout * 3)
                .build()
                .expect("client");
            let (runs_url, samples_url) = (
                app.url(&format!("/v1/exercises/{exercise}/runs")),
                app.url(&format!("{own_run}/samples")),
            );
            let (token, body, acknowledged) =
                (evaluator.clone(), story::new_run(&protocol), acknowledged.clone());
            tokio::spawn(async move {
                let mut seen = Acknowledged::default();
                for round in 0..ROUNDS {
                    let key = format!("crash-{w}-{round}");
                    let run = until_acknowledged(&mut seen, || {
                        client
                            .post(&runs_url)
                            .bearer_auth(&token)
                            .header("idempotency-key", &key)
                            .json(&body)
                    })
                    .await;
                    seen.runs.push((key, run["id"].as_str().expect("id").to_owned()));
                    let ids: Vec<String> = (0..BATCH).map(|i| format!("w{w}-r{round}-s{i}")).collect();
                    let scores: Vec<Value> = ids
                        .iter()
                        .map(|id| json!({"sample_id": id, "epoch": 1, "scorer": "match", "value": "C"}))
                        .collect();
                    until_acknowledged(&mut seen, || {
                        client.post(&samples_url).bearer_auth(&token).json(&scores)
                    })
                    .await;
                    seen.samples.extend(ids);
                    acknowledged.fetch_add(2, std::sync::atomic::Ordering::Relaxed);
                }
                seen
            })
        })
        .collect();

    // The crash comes mid-load, once some writes are in.
    while acknowledged.load(std::sync::atomic::Ordering::Relaxed) < WRITERS * 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    crash(&config);
    cluster.stop().await.expect("the old postmaster is gone");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cluster = Cluster::start(&config)
        .await
        .expect("restart after the crash");

    let mut seen = Vec::new();
    for writer in writers {
        seen.push(
            tokio::time::timeout(Duration::from_secs(180), writer)
                .await
                .expect("the writers finish once the database is back")
                .expect("writer"),
        );
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let readiness = watcher.await.expect("watcher");

    // Every refusal during the outage was a retryable problem (checked as it came), and
    // none hung.
    let refusals: usize = seen.iter().map(|s| s.refusals).sum();
    assert!(
        refusals > 0,
        "the crash came while the writers were writing"
    );
    let slowest = seen.iter().map(|s| s.slowest).max().expect("writers");
    assert!(
        slowest < request_timeout + Duration::from_secs(2),
        "no answer waited past the request timeout: {slowest:?}"
    );
    assert_eq!(readiness.first(), Some(&200), "{readiness:?}");
    assert!(
        readiness.contains(&503),
        "readiness went down: {readiness:?}"
    );
    assert_eq!(readiness.last(), Some(&200), "and came back: {readiness:?}");

    // Every acknowledged write is there, once.
    let keys: Vec<String> = seen
        .iter()
        .flat_map(|s| s.runs.iter().map(|(k, _)| k.clone()))
        .collect();
    let ids: Vec<uuid::Uuid> = seen
        .iter()
        .flat_map(|s| s.runs.iter().map(|(_, id)| id.parse().expect("uuid")))
        .collect();
    assert_eq!(keys.len(), WRITERS * ROUNDS);
    let present: i64 = sqlx::query_scalar("select count(*) from runs where id = any($1)")
        .bind(&ids)
        .fetch_one(&owner)
        .await
        .expect("count");
    assert_eq!(
        present as usize,
        ids.len(),
        "every acknowledged run survived"
    );
    let runs: i64 = sqlx::query_scalar("select count(*) from runs")
        .fetch_one(&owner)
        .await
        .expect("count");
    assert_eq!(
        runs as usize,
        WRITERS + WRITERS * ROUNDS,
        "no retry made a second run"
    );
    for (writer, own_run) in seen.iter().zip(&own_runs) {
        let run_id: uuid::Uuid = own_run
            .trim_start_matches("/v1/runs/")
            .parse()
            .expect("uuid");
        let stored: Vec<String> = sqlx::query_scalar(
            "select sample_id from run_samples where run_id = $1 order by sample_id",
        )
        .bind(run_id)
        .fetch_all(&owner)
        .await
        .expect("samples");
        let mut expected = writer.samples.clone();
        expected.sort();
        assert_eq!(stored, expected, "every acknowledged score, once");
        let counted: i64 = sqlx::query_scalar("select sample_count from runs where id = $1")
            .bind(run_id)
            .fetch_one(&owner)
            .await
            .expect("count");
        assert_eq!(counted as usize, stored.len(), "the run's count agrees");
    }
    let mut conn = owner.acquire().await.expect("connection");
    let events = jointeval_store::audit::chain(&mut conn, 0, i64::MAX)
        .await
        .expect("events");
    let mut check = jointeval_domain::audit::ChainCheck::new(None);
    for event in &events {
        check.push(event).expect("the audit chain is whole");
    }
    drop(conn);

    drop(app);
    owner.close().await;
    cluster.stop().await.expect("stop");
    std::fs::remove_dir_all(config.data_dir.parent().expect("its scratch folder"))
        .expect("cleanup");
}

/// `jointeval audit verify` against the database of `app`, with its output.
async fn audit_verify(app: &TestApp, checkpoint: Option<&Path>) -> (bool, String) {
    // As the service's own role, under row-level security, as the README says to.
    let mut command = jointeval();
    command.args(["audit", "verify"]).env(
        "DATABASE_URL",
        url_of(
            &app.db
                .options
                .clone()
                .username(jointeval_store::roles::SERVICE_LOGIN),
        ),
    );
    if let Some(file) = checkpoint {
        command.arg("--from-checkpoint").arg(file);
    }
    let output = command.output().await.expect("run jointeval audit verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Changes stored events as the owner can, past the append-only triggers.
async fn as_tamperer(pool: &sqlx::PgPool, statements: &[String]) {
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query("set local session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .expect("disable triggers");
    for statement in statements {
        sqlx::query(statement)
            .execute(&mut *tx)
            .await
            .expect("tamper");
    }
    tx.commit().await.expect("commit");
}

#[tokio::test]
async fn audit_verify_finds_a_changed_event_and_a_rewritten_history() {
    use jointeval_domain::Role;
    use jointeval_domain::audit::Event;

    let app = TestApp::spawn().await;
    app.institute("UK").await;
    let admin = app
        .login(&app.person("admin@us.example", "US", &[Role::Admin]).await)
        .await;
    for n in 0..3 {
        let created = app
            .post_as(
                &admin,
                "/v1/accounts",
                &serde_json::json!({"kind": "person", "email": format!("p{n}@us.example"), "display_name": format!("P {n}")}),
            )
            .await;
        assert_eq!(created.status(), 201);
    }
    let checkpoint = app.get_as(&admin, "/v1/audit/checkpoint").await;
    assert_eq!(checkpoint.status(), 200);
    let checkpoint: serde_json::Value = checkpoint.json().await.expect("json");
    let seq = checkpoint["seq"].as_i64().expect("seq");
    assert!(seq >= 4, "logins and creations were audited: {checkpoint}");
    let dir = scratch("checkpoint");
    let file = dir.join("checkpoint.json");
    std::fs::write(&file, checkpoint.to_string()).expect("save checkpoint");
    // The chain goes on after the checkpoint.
    let created = app
        .post_as(
            &admin,
            "/v1/accounts",
            &serde_json::json!({"kind": "person", "email": "later@us.example", "display_name": "Later"}),
        )
        .await;
    assert_eq!(created.status(), 201);

    let (ok, text) = audit_verify(&app, Some(&file)).await;
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!("extends the signed checkpoint at event {seq}")),
        "{text}"
    );

    // A checkpoint whose unsigned fields were edited is refused.
    let mut edited = checkpoint.clone();
    edited["seq"] = serde_json::json!(seq - 1);
    let edited_file = dir.join("edited.json");
    std::fs::write(&edited_file, edited.to_string()).expect("save");
    let (ok, text) = audit_verify(&app, Some(&edited_file)).await;
    assert!(!ok && text.contains("altered"), "{text}");

    // One changed field of event 2 breaks the chain there.
    let owner = app.db.pool();
    let original: String = sqlx::query_scalar("select summary from audit_events where seq = 2")
        .fetch_one(&owner)
        .await
        .expect("summary");
    as_tamperer(
        &owner,
        &[r#"update audit_events set summary = '{"forged":true}' where seq = 2"#.to_owned()],
    )
    .await;
    let (ok, text) = audit_verify(&app, None).await;
    assert!(!ok, "{text}");
    assert!(text.contains("broken at event 2"), "{text}");

    // Rehashing everything after the change makes the chain hold again on its own, but
    // not against the checkpoint taken before.
    let rows = sqlx::query(
        "select seq, at, actor, institute_id, action, object_type, object_id, visible_to,
                summary, request_id, client_addr, prev_hash, hash
         from audit_events order by seq",
    )
    .fetch_all(&owner)
    .await
    .expect("events");
    let mut prev = jointeval_domain::audit::GENESIS.to_owned();
    let mut statements = Vec::new();
    for r in rows {
        use sqlx::Row;
        let event = Event {
            seq: r.get("seq"),
            at: r.get("at"),
            actor: r.get("actor"),
            institute_id: r.get("institute_id"),
            action: r.get("action"),
            object_type: r.get("object_type"),
            object_id: r.get("object_id"),
            visible_to: r.get("visible_to"),
            summary: r.get("summary"),
            request_id: r.get("request_id"),
            client_addr: r.get("client_addr"),
            prev_hash: r.get("prev_hash"),
            hash: r.get("hash"),
        }
        .seal(&prev);
        statements.push(format!(
            "update audit_events set prev_hash = '{}', hash = '{}' where seq = {}",
            event.prev_hash, event.hash, event.seq
        ));
        statements.push(format!(
            "update audit_head set seq = {}, hash = '{}'",
            event.seq, event.hash
        ));
        prev = event.hash;
    }
    as_tamperer(&owner, &statements).await;
    let (ok, text) = audit_verify(&app, None).await;
    assert!(ok, "a consistent rewrite verifies alone: {text}");
    let (ok, text) = audit_verify(&app, Some(&file)).await;
    assert!(!ok, "{text}");
    assert!(text.contains("rewritten"), "{text}");
    assert_ne!(original, r#"{"forged":true}"#);

    // A removed event inside the chain is found without any checkpoint (the tail cut is
    // the next test's).
    as_tamperer(
        &owner,
        &["delete from audit_events where seq = 3".to_owned()],
    )
    .await;
    let (ok, text) = audit_verify(&app, None).await;
    assert!(!ok, "{text}");
    assert!(text.contains("broken at event 3"), "{text}");
}

/// Events cut off the tail, with the head wound back: the shortened chain holds on its
/// own, and only a checkpoint saved before the cut shows that events are gone.
#[tokio::test]
async fn audit_verify_finds_events_cut_off_the_tail_against_a_saved_checkpoint() {
    use jointeval_domain::Role;

    let app = TestApp::spawn().await;
    let admin = app
        .login(&app.person("admin@us.example", "US", &[Role::Admin]).await)
        .await;
    for n in 0..4 {
        let created = app
            .post_as(
                &admin,
                "/v1/accounts",
                &serde_json::json!({"kind": "person", "email": format!("t{n}@us.example"), "display_name": format!("T {n}")}),
            )
            .await;
        assert_eq!(created.status(), 201);
    }
    let checkpoint: serde_json::Value = app
        .get_as(&admin, "/v1/audit/checkpoint")
        .await
        .json()
        .await
        .expect("json");
    let seq = checkpoint["seq"].as_i64().expect("seq");
    let dir = scratch("tail");
    let file = dir.join("checkpoint.json");
    std::fs::write(&file, checkpoint.to_string()).expect("save checkpoint");
    let (ok, text) = audit_verify(&app, Some(&file)).await;
    assert!(ok, "untouched, the chain reaches the checkpoint: {text}");

    // The last three events go, and the head is wound back to what is left.
    let owner = app.db.pool();
    let kept = seq - 3;
    let kept_hash: String = sqlx::query_scalar("select hash from audit_events where seq = $1")
        .bind(kept)
        .fetch_one(&owner)
        .await
        .expect("hash");
    as_tamperer(
        &owner,
        &[
            format!("delete from audit_events where seq > {kept}"),
            format!("update audit_head set seq = {kept}, hash = '{kept_hash}'"),
        ],
    )
    .await;
    let (ok, text) = audit_verify(&app, None).await;
    assert!(ok, "the shortened chain holds on its own: {text}");
    let (ok, text) = audit_verify(&app, Some(&file)).await;
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!(
            "the chain ends at event {kept}, before the checkpoint"
        )),
        "{text}"
    );
    std::fs::remove_dir_all(dir).expect("cleanup");
}

#[tokio::test]
async fn serve_refuses_a_database_role_that_bypasses_row_level_security() {
    let db = TestDatabase::migrated().await;
    let owner = url_of(&db.options);

    // As the owner (here a superuser): refused, with the way out named.
    let output = jointeval()
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("DATABASE_URL", &owner)
        .output()
        .await
        .expect("run jointeval serve");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("a superuser"), "{stderr}");
    assert!(stderr.contains("row-level security"), "{stderr}");
    assert!(stderr.contains("--allow-rls-bypass"), "{stderr}");

    // As the service's own role, with the owner's URL for migrations: it serves.
    let mut command = jointeval();
    command
        .env(
            "DATABASE_URL",
            url_of(
                &db.options
                    .clone()
                    .username(jointeval_store::roles::SERVICE_LOGIN),
            ),
        )
        .env("JOINTEVAL_OWNER_DATABASE_URL", &owner);
    let service = Service::start_with(command, &scratch("rls-role"), Stdio::inherit()).await;
    assert_eq!(service.get("/readyz").await.status(), 200);
    drop(service);

    // Allowed explicitly, the owner serves too, with a warning in the log.
    let dir = scratch("rls-bypass");
    let log = dir.join("log");
    let mut command = jointeval();
    command
        .env("DATABASE_URL", &owner)
        .env("JOINTEVAL_ALLOW_RLS_BYPASS", "true");
    let service = Service::start_with(
        command,
        &dir,
        std::fs::File::create(&log).expect("log file"),
    )
    .await;
    assert_eq!(service.get("/readyz").await.status(), 200);
    drop(service);
    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(logged.contains("bypasses row-level security"), "{logged}");
}

/// The admin flags taken from the environment, as the README's first login has them.
fn with_admin_passwords(mut command: Command) -> Command {
    command
        .env("JOINTEVAL_ADMIN_PASSWORD_US", ADMIN_PASSWORD)
        .env("JOINTEVAL_ADMIN_PASSWORD_UK", ADMIN_PASSWORD);
    command
}

/// The claims of a JWT, unverified: what the service put in it.
fn claims_of(token: &str) -> serde_json::Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64url"),
    )
    .expect("json")
}

#[tokio::test]
async fn serve_no_migrate_leaves_the_schema_to_migrate() {
    let db = TestDatabase::empty().await;
    let owner = url_of(&db.options);
    let service_url = url_of(
        &db.options
            .clone()
            .username(jointeval_store::roles::SERVICE_LOGIN),
    );
    let migrations_applied = || async {
        sqlx::query_scalar::<_, bool>("select to_regclass('_sqlx_migrations') is not null")
            .fetch_one(&db.pool())
            .await
            .expect("query")
    };

    // On an empty database, serve --no-migrate applies nothing, and stops with the reason.
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        jointeval()
            .args(["serve", "--no-migrate", "--bind", "127.0.0.1:0"])
            .env("DATABASE_URL", &owner)
            .env("JOINTEVAL_ALLOW_RLS_BYPASS", "true")
            .output(),
    )
    .await
    .expect("it stops rather than waits")
    .expect("run jointeval serve");
    assert!(!output.status.success());
    assert!(!migrations_applied().await, "--no-migrate migrated");

    // `jointeval migrate` as the owner, then serve --no-migrate as the service's role
    // alone, with no owner's URL at all: it serves, ready.
    let migrated = jointeval()
        .arg("migrate")
        .env("DATABASE_URL", &owner)
        .output()
        .await
        .expect("run jointeval migrate");
    assert!(migrated.status.success(), "{migrated:?}");
    assert!(migrations_applied().await);
    let mut command = jointeval();
    command
        .env("DATABASE_URL", &service_url)
        .env_remove("JOINTEVAL_OWNER_DATABASE_URL");
    let service = Service::start_serving(
        command,
        &scratch("no-migrate"),
        Stdio::inherit(),
        &["--no-migrate"],
    )
    .await;
    assert_eq!(service.get("/readyz").await.status(), 200);
    assert!(service.signal_and_wait(Signal::SIGTERM).await.success());
}

#[tokio::test]
async fn metrics_bind_serves_the_metrics_on_their_own_address_only() {
    let dir = scratch("metrics");
    let service = Service::start_serving(
        with_admin_passwords(jointeval()),
        &dir.join("data"),
        Stdio::inherit(),
        &["--metrics-bind", "127.0.0.1:0"],
    )
    .await;
    let metrics = service
        .printed
        .iter()
        .find_map(|line| line.strip_prefix("metrics at "))
        .unwrap_or_else(|| panic!("no metrics address printed: {:?}", service.printed))
        .to_owned();
    assert_eq!(service.get("/v1/institutes").await.status(), 401);
    let scraped = reqwest::get(&metrics).await.expect("scrape");
    assert_eq!(scraped.status(), 200);
    let text = scraped.text().await.expect("text");
    assert!(text.contains("http_requests_total"), "{text}");
    assert!(text.contains(r#"route="/v1/institutes""#), "{text}");
    // Not on the API's own address, where no token opens it.
    assert_eq!(service.get("/metrics").await.status(), 404);
    assert!(service.signal_and_wait(Signal::SIGTERM).await.success());
    std::fs::remove_dir_all(dir).expect("cleanup");
}

#[tokio::test]
async fn token_settings_shape_the_tokens_issued() {
    let dir = scratch("tokens");
    let service = Service::start_serving(
        with_admin_passwords(jointeval()),
        &dir.join("data"),
        Stdio::inherit(),
        &[
            "--token-ttl",
            "120",
            "--token-issuer",
            "https://jointeval.example",
            "--token-audience",
            "partner-api",
        ],
    )
    .await;
    let token = service.admin_token().await;
    let claims = claims_of(&token);
    assert_eq!(claims["iss"], "https://jointeval.example");
    assert_eq!(claims["aud"], "partner-api");
    let lifetime = claims["exp"].as_u64().expect("exp") - claims["iat"].as_u64().expect("iat");
    assert_eq!(lifetime, 120);
    let me = reqwest::Client::new()
        .get(format!("{}/v1/me", service.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("me");
    assert_eq!(me.status(), 200, "its own tokens verify");
    assert!(service.signal_and_wait(Signal::SIGTERM).await.success());

    // The same data under the defaults: a token for another issuer and audience is
    // refused.
    let service = Service::start_with(
        with_admin_passwords(jointeval()),
        &dir.join("data"),
        Stdio::inherit(),
    )
    .await;
    let me = reqwest::Client::new()
        .get(format!("{}/v1/me", service.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("me");
    assert_eq!(me.status(), 401);
    assert!(service.signal_and_wait(Signal::SIGTERM).await.success());
    std::fs::remove_dir_all(dir).expect("cleanup");
}

#[tokio::test]
async fn serve_refuses_a_role_that_is_only_a_member_of_one_that_bypasses() {
    let db = TestDatabase::migrated().await;
    let owner = db.pool();
    let suffix = uuid::Uuid::now_v7().simple().to_string();
    let (bypasser, member) = (format!("jt_bypass_{suffix}"), format!("jt_member_{suffix}"));
    for statement in [
        format!("create role {bypasser} nologin bypassrls"),
        format!(
            "create role {member} login in role {bypasser}, {}",
            jointeval_store::roles::SERVICE_GROUP
        ),
    ] {
        sqlx::query(&statement)
            .execute(&owner)
            .await
            .expect("create role");
    }
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        jointeval()
            .args(["serve", "--no-migrate", "--bind", "127.0.0.1:0"])
            .env(
                "DATABASE_URL",
                url_of(&db.options.clone().username(&member)),
            )
            .output(),
    )
    .await
    .expect("it stops")
    .expect("run jointeval serve");
    for statement in [
        format!("drop role {member}"),
        format!("drop role {bypasser}"),
    ] {
        sqlx::query(&statement)
            .execute(&owner)
            .await
            .expect("drop role");
    }
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("has (or may take) BYPASSRLS"), "{stderr}");
    assert!(stderr.contains("--allow-rls-bypass"), "{stderr}");
}

#[tokio::test]
async fn a_key_rotated_through_the_cli_is_audited_and_old_checkpoints_still_verify() {
    use jointeval_domain::Role;

    let app = TestApp::spawn().await;
    let admin = app
        .login(&app.person("admin@us.example", "US", &[Role::Admin]).await)
        .await;
    let before: serde_json::Value = app
        .get_as(&admin, "/v1/audit/checkpoint")
        .await
        .json()
        .await
        .expect("checkpoint");
    let dir = scratch("rotate");
    let saved = dir.join("checkpoint.json");
    std::fs::write(&saved, before.to_string()).expect("save");

    let output = jointeval()
        .args(["admin", "rotate-signing-key"])
        .env(
            "DATABASE_URL",
            url_of(
                &app.db
                    .options
                    .clone()
                    .username(jointeval_store::roles::SERVICE_LOGIN),
            ),
        )
        .env("JOINTEVAL_OWNER_DATABASE_URL", url_of(&app.db.options))
        .output()
        .await
        .expect("run rotate-signing-key");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let kid = stdout
        .strip_prefix("new signing key ")
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("{stdout}"))
        .to_owned();

    let owner = app.db.pool();
    let (current, retired): (String, i64) = sqlx::query_as(
        "select (select kid from signing_keys where retired_at is null),
                (select count(*) from signing_keys where retired_at is not null)",
    )
    .fetch_one(&owner)
    .await
    .expect("keys");
    assert_eq!((current.as_str(), retired), (kid.as_str(), 1));
    let audited: i64 = sqlx::query_scalar(
        "select count(*) from audit_events where action = 'signing_key.rotated' and object_id = $1",
    )
    .bind(&kid)
    .fetch_one(&owner)
    .await
    .expect("events");
    assert_eq!(audited, 1, "the rotation is in the audit trail");

    // The checkpoint signed by the retired key still verifies, and new ones are signed
    // by the new key; the admin's token of before still works.
    let (ok, text) = audit_verify(&app, Some(&saved)).await;
    assert!(ok, "{text}");
    let after: serde_json::Value = app
        .get_as(&admin, "/v1/audit/checkpoint")
        .await
        .json()
        .await
        .expect("checkpoint");
    let header = after["signed"]
        .as_str()
        .and_then(|jws| jws.split('.').next())
        .map(|h| {
            use base64::Engine;
            serde_json::from_slice::<serde_json::Value>(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(h)
                    .expect("base64url"),
            )
            .expect("json")
        })
        .unwrap_or_else(|| panic!("{after}"));
    assert_eq!(header["kid"], kid.as_str());
    std::fs::remove_dir_all(dir).expect("cleanup");
}

#[tokio::test]
async fn admin_bootstrap_sets_up_a_server_of_ones_own_once() {
    let db = TestDatabase::empty().await;
    let bootstrap = || {
        let mut command = jointeval();
        command
            .args(["admin", "bootstrap"])
            .env(
                "DATABASE_URL",
                url_of(
                    &db.options
                        .clone()
                        .username(jointeval_store::roles::SERVICE_LOGIN),
                ),
            )
            .env("JOINTEVAL_OWNER_DATABASE_URL", url_of(&db.options))
            .env("JOINTEVAL_ADMIN_PASSWORD_US", ADMIN_PASSWORD);
        command
    };
    let first = bootstrap().output().await.expect("bootstrap");
    let stdout = String::from_utf8_lossy(&first.stdout).into_owned();
    assert!(
        first.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        stdout.contains("US: admin admin@us.jointeval.invalid created with the password from JOINTEVAL_ADMIN_PASSWORD_US"),
        "{stdout}"
    );
    let uk_password = stdout
        .lines()
        .find_map(|l| l.strip_prefix("UK: admin admin@uk.jointeval.invalid created; one-time password (shown once, change it at first login): "))
        .unwrap_or_else(|| panic!("{stdout}"))
        .to_owned();

    let again = bootstrap().output().await.expect("bootstrap again");
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success());
    assert!(
        stdout.contains("US: admin admin@us.jointeval.invalid already exists"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("password ("),
        "nothing is shown twice: {stdout}"
    );
    let (accounts, institutes): (i64, i64) =
        sqlx::query_as("select (select count(*) from accounts), (select count(*) from institutes)")
            .fetch_one(&db.pool())
            .await
            .expect("counts");
    assert_eq!((accounts, institutes), (2, 2));

    // Both admins log in, the UK's to change its one-time password first.
    let app = TestApp::on(db, jointeval_api::HttpSettings::default()).await;
    for (email, password) in [
        ("admin@us.jointeval.invalid", ADMIN_PASSWORD),
        ("admin@uk.jointeval.invalid", uk_password.as_str()),
    ] {
        let login = app
            .client
            .post(app.url("/v1/auth/token"))
            .form(&[
                ("grant_type", "password"),
                ("username", email),
                ("password", password),
            ])
            .send()
            .await
            .expect("login");
        assert_eq!(login.status(), 200, "{email}");
    }
}

/// A US evaluator's token on an active exercise, made through an in-process service on
/// `app`'s database (good on any instance of it): (token, exercise, protocol).
async fn evaluator_in_an_exercise(app: &TestApp) -> (String, String, String) {
    use jointeval_domain::Role;
    let (exercise, protocol) = story::active_exercise(app).await;
    let evaluator = app
        .login(&app.person("eval@nist.gov", "US", &[Role::Evaluator]).await)
        .await;
    (evaluator, exercise, protocol)
}

/// A new running run of the exercise: its path.
async fn running_run(app: &TestApp, token: &str, exercise: &str, protocol: &str) -> String {
    let run: serde_json::Value = app
        .post_as(
            token,
            &format!("/v1/exercises/{exercise}/runs"),
            &story::new_run(protocol),
        )
        .await
        .json()
        .await
        .expect("run");
    let path = format!("/v1/runs/{}", run["id"].as_str().expect("id"));
    let started = app
        .post_as(token, &format!("{path}/start"), &serde_json::json!({}))
        .await;
    assert_eq!(started.status(), 200);
    path
}

/// An NDJSON upload whose lines the test sends when it likes: the request, and the
/// sender of its lines (dropping it ends the body).
fn trickled_upload(
    base: &str,
    path: &str,
    token: &str,
) -> (
    tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>,
    tokio::sync::mpsc::Sender<String>,
) {
    let (lines, rx) = tokio::sync::mpsc::channel::<String>(16);
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|line| (Ok::<_, std::io::Error>(line.into_bytes()), rx))
    });
    let request = reqwest::Client::new()
        .post(format!("{base}{path}/samples"))
        .bearer_auth(token)
        .header("content-type", "application/x-ndjson")
        .body(reqwest::Body::wrap_stream(body));
    (tokio::spawn(request.send()), lines)
}

fn score_line(i: usize) -> String {
    serde_json::json!({"sample_id": format!("s{i}"), "epoch": 1, "scorer": "match", "value": 0.5})
        .to_string()
        + "\n"
}

/// SIGTERM while a streamed upload is in flight: the upload finishes within
/// `--shutdown-timeout`, every row stored, and the service exits 0; past the timeout, the
/// upload is cut off and leaves nothing, and the service still exits 0.
#[tokio::test]
async fn a_shutdown_lets_an_upload_in_flight_finish_or_cuts_it_off_cleanly() {
    let app = TestApp::spawn().await;
    let (token, exercise, protocol) = evaluator_in_an_exercise(&app).await;
    let path = running_run(&app, &token, &exercise, &protocol).await;
    let serve = |grace: &'static str| {
        let mut command = jointeval();
        command.env(
            "DATABASE_URL",
            url_of(
                &app.db
                    .options
                    .clone()
                    .username(jointeval_store::roles::SERVICE_LOGIN),
            ),
        );
        let dir = scratch("shutdown");
        async move {
            Service::start_serving(
                command,
                &dir,
                Stdio::inherit(),
                &["--no-migrate", "--shutdown-timeout", grace],
            )
            .await
        }
    };
    let stored = |path: String| {
        let pool = app.pool.clone();
        async move {
            let run: uuid::Uuid = path.trim_start_matches("/v1/runs/").parse().expect("id");
            sqlx::query_scalar::<_, i64>("select count(*) from run_samples where run_id = $1")
                .bind(run)
                .fetch_one(&pool)
                .await
                .expect("count")
        }
    };

    // Within the grace: finished and stored.
    let service = serve("30").await;
    let (upload, lines) = trickled_upload(&service.base, &path, &token);
    for i in 0..500 {
        lines.send(score_line(i)).await.expect("a line");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    service.signal(Signal::SIGTERM);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 500..1_000 {
        lines
            .send(score_line(i))
            .await
            .expect("a line after the signal");
    }
    drop(lines);
    let answer = upload.await.expect("task").expect("an answer");
    assert_eq!(answer.status(), 200);
    let body: serde_json::Value = answer.json().await.expect("json");
    assert_eq!(body["stored"], 1_000, "{body}");
    assert!(service.wait().await.success(), "exit 0 after finishing");
    assert_eq!(stored(path.clone()).await, 1_000);

    // Past the grace: cut off, nothing of it stored, still a clean exit.
    let other = running_run(&app, &token, &exercise, &protocol).await;
    let service = serve("1").await;
    let (upload, lines) = trickled_upload(&service.base, &other, &token);
    for i in 0..500 {
        lines.send(score_line(i)).await.expect("a line");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = std::time::Instant::now();
    service.signal(Signal::SIGTERM);
    let status = service.wait().await;
    assert!(status.success(), "exit 0 after the grace: {status}");
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "stopped {:?} after the signal, with a grace of 1 s",
        signalled.elapsed()
    );
    let cut = upload.await.expect("task");
    assert!(
        cut.as_ref().map_or(true, |r| !r.status().is_success()),
        "the cut upload was not answered as stored"
    );
    drop(lines);
    assert_eq!(stored(other).await, 0, "all or nothing");
}
