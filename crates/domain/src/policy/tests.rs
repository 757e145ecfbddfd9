//! The policy as a table: every actor against every action on every kind of resource.

use uuid::Uuid;

use super::*;

const US: Uuid = Uuid::from_u128(0x05);
const UK: Uuid = Uuid::from_u128(0x0b);
const JP: Uuid = Uuid::from_u128(0x0f);

fn person(id: u128, home: Uuid, roles: &[(Uuid, Role)]) -> Actor {
    Actor {
        account_id: Uuid::from_u128(id),
        kind: AccountKind::Person,
        home_institute_id: home,
        roles: roles
            .iter()
            .map(|&(institute_id, role)| ActiveRole {
                institute_id,
                role,
                exchange_id: None,
            })
            .collect(),
        scopes: Vec::new(),
    }
}

struct World {
    us_admin: Actor,
    uk_admin: Actor,
    us_viewer: Actor,
    /// A UK reviewer exchanged to the US, where the exchange makes them an author.
    uk_exchanged: Actor,
    /// A US service account that was (wrongly) given the admin role.
    us_service: Actor,
    jp_admin: Actor,
    both_admin: Actor,
    /// A UK viewer who is a US admin only through an exchange.
    uk_hosted_admin: Actor,
    /// A UK admin who is also a US admin through an exchange.
    uk_admin_hosted: Actor,
}

fn hosted(mut actor: Actor, host: Uuid, role: Role) -> Actor {
    actor.roles.push(ActiveRole {
        institute_id: host,
        role,
        exchange_id: Some(Uuid::from_u128(98)),
    });
    actor
}

fn world() -> World {
    let mut uk_exchanged = person(4, UK, &[(UK, Role::Reviewer)]);
    uk_exchanged.roles.push(ActiveRole {
        institute_id: US,
        role: Role::Author,
        exchange_id: Some(Uuid::from_u128(99)),
    });
    let mut us_service = person(5, US, &[(US, Role::Admin), (US, Role::Evaluator)]);
    us_service.kind = AccountKind::Service;
    us_service.scopes = vec![Scope::RunsWrite];
    World {
        us_admin: person(1, US, &[(US, Role::Admin)]),
        uk_admin: person(2, UK, &[(UK, Role::Admin)]),
        us_viewer: person(3, US, &[(US, Role::Viewer)]),
        uk_exchanged,
        us_service,
        jp_admin: person(6, JP, &[(JP, Role::Admin)]),
        both_admin: person(7, US, &[(US, Role::Admin), (UK, Role::Admin)]),
        uk_hosted_admin: hosted(person(8, UK, &[(UK, Role::Viewer)]), US, Role::Admin),
        uk_admin_hosted: hosted(person(10, UK, &[(UK, Role::Admin)]), US, Role::Admin),
    }
}

fn account(actor: &Actor, hosted_by: &[Uuid]) -> AccountRef {
    AccountRef {
        id: actor.account_id,
        home_institute_id: actor.home_institute_id,
        hosted_by: hosted_by.to_vec(),
    }
}

#[derive(Debug, PartialEq)]
enum Want {
    Allow,
    NotFound,
    Forbidden,
    /// 403 for the token's scopes: the roles would allow it.
    Unscoped,
    /// 404 for a part of a visible object that was not released.
    Withheld,
}
use Want::*;

fn outcome(decision: Decision) -> Want {
    match decision {
        Ok(()) => Allow,
        Err(Denial::NotFound) => NotFound,
        Err(Denial::Forbidden(_)) => Forbidden,
        Err(Denial::MissingScope(_)) => Unscoped,
        Err(Denial::Withheld(_)) => Withheld,
    }
}

#[test]
fn everyone_authenticated_lists_the_institutes() {
    let w = world();
    for actor in [
        &w.us_admin,
        &w.uk_admin,
        &w.us_viewer,
        &w.uk_exchanged,
        &w.us_service,
        &w.jp_admin,
    ] {
        assert_eq!(
            outcome(decide(
                actor,
                Action::ListInstitutes,
                &Resource::Partnership
            )),
            Allow
        );
    }
}

#[test]
fn runs_are_claimed_by_executing_services_for_the_institutes_they_evaluate_for() {
    let w = world();
    let mut harness = person(20, UK, &[(UK, Role::Evaluator), (US, Role::Viewer)]);
    harness.kind = AccountKind::Service;
    harness.scopes = vec![Scope::RunsExecute, Scope::RunsWrite, Scope::ResultsWrite];
    assert_eq!(claim_capacities(&harness), vec![UK]);
    let mut unscoped = harness.clone();
    unscoped.scopes = vec![Scope::RunsWrite, Scope::ResultsWrite];
    let mut claim_only = harness.clone();
    claim_only.scopes = vec![Scope::RunsExecute];
    let mut person_evaluator = harness.clone();
    person_evaluator.kind = AccountKind::Person;
    let table: Vec<(&Actor, Want)> = vec![
        (&harness, Allow),
        (&unscoped, Forbidden),
        (&claim_only, Forbidden),
        (&person_evaluator, Forbidden),
        (&w.us_service, Forbidden),
        (&w.us_admin, Forbidden),
    ];
    for (actor, want) in table {
        assert_eq!(
            outcome(decide(actor, Action::ClaimRuns, &Resource::Partnership)),
            want
        );
    }
}

#[test]
fn the_audit_trail_is_read_by_admins_and_reviewers_only() {
    let w = world();
    let uk_reviewer = person(9, UK, &[(UK, Role::Reviewer)]);
    let mut service_reviewer = person(12, US, &[(US, Role::Reviewer), (US, Role::Admin)]);
    service_reviewer.kind = AccountKind::Service;
    let table: Vec<(&Actor, Want)> = vec![
        (&w.us_admin, Allow),
        (&w.jp_admin, Allow),
        (&uk_reviewer, Allow),
        (&w.us_viewer, Forbidden),
        (&w.us_service, Forbidden),
        (&service_reviewer, Forbidden),
    ];
    for (actor, want) in table {
        assert_eq!(
            outcome(decide(actor, Action::ReadAudit, &Resource::Partnership)),
            want
        );
    }
}

#[test]
fn accounts_are_seen_by_their_admins_their_hosts_and_themselves() {
    let w = world();
    let us_viewer = account(&w.us_viewer, &[]);
    let exchanged = account(&w.uk_exchanged, &[US]);
    let uk_admin = account(&w.uk_admin, &[]);
    let table: Vec<(&Actor, &AccountRef, Want)> = vec![
        (&w.us_admin, &us_viewer, Allow),
        (&w.us_admin, &exchanged, Allow), // hosted at the US
        (&w.us_admin, &uk_admin, NotFound),
        (&w.uk_admin, &us_viewer, NotFound),
        (&w.uk_admin, &exchanged, Allow),  // home admin
        (&w.us_viewer, &us_viewer, Allow), // self
        (&w.us_viewer, &exchanged, NotFound),
        (&w.uk_exchanged, &exchanged, Allow),
        (&w.uk_exchanged, &us_viewer, NotFound),
        (&w.us_service, &us_viewer, NotFound), // service accounts never administer
        (&w.jp_admin, &us_viewer, NotFound),
        (&w.jp_admin, &exchanged, NotFound),
    ];
    for (actor, target, want) in table {
        assert_eq!(
            outcome(decide(
                actor,
                Action::ReadAccount,
                &Resource::Account(target)
            )),
            want,
            "{:?} reads {:?}",
            actor.account_id,
            target.id
        );
    }
}

#[test]
fn any_admin_of_the_home_institute_renames_an_account() {
    let w = world();
    let us_viewer = account(&w.us_viewer, &[]);
    let us_admin = account(&w.us_admin, &[]);
    let exchanged = account(&w.uk_exchanged, &[US]);
    let table: Vec<(&Actor, &AccountRef, Want)> = vec![
        (&w.us_admin, &us_viewer, Allow),
        (&w.us_admin, &us_admin, Allow),      // one's own name
        (&w.us_admin, &exchanged, Forbidden), // a host sees, the home manages
        (&w.uk_admin, &exchanged, Allow),
        (&w.uk_admin, &us_viewer, NotFound),
        (&w.us_viewer, &us_viewer, Forbidden),
        (&w.us_service, &us_viewer, NotFound),
        (&w.jp_admin, &us_viewer, NotFound),
        (&w.uk_hosted_admin, &us_viewer, Allow), // day-to-day, through the exchange
        (&w.uk_hosted_admin, &us_admin, Allow),
    ];
    for (actor, target, want) in table {
        assert_eq!(
            outcome(decide(
                actor,
                Action::UpdateAccount,
                &Resource::Account(target)
            )),
            want,
            "rename by {:?} of {:?}",
            actor.account_id,
            target.id
        );
    }
}

/// Governance stays home: an account's login, status and credentials, its creation, the
/// admin role and exchanges are for admins whose home is the institute concerned. An
/// admin role held through an exchange counts for none of them.
#[test]
fn accounts_are_governed_only_by_admins_whose_home_is_theirs() {
    let w = world();
    let us_viewer = account(&w.us_viewer, &[]);
    let us_admin = account(&w.us_admin, &[]);
    let exchanged = account(&w.uk_exchanged, &[US]);
    for action in [
        Action::ChangeLogin,
        Action::ChangeAccountStatus,
        Action::ResetPassword,
        Action::ManageServiceCredentials,
    ] {
        let own = if action == Action::ChangeLogin {
            Allow
        } else {
            Forbidden
        };
        let table: Vec<(&Actor, &AccountRef, Want)> = vec![
            (&w.us_admin, &us_viewer, Allow),
            (&w.us_admin, &us_admin, own),
            (&w.us_admin, &exchanged, Forbidden),
            (&w.uk_admin, &exchanged, Allow),
            (&w.uk_admin, &us_viewer, NotFound),
            (&w.us_viewer, &us_viewer, Forbidden),
            (&w.us_service, &us_viewer, NotFound),
            (&w.jp_admin, &us_viewer, NotFound),
            (&w.uk_hosted_admin, &us_viewer, Forbidden),
            (&w.uk_hosted_admin, &us_admin, Forbidden),
            (&w.uk_admin_hosted, &us_admin, Forbidden),
            (&w.uk_admin_hosted, &exchanged, Allow), // as the UK's own admin
        ];
        for (actor, target, want) in table {
            assert_eq!(
                outcome(decide(actor, action, &Resource::Account(target))),
                want,
                "{action:?} by {:?} on {:?}",
                actor.account_id,
                target.id
            );
        }
    }
}

#[test]
fn accounts_are_created_by_admins_whose_home_is_theirs() {
    let w = world();
    let table = [
        (&w.us_admin, US, Allow),
        (&w.us_admin, UK, Forbidden),
        (&w.uk_admin, UK, Allow),
        (&w.us_viewer, US, Forbidden),
        (&w.uk_exchanged, US, Forbidden),
        (&w.us_service, US, Forbidden),
        (&w.jp_admin, US, Forbidden),
        (&w.both_admin, UK, Forbidden), // an admin role away from home governs nothing
        (&w.uk_hosted_admin, US, Forbidden),
        (&w.uk_admin_hosted, US, Forbidden),
        (&w.uk_admin_hosted, UK, Allow),
    ];
    for (actor, home, want) in table {
        let resource = Resource::NewAccount {
            home_institute_id: home,
        };
        assert_eq!(
            outcome(decide(actor, Action::CreateAccount, &resource)),
            want,
            "{:?} creates at {home:?}",
            actor.account_id
        );
    }
}

#[test]
fn roles_are_granted_at_home_never_to_oneself_and_admin_only_by_home_admins() {
    let w = world();
    let us_viewer = account(&w.us_viewer, &[]);
    let us_admin = account(&w.us_admin, &[]);
    let exchanged = account(&w.uk_exchanged, &[US]);
    let both = account(&w.both_admin, &[]);
    for action in [Action::GrantMembership, Action::RevokeMembership] {
        // (actor, account, institute, want for a non-admin role, want for the admin role)
        let table: Vec<(&Actor, &AccountRef, Uuid, Want, Want)> = vec![
            (&w.us_admin, &us_viewer, US, Allow, Allow),
            (&w.us_admin, &us_admin, US, Forbidden, Forbidden), // not to oneself
            (&w.us_admin, &us_viewer, UK, Forbidden, Forbidden), // not a UK admin
            (&w.uk_admin, &us_viewer, UK, NotFound, NotFound),
            (&w.us_admin, &exchanged, US, Forbidden, Forbidden), // through the exchange
            (&w.uk_admin, &exchanged, UK, Allow, Allow),
            (&w.us_viewer, &us_viewer, US, Forbidden, Forbidden),
            (&w.both_admin, &both, US, Forbidden, Forbidden),
            (&w.both_admin, &us_viewer, UK, Forbidden, Forbidden), // not at another home
            (&w.us_service, &us_viewer, US, NotFound, NotFound),
            (&w.jp_admin, &us_viewer, US, NotFound, NotFound),
            (&w.uk_hosted_admin, &us_viewer, US, Allow, Forbidden),
            (&w.uk_hosted_admin, &us_admin, US, Allow, Forbidden),
            (&w.uk_admin_hosted, &us_admin, US, Allow, Forbidden),
            (&w.uk_admin_hosted, &exchanged, UK, Allow, Allow),
        ];
        for (actor, target, institute_id, other_role, admin_role) in table {
            for (role, want) in [(Role::Author, other_role), (Role::Admin, admin_role)] {
                let resource = Resource::Membership {
                    account: target,
                    institute_id,
                    role,
                };
                assert_eq!(
                    outcome(decide(actor, action, &resource)),
                    want,
                    "{action:?} of {role:?} by {:?} for {:?} at {institute_id:?}",
                    actor.account_id,
                    target.id
                );
            }
        }
    }
}

#[test]
fn exchanges_are_proposed_by_one_side_and_decided_by_the_others_home_admins() {
    let w = world();
    let proposed_by_uk = ExchangeRef {
        account_id: w.uk_exchanged.account_id,
        home_institute_id: UK,
        host_institute_id: US,
        proposed_by: w.uk_admin.account_id,
        proposed_by_institute_id: UK,
    };
    let proposed_by_us = ExchangeRef {
        proposed_by: w.us_admin.account_id,
        proposed_by_institute_id: US,
        ..proposed_by_uk.clone()
    };
    // The story of the probe: a UK person, a US admin through an exchange, proposed their
    // own renewal in the US's name.
    let self_renewal = ExchangeRef {
        account_id: w.uk_hosted_admin.account_id,
        proposed_by: w.uk_hosted_admin.account_id,
        proposed_by_institute_id: US,
        ..proposed_by_uk.clone()
    };
    let of_hosted = ExchangeRef {
        account_id: w.uk_admin_hosted.account_id,
        ..proposed_by_us.clone()
    };
    let (uk, us, renewal, hosted) = (
        Resource::Exchange(&proposed_by_uk),
        Resource::Exchange(&proposed_by_us),
        Resource::Exchange(&self_renewal),
        Resource::Exchange(&of_hosted),
    );
    use Action::{DecideExchange as Decide, EndExchange as End, ReadExchange as Read};
    let table: Vec<(&Actor, Action, &Resource<'_>, Want)> = vec![
        (&w.us_admin, Read, &uk, Allow),
        (&w.uk_admin, Read, &uk, Allow),
        (&w.uk_exchanged, Read, &uk, Allow),    // their own
        (&w.uk_hosted_admin, Read, &uk, Allow), // a host admin reads the host's exchanges
        (&w.us_viewer, Read, &uk, NotFound),
        (&w.jp_admin, Read, &uk, NotFound),
        (&w.us_service, Read, &uk, NotFound),
        (&w.us_admin, Decide, &uk, Allow),
        (&w.uk_admin, Decide, &uk, Forbidden), // the proposing side
        (&w.uk_exchanged, Decide, &uk, Forbidden),
        (&w.jp_admin, Decide, &uk, NotFound),
        (&w.uk_hosted_admin, Decide, &uk, Forbidden), // US admin only through an exchange
        (&w.uk_admin_hosted, Decide, &uk, Forbidden),
        (&w.uk_admin, Decide, &us, Allow),
        (&w.uk_admin_hosted, Decide, &us, Allow), // as the UK's own admin
        (&w.us_admin, Decide, &us, Forbidden),
        (&w.uk_hosted_admin, Decide, &us, Forbidden),
        (&w.uk_admin, Decide, &renewal, Forbidden), // proposed by the person exchanged
        (&w.us_admin, Decide, &renewal, Forbidden),
        (&w.uk_hosted_admin, Decide, &renewal, Forbidden),
        (&w.uk_admin_hosted, Decide, &hosted, Forbidden), // their own exchange
        (&w.us_admin, End, &uk, Allow),
        (&w.uk_admin, End, &uk, Allow),
        (&w.uk_exchanged, End, &uk, Forbidden),
        (&w.us_viewer, End, &uk, NotFound),
        (&w.uk_hosted_admin, End, &uk, Forbidden),
        (&w.uk_admin_hosted, End, &uk, Allow), // as the UK's own admin
    ];
    for (actor, action, resource, want) in table {
        assert_eq!(
            outcome(decide(actor, action, resource)),
            want,
            "{action:?} by {:?} of {resource:?}",
            actor.account_id
        );
    }
    // An admin of both sides by (artificial) memberships of their own, and the proposer:
    // may not approve their own proposal.
    let proposed_by_both = ExchangeRef {
        proposed_by: w.both_admin.account_id,
        proposed_by_institute_id: US,
        ..proposed_by_uk.clone()
    };
    assert_eq!(
        outcome(decide(
            &w.both_admin,
            Decide,
            &Resource::Exchange(&proposed_by_both)
        )),
        Forbidden
    );

    let someone = w.uk_exchanged.account_id;
    for (actor, account_id, want) in [
        (&w.us_admin, someone, Allow),
        (&w.uk_admin, someone, Allow),
        (&w.us_viewer, someone, Forbidden),
        (&w.uk_exchanged, someone, Forbidden),
        (&w.us_service, someone, Forbidden),
        (&w.jp_admin, someone, Forbidden),
        (&w.uk_hosted_admin, someone, Forbidden),
        (&w.uk_hosted_admin, w.uk_hosted_admin.account_id, Forbidden),
        (&w.uk_admin_hosted, someone, Allow), // as the UK's own admin
        (&w.uk_admin_hosted, w.uk_admin_hosted.account_id, Forbidden), // not of oneself
    ] {
        let new = Resource::NewExchange {
            account_id,
            home_institute_id: UK,
            host_institute_id: US,
        };
        assert_eq!(
            outcome(decide(actor, Action::ProposeExchange, &new)),
            want,
            "{:?} proposes {account_id:?}",
            actor.account_id
        );
    }
}

#[test]
fn an_admin_through_an_exchange_works_on_the_hosts_day_to_day_objects() {
    let w = world();
    let lead_us = JointRef {
        lead_institute_id: US,
        participants: vec![US, UK],
    };
    for (action, resource) in [
        (Action::RetireProtocol, Resource::Protocol(&lead_us)),
        (Action::ManageParticipants, Resource::Protocol(&lead_us)),
        (Action::ManageExercise, Resource::Exercise(&lead_us)),
        (Action::AgreeExercise, Resource::Exercise(&lead_us)),
        (Action::ReadAudit, Resource::Partnership),
    ] {
        assert_eq!(
            outcome(decide(&w.uk_hosted_admin, action, &resource)),
            Allow,
            "{action:?}"
        );
    }
}

#[test]
fn an_action_on_a_resource_it_does_not_apply_to_is_refused() {
    let w = world();
    assert_eq!(
        outcome(decide(
            &w.us_admin,
            Action::DecideExchange,
            &Resource::Partnership
        )),
        NotFound
    );
}

#[test]
fn protocols_are_seen_by_participants_only_and_written_by_their_authors() {
    let w = world();
    let us_author = person(8, US, &[(US, Role::Author)]);
    let uk_reviewer = person(9, UK, &[(UK, Role::Reviewer)]);
    let us_reviewer_editor = person(10, US, &[(US, Role::Reviewer), (US, Role::Author)]);
    let jp_author = person(11, JP, &[(JP, Role::Author)]);
    let mut reader = person(12, US, &[(US, Role::Viewer)]);
    reader.kind = AccountKind::Service;
    reader.scopes = vec![Scope::ProtocolsRead];
    let protocol = JointRef {
        lead_institute_id: US,
        participants: vec![US, UK],
    };
    let editors = [us_author.account_id, us_reviewer_editor.account_id];
    let p = Resource::Protocol(&protocol);
    let v = Resource::Version {
        protocol: &protocol,
        editors: &editors,
    };
    let table: Vec<(&Actor, Action, &Resource<'_>, Want)> = vec![
        (&us_author, Action::ReadProtocol, &p, Allow),
        (&w.uk_admin, Action::ReadProtocol, &p, Allow),
        (&w.us_viewer, Action::ReadProtocol, &p, Allow),
        (&w.uk_exchanged, Action::ReadProtocol, &p, Allow),
        (&reader, Action::ReadProtocol, &p, Allow),
        (&w.us_service, Action::ReadProtocol, &p, Unscoped), // no protocols:read scope
        (&jp_author, Action::ReadProtocol, &p, NotFound),
        (&w.us_viewer, Action::ReadProtocol, &v, Allow),
        (&jp_author, Action::ReadProtocol, &v, NotFound),
        (&w.jp_admin, Action::ReadProtocol, &p, NotFound),
        (&us_author, Action::WriteDraft, &p, Allow),
        (&w.uk_exchanged, Action::WriteDraft, &v, Allow), // a US author through the exchange
        (&w.us_viewer, Action::WriteDraft, &p, Forbidden),
        (&uk_reviewer, Action::WriteDraft, &v, Forbidden),
        (&reader, Action::WriteDraft, &p, Forbidden),
        (&jp_author, Action::WriteDraft, &p, NotFound),
        (&uk_reviewer, Action::ReviewVersion, &v, Allow),
        (&us_reviewer_editor, Action::ReviewVersion, &v, Forbidden), // edited it
        (&us_author, Action::ReviewVersion, &v, Forbidden),
        (&w.us_viewer, Action::ReviewVersion, &v, Forbidden),
        (&jp_author, Action::ReviewVersion, &v, NotFound),
        (&us_author, Action::Comment, &v, Allow),
        (&uk_reviewer, Action::Comment, &p, Allow),
        (&w.us_viewer, Action::Comment, &v, Forbidden),
        (&w.jp_admin, Action::Comment, &v, NotFound),
        (&w.us_admin, Action::RetireProtocol, &p, Allow),
        (&w.us_admin, Action::ManageParticipants, &p, Allow),
        (&w.uk_admin, Action::ManageParticipants, &p, Forbidden), // not the lead
        (&us_author, Action::RetireProtocol, &p, Forbidden),
        (&w.jp_admin, Action::ManageParticipants, &p, NotFound),
    ];
    for (actor, action, resource, want) in table {
        assert_eq!(
            outcome(decide(actor, action, resource)),
            want,
            "{action:?} by {:?}",
            actor.account_id
        );
    }
    let new_us = Resource::NewProtocol {
        lead_institute_id: US,
    };
    assert_eq!(
        outcome(decide(&us_author, Action::CreateProtocol, &new_us)),
        Allow
    );
    assert_eq!(
        outcome(decide(&w.uk_exchanged, Action::CreateProtocol, &new_us)),
        Allow
    );
    assert_eq!(
        outcome(decide(&uk_reviewer, Action::CreateProtocol, &new_us)),
        Forbidden
    );
    assert_eq!(
        outcome(decide(&w.us_admin, Action::CreateProtocol, &new_us)),
        Forbidden
    );
}

#[test]
fn a_reviewer_reviews_in_the_capacity_of_each_participant_they_review_for() {
    let both = person(
        13,
        US,
        &[
            (US, Role::Reviewer),
            (UK, Role::Reviewer),
            (JP, Role::Reviewer),
        ],
    );
    assert_eq!(review_capacities(&both, &[US, UK]), {
        let mut v = vec![US, UK];
        v.sort();
        v
    });
    let viewer = person(14, US, &[(US, Role::Viewer)]);
    assert!(review_capacities(&viewer, &[US, UK]).is_empty());
}

#[test]
fn exercises_are_managed_by_the_lead_and_agreed_by_each_participant() {
    let w = world();
    let us_author = person(20, US, &[(US, Role::Author)]);
    let uk_reviewer = person(21, UK, &[(UK, Role::Reviewer)]);
    let uk_author = person(22, UK, &[(UK, Role::Author)]);
    let exercise = JointRef {
        lead_institute_id: US,
        participants: vec![US, UK],
    };
    let e = Resource::Exercise(&exercise);
    let table: Vec<(&Actor, Action, Want)> = vec![
        (&w.us_viewer, Action::ReadExercise, Allow),
        (&uk_reviewer, Action::ReadExercise, Allow),
        (&w.jp_admin, Action::ReadExercise, NotFound),
        (&w.us_service, Action::ReadExercise, Unscoped), // no exercises:read scope
        (&us_author, Action::ManageExercise, Allow),
        (&w.us_admin, Action::ManageExercise, Allow),
        (&uk_author, Action::ManageExercise, Forbidden), // not the lead
        (&w.us_viewer, Action::ManageExercise, Forbidden),
        (&w.jp_admin, Action::ManageExercise, NotFound),
        (&w.us_admin, Action::AgreeExercise, Allow),
        (&uk_reviewer, Action::AgreeExercise, Allow),
        (&w.uk_admin, Action::AgreeExercise, Allow),
        (&us_author, Action::AgreeExercise, Forbidden),
        (&w.us_viewer, Action::AgreeExercise, Forbidden),
        (&w.jp_admin, Action::AgreeExercise, NotFound),
    ];
    for (actor, action, want) in table {
        assert_eq!(
            outcome(decide(actor, action, &e)),
            want,
            "{action:?} by {:?}",
            actor.account_id
        );
    }
    assert_eq!(agreement_capacities(&w.both_admin, &[US, UK]).len(), 2);
    assert!(agreement_capacities(&us_author, &[US, UK]).is_empty());
}

#[test]
fn a_run_belongs_to_its_institute_until_released() {
    let us_evaluator = person(30, US, &[(US, Role::Evaluator)]);
    let us_reviewer = person(31, US, &[(US, Role::Reviewer)]);
    let uk_evaluator = person(32, UK, &[(UK, Role::Evaluator)]);
    let uk_viewer = person(33, UK, &[(UK, Role::Viewer)]);
    let jp_viewer = person(34, JP, &[(JP, Role::Viewer)]);
    let mut runner = person(35, US, &[(US, Role::Evaluator)]);
    runner.kind = AccountKind::Service;
    runner.scopes = vec![Scope::RunsWrite, Scope::ResultsWrite];
    let mut reader_only = runner.clone();
    reader_only.scopes = vec![Scope::RunsRead];
    let mut unscoped_runner = runner.clone();
    unscoped_runner.scopes = vec![Scope::RunsExecute];
    let uk_run_released_to_jp = Resource::Run {
        institute_id: UK,
        released_to: &[JP],
    };
    let unreleased = Resource::Run {
        institute_id: US,
        released_to: &[],
    };
    let released = Resource::Run {
        institute_id: US,
        released_to: &[UK],
    };
    let table: Vec<(&Actor, Action, &Resource<'_>, Want)> = vec![
        (&us_evaluator, Action::ReadRun, &unreleased, Allow),
        (&uk_viewer, Action::ReadRun, &unreleased, NotFound),
        (&uk_evaluator, Action::ReadRun, &unreleased, NotFound),
        (&uk_viewer, Action::ReadRun, &released, Allow),
        (&jp_viewer, Action::ReadRun, &released, NotFound),
        (&us_evaluator, Action::ExecuteRun, &unreleased, Allow),
        (&runner, Action::ExecuteRun, &unreleased, Allow),
        (&reader_only, Action::ExecuteRun, &unreleased, Unscoped), // no runs:write
        (&reader_only, Action::ReadRun, &unreleased, Allow),
        (&unscoped_runner, Action::ReadRun, &unreleased, Unscoped), // its own institute's
        (
            &unscoped_runner,
            Action::ReadRun,
            &uk_run_released_to_jp,
            NotFound,
        ),
        (&us_reviewer, Action::ExecuteRun, &unreleased, Forbidden),
        (&uk_evaluator, Action::ExecuteRun, &released, Forbidden), // sees it, does not run it
        (&uk_evaluator, Action::ExecuteRun, &unreleased, NotFound),
        (&us_reviewer, Action::ReleaseRun, &unreleased, Allow),
        (&us_evaluator, Action::ReleaseRun, &unreleased, Forbidden),
        (&uk_viewer, Action::ReleaseRun, &released, Forbidden),
        (&jp_viewer, Action::ReleaseRun, &unreleased, NotFound),
    ];
    for (actor, action, resource, want) in table {
        assert_eq!(
            outcome(decide(actor, action, resource)),
            want,
            "{action:?} by {:?}",
            actor.account_id
        );
    }
    assert_eq!(execution_capacities(&us_evaluator, &[US, UK]), [US]);
    assert!(execution_capacities(&us_reviewer, &[US, UK]).is_empty());
}

#[test]
fn a_runs_transcripts_are_its_institutes_until_released_with_them() {
    let w = world();
    let us_evaluator = person(30, US, &[(US, Role::Evaluator)]);
    let uk_viewer = person(33, UK, &[(UK, Role::Viewer)]);
    let jp_viewer = person(34, JP, &[(JP, Role::Viewer)]);
    let mut reader = person(35, US, &[(US, Role::Viewer)]);
    reader.kind = AccountKind::Service;
    reader.scopes = vec![Scope::RunsRead];
    let mut unscoped = reader.clone();
    unscoped.scopes = vec![Scope::ResultsWrite];
    let unreleased = Resource::Transcripts {
        institute_id: US,
        released_to: &[],
        transcripts_released_to: &[],
    };
    let results_only = Resource::Transcripts {
        institute_id: US,
        released_to: &[UK, JP],
        transcripts_released_to: &[JP],
    };
    let table: Vec<(&Actor, &Resource<'_>, Want)> = vec![
        (&us_evaluator, &unreleased, Allow),
        (&w.us_viewer, &results_only, Allow),
        (&reader, &unreleased, Allow),
        (&unscoped, &unreleased, Unscoped),
        (&uk_viewer, &unreleased, NotFound),
        (&uk_viewer, &results_only, Withheld),
        (&jp_viewer, &results_only, Allow),
        // A UK reviewer who is a US author through an exchange: the US's own.
        (&w.uk_exchanged, &unreleased, Allow),
        (&w.jp_admin, &unreleased, NotFound),
    ];
    for (actor, resource, want) in table {
        assert_eq!(
            outcome(decide(actor, Action::ReadTranscripts, resource)),
            want,
            "{:?} of {resource:?}",
            actor.account_id
        );
    }
    // The action applies to transcripts only; asked of a run, the safe answer.
    let run = Resource::Run {
        institute_id: US,
        released_to: &[],
    };
    assert_eq!(
        outcome(decide(&us_evaluator, Action::ReadTranscripts, &run)),
        NotFound
    );
}

#[test]
fn me_reports_governance_only_where_the_actor_governs() {
    let w = world();
    let full = [
        "accounts:manage",
        "exchanges:manage",
        "memberships:manage",
        "read",
    ];
    let day_to_day = [
        "accounts:read",
        "accounts:rename",
        "memberships:manage-non-admin",
        "read",
    ];
    assert_eq!(w.us_admin.permissions_at(US), full);
    assert_eq!(w.uk_hosted_admin.permissions_at(US), day_to_day);
    assert_eq!(w.uk_hosted_admin.permissions_at(UK), ["read"]);
    assert_eq!(w.uk_admin_hosted.permissions_at(UK), full);
    assert_eq!(w.uk_admin_hosted.permissions_at(US), day_to_day);
    assert_eq!(w.both_admin.permissions_at(UK), day_to_day); // away from home
    assert!(w.us_viewer.permissions_at(UK).is_empty());
}

#[test]
fn a_capacity_is_the_one_named_among_the_actors_or_its_only_one() {
    let (us, uk, jp) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
    assert_eq!(choose_capacity(None, &[us], "review"), Ok(us));
    assert_eq!(choose_capacity(Some(Some(uk)), &[us, uk], "review"), Ok(uk));
    let named_other = choose_capacity(Some(Some(jp)), &[us, uk], "agree").expect_err("not one");
    assert_eq!(named_other.message, "is not a participant you agree for");
    assert!(choose_capacity(Some(None), &[us], "review").is_err());
    let two = choose_capacity(None, &[us, uk], "review").expect_err("ambiguous");
    assert_eq!(
        (two.field.as_str(), two.message.as_str()),
        (
            "institute",
            "is required: you review for more than one participant"
        )
    );
}
