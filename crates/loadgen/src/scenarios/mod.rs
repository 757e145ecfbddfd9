//! The scenarios, and the driver that runs workers side by side and gathers what they
//! recorded.

pub mod ingest;
pub mod mixed;
pub mod read;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::stats::Recorder;

/// What workers recorded, by operation.
pub type Ops = BTreeMap<String, Recorder>;

/// Runs one worker per state, all at once, and merges their records; also answers the
/// wall time from the start of the first to the end of the last, which is what rates
/// are computed over.
pub async fn drive<S, F, Fut>(states: Vec<S>, worker: F) -> anyhow::Result<(Ops, Duration)>
where
    F: Fn(usize, S) -> Fut,
    Fut: Future<Output = Ops> + Send + 'static,
{
    let started = Instant::now();
    let handles: Vec<_> = states
        .into_iter()
        .enumerate()
        .map(|(i, state)| tokio::spawn(worker(i, state)))
        .collect();
    let mut all = Ops::new();
    for handle in handles {
        for (op, recorder) in handle.await.context("a worker panicked")? {
            all.entry(op).or_default().merge(recorder);
        }
    }
    Ok((all, started.elapsed()))
}

/// One recorder for `op`, the common case.
pub fn only(op: &str, recorder: Recorder) -> Ops {
    Ops::from([(op.to_owned(), recorder)])
}
