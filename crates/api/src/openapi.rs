//! The API contract, generated from the route annotations.

use utoipa::OpenApi;
use utoipa::openapi::OpenApi as Spec;

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "jointeval",
        description = "The system of record for joint AI safety evaluations between national \
                       AI safety institutes: evaluation protocols, joint exercises, test runs and \
                       their results, with access rules that keep each institute's unreleased \
                       work its own.\n\nEvery error is an RFC 9457 `application/problem+json` \
                       body. Lists are cursor-paginated: pass a page's `next_cursor` as `cursor`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    tags(
        (name = "operations", description = "Liveness, readiness and the contract itself"),
        (name = "institutes", description = "The parties to the partnership"),
    )
)]
struct ApiDoc;

pub(crate) fn base() -> Spec {
    ApiDoc::openapi()
}

/// The whole contract.
pub fn openapi() -> Spec {
    routes::api().split_for_parts().1
}

/// The contract as YAML, as committed in `openapi.yaml`.
pub fn openapi_yaml() -> String {
    openapi()
        .to_yaml()
        .unwrap_or_else(|e| format!("# the contract could not be rendered: {e}\n"))
}
