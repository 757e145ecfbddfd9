//! Nothing a client sends answers 5xx: mutated score streams and mutated Inspect logs,
//! deterministically generated, each answer a 2xx or a 4xx problem.

use jointeval_domain::Role;
use serde_json::{Value, json};

use crate::support::TestApp;
use crate::support::story::{active_exercise, new_run};

/// xorshift64*: the same sequence on every run, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, original: &[u8]) -> Vec<u8> {
    let mut bytes = original.to_vec();
    for _ in 0..1 + rng.below(6) {
        let i = rng.below(bytes.len());
        match rng.below(3) {
            0 if i < bytes.len() => bytes[i] = rng.next() as u8,
            1 => bytes.truncate(i),
            _ => {
                let len = rng.below(32).min(bytes.len() - i);
                let chunk = bytes[i..i + len].to_vec();
                bytes.splice(i..i, chunk);
            }
        }
    }
    bytes
}

/// A new running run of the exercise, for mockllm's logs: its path.
async fn running_run(app: &TestApp, token: &str, exercise: &str, protocol: &str) -> String {
    let run: Value = app
        .post_as(
            token,
            &format!("/v1/exercises/{exercise}/runs"),
            &new_run(protocol),
        )
        .await
        .json()
        .await
        .expect("json");
    let path = format!("/v1/runs/{}", run["id"].as_str().expect("id"));
    let started = app
        .post_as(token, &format!("{path}/start"), &json!({}))
        .await;
    assert_eq!(
        started.status(),
        200,
        "the run must be running to take results"
    );
    path
}

#[tokio::test]
async fn mutated_bodies_get_an_answer_never_a_server_error() {
    let app = TestApp::spawn().await;
    let (exercise, protocol) = active_exercise(&app).await;
    let evaluator = app
        .login(
            &app.person("mutant@nist.gov", "US", &[Role::Evaluator])
                .await,
        )
        .await;

    let scores: String = (0..50)
        .map(|i| {
            json!({"sample_id": format!("s{i}"), "epoch": 1, "scorer": "match",
                   "value": if i % 2 == 0 { json!("C") } else { json!(0.5) },
                   "answer": "42", "metadata": {"k": i}})
            .to_string()
                + "\n"
        })
        .collect();
    let log = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/inspect/arith_small.eval"
    ))
    .expect("fixture");
    let mut rng = Rng(0x0bad_5eed_0000_0007);
    let cases = [
        ("samples", "application/x-ndjson", scores.into_bytes()),
        ("inspect-log", "application/zip", log),
    ];
    const ROUNDS: usize = 120;
    for (endpoint, content_type, original) in &cases {
        let mut run = running_run(&app, &evaluator, &exercise, &protocol).await;
        // How far the mutants got: taken whole, or refused by a parser or a validator
        // that names what it refused; anything else never reached them.
        let (mut taken, mut refused_by_name) = (0, 0);
        for round in 0..ROUNDS {
            let path = format!("{run}/{endpoint}");
            let bytes = mutate(&mut rng, original);
            let response = app
                .client
                .post(app.url(&path))
                .bearer_auth(&evaluator)
                .header("content-type", *content_type)
                .body(bytes)
                .send()
                .await
                .expect("send");
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            assert!(status < 500, "{path}, round {round}: {status} {text}");
            if status >= 400 {
                let problem: Value = serde_json::from_str(&text).expect("a problem body");
                assert!(
                    problem["detail"].as_str().is_some_and(|d| !d.is_empty()),
                    "{path}, round {round}: {text}"
                );
                // A log read whole whose eval another run holds was parsed; any other 409
                // means the run was not there to take it.
                let parsed_twice = problem["type"] == "urn:jointeval:problem:log-imported";
                assert!(
                    status != 409 || parsed_twice,
                    "{path}, round {round}: the run was not there to take it: {text}"
                );
                if matches!(status, 400 | 422) || parsed_twice {
                    refused_by_name += 1;
                }
            } else {
                taken += 1;
                if *endpoint == "inspect-log" {
                    // A run takes one log; the next mutant needs a run of its own.
                    run = running_run(&app, &evaluator, &exercise, &protocol).await;
                }
            }
        }
        assert!(
            taken + refused_by_name == ROUNDS && refused_by_name > 0,
            "{endpoint}: {taken} taken and {refused_by_name} refused by a parser, of {ROUNDS}"
        );
    }
}
