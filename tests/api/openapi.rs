use crate::support::TestApp;

/// `openapi.yaml` is the contract partner tools are generated from: it must be exactly
/// what the code serves. Run with `UPDATE_OPENAPI=1` to rewrite it after a change.
#[test]
fn committed_contract_matches_the_code() {
    let generated = jointeval_api::openapi_yaml();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        // Rewriting is not checking: the file is written and nothing is compared.
        if committed != generated {
            std::fs::write(path, &generated).expect("write openapi.yaml");
            eprintln!("openapi.yaml rewritten from the code; commit it");
        }
        return;
    }
    assert!(
        committed == generated,
        "openapi.yaml differs from the code; run `UPDATE_OPENAPI=1 cargo test --test api openapi` and commit it"
    );
}

/// What a generator needs to get right: every reference names a schema that is there, a
/// binary body is a binary string (not an array of integers), and no example in the YAML
/// reads as a date to a YAML 1.1 parser.
#[test]
fn the_contract_generates_clients() {
    fn walk<'a>(value: &'a serde_json::Value, refs: &mut Vec<&'a str>) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(r) = map.get("$ref").and_then(|r| r.as_str()) {
                    refs.push(r);
                }
                map.values().for_each(|v| walk(v, refs));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, refs)),
            _ => {}
        }
    }
    let spec: serde_json::Value =
        serde_json::to_value(jointeval_api::openapi()).expect("spec as JSON");
    let mut refs = Vec::new();
    walk(&spec, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{r} is not a schema reference"));
        assert!(
            spec["components"]["schemas"][name].is_object(),
            "{r} names no schema"
        );
    }
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let Some(content) = op["requestBody"]["content"].as_object() else {
                continue;
            };
            for (media, body) in content {
                let schema = match body["schema"]["$ref"].as_str() {
                    Some(r) => {
                        &spec["components"]["schemas"]
                            [r.trim_start_matches("#/components/schemas/")]
                    }
                    None => &body["schema"],
                };
                assert!(
                    !(schema["type"] == "array" && schema["items"]["type"] == "integer"),
                    "{method} {path}: a {media} body must not be an array of bytes"
                );
                if media == "application/zip" {
                    assert_eq!(schema["format"], "binary", "{method} {path}");
                }
            }
        }
    }
    let yaml = jointeval_api::openapi_yaml();
    for line in yaml.lines() {
        let value = line.split_once(": ").map_or("", |(_, v)| v.trim());
        let date_like = value.len() == 10
            && value.bytes().enumerate().all(|(i, b)| {
                if i == 4 || i == 7 {
                    b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            });
        assert!(!date_like, "YAML 1.1 reads this example as a date: {line}");
    }
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
