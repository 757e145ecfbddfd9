//! Refusals by the access policy are audited too. The handler's transaction rolls back
//! with its refusal, so the refusal is recorded here, once the handler has answered and
//! before the answer is sent, in a transaction of its own, as the caller the request
//! authenticated as.

use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use jointeval_domain::audit::Change;
use jointeval_store::ActingAs;
use serde_json::json;

use crate::AppState;

/// Marks an answer as a refusal by the access policy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Denied;

/// Where the authentication extractor leaves who the request acts as.
#[derive(Debug, Clone, Default)]
pub(crate) struct ActorSlot(Arc<Mutex<Option<ActingAs>>>);

impl ActorSlot {
    pub(crate) fn set(&self, acting: ActingAs) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(acting);
    }

    fn take(&self) -> Option<ActingAs> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

pub(crate) async fn record_denials(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let slot = ActorSlot::default();
    req.extensions_mut().insert(slot.clone());
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
    let response = next.run(req).await;
    if response.extensions().get::<Denied>().is_none() {
        return response;
    }
    let Some(acting) = slot.take() else {
        return response;
    };
    let visible_to = match &acting {
        ActingAs::Account { institutes, .. } => institutes.clone(),
        ActingAs::System { .. } => Vec::new(),
    };
    // Named by its route, not its path: the ids in a refused path may be another
    // institute's, which the caller's own institutes must not learn from their trail.
    let change = Change::new("access.denied", format!("{method} {route}"))
        .visible_to(visible_to)
        .summary(json!({"method": method, "route": route, "status": response.status().as_u16()}));
    let recorded = async {
        let tx = jointeval_store::begin(&state.pool, &acting).await?;
        jointeval_store::audit::commit_audited(tx, &change).await
    }
    .await;
    if let Err(e) = recorded {
        tracing::error!(error = %e, "recording a denial in the audit trail");
    }
    response
}
