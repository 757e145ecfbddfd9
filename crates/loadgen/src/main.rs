//! jointeval-loadgen: points at a running jointeval, sets up its own data through the
//! API, runs the ingest, read and mixed scenarios, and reports requests per second,
//! latency percentiles, errors and the server's memory, as a table and as JSON.
//!
//!     jointeval-loadgen --url http://127.0.0.1:8080 --server-pid 1234 \
//!         --database-url postgres://postgres@127.0.0.1:5432/jointeval --out results.json

mod client;
mod report;
mod rows;
mod rss;
mod scenarios;
mod setup;
mod stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use serde_json::json;

use scenarios::ingest::Format;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Ingest,
    Read,
    Mixed,
}

#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The service's base URL.
    #[arg(long, env = "JOINTEVAL_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The server's process id, to sample its memory (VmRSS, VmHWM) during each step.
    #[arg(long)]
    server_pid: Option<u32>,
    /// PostgreSQL as the owner of the tables (a superuser: row-level security is forced
    /// on run_samples), for the COPY side of ingest. Without it, COPY is skipped.
    #[arg(long, env = "LOADGEN_DATABASE_URL")]
    database_url: Option<String>,
    /// Where to write the figures as JSON.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The scenarios to run, in this order. Reads come first by default, so that the
    /// exports' memory is measured before ingest has grown the server's heap.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "read,ingest,mixed"
    )]
    scenarios: Vec<Scenario>,
    /// Seconds each step runs (an ingest step also stops at --ingest-max-rows).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,

    #[arg(long, env = "JOINTEVAL_ADMIN_PASSWORD_US", hide_env_values = true)]
    us_admin_password: String,
    #[arg(long, env = "JOINTEVAL_ADMIN_PASSWORD_UK", hide_env_values = true)]
    uk_admin_password: String,
    #[arg(long, default_value = "admin@us.jointeval.invalid")]
    us_admin: String,
    #[arg(long, default_value = "admin@uk.jointeval.invalid")]
    uk_admin: String,

    /// Concurrent writers of the ingest steps (each writes its own run).
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    ingest_concurrency: Vec<usize>,
    /// Scores per request of the ingest steps.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    batch_sizes: Vec<u64>,
    /// Rows one ingest step writes at most.
    #[arg(long, default_value_t = 2_000_000)]
    ingest_max_rows: u64,
    /// How scores are sent.
    #[arg(long, value_enum, default_value = "ndjson")]
    ingest_format: Format,

    /// Concurrent readers of the read steps.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    read_concurrency: Vec<usize>,
    /// Scores of the large run exported.
    #[arg(long, default_value_t = 1_000_000)]
    export_rows: u64,
    /// Scores of the small run exported, whose server memory the large one's must match.
    #[arg(long, default_value_t = 10_000)]
    export_small_rows: u64,
    /// Queued runs added to the exercise so that the list of its runs is a full page.
    #[arg(long, default_value_t = 100)]
    list_runs: usize,
    /// Scores per page read.
    #[arg(long, default_value_t = 1000)]
    page: u32,

    /// Readers of the mixed scenario, alternately US and UK viewers.
    #[arg(long, default_value_t = 8)]
    mixed_readers: usize,
    /// Writers of the mixed scenario (the US harness).
    #[arg(long, default_value_t = 2)]
    mixed_writers: usize,
    /// Scores per request of the mixed scenario's writers.
    #[arg(long, default_value_t = 1000)]
    mixed_batch: u64,

    /// Seconds one request may take before it counts as failed.
    #[arg(long, default_value_t = 900)]
    request_timeout: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.duration > 0.0, "--duration must be positive");
    anyhow::ensure!(
        args.batch_sizes.iter().all(|b| *b > 0) && args.mixed_batch > 0,
        "batch sizes must be positive"
    );
    let duration = Duration::from_secs_f64(args.duration);
    let started_at = chrono::Utc::now();
    let api = client::Api::new(&args.url, Duration::from_secs(args.request_timeout))?;

    let began = Instant::now();
    let fixture = setup::fixture(
        &api,
        &setup::Admins {
            us_email: args.us_admin.clone(),
            us_password: args.us_admin_password.clone(),
            uk_email: args.uk_admin.clone(),
            uk_password: args.uk_admin_password.clone(),
        },
    )
    .await
    .context("setting up through the API")?;
    let fixture = Arc::new(fixture);
    println!(
        "setup: accounts, an approved protocol and an active exercise ({}) in {:.1} s",
        fixture.exercise_id,
        began.elapsed().as_secs_f64()
    );

    let mut steps = Vec::new();
    for scenario in &args.scenarios {
        match scenario {
            Scenario::Ingest => {
                let config = scenarios::ingest::Config {
                    concurrency: args.ingest_concurrency.clone(),
                    batch_sizes: args.batch_sizes.clone(),
                    duration,
                    max_rows: args.ingest_max_rows,
                    format: args.ingest_format,
                    database_url: args.database_url.clone(),
                };
                steps.extend(scenarios::ingest::run(&fixture, &config, args.server_pid).await?);
            }
            Scenario::Read => {
                let config = scenarios::read::Config {
                    concurrency: args.read_concurrency.clone(),
                    duration,
                    export_rows: args.export_rows,
                    export_small_rows: args.export_small_rows,
                    list_runs: args.list_runs,
                    page: args.page,
                };
                let (targets, setup) =
                    scenarios::read::prepare(&fixture, &config, args.server_pid).await?;
                steps.extend(setup);
                steps.extend(
                    scenarios::read::run(&fixture, &config, &targets, args.server_pid).await?,
                );
            }
            Scenario::Mixed => {
                let config = scenarios::mixed::Config {
                    readers: args.mixed_readers,
                    writers: args.mixed_writers,
                    batch: args.mixed_batch,
                    format: args.ingest_format,
                    duration,
                    page: args.page,
                    released_rows: args.export_small_rows,
                };
                steps.push(scenarios::mixed::run(&fixture, &config, args.server_pid).await?);
            }
        }
    }

    print!("{}", report::table(&steps));
    let summary = report::summary(&steps);
    print!("{}", report::summary_text(&summary));
    let problems = report::problems(&steps);
    if problems.is_empty() {
        println!("\nno unexpected answers");
    } else {
        println!("\nunexpected answers:");
        for p in &problems {
            println!("  {p}");
        }
    }
    if let Some(out) = &args.out {
        let document = json!({
            "tool": "jointeval-loadgen",
            "version": env!("CARGO_PKG_VERSION"),
            "started_at": started_at,
            "seconds": began.elapsed().as_secs_f64(),
            "url": args.url,
            "server_pid": args.server_pid,
            "config": {
                "scenarios": format!("{:?}", args.scenarios),
                "duration_secs": args.duration,
                "ingest_concurrency": args.ingest_concurrency,
                "batch_sizes": args.batch_sizes,
                "ingest_max_rows": args.ingest_max_rows,
                "ingest_format": args.ingest_format,
                "copy": args.database_url.is_some(),
                "read_concurrency": args.read_concurrency,
                "export_rows": args.export_rows,
                "export_small_rows": args.export_small_rows,
                "page": args.page,
                "mixed_readers": args.mixed_readers,
                "mixed_writers": args.mixed_writers,
                "mixed_batch": args.mixed_batch,
            },
            "summary": summary,
            "steps": steps,
            "problems": problems,
        });
        let text = serde_json::to_string_pretty(&document).context("serialising the figures")?;
        std::fs::write(out, text + "\n").with_context(|| format!("writing {}", out.display()))?;
        println!("figures written to {}", out.display());
    }
    Ok(())
}
