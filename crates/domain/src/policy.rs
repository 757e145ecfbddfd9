//! The access policy: one pure function deciding whether an actor may take an action
//! on a resource. Handlers ask it before acting; list queries are filtered by the same
//! facts (`Actor::administered_institutes`), so what a caller may not see is absent
//! everywhere, not only on single reads.

use uuid::Uuid;

use crate::ValidationError;
use crate::identity::{AccountKind, ActiveRole, Role, Scope};

/// Who is acting, as the database says now: the account and the roles it holds at
/// this moment (direct memberships, and host roles of exchanges in progress).
#[derive(Debug, Clone)]
pub struct Actor {
    pub account_id: Uuid,
    pub kind: AccountKind,
    pub home_institute_id: Uuid,
    pub roles: Vec<ActiveRole>,
    /// What a service account's secret allows; empty for persons.
    pub scopes: Vec<Scope>,
}

impl Actor {
    pub fn has_role(&self, institute_id: Uuid, role: Role) -> bool {
        self.roles
            .iter()
            .any(|r| r.institute_id == institute_id && r.role == role)
    }

    /// Persons administer; service accounts never do, whatever roles they were given.
    pub fn is_admin_of(&self, institute_id: Uuid) -> bool {
        self.kind == AccountKind::Person && self.has_role(institute_id, Role::Admin)
    }

    /// The institutes in whose name this actor lists joint objects (protocols,
    /// exercises, runs): those it holds a role at. A service account lists only with one
    /// of `scopes`, and is refused for the missing scope otherwise, as single reads are
    /// in [`decide`].
    pub fn reading_institutes(&self, scopes: &[Scope]) -> Result<Vec<Uuid>, Denial> {
        scoped(self, scopes)?;
        Ok(self.staff_institutes())
    }

    /// The institutes this actor holds a role at, whatever its token's scopes.
    fn staff_institutes(&self) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = self.roles.iter().map(|r| r.institute_id).collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// The first of `institutes` where this actor holds `role` (any role, if `None`): the
    /// capacity it acts in on a joint object, as the audit trail records it.
    pub fn capacity_among(&self, institutes: &[Uuid], role: Option<Role>) -> Option<Uuid> {
        institutes.iter().copied().find(|i| {
            self.roles
                .iter()
                .any(|r| r.institute_id == *i && role.is_none_or(|role| r.role == role))
        })
    }

    /// The institutes a person reviews for; service accounts never review.
    pub fn reviewed_institutes(&self) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = self
            .roles
            .iter()
            .filter(|r| r.role == Role::Reviewer && self.kind == AccountKind::Person)
            .map(|r| r.institute_id)
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Whether this actor takes part in the governance of `institute_id`: a person whose
    /// home it is and who holds its admin role by a membership of their own. An admin role
    /// held through an exchange never counts: the host's governance (exchanges into or out
    /// of it, its admin role, its accounts' existence, status and credentials) stays with
    /// the host's own people, so that one exchange that includes the admin role cannot
    /// hand one side the other's administration.
    pub fn governs(&self, institute_id: Uuid) -> bool {
        self.kind == AccountKind::Person
            && self.home_institute_id == institute_id
            && self.roles.iter().any(|r| {
                r.institute_id == institute_id && r.role == Role::Admin && r.exchange_id.is_none()
            })
    }

    /// What this actor may do at `institute_id`, as `/v1/me` reports it: what each of its
    /// roles there permits, except that an admin role that does not govern (held through
    /// an exchange, or away from home) permits the day-to-day administration only.
    pub fn permissions_at(&self, institute_id: Uuid) -> Vec<&'static str> {
        let mut actions: Vec<&'static str> = Vec::new();
        for role in self.roles.iter().filter(|r| r.institute_id == institute_id) {
            if role.role == Role::Admin && !self.governs(institute_id) {
                actions.extend([
                    "read",
                    "accounts:read",
                    "accounts:rename",
                    "memberships:manage-non-admin",
                ]);
            } else {
                actions.extend(role.role.permissions());
            }
        }
        actions.sort();
        actions.dedup();
        actions
    }

    /// The institutes whose accounts and exchanges this actor administers (reads, and
    /// manages day to day), whether by its own membership or through an exchange.
    pub fn administered_institutes(&self) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = self
            .roles
            .iter()
            .filter(|r| r.role == Role::Admin && self.kind == AccountKind::Person)
            .map(|r| r.institute_id)
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    ListInstitutes,
    ReadAccount,
    CreateAccount,
    /// Change an account's display name.
    UpdateAccount,
    /// Change a person's e-mail address, which is their login name.
    ChangeLogin,
    ChangeAccountStatus,
    ResetPassword,
    ManageServiceCredentials,
    GrantMembership,
    RevokeMembership,
    ReadExchange,
    ProposeExchange,
    DecideExchange,
    EndExchange,
    ReadProtocol,
    CreateProtocol,
    RetireProtocol,
    ManageParticipants,
    /// Create, edit or submit a draft version.
    WriteDraft,
    ReviewVersion,
    Comment,
    ReadExercise,
    /// Create an exercise, change its plan, complete or cancel it.
    ManageExercise,
    AgreeExercise,
    ReadRun,
    /// Create a run, move it, and write its results.
    ExecuteRun,
    ReleaseRun,
    /// Read a run's transcripts: its original log, and the answers and explanations of
    /// its scores where a comparison's disagreements show them.
    ReadTranscripts,
    /// Read the audit trail (of the partnership).
    ReadAudit,
    /// Claim queued runs from the queue (harnesses).
    ClaimRuns,
}

/// An account as the policy needs to know it.
#[derive(Debug, Clone)]
pub struct AccountRef {
    pub id: Uuid,
    pub home_institute_id: Uuid,
    /// Institutes hosting this account through an exchange in progress.
    pub hosted_by: Vec<Uuid>,
}

#[derive(Debug, Clone)]
pub struct ExchangeRef {
    pub account_id: Uuid,
    pub home_institute_id: Uuid,
    pub host_institute_id: Uuid,
    pub proposed_by: Uuid,
    pub proposed_by_institute_id: Uuid,
}

/// A joint object (a protocol, an exercise) as the policy needs to know it: its lead
/// institute and the institutes taking part.
#[derive(Debug, Clone)]
pub struct JointRef {
    pub lead_institute_id: Uuid,
    pub participants: Vec<Uuid>,
}

#[derive(Debug, Clone)]
pub enum Resource<'a> {
    /// The partnership itself: its institutes.
    Partnership,
    Account(&'a AccountRef),
    /// An account not yet created, at this home institute.
    NewAccount {
        home_institute_id: Uuid,
    },
    /// `role` at `institute_id` for `account`.
    Membership {
        account: &'a AccountRef,
        institute_id: Uuid,
        role: Role,
    },
    Exchange(&'a ExchangeRef),
    /// An exchange of `account_id` not yet proposed.
    NewExchange {
        account_id: Uuid,
        home_institute_id: Uuid,
        host_institute_id: Uuid,
    },
    Protocol(&'a JointRef),
    /// A protocol not yet created, led by this institute.
    NewProtocol {
        lead_institute_id: Uuid,
    },
    /// A version of a protocol, with the accounts that edited it.
    Version {
        protocol: &'a JointRef,
        editors: &'a [Uuid],
    },
    /// An exercise (existing or planned), by its lead and participants.
    Exercise(&'a JointRef),
    /// A run (existing or to be created) executed by `institute_id`.
    Run {
        institute_id: Uuid,
        released_to: &'a [Uuid],
    },
    /// A run's transcripts: the run as [`Resource::Run`] has it, and the institutes its
    /// transcripts were released to (a release of its results alone leaves them out).
    Transcripts {
        institute_id: Uuid,
        released_to: &'a [Uuid],
        transcripts_released_to: &'a [Uuid],
    },
}

/// Why not: `NotFound` when the actor may not even know the resource exists
/// (answered 404), `Forbidden` when it may see it but not do this (403), and
/// `MissingScope` when a service account's roles would allow it but its token lacks the
/// scope (403, `insufficient_scope` in RFC 6750's words); `Withheld` when the actor may
/// see the object but a part of it was not released to its institutes (a 404 naming that
/// part, since saying so tells nothing the object's visibility does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    NotFound,
    Forbidden(&'static str),
    MissingScope(Scope),
    Withheld(&'static str),
}

pub type Decision = Result<(), Denial>;

pub fn decide(actor: &Actor, action: Action, resource: &Resource<'_>) -> Decision {
    use Action::*;
    match (action, resource) {
        (ListInstitutes, Resource::Partnership) => Ok(()),
        (ClaimRuns, Resource::Partnership) => {
            if claim_capacities(actor).is_empty() {
                return Err(Denial::Forbidden(
                    "runs are claimed by service accounts with the runs:execute scope and the evaluator role",
                ));
            }
            Ok(())
        }
        (ReadAudit, Resource::Partnership) => {
            if actor.administered_institutes().is_empty() && actor.reviewed_institutes().is_empty()
            {
                return Err(Denial::Forbidden(
                    "the audit trail is read by admins, and by reviewers for what they review",
                ));
            }
            Ok(())
        }
        (ReadAccount, Resource::Account(account)) => see_account(actor, account),
        (UpdateAccount, Resource::Account(account)) => {
            see_account(actor, account)?;
            if actor.is_admin_of(account.home_institute_id) {
                Ok(())
            } else {
                Err(Denial::Forbidden(
                    "only admins of the account's home institute manage it",
                ))
            }
        }
        (
            ChangeLogin | ChangeAccountStatus | ResetPassword | ManageServiceCredentials,
            Resource::Account(account),
        ) => {
            see_account(actor, account)?;
            if !actor.governs(account.home_institute_id) {
                return Err(Denial::Forbidden(
                    "an account's login, status and credentials are managed only by admins whose home is its home institute",
                ));
            }
            if account.id == actor.account_id && action != ChangeLogin {
                return Err(Denial::Forbidden("nobody changes their own access"));
            }
            Ok(())
        }
        (CreateAccount, Resource::NewAccount { home_institute_id }) => {
            if actor.governs(*home_institute_id) {
                Ok(())
            } else {
                Err(Denial::Forbidden(
                    "an institute's accounts are created only by admins whose home is that institute",
                ))
            }
        }
        (
            GrantMembership | RevokeMembership,
            Resource::Membership {
                account,
                institute_id,
                role,
            },
        ) => {
            see_account(actor, account)?;
            if !actor.is_admin_of(*institute_id) {
                return Err(Denial::Forbidden(
                    "only admins of an institute grant or revoke its roles",
                ));
            }
            if account.id == actor.account_id {
                return Err(Denial::Forbidden(
                    "nobody grants or revokes their own roles",
                ));
            }
            if account.home_institute_id != *institute_id {
                return Err(Denial::Forbidden(
                    "roles at another institute than the home institute come through an exchange",
                ));
            }
            if *role == Role::Admin && !actor.governs(*institute_id) {
                return Err(Denial::Forbidden(
                    "an institute's admin role is granted and revoked only by admins whose home is that institute",
                ));
            }
            Ok(())
        }
        (ReadExchange, Resource::Exchange(exchange)) => see_exchange(actor, exchange),
        (DecideExchange, Resource::Exchange(exchange)) => {
            see_exchange(actor, exchange)?;
            let other_side = if exchange.proposed_by_institute_id == exchange.home_institute_id {
                exchange.host_institute_id
            } else {
                exchange.home_institute_id
            };
            if !actor.governs(other_side) {
                return Err(Denial::Forbidden(
                    "an exchange is approved or rejected only by an admin whose home is the institute that did not propose it",
                ));
            }
            if actor.account_id == exchange.proposed_by || actor.account_id == exchange.account_id {
                return Err(Denial::Forbidden(
                    "nobody approves their own proposal or their own exchange",
                ));
            }
            // Proposals are refused that way now; one made before stands undecidable.
            if exchange.proposed_by == exchange.account_id {
                return Err(Denial::Forbidden(
                    "this exchange was proposed by the person exchanged; nobody proposes an exchange of themselves",
                ));
            }
            Ok(())
        }
        (EndExchange, Resource::Exchange(exchange)) => {
            see_exchange(actor, exchange)?;
            if actor.governs(exchange.home_institute_id)
                || actor.governs(exchange.host_institute_id)
            {
                Ok(())
            } else {
                Err(Denial::Forbidden(
                    "an exchange is ended only by an admin whose home is one of its two institutes",
                ))
            }
        }
        (
            ProposeExchange,
            Resource::NewExchange {
                account_id,
                home_institute_id,
                host_institute_id,
            },
        ) => {
            if !actor.governs(*home_institute_id) && !actor.governs(*host_institute_id) {
                return Err(Denial::Forbidden(
                    "an exchange is proposed only by an admin whose home is its home or its host institute",
                ));
            }
            if *account_id == actor.account_id {
                return Err(Denial::Forbidden(
                    "nobody proposes an exchange of themselves",
                ));
            }
            Ok(())
        }
        (ReadProtocol, Resource::Protocol(p) | Resource::Version { protocol: p, .. }) => {
            see_protocol(actor, p)
        }
        (CreateProtocol, Resource::NewProtocol { lead_institute_id }) => {
            if actor.kind == AccountKind::Person && actor.has_role(*lead_institute_id, Role::Author)
            {
                Ok(())
            } else {
                Err(Denial::Forbidden(
                    "only authors of the lead institute create a protocol",
                ))
            }
        }
        (RetireProtocol | ManageParticipants, Resource::Protocol(p)) => {
            see_protocol(actor, p)?;
            if actor.is_admin_of(p.lead_institute_id) {
                Ok(())
            } else {
                Err(Denial::Forbidden(
                    "only admins of the lead institute manage a protocol",
                ))
            }
        }
        (WriteDraft, Resource::Protocol(p) | Resource::Version { protocol: p, .. }) => {
            see_protocol(actor, p)?;
            if person_with_role_in(actor, &p.participants, &[Role::Author]) {
                Ok(())
            } else {
                Err(Denial::Forbidden(
                    "only authors of participating institutes write drafts",
                ))
            }
        }
        (ReviewVersion, Resource::Version { protocol, editors }) => {
            see_protocol(actor, protocol)?;
            if !person_with_role_in(actor, &protocol.participants, &[Role::Reviewer]) {
                return Err(Denial::Forbidden(
                    "only reviewers of participating institutes review",
                ));
            }
            if editors.contains(&actor.account_id) {
                return Err(Denial::Forbidden("nobody reviews a version they edited"));
            }
            Ok(())
        }
        (Comment, Resource::Protocol(p) | Resource::Version { protocol: p, .. }) => {
            see_protocol(actor, p)?;
            if person_with_role_in(
                actor,
                &p.participants,
                &[Role::Author, Role::Reviewer, Role::Admin],
            ) {
                Ok(())
            } else {
                Err(Denial::Forbidden(
                    "viewers read the discussion; authors, reviewers and admins take part",
                ))
            }
        }
        (ReadExercise, Resource::Exercise(e)) => see_joint(actor, e, Scope::ExercisesRead),
        (ManageExercise, Resource::Exercise(e)) => {
            see_joint(actor, e, Scope::ExercisesRead)?;
            if person_with_role_in(actor, &[e.lead_institute_id], &[Role::Admin, Role::Author]) {
                Ok(())
            } else {
                Err(Denial::Forbidden(
                    "only admins and authors of the lead institute manage an exercise",
                ))
            }
        }
        (AgreeExercise, Resource::Exercise(e)) => {
            see_joint(actor, e, Scope::ExercisesRead)?;
            if person_with_role_in(actor, &e.participants, &[Role::Admin, Role::Reviewer]) {
                Ok(())
            } else {
                Err(Denial::Forbidden(
                    "only admins and reviewers of participating institutes agree to a plan",
                ))
            }
        }
        (
            ReadRun,
            Resource::Run {
                institute_id,
                released_to,
            },
        ) => see_run(actor, *institute_id, released_to),
        (
            ExecuteRun,
            Resource::Run {
                institute_id,
                released_to,
            },
        ) => {
            see_run_by_role(actor, *institute_id, released_to)?;
            if !actor.has_role(*institute_id, Role::Evaluator) {
                return Err(Denial::Forbidden(
                    "only evaluators of the executing institute run it",
                ));
            }
            if actor.kind == AccountKind::Service {
                for scope in [Scope::RunsWrite, Scope::ResultsWrite] {
                    if !actor.scopes.contains(&scope) {
                        return Err(Denial::MissingScope(scope));
                    }
                }
            }
            Ok(())
        }
        (
            ReleaseRun,
            Resource::Run {
                institute_id,
                released_to,
            },
        ) => {
            see_run(actor, *institute_id, released_to)?;
            if person_with_role_in(actor, &[*institute_id], &[Role::Reviewer]) {
                Ok(())
            } else {
                Err(Denial::Forbidden(
                    "only reviewers of the executing institute release its results",
                ))
            }
        }
        (
            ReadTranscripts,
            Resource::Transcripts {
                institute_id,
                released_to,
                transcripts_released_to,
            },
        ) => {
            see_run(actor, *institute_id, released_to)?;
            let staff = actor.staff_institutes();
            if staff.contains(institute_id)
                || transcripts_released_to.iter().any(|i| staff.contains(i))
            {
                Ok(())
            } else {
                Err(Denial::Withheld(
                    "the transcripts of this run (its original log, its scores' answers, explanations and metadata, and its errored samples' messages) are not released to your institute; its results are",
                ))
            }
        }
        // An action asked of a resource it does not apply to is a mistake of ours;
        // refusing is the safe answer.
        _ => Err(Denial::NotFound),
    }
}

/// Admins see the accounts of their institute and the people exchanged into it;
/// everyone sees their own account.
fn see_account(actor: &Actor, account: &AccountRef) -> Decision {
    let visible = account.id == actor.account_id
        || actor.is_admin_of(account.home_institute_id)
        || account
            .hosted_by
            .iter()
            .any(|host| actor.is_admin_of(*host));
    if visible {
        Ok(())
    } else {
        Err(Denial::NotFound)
    }
}

/// A run exists for the executing institute's staff, and for the staff of the
/// institutes it was released to; a service account reads it only with `runs:read` or
/// `runs:write`.
fn see_run(actor: &Actor, institute_id: Uuid, released_to: &[Uuid]) -> Decision {
    see_run_by_role(actor, institute_id, released_to)?;
    scoped(actor, &RUN_READING)
}

/// Whether the run is its institutes' to see at all, whatever the token's scopes.
fn see_run_by_role(actor: &Actor, institute_id: Uuid, released_to: &[Uuid]) -> Decision {
    let staff = actor.staff_institutes();
    if staff.contains(&institute_id) || released_to.iter().any(|i| staff.contains(i)) {
        Ok(())
    } else {
        Err(Denial::NotFound)
    }
}

/// A service account acts only within the scopes of its token: without one of `scopes`,
/// what its roles would let it read is refused for the missing scope (the first named).
fn scoped(actor: &Actor, scopes: &[Scope]) -> Decision {
    if actor.kind == AccountKind::Service && !actor.scopes.iter().any(|s| scopes.contains(s)) {
        return Err(Denial::MissingScope(scopes[0]));
    }
    Ok(())
}

/// The scopes that let a service account read runs.
pub const RUN_READING: [Scope; 2] = [Scope::RunsRead, Scope::RunsWrite];

/// The institutes whose queued runs a harness claims: a service account with the
/// `runs:execute` scope, and the scopes to finish what it claims (`runs:write`,
/// `results:write`), claims for the institutes it is an evaluator of.
pub fn claim_capacities(actor: &Actor) -> Vec<Uuid> {
    let scoped = [Scope::RunsExecute, Scope::RunsWrite, Scope::ResultsWrite]
        .iter()
        .all(|s| actor.scopes.contains(s));
    if actor.kind != AccountKind::Service || !scoped {
        return Vec::new();
    }
    let mut ids: Vec<Uuid> = actor
        .roles
        .iter()
        .filter(|r| r.role == Role::Evaluator)
        .map(|r| r.institute_id)
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// The participating institutes in whose capacity the actor may execute a run.
pub fn execution_capacities(actor: &Actor, participants: &[Uuid]) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = actor
        .roles
        .iter()
        .filter(|r| r.role == Role::Evaluator && participants.contains(&r.institute_id))
        .map(|r| r.institute_id)
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Staff of a participating institute see a protocol; a service account also needs
/// the `protocols:read` scope.
fn see_protocol(actor: &Actor, protocol: &JointRef) -> Decision {
    see_joint(actor, protocol, Scope::ProtocolsRead)
}

/// Staff of a participating institute see a joint object; a service account reads it
/// only with `scope`.
fn see_joint(actor: &Actor, joint: &JointRef, scope: Scope) -> Decision {
    let staff = actor.staff_institutes();
    if !joint.participants.iter().any(|p| staff.contains(p)) {
        return Err(Denial::NotFound);
    }
    scoped(actor, &[scope])
}

/// In which institute's capacity an actor acts among those it may act for there
/// (`capacities`): the one it names (`named` is `Some(None)` for a code that names no
/// institute), which must be among them, or, naming none, its only one. `verb` says what
/// it does ("review", "agree"), for the error.
pub fn choose_capacity(
    named: Option<Option<Uuid>>,
    capacities: &[Uuid],
    verb: &str,
) -> Result<Uuid, ValidationError> {
    match (named, capacities) {
        (Some(named), _) => named.filter(|i| capacities.contains(i)).ok_or_else(|| {
            ValidationError::new("institute", format!("is not a participant you {verb} for"))
        }),
        (None, [one]) => Ok(*one),
        (None, _) => Err(ValidationError::new(
            "institute",
            format!("is required: you {verb} for more than one participant"),
        )),
    }
}

/// The participating institutes in whose capacity the actor may agree to an exercise plan.
pub fn agreement_capacities(actor: &Actor, participants: &[Uuid]) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = actor
        .roles
        .iter()
        .filter(|r| matches!(r.role, Role::Admin | Role::Reviewer))
        .filter(|r| participants.contains(&r.institute_id))
        .map(|r| r.institute_id)
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

fn person_with_role_in(actor: &Actor, institutes: &[Uuid], roles: &[Role]) -> bool {
    actor.kind == AccountKind::Person
        && actor
            .roles
            .iter()
            .any(|r| institutes.contains(&r.institute_id) && roles.contains(&r.role))
}

/// The participating institutes in whose capacity the actor may review.
pub fn review_capacities(actor: &Actor, participants: &[Uuid]) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = actor
        .roles
        .iter()
        .filter(|r| r.role == Role::Reviewer && participants.contains(&r.institute_id))
        .map(|r| r.institute_id)
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Admins of either side see an exchange, and so does the person exchanged.
fn see_exchange(actor: &Actor, exchange: &ExchangeRef) -> Decision {
    let visible = exchange.account_id == actor.account_id
        || actor.is_admin_of(exchange.home_institute_id)
        || actor.is_admin_of(exchange.host_institute_id);
    if visible {
        Ok(())
    } else {
        Err(Denial::NotFound)
    }
}

#[cfg(test)]
mod tests;
