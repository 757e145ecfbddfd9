use super::*;

fn content() -> ProtocolContent {
    serde_json::from_value(serde_json::json!({
        "objective": "Measure uplift on capture-the-flag tasks",
        "tasks": [{
            "name": "ctf-easy", "description": "",
            "dataset": {"name": "ctf-suite", "version": "2026.10", "sha256": null, "sample_count": 20},
            "harness": {"name": "inspect", "task_ref": "inspect_evals/ctf_easy"},
            "scorers": ["match"], "metrics": ["accuracy"], "epochs": 3
        }],
        "metrics": [{"name": "accuracy", "description": "", "higher_is_better": true, "threshold": null}],
    }))
    .expect("valid content")
}

fn fields(errors: Vec<ValidationError>) -> Vec<String> {
    errors.into_iter().map(|e| e.field).collect()
}

#[test]
fn a_complete_version_is_valid_and_ready_for_review() {
    assert!(content().validate_for_review().is_empty());
}

#[test]
fn names_are_unique_and_task_metrics_must_exist() {
    let mut c = content();
    c.tasks.push(c.tasks[0].clone());
    c.metrics.push(c.metrics[0].clone());
    c.tasks[0].metrics.push("recall".into());
    c.tasks[0].scorers.push("match".into());
    assert_eq!(
        fields(c.validate()),
        [
            "/metrics/1/name",
            "/tasks/0/scorers/1",
            "/tasks/0/metrics/1",
            "/tasks/1/name"
        ]
    );
}

#[test]
fn sizes_and_numbers_are_bounded() {
    let mut c = content();
    c.objective = "x".repeat(MAX_TEXT + 1);
    c.tasks[0].epochs = 0;
    c.tasks[0].dataset.sample_count = Some(0);
    c.tasks[0].dataset.sha256 = Some("ABC".into());
    c.tasks[0].name = " padded".into();
    c.metrics[0].threshold = Some(Threshold {
        value: f64::NAN,
        meaning: "m".into(),
    });
    assert_eq!(
        fields(c.validate()),
        [
            "/objective",
            "/metrics/0/threshold/value",
            "/tasks/0/name",
            "/tasks/0/dataset/sha256",
            "/tasks/0/dataset/sample_count",
            "/tasks/0/epochs"
        ]
    );
}

#[test]
fn a_tasks_settings_solver_and_limits_are_bounded() {
    let mut c = content();
    c.tasks[0].generation = Some(BTreeMap::from([
        ("temperature".to_owned(), serde_json::json!(0)),
        ("stop_seqs".to_owned(), serde_json::json!(["\n"])),
    ]));
    c.tasks[0].solver = Some("system_message, generate".into());
    c.tasks[0].limits = Some(Limits {
        message_limit: Some(30),
        ..Limits::default()
    });
    c.tasks[0].cluster = Some("topic".into());
    assert!(c.validate().is_empty(), "{:?}", c.validate());
    assert_eq!(c.cluster(), Some("topic"));
    let mut second = c.tasks[0].clone();
    second.name = "other".into();
    second.cluster = Some("family".into());
    c.tasks.push(second);
    assert_eq!(c.cluster(), None, "two fields: none is the protocol's");
    c.tasks.pop();
    let mut generation: BTreeMap<String, serde_json::Value> = (0..=MAX_SETTINGS)
        .map(|i| (format!("s{i}"), serde_json::json!(i)))
        .collect();
    generation.insert("a/b".into(), serde_json::Value::Null);
    c.tasks[0].generation = Some(generation);
    c.tasks[0].solver = Some(" ".into());
    c.tasks[0].cluster = Some(String::new());
    c.tasks[0].limits = Some(Limits {
        token_limit: Some(0),
        ..Limits::default()
    });
    assert_eq!(
        fields(c.validate()),
        [
            "/tasks/0/generation",
            "/tasks/0/generation/a~1b",
            "/tasks/0/cluster",
            "/tasks/0/solver",
            "/tasks/0/limits/token_limit"
        ]
    );
}

#[test]
fn an_empty_draft_is_valid_but_not_ready_for_review() {
    let empty = ProtocolContent::default();
    assert!(empty.validate().is_empty());
    assert_eq!(
        fields(empty.validate_for_review()),
        ["/objective", "/tasks", "/metrics"]
    );
}

#[test]
fn the_content_hash_ignores_key_order_but_not_values() {
    let a = content();
    let reordered: ProtocolContent = serde_json::from_str(
        &serde_json::to_string(&serde_json::json!({
            "metrics": a.metrics, "tasks": a.tasks, "objective": a.objective,
            "notes": "", "model_requirements": ""
        }))
        .expect("json"),
    )
    .expect("content");
    assert_eq!(a.sha256(), reordered.sha256());
    assert_eq!(a.sha256().len(), 64);
    let mut b = a.clone();
    b.tasks[0].epochs = 4;
    assert_ne!(a.sha256(), b.sha256());
}

#[test]
fn a_version_is_approved_when_every_participant_approves_and_nobody_objects() {
    use Verdict::*;
    let participants = [1, 2];
    assert_eq!(review_outcome(&participants, &[]), VersionStatus::InReview);
    assert_eq!(
        review_outcome(&participants, &[(1, Approve)]),
        VersionStatus::InReview
    );
    assert_eq!(
        review_outcome(&participants, &[(1, Approve), (1, Approve)]),
        VersionStatus::InReview
    );
    assert_eq!(
        review_outcome(&participants, &[(1, Approve), (2, Approve)]),
        VersionStatus::Approved
    );
    assert_eq!(
        review_outcome(&participants, &[(1, Approve), (2, RequestChanges)]),
        VersionStatus::ChangesRequested
    );
    assert_eq!(
        review_outcome(&[1, 2, 3], &[(1, Approve), (2, Approve)]),
        VersionStatus::InReview
    );
}

#[test]
fn only_drafts_change_and_only_versions_in_review_are_reviewed() {
    use VersionStatus::*;
    assert!(Draft.check_edit().is_ok());
    for frozen in [InReview, Approved, ChangesRequested] {
        assert!(frozen.check_edit().is_err(), "{frozen:?}");
        assert!(frozen.check_submit().is_err(), "{frozen:?}");
    }
    assert!(InReview.check_review().is_ok());
    for other in [Draft, Approved, ChangesRequested] {
        assert!(other.check_review().is_err(), "{other:?}");
    }
}

#[test]
fn slugs_are_url_safe() {
    for good in ["cyber-uplift", "abc", "ctf-2026-easy"] {
        assert!(ProtocolSlug::parse("slug", good).is_ok(), "{good}");
    }
    for bad in [
        "ab",
        "Cyber",
        "a--b",
        "-ab",
        "ab-",
        "a b c",
        "ünï",
        &"a".repeat(65),
    ] {
        assert!(ProtocolSlug::parse("slug", bad).is_err(), "{bad}");
    }
}

#[test]
fn the_diff_names_each_changed_field_by_pointer() {
    let a = content();
    let mut b = a.clone();
    b.tasks[0].epochs = 5;
    b.notes = "new".into();
    b.metrics.push(Metric {
        name: "refusal".into(),
        description: String::new(),
        higher_is_better: false,
        threshold: None,
    });
    let changes = diff(&a, &b);
    let paths: Vec<(&str, &str)> = changes.iter().map(|c| (c.path.as_str(), c.op)).collect();
    assert_eq!(
        paths,
        [
            ("/metrics/1", "added"),
            ("/notes", "changed"),
            ("/tasks/0/epochs", "changed")
        ]
    );
    assert!(diff(&a, &a).is_empty());
    assert!(pointer_exists(&a, "/tasks/0/epochs"));
    assert!(!pointer_exists(&a, "/tasks/7"));
}

/// A known answer, computed apart from this code (Python's hashlib over the canonical
/// text written out here): a change of the canonical form or the content's fields fails.
#[test]
fn the_content_hash_of_a_fixed_content_is_known() {
    let content: ProtocolContent = serde_json::from_value(serde_json::json!({
        "objective": "Measure uplift",
        "tasks": [{"name": "t", "dataset": {"name": "d", "version": "1", "sha256": null, "sample_count": 20},
                   "harness": {"name": "inspect", "task_ref": "arith"}, "scorers": ["match"],
                   "metrics": ["accuracy"], "epochs": 1}],
        "metrics": [{"name": "accuracy", "higher_is_better": true,
                     "threshold": {"value": 0.5, "meaning": "pass"}}]
    }))
    .expect("content");
    let value = serde_json::to_value(&content).expect("json");
    assert_eq!(
        String::from_utf8(crate::canonical::to_bytes(&value)).expect("utf-8"),
        concat!(
            r#"{"metrics":[{"description":"","higher_is_better":true,"name":"accuracy","#,
            r#""threshold":{"meaning":"pass","value":0.5}}],"model_requirements":"","notes":"","#,
            r#""objective":"Measure uplift","tasks":[{"dataset":{"name":"d","sample_count":20,"#,
            r#""sha256":null,"version":"1"},"description":"","epochs":1,"#,
            r#""harness":{"name":"inspect","task_ref":"arith"},"metrics":["accuracy"],"#,
            r#""name":"t","scorers":["match"]}]}"#
        )
    );
    assert_eq!(
        content.sha256(),
        "0be76708658b594c885bcd4be0c4a88f1c18f2d6ba54eafdfa02879e76714488"
    );
}

#[test]
fn a_request_for_changes_says_what_should_change() {
    assert!(Verdict::Approve.check_comment("").is_ok());
    assert!(
        Verdict::RequestChanges
            .check_comment("three epochs")
            .is_ok()
    );
    let empty = Verdict::RequestChanges
        .check_comment("  \n")
        .expect_err("empty");
    assert_eq!(empty.field, "comment");
    assert!(Verdict::Approve.check_comment(&"x".repeat(10_001)).is_err());
    assert!(Verdict::Approve.check_comment(&"é".repeat(10_000)).is_ok());
}
