//! `jointeval audit verify`: recomputes the audit chain from the database, independently
//! of the service, and checks that it still extends a checkpoint the service signed.

use std::path::Path;

use anyhow::{Context, bail};
use jointeval_api::auth::tokens;
use jointeval_domain::audit::{ChainCheck, Link};
use jointeval_store::ActingAs;

use crate::cli::VerifyArgs;
use crate::database::Database;

/// Events read per query: memory stays flat however long the chain.
const BATCH: i64 = 10_000;

pub async fn verify_and_exit(args: &VerifyArgs) -> anyhow::Result<()> {
    let database = Database::open(&args.database).await?;
    let result = verify(&database, args.from_checkpoint.as_deref()).await;
    database.close().await;
    result
}

async fn verify(database: &Database, checkpoint_file: Option<&Path>) -> anyhow::Result<()> {
    let mut tx = jointeval_store::begin(&database.pool, &ActingAs::system("audit")).await?;
    let checkpoint = match checkpoint_file {
        Some(path) => Some(read_checkpoint(&mut tx, path).await?),
        None => None,
    };
    // The chain up to the head as it stands now; events a live service appends meanwhile
    // are left to the next verification.
    let stored = jointeval_store::audit::head(&mut tx).await?;
    let mut check = ChainCheck::new(checkpoint.clone());
    let mut after = 0;
    while after < stored.seq {
        let events =
            jointeval_store::audit::chain(&mut tx, after, BATCH.min(stored.seq - after)).await?;
        let Some(last) = events.last() else { break };
        after = last.seq;
        for event in &events {
            check.push(event)?;
        }
    }
    let head = check.finish()?;
    jointeval_store::commit(tx).await?;
    if stored != head {
        bail!(
            "the chain ends at event {} with hash {}, but its head says event {} with hash {}: \
             the head was moved or events were removed",
            head.seq,
            head.hash,
            stored.seq,
            stored.hash
        );
    }
    println!(
        "the audit chain verifies: {} events, head {}",
        head.seq, head.hash
    );
    if let Some(checkpoint) = checkpoint {
        println!(
            "it extends the signed checkpoint at event {} ({})",
            checkpoint.seq, checkpoint.hash
        );
    }
    Ok(())
}

/// The head a checkpoint file (the JSON of `GET /v1/audit/checkpoint`) asserts, taken
/// from its signature, never from its unsigned fields.
async fn read_checkpoint(
    conn: &mut jointeval_store::PgConnection,
    path: &Path,
) -> anyhow::Result<Link> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the checkpoint {}", path.display()))?;
    let file: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let Some(signed) = file.get("signed").and_then(|s| s.as_str()) else {
        bail!(
            "{} has no `signed` field: it is not a checkpoint",
            path.display()
        );
    };
    let claims = tokens::verify_checkpoint(conn, signed)
        .await
        .with_context(|| format!("the checkpoint {}", path.display()))?;
    let unsigned = (
        file.get("seq").and_then(serde_json::Value::as_i64),
        file.get("hash").and_then(|h| h.as_str()),
    );
    if unsigned != (Some(claims.seq), Some(claims.hash.as_str())) {
        bail!(
            "the checkpoint {} says one head and signs another: it was altered",
            path.display()
        );
    }
    Ok(Link {
        seq: claims.seq,
        hash: claims.hash,
    })
}
