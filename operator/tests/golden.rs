//! Golden tests: manifests in (`fixtures/*.yaml`), everything the operator would write out
//! (`golden/*.yaml`): the workload and Service of each `vllm` backend with its rendered
//! command line, the per-object compile report, and the snapshot ConfigMap.
//! `UPDATE_GOLDEN=1 cargo test -p switchyard-operator --test golden` rewrites the outputs.

use std::collections::BTreeMap;
use std::path::Path;
use switchyard_api::crd::{InferenceBackend, ModelRoute};
use switchyard_api::{compile, CompileInput};
use switchyard_operator::build::{self, snapshot, Workload};

fn render(fixture: &str) -> String {
    let mut backends = Vec::new();
    let mut routes = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(fixture) {
        let value = serde_yaml::Value::deserialize(doc).unwrap();
        match value["kind"].as_str() {
            Some("InferenceBackend") => {
                backends.push(serde_yaml::from_value::<InferenceBackend>(value).unwrap())
            }
            Some("ModelRoute") => routes.push(serde_yaml::from_value::<ModelRoute>(value).unwrap()),
            other => panic!("unexpected kind {other:?}"),
        }
    }
    let mut out = String::new();
    let mut doc = |comment: String, object: Option<String>| {
        out.push_str("---\n");
        for line in comment.lines() {
            out.push_str(&format!("# {line}\n").replace("# \n", "#\n"));
        }
        if let Some(object) = object {
            out.push_str(&object);
        }
    };
    for ib in &backends {
        let name = ib.metadata.name.clone().unwrap();
        match build::desired(ib) {
            None => doc(format!("{name}: external, nothing to run"), None),
            Some(Err(errors)) => doc(format!("{name}: refused\n{errors:#?}"), None),
            Some(Ok(d)) => {
                let workload = match &d.workload {
                    Workload::Deployment(d) => serde_yaml::to_string(d).unwrap(),
                    Workload::LeaderWorkerSet(l) => serde_yaml::to_string(l).unwrap(),
                };
                let warnings = if d.warnings.is_empty() {
                    String::new()
                } else {
                    format!("\nwarnings: {:?}", d.warnings)
                };
                doc(
                    format!("{name}: vLLM command (leader)\n\n{}{warnings}", d.command),
                    Some(workload),
                );
                doc(
                    format!("{name}: Service"),
                    Some(serde_yaml::to_string(&d.service).unwrap()),
                );
            }
        }
    }
    // Golden output must not depend on a cluster: one made-up ready endpoint per vllm backend.
    let endpoints: BTreeMap<String, Vec<String>> = backends
        .iter()
        .filter(|b| b.spec.vllm.is_some())
        .enumerate()
        .map(|(i, b)| {
            (
                b.metadata.name.clone().unwrap(),
                vec![format!("http://10.0.0.{}:8000/v1", i + 10)],
            )
        })
        .collect();
    let compiled = compile(&CompileInput {
        backends: &backends,
        routes: &routes,
        endpoints,
        ..Default::default()
    });
    assert!(
        compiled.snapshot_errors.is_empty(),
        "{:?}",
        compiled.snapshot_errors
    );
    doc(
        format!(
            "compile report\nbackends: {:#?}\nroutes: {:#?}\ncredentials: {:#?}",
            compiled.backends, compiled.routes, compiled.credentials
        ),
        Some(
            serde_yaml::to_string(&snapshot::snapshot_config_map("ai", &compiled.snapshot))
                .unwrap(),
        ),
    );
    out
}

use serde::Deserialize;

fn check(case: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let fixture = std::fs::read_to_string(dir.join(format!("fixtures/{case}.yaml"))).unwrap();
    let actual = render(&fixture);
    let golden = dir.join(format!("golden/{case}.yaml"));
    if std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1") {
        std::fs::write(&golden, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&golden).unwrap_or_default();
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the rendered output at line {}:\n  expected: {:?}\n  actual:   {:?}\n\
             Review and run `UPDATE_GOLDEN=1 cargo test -p switchyard-operator --test golden`.",
            golden.display(),
            first + 1,
            expected.lines().nth(first),
            actual.lines().nth(first)
        );
    }
}

#[test]
fn spark_qwen3_nvfp4_mtp() {
    check("spark-qwen3-nvfp4-mtp");
}

#[test]
fn two_spark_gpt_oss_120b() {
    check("two-spark-gpt-oss-120b");
}

#[test]
fn external_fallback() {
    check("external-fallback");
}
