use crate::support::TestApp;

/// `openapi.yaml` is the contract partner tools are generated from: it must be exactly
/// what the code serves. Run with `UPDATE_OPENAPI=1` to rewrite it after a change.
#[test]
fn committed_contract_matches_the_code() {
    let generated = jointeval_api::openapi_yaml();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &generated).expect("write openapi.yaml");
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi.yaml differs from the code; run `UPDATE_OPENAPI=1 cargo test --test api openapi` and commit it"
    );
}

#[test]
fn every_operation_documents_its_answers_with_examples_or_schemas() {
    let spec: serde_json::Value =
        serde_json::to_value(jointeval_api::openapi()).expect("spec as JSON");
    let paths = spec["paths"].as_object().expect("paths");
    assert!(paths.contains_key("/v1/institutes") && paths.contains_key("/readyz"));
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            let id = format!("{method} {path}");
            assert!(op["operationId"].is_string(), "{id} has no operationId");
            assert!(op["summary"].is_string(), "{id} has no summary");
            let responses = op["responses"].as_object().expect("responses");
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    assert!(
                        response["content"]["application/problem+json"].is_object(),
                        "{id} {status} is not a problem answer"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn the_contract_and_its_docs_page_are_served() {
    let app = TestApp::spawn().await;
    let json: serde_json::Value = app.get("/openapi.json").await.json().await.expect("json");
    assert_eq!(
        json,
        serde_json::to_value(jointeval_api::openapi()).expect("spec")
    );
    let yaml = app.get("/openapi.yaml").await;
    assert_eq!(yaml.headers()["content-type"], "application/yaml");
    assert_eq!(
        yaml.text().await.expect("text"),
        jointeval_api::openapi_yaml()
    );
    let docs = app.get("/docs").await;
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.expect("text").contains("/openapi.json"));
}
