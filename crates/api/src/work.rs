//! A request's unit of work: its one transaction, begun as its caller, with what a
//! handler reads at most once per request. A handler begins it once it has read and
//! checked its input, and ends it with [`Work::commit`] or [`Work::commit_audited`];
//! dropped on an error, it rolls back, and nothing half-written stays.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use jointeval_domain::audit::{Change, Event};
use jointeval_store::{PgConnection, Tx};

use crate::AppState;
use crate::auth::Caller;
use crate::problem::ApiError;
use crate::views::Codes;

pub(crate) struct Work<'c> {
    tx: Tx,
    pub(crate) caller: &'c Caller,
    codes: Option<Arc<Codes>>,
}

impl<'c> Work<'c> {
    /// Begins the transaction, carrying the caller for row-level security and the audit.
    pub(crate) async fn begin(state: &AppState, caller: &'c Caller) -> Result<Self, ApiError> {
        Ok(Self {
            tx: jointeval_store::begin(&state.pool, &caller.acting_as()).await?,
            caller,
            codes: None,
        })
    }

    /// The institutes' codes, read on first use.
    pub(crate) async fn codes(&mut self) -> Result<Arc<Codes>, ApiError> {
        if let Some(codes) = &self.codes {
            return Ok(codes.clone());
        }
        let codes = Arc::new(Codes::new(
            &jointeval_store::institutes::all(&mut *self.tx).await?,
        ));
        self.codes = Some(codes.clone());
        Ok(codes)
    }

    pub(crate) async fn commit(self) -> Result<(), ApiError> {
        Ok(jointeval_store::commit(self.tx).await?)
    }

    /// Commits with the change's audit event: both or neither.
    pub(crate) async fn commit_audited(self, change: &Change) -> Result<Event, ApiError> {
        Ok(jointeval_store::audit::commit_audited(self.tx, change).await?)
    }
}

/// The transaction's connection, for the store's functions.
impl Deref for Work<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.tx
    }
}

impl DerefMut for Work<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.tx
    }
}
