//! The API contract, generated from the route annotations.

use utoipa::openapi::OpenApi as Spec;
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::request_body::RequestBody;
use utoipa::openapi::schema::{Schema, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Required, Response, ResponseBuilder};
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
                       body. Lists are cursor-paginated: pass a page's `next_cursor` as `cursor`.\n\n\
                       Before any operation, the listener itself answers: `408` when a request's \
                       head does not arrive whole within the header timeout, and `414` when its \
                       target is longer than the service reads; `400`, `401`, `429`, `431` and \
                       `503` of the same kind are listed on every operation.",
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
        (name = "comparisons", description = "Paired comparisons of two runs of one protocol version: do the institutes get the same answer"),
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
/// any; what the listener answers before any route runs (an unreadable head, too many
/// connections, a header section too large) and what every authenticated operation can
/// refuse (a token that is no good, a password still to change, a scope missing); and 503
/// everywhere (the database, the clock or the connections can run out). A route that says more about one of
/// these keeps its own words, with the common reason added.
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
    let unreadable = problem_response(
        "The request's head is not valid HTTP: a header holds a character HTTP does not allow",
        serde_json::json!({
            "type": "urn:jointeval:problem:malformed-request",
            "title": "Malformed request",
            "status": 400,
            "detail": "the If-Match header holds a character that HTTP does not allow in a header (RFC 9110, section 5.5)"
        }),
    );
    let unauthorized = problem_response(
        "The Authorization header is unreadable (a character HTTP does not allow)",
        serde_json::json!({
            "type": "urn:jointeval:problem:unauthorized",
            "title": "Unauthorized",
            "status": 401,
            "detail": "the Authorization header holds a character that HTTP does not allow in a header (RFC 9110, section 5.5); send `Bearer <token>`"
        }),
    );
    let forbidden = problem_response(
        "A one-time password must be replaced first (POST /v1/me/password), or a service account's token lacks a scope its roles would need",
        serde_json::json!({
            "type": "urn:jointeval:problem:password-change-required",
            "title": "Password change required",
            "status": 403,
            "detail": "this account logged in with a one-time password; set a new one with POST /v1/me/password first"
        }),
    );
    let crowded = problem_response(
        "This client address holds as many connections as the service keeps for one (`--max-connections-per-client`); the connection is closed",
        serde_json::json!({
            "type": "urn:jointeval:problem:too-many-connections-from-client",
            "title": "Too many connections from this address",
            "status": 429,
            "detail": "this address holds the 256 connections the service keeps for one client; reuse them, or close some and retry"
        }),
    );
    let head_too_large = problem_response(
        "The request's header section is larger than the service reads",
        serde_json::json!({
            "type": "urn:jointeval:problem:header-too-large",
            "title": "Request header too large",
            "status": 431,
            "detail": "the request's header section is larger than this service reads"
        }),
    );
    let unavailable = with_header(
        problem_response(
            "The database is unavailable, the request ran past its time, or the service holds as many connections as it keeps; retry after `Retry-After` seconds",
            serde_json::json!({
                "type": "urn:jointeval:problem:database-unavailable",
                "title": "Database unavailable",
                "status": 503,
                "detail": "the database cannot be reached right now; retry later"
            }),
        ),
        &RETRY_AFTER,
    );
    let full = with_header(
        problem_response(
            "The service holds as many connections as it keeps, or the request ran past its time; retry after `Retry-After` seconds",
            serde_json::json!({
                "type": "urn:jointeval:problem:too-many-connections",
                "title": "Too many connections",
                "status": 503,
                "detail": "the service holds the 10000 connections it keeps open; retry later"
            }),
        ),
        &RETRY_AFTER,
    );
    let no_token = with_header(
        problem_response(
            "No valid token: none, not a JWT, expired, or no longer good for its account (disabled, its password reset); or an unreadable Authorization header",
            serde_json::json!({
                "type": "urn:jointeval:problem:unauthorized",
                "title": "Unauthorized",
                "status": 401,
                "detail": "the token has expired; get a new one from POST /v1/auth/token"
            }),
        ),
        &WWW_AUTHENTICATE,
    );
    for (path, item) in spec.paths.paths.iter_mut() {
        for (_, operation) in operations_mut(item) {
            if let Some(body) = &mut operation.request_body {
                absent_not_null(body);
            }
            let has_body = operation.request_body.is_some();
            let has_query = operation
                .parameters
                .iter()
                .flatten()
                .any(|p| matches!(p.parameter_in, ParameterIn::Query));
            let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
            // `/v1/me` and its password are what a one-time password may still reach.
            let before_password_change = path.starts_with("/v1/me");
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
            add_or_extend(responses, "400", &unreadable);
            if secured {
                add_or_extend(responses, "401", &no_token);
            } else {
                add_or_extend(responses, "401", &unauthorized);
            }
            if secured && !before_password_change {
                add_or_extend(responses, "403", &forbidden);
            }
            add_or_extend(responses, "429", &crowded);
            add_or_extend(responses, "431", &head_too_large);
            if path == "/healthz" {
                add_or_extend(responses, "503", &full);
            } else {
                add_or_extend(responses, "503", &unavailable);
            }
        }
    }
}

/// What an operation's answer creates or hands out, and the operations that take it: from
/// `(method, path, status)`, every operation under `prefix` whose path parameters are
/// exactly those named, each filled in by its runtime expression. A client (or the
/// stateful phase of a fuzzer) follows these to the object just made, by its real id.
const LINKS: &[LinkSource] = &[
    (
        "post",
        "/v1/accounts",
        "201",
        "/v1/accounts/{id}",
        &[("id", "$response.body#/account/id")],
    ),
    (
        "post",
        "/v1/accounts/{id}/memberships",
        "201",
        "/v1/accounts/{id}/memberships/{membership_id}",
        &[
            ("id", "$request.path.id"),
            ("membership_id", "$response.body#/id"),
        ],
    ),
    (
        "post",
        "/v1/accounts/{id}/memberships",
        "201",
        "/v1/accounts/{id}/memberships",
        &[("id", "$request.path.id")],
    ),
    (
        "post",
        "/v1/exchanges",
        "201",
        "/v1/exchanges/{id}",
        &[("id", "$response.body#/id")],
    ),
    (
        "post",
        "/v1/protocols",
        "201",
        "/v1/protocols/{id}",
        &[("id", "$response.body#/id")],
    ),
    (
        "post",
        "/v1/protocols/{id}/versions",
        "201",
        "/v1/protocols/{id}/versions/{number}",
        &[
            ("id", "$request.path.id"),
            ("number", "$response.body#/number"),
        ],
    ),
    (
        "post",
        "/v1/protocols/{id}/versions/{number}/comments",
        "201",
        "/v1/protocols/{id}/versions/{number}",
        &[
            ("id", "$request.path.id"),
            ("number", "$request.path.number"),
        ],
    ),
    (
        "post",
        "/v1/protocols/{id}/versions/{number}/reviews",
        "201",
        "/v1/protocols/{id}/versions/{number}",
        &[
            ("id", "$request.path.id"),
            ("number", "$request.path.number"),
        ],
    ),
    (
        "post",
        "/v1/exercises",
        "201",
        "/v1/exercises/{id}",
        &[("id", "$response.body#/id")],
    ),
    (
        "post",
        "/v1/exercises/{id}/runs",
        "201",
        "/v1/runs/{id}",
        &[("id", "$response.body#/id")],
    ),
    (
        "post",
        "/v1/exercises/{id}/runs/inspect-log",
        "201",
        "/v1/runs/{id}",
        &[("id", "$response.body#/run/id")],
    ),
    (
        "post",
        "/v1/runs/claim",
        "200",
        "/v1/runs/{id}",
        &[("id", "$response.body#/id")],
    ),
];

/// `(method, path, status, prefix, [(parameter, runtime expression)])`.
type LinkSource = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// Adds [`LINKS`] to the answers they start from.
pub(crate) fn add_links(spec: &mut Spec) {
    let mut targets: Vec<(&str, Vec<(String, String)>)> = vec![Default::default(); LINKS.len()];
    for (i, (_, _, _, prefix, parameters)) in LINKS.iter().enumerate() {
        let mut names: Vec<&str> = parameters.iter().map(|(name, _)| *name).collect();
        names.sort_unstable();
        targets[i].0 = prefix;
        for (path, item) in &spec.paths.paths {
            let mut in_path: Vec<&str> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            in_path.sort_unstable();
            if !(path == prefix || path.starts_with(&format!("{prefix}/"))) || in_path != names {
                continue;
            }
            for (method, operation) in operations(item) {
                if let Some(id) = &operation.operation_id {
                    targets[i]
                        .1
                        .push((id.clone(), format!("{} {path}", method.to_uppercase())));
                }
            }
        }
    }
    for ((method, path, status, _, parameters), (_, to)) in LINKS.iter().zip(targets) {
        let Some(item) = spec.paths.paths.get_mut(*path) else {
            continue;
        };
        let Some((_, operation)) = operations_mut(item).find(|(m, _)| m == method) else {
            continue;
        };
        let Some(RefOr::T(response)) = operation.responses.responses.get_mut(*status) else {
            continue;
        };
        // utoipa 5.5 writes a link's `operationId` as `operation_id`, which no reader
        // of the contract knows; the links go in as the contract spells them instead.
        let links: serde_json::Map<String, serde_json::Value> = to
            .into_iter()
            .map(|(operation_id, name)| {
                let parameters: serde_json::Map<String, serde_json::Value> = parameters
                    .iter()
                    .map(|(p, e)| ((*p).to_owned(), (*e).into()))
                    .collect();
                let link = serde_json::json!({
                    "operationId": operation_id,
                    "parameters": parameters,
                    "description": format!("{name}, of what this answer holds"),
                });
                (operation_id, link)
            })
            .collect();
        response
            .extensions
            .get_or_insert_with(Default::default)
            .insert("links".to_owned(), links.into());
    }
}

/// A body declared `Option<T>` is one that may be left out (the `OptionalJson`
/// extractor), not one that may be `null`: utoipa writes it as `oneOf: [null, T]`; the
/// contract says `T`, not required.
fn absent_not_null(body: &mut RequestBody) {
    for content in body.content.values_mut() {
        let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema else {
            continue;
        };
        let is_null = |s: &RefOr<Schema>| {
            matches!(s, RefOr::T(Schema::Object(o))
                if o.schema_type == SchemaType::Type(Type::Null))
        };
        if let [a, b] = one_of.items.as_slice()
            && (is_null(a) || is_null(b))
        {
            let kept = if is_null(a) { b.clone() } else { a.clone() };
            content.schema = Some(kept);
            body.required = Some(Required::False);
        }
    }
}

/// Adds `response` for `status`, or, where the route documents that status itself, adds
/// the common reason to its description.
fn add_or_extend(
    responses: &mut std::collections::BTreeMap<String, RefOr<Response>>,
    status: &str,
    response: &Response,
) {
    match responses.get_mut(status) {
        Some(RefOr::T(existing)) => {
            for (name, header) in &response.headers {
                existing
                    .headers
                    .entry(name.clone())
                    .or_insert_with(|| header.clone());
            }
            let mut reason = response.description.chars();
            let reason: String = reason
                .next()
                .map(|first| first.to_lowercase().chain(reason).collect())
                .unwrap_or_default();
            if !existing.description.contains(&reason) {
                existing.description = format!("{}; or {reason}", existing.description);
            }
        }
        Some(RefOr::Ref(_)) => {}
        None => {
            responses.insert(status.to_owned(), response.clone().into());
        }
    }
}

/// An item's operations, with their methods as the contract spells them.
fn operations(item: &PathItem) -> impl Iterator<Item = (&'static str, &Operation)> {
    [
        ("get", &item.get),
        ("put", &item.put),
        ("post", &item.post),
        ("delete", &item.delete),
        ("patch", &item.patch),
    ]
    .into_iter()
    .filter_map(|(method, operation)| Some((method, operation.as_ref()?)))
}

fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", &mut item.get),
        ("put", &mut item.put),
        ("post", &mut item.post),
        ("delete", &mut item.delete),
        ("patch", &mut item.patch),
    ]
    .into_iter()
    .filter_map(|(method, operation)| Some((method, operation.as_mut()?)))
}

/// A header an answer always carries: its name, its type, and what it says.
struct AlwaysSent(&'static str, Type, &'static str);

/// Every 503 says when to retry.
const RETRY_AFTER: AlwaysSent = AlwaysSent(
    "Retry-After",
    Type::Integer,
    "Seconds to wait before retrying",
);

/// Every 401 says how to authenticate (RFC 6750).
const WWW_AUTHENTICATE: AlwaysSent = AlwaysSent(
    "WWW-Authenticate",
    Type::String,
    "`Bearer realm=\"jointeval\"`, with `error` and `error_description` when a token was sent",
);

fn with_header(mut response: Response, header: &AlwaysSent) -> Response {
    let schema = utoipa::openapi::ObjectBuilder::new()
        .schema_type(SchemaType::Type(header.1.clone()))
        .build();
    response.headers.insert(
        header.0.to_owned(),
        utoipa::openapi::HeaderBuilder::new()
            .schema(schema)
            .description(Some(header.2))
            .build(),
    );
    response
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
