//! A run's comparability verdict: what it says was run, held to its protocol version and
//! to the exercise's model under test (`domain::conformance`), and recorded on the run
//! when a log is imported into it or, for results sent through the API, when it finishes.

use jointeval_domain::conformance::{Ran, deviations, task_ran};
use jointeval_domain::exercise::ModelUnderTest;
use jointeval_domain::protocol::ProtocolContent;
use jointeval_domain::run::Run;

use crate::problem::ApiError;
use crate::work::Work;

/// What `run` is held to: its protocol version's content and its exercise's model.
pub(crate) async fn standard(
    work: &mut Work<'_>,
    run: &Run,
) -> Result<(ProtocolContent, ModelUnderTest), ApiError> {
    let version =
        jointeval_store::protocols::get_version(work, run.protocol_id, run.protocol_version, false)
            .await?
            .ok_or_else(|| crate::auth::not_found("protocol version"))?;
    let exercise = jointeval_store::exercises::get(work, run.exercise_id, false)
        .await?
        .ok_or_else(|| crate::auth::not_found("exercise"))?;
    Ok((version.content, exercise.model))
}

/// Records the verdict of a run that finished with results sent through the API: what
/// its stored results and its own description say. A run whose log was imported keeps the
/// log's verdict, which says more.
pub(crate) async fn record_on_finish(work: &mut Work<'_>, run: &Run) -> Result<(), ApiError> {
    if run.imported_log.is_some() {
        return Ok(());
    }
    let facts = jointeval_store::runs::result_facts(work, run.id).await?;
    let ran = Ran::from_results(facts, &run.model_version, &run.config);
    let (content, model) = standard(work, run).await?;
    let found = deviations(&content, &model, &ran);
    let task = task_ran(&content, &ran).map(|t| t.name.as_str());
    jointeval_store::runs::record_verdict(work, run.id, &found, task).await?;
    Ok(())
}
