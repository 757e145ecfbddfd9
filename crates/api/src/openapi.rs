//! The API contract, generated from the route annotations.

use utoipa::openapi::OpenApi as Spec;
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

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
    // Schemas that only query parameters name, which the paths do not collect.
    components(schemas(
        crate::problem::Problem,
        crate::problem::FieldError,
        jointeval_domain::AccountStatus
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "operations", description = "Liveness, readiness and the contract itself"),
        (name = "auth", description = "Tokens and the keys that verify them"),
        (name = "me", description = "The caller's own account"),
        (name = "accounts", description = "Accounts and their roles, managed by each institute's admins"),
        (name = "exchanges", description = "Personnel exchanged between institutes"),
        (name = "protocols", description = "Evaluation protocols, their versions, reviews and discussion"),
        (name = "exercises", description = "Joint testing exercises, started by every participant's agreement"),
        (name = "runs", description = "Test runs, their results, and their release to the partners"),
        (name = "institutes", description = "The parties to the partnership"),
        (name = "audit", description = "The tamper-evident audit trail of every change, and signed checkpoints of it"),
    )
)]
struct ApiDoc;

/// `Authorization: Bearer <JWT>`, the token from `POST /v1/auth/token`.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, spec: &mut Spec) {
        let components = spec.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An EdDSA-signed access token from POST /v1/auth/token, valid 15 minutes by default",
                    ))
                    .build(),
            ),
        );
    }
}

pub(crate) fn base() -> Spec {
    ApiDoc::openapi()
}

/// The whole contract.
pub fn openapi() -> Spec {
    routes::api().1
}

/// Answers that any operation of a kind can give, said once here rather than on every
/// route: a failure on our side (a panic is caught and answered) on all of them; an
/// unreadable, oversized or non-JSON body on those that take one (the body extractors
/// answer them before the handler runs); an invalid query parameter on those that take
/// any. A route that says more about one of these keeps its own words.
pub(crate) fn add_common_answers(spec: &mut Spec) {
    let internal = problem_response(
        "A failure of the service; the cause is logged, never sent",
        serde_json::json!({
            "type": "about:blank",
            "title": "Internal Server Error",
            "status": 500,
            "detail": "the service failed to answer this request; the failure has been logged"
        }),
    );
    let malformed = problem_response(
        "The body is not valid JSON (or NDJSON)",
        serde_json::json!({
            "type": "urn:jointeval:problem:malformed-json",
            "title": "Malformed JSON",
            "status": 400,
            "detail": "the body is not valid JSON: EOF while parsing an object at line 1 column 14"
        }),
    );
    let too_large = problem_response(
        "The body is larger than this service accepts",
        serde_json::json!({
            "type": "about:blank",
            "title": "Payload Too Large",
            "status": 413,
            "detail": "the request body is larger than this service accepts"
        }),
    );
    let media_type = problem_response(
        "The body is not of a media type this operation takes (see its `Content-Type`s)",
        serde_json::json!({
            "type": "about:blank",
            "title": "Unsupported Media Type",
            "status": 415,
            "detail": "the body must be JSON, sent with `Content-Type: application/json`"
        }),
    );
    let bad_query = problem_response(
        "A query parameter is invalid",
        serde_json::json!({
            "type": "urn:jointeval:problem:validation",
            "title": "Invalid request",
            "status": 422,
            "detail": "limit: must be between 1 and 200",
            "errors": [{"field": "limit", "message": "must be between 1 and 200"}]
        }),
    );
    for item in spec.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            let has_body = operation.request_body.is_some();
            let has_query = operation
                .parameters
                .iter()
                .flatten()
                .any(|p| matches!(p.parameter_in, ParameterIn::Query));
            let responses = &mut operation.responses.responses;
            let mut add = |status: &str, response: &Response| {
                responses
                    .entry(status.to_owned())
                    .or_insert_with(|| response.clone().into());
            };
            if has_body {
                add("400", &malformed);
                add("413", &too_large);
                add("415", &media_type);
            }
            if has_query {
                add("422", &bad_query);
            }
            add("500", &internal);
        }
    }
}

fn problem_response(description: &str, example: serde_json::Value) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            crate::problem::PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .example(Some(example))
                .build(),
        )
        .build()
}

/// The contract as YAML, as committed in `openapi.yaml`.
pub fn openapi_yaml() -> String {
    openapi()
        .to_yaml()
        .unwrap_or_else(|e| format!("# the contract could not be rendered: {e}\n"))
}
