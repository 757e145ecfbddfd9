//! The audit trail's events and their hash chain: each event's hash is
//! `sha256(previous hash ‖ canonical bytes of the event)`, so that changing, removing or
//! reordering any event breaks every link after it. Pure: the store writes the events,
//! `jointeval audit verify` and the tests recompute the chain with these functions.

use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

use crate::canonical;

/// The `prev_hash` of the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One change, as the code that makes it describes it. Who, when, and from where are
/// added by the store from the transaction's context.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// `<object type>.<verb>`, such as `protocol_version.submitted`.
    pub action: &'static str,
    pub object_id: String,
    /// The institute in whose capacity the actor acted, where there is one.
    pub institute_id: Option<Uuid>,
    /// The institutes whose admins may read the event.
    pub visible_to: Vec<Uuid>,
    /// Field names and new values; never a password, a secret or a token.
    pub summary: serde_json::Value,
}

impl Change {
    pub fn new(action: &'static str, object_id: impl ToString) -> Self {
        Self {
            action,
            object_id: object_id.to_string(),
            institute_id: None,
            visible_to: Vec::new(),
            summary: serde_json::json!({}),
        }
    }

    pub fn by(mut self, institute_id: Uuid) -> Self {
        self.institute_id = Some(institute_id);
        self
    }

    pub fn visible_to(mut self, institutes: impl IntoIterator<Item = Uuid>) -> Self {
        self.visible_to.extend(institutes);
        self
    }

    pub fn summary(mut self, summary: serde_json::Value) -> Self {
        self.summary = summary;
        self
    }

    /// An account's changes are its home institute's business, done in its capacity.
    pub fn for_account(action: &'static str, account: &crate::Account) -> Self {
        Self::new(action, account.id)
            .by(account.home_institute_id)
            .visible_to([account.home_institute_id])
    }

    /// A role is granted in the capacity of the institute it is at; the account's home
    /// institute sees it too.
    pub fn for_membership(
        action: &'static str,
        membership: &crate::Membership,
        home: Uuid,
    ) -> Self {
        Self::new(action, membership.id)
            .by(membership.institute_id)
            .visible_to([membership.institute_id, home])
    }

    /// Both institutes of an exchange see its history.
    pub fn for_exchange(action: &'static str, exchange: &crate::Exchange, capacity: Uuid) -> Self {
        Self::new(action, exchange.id)
            .by(capacity)
            .visible_to([exchange.home_institute_id, exchange.host_institute_id])
    }

    /// A protocol's history is its participants' (its lead is always one of them).
    pub fn for_protocol(action: &'static str, protocol: &crate::protocol::Protocol) -> Self {
        Self::new(action, protocol.id)
            .by(protocol.lead_institute_id)
            .visible_to(protocol.participants.iter().copied())
    }

    /// An exercise's history is its participants' and its lead's.
    pub fn for_exercise(action: &'static str, exercise: &crate::exercise::Exercise) -> Self {
        Self::new(action, exercise.id)
            .by(exercise.lead_institute_id)
            .visible_to(exercise.participants.iter().copied())
            .visible_to([exercise.lead_institute_id])
    }

    /// A run's history is its executing institute's, shared with those it was released to.
    pub fn for_run(action: &'static str, run: &crate::run::Run) -> Self {
        Self::new(action, run.id)
            .by(run.institute_id)
            .visible_to([run.institute_id])
            .visible_to(run.released_to.iter().copied())
    }

    /// A change of a protocol's version: its history is the protocol's participants',
    /// and it is made in the actor's capacity as an author there (or any role it holds).
    pub fn for_version(
        action: &'static str,
        actor: &crate::Actor,
        protocol: &crate::JointRef,
        version_id: Uuid,
    ) -> Self {
        let capacity = actor
            .capacity_among(&protocol.participants, Some(crate::Role::Author))
            .or_else(|| actor.capacity_among(&protocol.participants, None));
        let change =
            Self::new(action, version_id).visible_to(protocol.participants.iter().copied());
        match capacity {
            Some(institute) => change.by(institute),
            None => change,
        }
    }

    /// The part of the action before the dot.
    pub fn object_type(&self) -> &'static str {
        self.action.split('.').next().unwrap_or(self.action)
    }
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub seq: i64,
    pub at: DateTime<Utc>,
    /// The acting account's id, or `system:<purpose>`.
    pub actor: String,
    pub institute_id: Option<Uuid>,
    pub action: String,
    pub object_type: String,
    pub object_id: String,
    pub visible_to: Vec<Uuid>,
    /// Canonical JSON text: hashed as stored.
    pub summary: String,
    pub request_id: Option<String>,
    pub client_addr: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

impl Event {
    /// The bytes the hash covers: every field but the two hashes, as canonical JSON,
    /// the time with microseconds (what PostgreSQL keeps) and `visible_to` sorted.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut visible: Vec<String> = self.visible_to.iter().map(Uuid::to_string).collect();
        visible.sort();
        visible.dedup();
        canonical::to_bytes(&serde_json::json!({
            "seq": self.seq,
            "at": self.at.to_rfc3339_opts(SecondsFormat::Micros, true),
            "actor": self.actor,
            "institute_id": self.institute_id,
            "action": self.action,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "visible_to": visible,
            "summary": self.summary,
            "request_id": self.request_id,
            "client_addr": self.client_addr,
        }))
    }

    /// `sha256(prev_hash ‖ canonical bytes)`, the previous hash as its 64 hex characters.
    pub fn expected_hash(&self) -> String {
        canonical::sha256_hex([self.prev_hash.as_bytes(), &self.canonical_bytes()])
    }

    /// Sets `prev_hash` and `hash` so that this event extends `prev`.
    pub fn seal(mut self, prev_hash: &str) -> Self {
        prev_hash.clone_into(&mut self.prev_hash);
        self.hash = self.expected_hash();
        self
    }
}

/// A point of the chain: its sequence number and the hash of the event there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub seq: i64,
    pub hash: String,
}

impl Link {
    pub fn genesis() -> Self {
        Self {
            seq: 0,
            hash: GENESIS.to_owned(),
        }
    }
}

/// Where and why the chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the audit chain is broken at event {seq}: {reason}")]
pub struct BrokenLink {
    pub seq: i64,
    pub reason: String,
}

/// Walks the chain in order, checking each link; the events may come in batches.
#[derive(Debug, Clone)]
pub struct ChainCheck {
    head: Link,
    /// A checkpoint the chain must pass through, until it has been passed.
    checkpoint: Option<Link>,
}

impl ChainCheck {
    pub fn new(checkpoint: Option<Link>) -> Self {
        Self {
            head: Link::genesis(),
            checkpoint,
        }
    }

    pub fn push(&mut self, event: &Event) -> Result<(), BrokenLink> {
        let broken = |reason: String| BrokenLink {
            seq: event.seq,
            reason,
        };
        if event.seq != self.head.seq + 1 {
            return Err(BrokenLink {
                seq: self.head.seq + 1,
                reason: format!("the next event found is number {}", event.seq),
            });
        }
        if event.prev_hash != self.head.hash {
            return Err(broken(
                "its previous hash is not the hash of the event before it".into(),
            ));
        }
        if event.hash != event.expected_hash() {
            return Err(broken(
                "its content does not match its hash (the event was changed)".into(),
            ));
        }
        if let Some(checkpoint) = &self.checkpoint
            && checkpoint.seq == event.seq
        {
            if checkpoint.hash != event.hash {
                return Err(broken(format!(
                    "the checkpoint says its hash is {}, the chain has {}: the history up to the checkpoint was rewritten",
                    checkpoint.hash, event.hash
                )));
            }
            self.checkpoint = None;
        }
        self.head = Link {
            seq: event.seq,
            hash: event.hash.clone(),
        };
        Ok(())
    }

    /// The verified head, once every event has been pushed.
    pub fn finish(self) -> Result<Link, BrokenLink> {
        match self.checkpoint {
            Some(checkpoint) => Err(BrokenLink {
                seq: checkpoint.seq,
                reason: format!(
                    "the chain ends at event {}, before the checkpoint: events were removed",
                    self.head.seq
                ),
            }),
            None => Ok(self.head),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<Event> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let event = Event {
                    seq,
                    at: DateTime::from_timestamp_micros(1_795_000_000_000_000 + seq)
                        .expect("a time"),
                    actor: Uuid::from_u128(7).to_string(),
                    institute_id: Some(Uuid::from_u128(1)),
                    action: "protocol.created".into(),
                    object_type: "protocol".into(),
                    object_id: Uuid::from_u128(seq as u128).to_string(),
                    visible_to: vec![Uuid::from_u128(2), Uuid::from_u128(1)],
                    summary: r#"{"title":"x"}"#.into(),
                    request_id: None,
                    client_addr: Some("127.0.0.1".into()),
                    prev_hash: String::new(),
                    hash: String::new(),
                }
                .seal(&prev);
                prev.clone_from(&event.hash);
                event
            })
            .collect()
    }

    fn check(events: &[Event], checkpoint: Option<Link>) -> Result<Link, BrokenLink> {
        let mut check = ChainCheck::new(checkpoint);
        for e in events {
            check.push(e)?;
        }
        check.finish()
    }

    #[test]
    fn an_untouched_chain_verifies_to_its_head() {
        let events = chain(5);
        let head = check(&events, None).expect("verifies");
        assert_eq!(head.seq, 5);
        assert_eq!(head.hash, events[4].hash);
        assert_eq!(check(&[], None).expect("verifies"), Link::genesis());
    }

    #[test]
    fn the_hash_is_over_the_previous_hash_and_the_canonical_bytes() {
        let e = &chain(1)[0];
        let bytes = String::from_utf8(e.canonical_bytes()).expect("utf-8");
        assert!(
            bytes.starts_with(r#"{"action":"protocol.created","actor":"#),
            "{bytes}"
        );
        assert!(bytes.contains(r#""at":"2026-11-18T11:06:40"#), "{bytes}");
        assert!(bytes.contains(r#".000001Z""#), "{bytes}");
        assert!(bytes.contains(&format!(
            r#""visible_to":["{}","{}"]"#,
            Uuid::from_u128(1),
            Uuid::from_u128(2)
        )));
        assert_eq!(
            e.hash,
            canonical::sha256_hex([GENESIS.as_bytes(), e.canonical_bytes().as_slice()])
        );
    }

    /// Known answers, computed apart from this code (Python's json and hashlib over the
    /// README's description): a change of the canonical form or the chaining fails here.
    #[test]
    fn the_hashes_of_a_fixed_chain_are_known() {
        let events = chain(2);
        assert_eq!(
            String::from_utf8(events[0].canonical_bytes()).expect("utf-8"),
            concat!(
                r#"{"action":"protocol.created","actor":"00000000-0000-0000-0000-000000000007","#,
                r#""at":"2026-11-18T11:06:40.000001Z","client_addr":"127.0.0.1","#,
                r#""institute_id":"00000000-0000-0000-0000-000000000001","#,
                r#""object_id":"00000000-0000-0000-0000-000000000001","object_type":"protocol","#,
                r#""request_id":null,"seq":1,"summary":"{\"title\":\"x\"}","#,
                r#""visible_to":["00000000-0000-0000-0000-000000000001","00000000-0000-0000-0000-000000000002"]}"#
            )
        );
        assert_eq!(
            events[0].hash,
            "d0b601fec864d36d4c885429a6bd9c3d44772989fe8b91534a783b7f1c5b14e4"
        );
        assert_eq!(
            events[1].hash,
            "b0e29fd5d367e59beb410ae0630fd31daffce850766d4e0703b095b58fc57ca6"
        );
    }

    #[test]
    fn changing_any_field_breaks_the_link_at_that_event() {
        let tamperings: Vec<fn(&mut Event)> = vec![
            |e| e.actor = "someone else".into(),
            |e| e.summary = r#"{"title":"y"}"#.into(),
            |e| e.at += chrono::Duration::microseconds(1),
            |e| e.visible_to.push(Uuid::from_u128(3)),
            |e| e.institute_id = None,
            |e| e.action = "protocol.retired".into(),
            |e| e.client_addr = None,
        ];
        for tamper in tamperings {
            let mut events = chain(4);
            tamper(&mut events[2]);
            let broken = check(&events, None).expect_err("broken");
            assert_eq!(broken.seq, 3);
            assert!(broken.reason.contains("changed"), "{broken}");
        }
    }

    #[test]
    fn a_removed_or_reordered_event_is_found() {
        let mut events = chain(4);
        events.remove(1);
        assert_eq!(check(&events, None).expect_err("broken").seq, 2);

        let mut events = chain(4);
        events.swap(1, 2);
        assert_eq!(check(&events, None).expect_err("broken").seq, 2);
    }

    #[test]
    fn a_rehashed_rewrite_verifies_alone_but_not_against_an_older_checkpoint() {
        let original = chain(4);
        let checkpoint = Link {
            seq: 3,
            hash: original[2].hash.clone(),
        };
        // Someone rewrites event 2 and recomputes every hash after it.
        let mut rewritten = original.clone();
        rewritten[1].summary = r#"{"title":"rewritten"}"#.into();
        let mut prev = rewritten[0].hash.clone();
        for e in &mut rewritten[1..] {
            *e = e.clone().seal(&prev);
            prev.clone_from(&e.hash);
        }
        assert!(check(&rewritten, None).is_ok());
        let broken = check(&rewritten, Some(checkpoint.clone())).expect_err("rewritten");
        assert_eq!(broken.seq, 3);
        assert!(broken.reason.contains("rewritten"), "{broken}");
        assert_eq!(
            check(&original, Some(checkpoint.clone()))
                .expect("extends")
                .seq,
            4
        );
        // A chain cut short before the checkpoint does not extend it either.
        let broken = check(&original[..2], Some(checkpoint)).expect_err("cut short");
        assert!(broken.reason.contains("removed"), "{broken}");
    }
}
