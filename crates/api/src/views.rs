//! How accounts, memberships, exchanges and runs appear on the wire: one read type each,
//! shared by every endpoint that answers them. Write types live with their endpoints.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use jointeval_domain::conformance::Deviation;
use jointeval_domain::run::{ImportedLog, Run, RunStatus};
use jointeval_domain::{Account, Exchange, Institute, Membership};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Institute codes by id, to show codes next to ids.
pub struct Codes(HashMap<Uuid, String>);

impl Codes {
    pub fn new(institutes: &[Institute]) -> Self {
        Self(
            institutes
                .iter()
                .map(|i| (i.id, i.code.to_string()))
                .collect(),
        )
    }

    pub fn of(&self, id: Uuid) -> String {
        self.0.get(&id).cloned().unwrap_or_default()
    }

    pub fn id_of(&self, code: &str) -> Option<Uuid> {
        self.0
            .iter()
            .find(|(_, c)| c.as_str() == code)
            .map(|(id, _)| *id)
    }
}

/// An account.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d12", "kind": "person", "email": "ada@aisi.gov.uk",
    "display_name": "Ada Lovelace", "home_institute": "UK",
    "home_institute_id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d11", "status": "active",
    "created_at": "2026-11-27T14:00:00Z", "updated_at": "2026-11-27T14:00:00Z"
}))]
pub struct AccountView {
    pub id: Uuid,
    /// `person` or `service`.
    pub kind: &'static str,
    /// Persons only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub display_name: String,
    /// The home institute's code.
    pub home_institute: String,
    pub home_institute_id: Uuid,
    /// `active` or `disabled`.
    pub status: &'static str,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl AccountView {
    pub fn new(a: Account, codes: &Codes) -> Self {
        Self {
            id: a.id,
            kind: a.kind.as_str(),
            email: a.email,
            display_name: a.display_name,
            home_institute: codes.of(a.home_institute_id),
            home_institute_id: a.home_institute_id,
            status: a.status.as_str(),
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

/// A role granted at an institute for a window of time.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d13", "account_id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d12",
    "institute": "UK", "institute_id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d11", "role": "reviewer",
    "valid_from": "2026-11-27T14:00:00Z", "valid_until": null, "granted_by": null,
    "created_at": "2026-11-27T14:00:00Z", "revoked_at": null, "active": true
}))]
pub struct MembershipView {
    pub id: Uuid,
    pub account_id: Uuid,
    pub institute: String,
    pub institute_id: Uuid,
    /// `admin`, `author`, `reviewer`, `evaluator` or `viewer`.
    pub role: &'static str,
    pub valid_from: DateTime<Utc>,
    pub valid_until: Option<DateTime<Utc>>,
    /// Who granted it; `null` for the first admins.
    pub granted_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// Whether it is in force now.
    pub active: bool,
}

impl MembershipView {
    pub fn new(m: Membership, codes: &Codes, now: DateTime<Utc>) -> Self {
        Self {
            active: m.is_active_at(now),
            id: m.id,
            account_id: m.account_id,
            institute: codes.of(m.institute_id),
            institute_id: m.institute_id,
            role: m.role.as_str(),
            valid_from: m.valid_from,
            valid_until: m.valid_until,
            granted_by: m.granted_by,
            created_at: m.created_at,
            revoked_at: m.revoked_at,
        }
    }
}

/// An exchange of personnel.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d14", "account_id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d12",
    "home_institute": "UK", "host_institute": "US", "roles": ["author", "viewer"],
    "starts_at": "2027-01-04T00:00:00Z", "ends_at": "2027-07-02T00:00:00Z",
    "status": "approved", "phase": "upcoming",
    "proposed_by": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d15", "proposed_by_institute": "UK",
    "decided_by": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d16", "decided_at": "2026-11-28T09:00:00Z",
    "ended_by": null, "ended_at": null, "created_at": "2026-11-27T14:00:00Z"
}))]
pub struct ExchangeView {
    pub id: Uuid,
    pub account_id: Uuid,
    pub home_institute: String,
    pub host_institute: String,
    /// The roles the person holds at the host while the exchange is active.
    pub roles: Vec<&'static str>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// As decided: `proposed`, `approved`, `rejected` or `ended` (ended early).
    pub status: &'static str,
    /// Where it stands now: `proposed`, `rejected`, `upcoming`, `active` or `ended`.
    pub phase: &'static str,
    pub proposed_by: Uuid,
    pub proposed_by_institute: String,
    pub decided_by: Option<Uuid>,
    pub decided_at: Option<DateTime<Utc>>,
    pub ended_by: Option<Uuid>,
    pub ended_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl ExchangeView {
    pub fn new(e: Exchange, codes: &Codes, now: DateTime<Utc>) -> Self {
        Self {
            phase: e.phase(now).as_str(),
            id: e.id,
            account_id: e.account_id,
            home_institute: codes.of(e.home_institute_id),
            host_institute: codes.of(e.host_institute_id),
            roles: e.roles.iter().map(|r| r.as_str()).collect(),
            starts_at: e.starts_at,
            ends_at: e.ends_at,
            status: e.status.as_str(),
            proposed_by: e.proposed_by,
            proposed_by_institute: codes.of(e.proposed_by_institute_id),
            decided_by: e.decided_by,
            decided_at: e.decided_at,
            ended_by: e.ended_by,
            ended_at: e.ended_at,
            created_at: e.created_at,
        }
    }
}
/// The harness that executed a run.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HarnessRef {
    /// e.g. `inspect`.
    pub name: String,
    pub version: String,
}

/// A test run.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d60", "exercise_id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d50",
    "protocol_id": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d20", "protocol_version": 2, "institute": "UK",
    "harness": {"name": "inspect", "version": "0.3.285"}, "config": {"temperature": 0},
    "model_version": "example-large-2026-10-01-release", "status": "succeeded",
    "created_by": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d12", "created_at": "2026-12-02T09:00:00Z",
    "started_at": "2026-12-02T09:01:00Z", "finished_at": "2026-12-02T10:00:00Z",
    "updated_by": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d12", "updated_at": "2026-12-02T10:00:00Z",
    "digest": "5d41402abc4b2a76b9719d911017c592ae2b4f0f8d1b1b1c0f5e5a8c1e2f3a4b",
    "digest_formula": "jointeval-results-v3",
    "transcripts_digest": "9b74c9897bac770ffc029102a200c5de6e3f1b4a5d4b0c0cf2c1d8f7f6b1a2c3",
    "released_to": ["US"],
    "transcripts_released_to": [],
    "lease": null, "imported_log": null,
    "comparable": false, "deviations": [{"field": "epochs", "protocol": "3", "run": "1"}]
}))]
pub struct RunView {
    pub id: Uuid,
    pub exercise_id: Uuid,
    pub protocol_id: Uuid,
    pub protocol_version: i32,
    /// The executing institute.
    pub institute: String,
    pub harness: HarnessRef,
    pub config: serde_json::Value,
    pub model_version: String,
    pub status: RunStatus,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The account (person or service) that moved it last.
    pub updated_by: Uuid,
    pub updated_at: DateTime<Utc>,
    /// sha256 of the results (its metrics and every per-sample score), recorded when the
    /// run finished; the README gives the formula, to recompute it from `…/metrics` and
    /// `…/export`.
    pub digest: Option<String>,
    /// How `digest` was taken: `jointeval-results-v3`; `jointeval-results-v2` or
    /// `jointeval-results-v1` for a run finished before the transcripts had a digest of
    /// their own, or before the scores had a `number`; `jointeval-metrics-v0` for one
    /// finished before the digest covered the scores (the metrics only).
    pub digest_formula: Option<String>,
    /// sha256 of the run's transcripts (the export with `transcripts=true`), which
    /// `digest` ends with: a partner holding the results alone checks `digest` with it.
    /// `null` before the run finished, or for a formula before v3.
    pub transcripts_digest: Option<String>,
    /// The institutes its results (metrics and per-sample scores) have been released to.
    pub released_to: Vec<String>,
    /// Those of them its transcripts were released to as well: the original log
    /// (`GET …/inspect-log`), and the answers and explanations beside its scores in
    /// `GET /v1/comparisons/disagreements`.
    pub transcripts_released_to: Vec<String>,
    /// The harness holding it, when one claimed it from the queue (`POST /v1/runs/claim`).
    pub lease: Option<LeaseView>,
    /// The evaluation log its results were imported from (`POST …/inspect-log`).
    pub imported_log: Option<ImportedLog>,
    /// The comparability verdict: `true` when the run did what its protocol version and
    /// its exercise say (no deviation), `false` when `deviations` says how it did not;
    /// `null` until checked, when a log is imported into it or it finishes.
    pub comparable: Option<bool>,
    /// Every difference found between what was run and what the protocol version (or,
    /// for the model, the exercise) says: from the imported log, or, for results sent
    /// through the API, from the stored results and the run's `config` when it finished.
    pub deviations: Vec<Deviation>,
}

/// A harness's hold on a run it claimed.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"holder": "0193a4c2-7a1e-7cc0-8a55-3e2f1b0c9d70", "expires_at": "2026-12-02T09:06:00Z"}))]
pub struct LeaseView {
    /// The service account holding the run.
    pub holder: Uuid,
    /// When the run returns to the queue unless the holder sends a heartbeat.
    pub expires_at: DateTime<Utc>,
}

impl RunView {
    pub(crate) fn new(r: Run, codes: &Codes) -> Self {
        let comparable = r.comparable();
        let sorted_codes = |ids: &[Uuid]| {
            let mut codes: Vec<String> = ids.iter().map(|i| codes.of(*i)).collect();
            codes.sort();
            codes
        };
        let released_to = sorted_codes(&r.released_to);
        let transcripts_released_to = sorted_codes(&r.transcripts_released_to);
        Self {
            id: r.id,
            exercise_id: r.exercise_id,
            protocol_id: r.protocol_id,
            protocol_version: r.protocol_version,
            institute: codes.of(r.institute_id),
            harness: HarnessRef {
                name: r.harness_name,
                version: r.harness_version,
            },
            config: r.config,
            model_version: r.model_version,
            status: r.status,
            created_by: r.created_by,
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            updated_by: r.updated_by,
            updated_at: r.updated_at,
            digest: r.digest,
            digest_formula: r.digest_formula,
            transcripts_digest: r.transcripts_digest,
            released_to,
            transcripts_released_to,
            lease: r.lease.map(|l| LeaseView {
                holder: l.holder,
                expires_at: l.expires_at,
            }),
            comparable,
            imported_log: r.imported_log,
            deviations: r.deviations,
        }
    }
}
