//! Loading what a request names, for its caller: the object, or 404 when the caller may
//! not know that it exists; then the policy's word on the action, or 403. Every handler
//! loads the objects it acts on through here, so that "may they see it" is asked the
//! same way, before anything else, everywhere.

use std::sync::Arc;

use axum::http::StatusCode;
use jointeval_domain::exchange::Exchange;
use jointeval_domain::exercise::{Exercise, ExerciseStatus};
use jointeval_domain::protocol::{Protocol, ProtocolVersion};
use jointeval_domain::run::Run;
use jointeval_domain::{
    Account, AccountRef, Action, Denial, ExchangeRef, JointRef, Resource, ValidationError, decide,
    execution_capacities,
};
use uuid::Uuid;

use crate::auth::{Caller, not_found};
use crate::problem::{ApiError, FieldError, Problem};
use crate::views::Codes;
use crate::work::Work;

/// Whether the row read is locked until the transaction ends: for a change decided on
/// what was read, so that two changes based on the same read cannot both pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lock {
    No,
    ForUpdate,
}

impl Lock {
    fn held(self) -> bool {
        self == Lock::ForUpdate
    }
}

/// The policy's word on whether the caller may know of `resource` (`read`), then on
/// `action`. A token short of the reading scope is told the scope the action needs
/// when it lacks that one too: the scope to ask an admin for.
fn allow(
    caller: &Caller,
    read: Action,
    action: Action,
    resource: &Resource<'_>,
    noun: &str,
) -> Result<(), ApiError> {
    let denial = match decide(&caller.actor, read, resource) {
        Ok(()) => decide(&caller.actor, action, resource).err(),
        Err(Denial::MissingScope(scope)) => match decide(&caller.actor, action, resource) {
            Err(Denial::MissingScope(needed)) if action != read => {
                Some(Denial::MissingScope(needed))
            }
            _ => Some(Denial::MissingScope(scope)),
        },
        Err(denial) => Some(denial),
    };
    denial.map_or(Ok(()), |d| Err(Caller::deny(d, noun)))
}

/// A run the caller may see, and may do `action` to.
pub(crate) async fn run(
    work: &mut Work<'_>,
    id: Uuid,
    action: Action,
    lock: Lock,
) -> Result<Run, ApiError> {
    let run = jointeval_store::runs::get(work, id, lock.held())
        .await?
        .ok_or_else(|| not_found("run"))?;
    let resource = Resource::Run {
        institute_id: run.institute_id,
        released_to: &run.released_to,
    };
    allow(work.caller, Action::ReadRun, action, &resource, "run")?;
    Ok(run)
}

/// A run whose transcripts the caller may read: 404 as [`run`] answers it for a run it
/// may not see, and a 404 saying so when the run's transcripts were not released to it.
pub(crate) async fn transcripts(work: &mut Work<'_>, id: Uuid) -> Result<Run, ApiError> {
    let run = run(work, id, Action::ReadRun, Lock::No).await?;
    decide(
        &work.caller.actor,
        Action::ReadTranscripts,
        &transcripts_of(&run),
    )
    .map_err(|d| Caller::deny(d, "run"))?;
    Ok(run)
}

/// Whether the caller may read the transcripts of `run`, a run it may read.
pub(crate) fn reads_transcripts(work: &Work<'_>, run: &Run) -> bool {
    decide(
        &work.caller.actor,
        Action::ReadTranscripts,
        &transcripts_of(run),
    )
    .is_ok()
}

/// A run's transcripts, as the policy judges them.
fn transcripts_of(run: &Run) -> Resource<'_> {
    Resource::Transcripts {
        institute_id: run.institute_id,
        released_to: &run.released_to,
        transcripts_released_to: &run.transcripts_released_to,
    }
}

/// Two runs the caller may both read, for a comparison. One that is hidden (or absent)
/// is the same 404 whichever of the two it is, so that the answer tells nothing of which.
pub(crate) async fn run_pair(
    work: &mut Work<'_>,
    a: Uuid,
    b: Uuid,
) -> Result<(Run, Run), ApiError> {
    let hidden = || not_found("pair of runs: one or both are not runs you may read");
    let mut read = Vec::with_capacity(2);
    for id in [a, b] {
        let run = jointeval_store::runs::get(work, id, false)
            .await?
            .ok_or_else(hidden)?;
        let resource = Resource::Run {
            institute_id: run.institute_id,
            released_to: &run.released_to,
        };
        match decide(&work.caller.actor, Action::ReadRun, &resource) {
            Ok(()) => {}
            Err(Denial::NotFound) => return Err(hidden()),
            Err(denial) => return Err(Caller::deny(denial, "run")),
        }
        read.push(run);
    }
    let b = read.pop().expect("two runs read");
    let a = read.pop().expect("two runs read");
    Ok((a, b))
}

/// An exercise the caller may see, and may do `action` to.
pub(crate) async fn exercise(
    work: &mut Work<'_>,
    id: Uuid,
    action: Action,
    lock: Lock,
) -> Result<Exercise, ApiError> {
    let exercise = jointeval_store::exercises::get(work, id, lock.held())
        .await?
        .ok_or_else(|| not_found("exercise"))?;
    let joint = JointRef {
        lead_institute_id: exercise.lead_institute_id,
        participants: exercise.participants.clone(),
    };
    let resource = Resource::Exercise(&joint);
    allow(
        work.caller,
        Action::ReadExercise,
        action,
        &resource,
        "exercise",
    )?;
    Ok(exercise)
}

/// The institutes whose runs of an exercise the caller reads: the exercise must be one it
/// may see, and the runs are its institutes' own and those released to them.
pub(crate) async fn exercise_runs(
    work: &mut Work<'_>,
    exercise_id: Uuid,
) -> Result<Vec<Uuid>, ApiError> {
    exercise(work, exercise_id, Action::ReadExercise, Lock::No).await?;
    work.caller
        .actor
        .reading_institutes(&jointeval_domain::policy::RUN_READING)
        .map_err(|d| Caller::deny(d, "run"))
}

/// A protocol the caller may see, and may do `action` to, with the joint object the
/// policy judges it as.
pub(crate) async fn protocol(
    work: &mut Work<'_>,
    id: Uuid,
    action: Action,
) -> Result<(Protocol, JointRef), ApiError> {
    let protocol = jointeval_store::protocols::get(work, id)
        .await?
        .ok_or_else(|| not_found("protocol"))?;
    let joint = JointRef {
        lead_institute_id: protocol.lead_institute_id,
        participants: protocol.participants.clone(),
    };
    allow(
        work.caller,
        Action::ReadProtocol,
        action,
        &Resource::Protocol(&joint),
        "protocol",
    )?;
    Ok((protocol, joint))
}

/// A version of a protocol the caller may see, and may do `action` to; with the
/// protocol as the policy judges it.
pub(crate) async fn version(
    work: &mut Work<'_>,
    protocol_id: Uuid,
    number: i32,
    action: Action,
    lock: Lock,
) -> Result<(JointRef, ProtocolVersion), ApiError> {
    let (_, joint) = protocol(work, protocol_id, Action::ReadProtocol).await?;
    let version = jointeval_store::protocols::get_version(work, protocol_id, number, lock.held())
        .await?
        .ok_or_else(|| not_found("version"))?;
    let resource = Resource::Version {
        protocol: &joint,
        editors: &version.editors,
    };
    decide(&work.caller.actor, action, &resource).map_err(|d| Caller::deny(d, "version"))?;
    Ok((joint, version))
}

/// An account the caller may see, and may do `action` to, with what the policy knows of
/// it. For any action but reading, the account is locked until the transaction ends.
pub(crate) async fn account(
    work: &mut Work<'_>,
    id: Uuid,
    action: Action,
) -> Result<(Account, AccountRef), ApiError> {
    let account = jointeval_store::accounts::get(work, id, action != Action::ReadAccount)
        .await?
        .ok_or_else(|| not_found("account"))?;
    let reference = AccountRef {
        id: account.id,
        home_institute_id: account.home_institute_id,
        hosted_by: jointeval_store::accounts::hosted_by(work, account.id).await?,
    };
    decide(&work.caller.actor, action, &Resource::Account(&reference))
        .map_err(|d| Caller::deny(d, "account"))?;
    Ok((account, reference))
}

/// An exchange the caller may see, and may do `action` to. For any action but reading,
/// it is locked until the transaction ends.
pub(crate) async fn exchange(
    work: &mut Work<'_>,
    id: Uuid,
    action: Action,
) -> Result<Exchange, ApiError> {
    let exchange = jointeval_store::exchanges::get(work, id, action != Action::ReadExchange)
        .await?
        .ok_or_else(|| not_found("exchange"))?;
    let reference = ExchangeRef {
        account_id: exchange.account_id,
        home_institute_id: exchange.home_institute_id,
        host_institute_id: exchange.host_institute_id,
        proposed_by: exchange.proposed_by,
        proposed_by_institute_id: exchange.proposed_by_institute_id,
    };
    decide(&work.caller.actor, action, &Resource::Exchange(&reference))
        .map_err(|d| Caller::deny(d, "exchange"))?;
    Ok(exchange)
}

/// Where a new run goes.
pub(crate) struct Placement {
    /// The executing institute.
    pub institute: Uuid,
    pub codes: Arc<Codes>,
    /// What is wrong with the run's protocol version or model, to report with the
    /// request's other field errors.
    pub errors: Vec<FieldError>,
}

/// Where a new run goes: the executing institute (given, or the caller's one capacity),
/// checked by the policy, in an active exercise; and whether the protocol version is one
/// of the exercise's and the model (`model`: the field that names it, and its value; none
/// before it is known) the exercise's model under test.
pub(crate) async fn place_run(
    work: &mut Work<'_>,
    exercise_id: Uuid,
    institute: Option<&str>,
    protocol_version: (Uuid, i32),
    model: Option<(&str, &str)>,
) -> Result<Placement, ApiError> {
    let exercise = exercise(work, exercise_id, Action::ReadExercise, Lock::No).await?;
    let codes = work.codes().await?;
    let capacities = execution_capacities(&work.caller.actor, &exercise.participants);
    let institute = match (institute, capacities.as_slice()) {
        (Some(code), _) => codes
            .id_of(code)
            .filter(|i| exercise.participants.contains(i))
            .ok_or_else(|| {
                ValidationError::new("institute", "is not a participant of the exercise")
            })?,
        (None, [one]) => *one,
        // The policy says why the caller may not.
        (None, []) => work.caller.account.home_institute_id,
        (None, _) => {
            return Err(ValidationError::new(
                "institute",
                "is required: you evaluate for more than one participant",
            )
            .into());
        }
    };
    decide(
        &work.caller.actor,
        Action::ExecuteRun,
        &Resource::Run {
            institute_id: institute,
            released_to: &[],
        },
    )
    .map_err(|d| Caller::deny(d, "run"))?;
    if exercise.status != ExerciseStatus::Active {
        return Err(Problem::typed(
            StatusCode::CONFLICT,
            "exercise-state",
            "Exercise not active",
            "runs are created in an active exercise",
        )
        .into());
    }
    let mut errors: Vec<FieldError> = Vec::new();
    if !exercise.protocol_versions.contains(&protocol_version) {
        errors.push(
            ValidationError::new(
                "protocol_version",
                "is not a protocol version of this exercise",
            )
            .into(),
        );
    }
    if let Some((field, model)) = model
        && let Err(e) = exercise.model.check_named_by(field, model)
    {
        errors.push(e.into());
    }
    Ok(Placement {
        institute,
        codes,
        errors,
    })
}
