//! The Argo CD health checks in `gitops/argocd/` (Lua, in the layout of Argo CD's own
//! `resource_customizations/`: `<group>/<Kind>/health.lua`, `health_test.yaml`, `testdata/`),
//! run the way Argo CD runs them (`util/lua/lua.go`, `health_test.go`): the object as the
//! global `obj` (JSON → Lua tables, `null` and absent fields both `nil`), only the base and
//! table libraries (argocd-cm scripts run without `string` unless `useOpenLibs` is set), the
//! returned table's `status` and `message` compared exactly with each test case.
//!
//! The interpreter is Lua 5.1 (the language of Argo CD's gopher-lua: no integer subtype,
//! `"x" .. 4` is `"x4"`), built from source by `mlua`'s `vendored` feature.
//!
//! The backend testdata is also checked against what the operator writes: its conditions are
//! recomputed by `controller::backend::status` from the file's own spec, so the cases cannot
//! drift from the operator's reasons and messages.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::chrono::{TimeZone, Utc};
use mlua::{Lua, LuaOptions, LuaSerdeExt, SerializeOptions, StdLib, Value as LuaValue};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use switchyard_api::crd::condition::{PUBLISHED, STALLED};
use switchyard_api::crd::{InferenceBackend, InferenceBackendStatus, ModelRoute};
use switchyard_api::{compile, CompileInput};
use switchyard_operator::build;
use switchyard_operator::controller::backend::{self, Observed, WorkloadState};

/// Argo CD's health status codes (`gitops-engine/pkg/health`).
const STATUSES: [&str; 6] = [
    "Healthy",
    "Progressing",
    "Degraded",
    "Suspended",
    "Missing",
    "Unknown",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthTests {
    tests: Vec<HealthTest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HealthTest {
    health_status: Health,
    input_path: String,
}

#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct Health {
    status: String,
    #[serde(default)]
    message: String,
}

/// One `<group>/<Kind>/` directory.
struct Check {
    dir: PathBuf,
    group: String,
    kind: String,
    script: String,
    tests: Vec<HealthTest>,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../gitops/argocd")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    out
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

fn checks() -> Vec<Check> {
    let mut out = Vec::new();
    for group in subdirs(&root()) {
        for dir in subdirs(&group) {
            let tests: HealthTests =
                serde_yaml::from_str(&read(&dir.join("health_test.yaml"))).unwrap();
            out.push(Check {
                group: file_name(&group),
                kind: file_name(&dir),
                script: read(&dir.join("health.lua")),
                tests: tests.tests,
                dir,
            });
        }
    }
    out
}

/// A testdata file as Argo CD's `getObj` reads it (YAML → JSON-like map).
fn object(path: &Path) -> serde_json::Value {
    serde_yaml::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs a health script on `obj` like Argo CD's `ExecuteHealthLua`.
fn health(script: &str, name: &str, obj: &serde_json::Value) -> Result<Health, String> {
    // Base is always open; no `string`, `os`, `io`, `debug`.
    let lua = Lua::new_with(StdLib::TABLE, LuaOptions::default()).map_err(|e| e.to_string())?;
    // Argo CD's `decodeValue`: JSON null becomes nil (not a sentinel), arrays plain tables.
    let options = SerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false)
        .set_array_metatable(false);
    let value = lua.to_value_with(obj, options).map_err(|e| e.to_string())?;
    lua.globals().set("obj", value).map_err(|e| e.to_string())?;
    let returned: LuaValue = lua
        .load(script)
        .set_name(name)
        .eval()
        .map_err(|e| e.to_string())?;
    let LuaValue::Table(hs) = returned else {
        return Err(format!("returned {returned:?}, not a table"));
    };
    let field = |key: &str| -> Result<String, String> {
        match hs.raw_get::<LuaValue>(key).map_err(|e| e.to_string())? {
            LuaValue::Nil => Ok(String::new()),
            LuaValue::String(s) => Ok(s.to_str().map_err(|e| e.to_string())?.to_owned()),
            other => Err(format!("hs.{key} is {other:?}, not a string")),
        }
    };
    let out = Health {
        status: field("status")?,
        message: field("message")?,
    };
    if !STATUSES.contains(&out.status.as_str()) {
        return Err(format!(
            "hs.status {:?} is not an Argo CD health status",
            out.status
        ));
    }
    Ok(out)
}

fn script(kind: &str) -> String {
    read(&root().join("switchyard.dev").join(kind).join("health.lua"))
}

#[test]
fn health_checks_pass_their_test_cases() {
    let checks = checks();
    let kinds: BTreeSet<(String, String)> = checks
        .iter()
        .map(|c| (c.group.clone(), c.kind.clone()))
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            ("switchyard.dev".to_owned(), "InferenceBackend".to_owned()),
            ("switchyard.dev".to_owned(), "ModelRoute".to_owned()),
        ])
    );
    let mut failures = Vec::new();
    let mut ran = 0;
    for check in &checks {
        for test in &check.tests {
            let path = check.dir.join(&test.input_path);
            let obj = object(&path);
            assert_eq!(obj["kind"], check.kind.as_str(), "{}", path.display());
            let name = format!("{}/{}/health.lua", check.group, check.kind);
            match health(&check.script, &name, &obj) {
                Ok(got) if got == test.health_status => {}
                Ok(got) => failures.push(format!(
                    "{}/{}: expected {:?}, got {got:?}",
                    check.kind, test.input_path, test.health_status
                )),
                Err(e) => failures.push(format!("{}/{}: {e}", check.kind, test.input_path)),
            }
            ran += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(ran >= 10, "only {ran} cases");
}

#[test]
fn every_testdata_file_is_used_and_every_verdict_is_covered() {
    for check in checks() {
        let used: BTreeSet<String> = check.tests.iter().map(|t| t.input_path.clone()).collect();
        assert_eq!(
            used.len(),
            check.tests.len(),
            "{}: a testdata file is listed twice",
            check.kind
        );
        let present: BTreeSet<String> = std::fs::read_dir(check.dir.join("testdata"))
            .unwrap()
            .map(|e| format!("testdata/{}", file_name(&e.unwrap().path())))
            .collect();
        assert_eq!(
            present, used,
            "{}: testdata files vs. test cases",
            check.kind
        );

        let verdicts: BTreeSet<&str> = check
            .tests
            .iter()
            .map(|t| t.health_status.status.as_str())
            .collect();
        let mut wanted = vec!["Healthy", "Progressing", "Degraded"];
        if check.kind == "InferenceBackend" {
            wanted.push("Suspended");
        }
        for status in wanted {
            assert!(
                verdicts.contains(status),
                "{}: no {status} case",
                check.kind
            );
        }
    }
}

/// What Argo CD's JSON → Lua conversion produces at the edges: no status, `null`, empty
/// objects and arrays, conditions without a message.
#[test]
fn lua_json_edge_cases() {
    for kind in ["InferenceBackend", "ModelRoute"] {
        let script = script(kind);
        let run = |status: serde_json::Value| {
            let obj = serde_json::json!({
                "apiVersion": "switchyard.dev/v1alpha1",
                "kind": kind,
                "metadata": {"name": "x", "namespace": "ai", "generation": 2},
                "spec": {"vllm": {"model": "m"}, "models": ["m"], "backend": "b"},
                "status": status,
            });
            health(&script, kind, &obj).unwrap_or_else(|e| panic!("{kind}: {e}"))
        };
        for status in [
            serde_json::Value::Null,
            serde_json::json!({}),
            serde_json::json!({"conditions": []}),
        ] {
            assert_eq!(
                run(status.clone()).status,
                "Progressing",
                "{kind}: {status}"
            );
        }
        let bare = run(serde_json::json!({"observedGeneration": 2, "conditions": []}));
        assert_eq!(
            bare,
            Health {
                status: "Progressing".into(),
                message: "Waiting for the Ready condition".into()
            },
            "{kind}"
        );
        let ready = run(serde_json::json!({
            "observedGeneration": 2,
            "conditions": [{"type": "Ready", "status": "True", "reason": "Available", "message": null}],
            "models": [],
        }));
        assert_eq!(ready.status, "Healthy", "{kind}");
        let stalled = run(serde_json::json!({
            "observedGeneration": 2,
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "InvalidSpec"},
                {"type": "Stalled", "status": "True", "reason": "InvalidSpec", "message": ""},
            ],
        }));
        assert_eq!(
            stalled,
            Health {
                status: "Degraded".into(),
                message: "InvalidSpec".into()
            },
            "{kind}"
        );
        // A newer status than the object (a stale read) is not stale.
        let ahead = run(serde_json::json!({
            "observedGeneration": 3,
            "conditions": [{"type": "Ready", "status": "True", "reason": "Available", "message": "ok"}],
        }));
        assert_eq!(ahead.status, "Healthy", "{kind}");
    }
}

/// How each backend testdata file's workload looked, for recomputing its status.
fn backend_scenarios() -> BTreeMap<&'static str, Option<WorkloadState>> {
    let state = |wanted, current, ready, observed| WorkloadState {
        wanted,
        current,
        updated: current,
        ready,
        observed,
    };
    BTreeMap::from([
        ("progressing_new.yaml", None),
        ("progressing_no_observed_generation.yaml", None),
        ("progressing_pods_pending.yaml", Some(state(1, 0, 0, false))),
        ("progressing_loading.yaml", Some(state(2, 2, 1, true))),
        ("progressing_warmup_failed.yaml", Some(state(2, 2, 1, true))),
        (
            "progressing_stale_generation.yaml",
            Some(state(1, 1, 1, true)),
        ),
        ("healthy.yaml", Some(state(2, 2, 2, true))),
        ("healthy_external.yaml", None),
        ("healthy_no_route_yet.yaml", Some(state(1, 1, 1, true))),
        ("healthy_parser_warning.yaml", Some(state(1, 1, 1, true))),
        ("degraded_invalid_spec.yaml", None),
        ("degraded_leader_worker_set_missing.yaml", None),
        ("degraded_credentials_missing.yaml", None),
        ("suspended_scaled_to_zero.yaml", Some(state(0, 0, 0, true))),
    ])
}

/// The backend testdata says what the operator would write: the backend controller's part of
/// each status (conditions, counts, URL, model) is recomputed from the file's spec. The
/// `Published` condition (the snapshot publisher's) is checked for shape only.
#[test]
fn backend_testdata_is_what_the_operator_writes() {
    let dir = root().join("switchyard.dev/InferenceBackend/testdata");
    let scenarios = backend_scenarios();
    let present: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| file_name(&e.unwrap().path()))
        .collect();
    let described: BTreeSet<String> = scenarios.keys().map(|s| s.to_string()).collect();
    assert_eq!(
        present, described,
        "every backend testdata file has a scenario"
    );

    let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let mut failures = Vec::new();
    for (file, workload) in scenarios {
        let ib: InferenceBackend = serde_yaml::from_str(&read(&dir.join(file))).unwrap();
        let Some(written) = ib.status.clone() else {
            continue;
        };
        let Some(observed_generation) = written.observed_generation else {
            // Only the snapshot publisher has written (the backend controller has not yet).
            assert!(
                written.conditions.iter().all(|c| c.type_ == PUBLISHED),
                "{file}"
            );
            continue;
        };
        // The status was written for the generation it names (stale files have a newer one).
        // The warm-up loop's `status.warmup` is an input of the backend's verdict
        // (`WarmupFailed`), not part of what the backend controller writes.
        let mut at = ib.clone();
        at.metadata.generation = Some(observed_generation);
        at.status = written.warmup.clone().map(|w| InferenceBackendStatus {
            warmup: Some(w),
            ..Default::default()
        });
        let desired = build::desired(&at);
        let observed = match (&desired, workload) {
            (None, _) => Observed::External,
            (Some(Err(errors)), _) => {
                Observed::Invalid(errors.iter().map(ToString::to_string).collect())
            }
            (Some(Ok(_)), _) if file.contains("leader_worker_set_missing") => {
                Observed::LeaderWorkerSetMissing
            }
            (Some(Ok(_)), Some(w)) => Observed::Workload(w),
            (Some(Ok(_)), None) => panic!("{file}: a vllm backend needs a workload state"),
        };
        let desired = desired.and_then(Result::ok);
        let mut expected = backend::status(&at, &observed, desired.as_ref(), now);
        let full = serde_yaml::to_string(&expected).unwrap();
        let key = |c: &Condition| {
            (
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone(),
                c.message.clone(),
                c.observed_generation,
            )
        };
        let mut got = written.clone();
        got.conditions.retain(|c| c.type_ != PUBLISHED);
        got.warmup = None;
        let got_conditions: Vec<_> = got.conditions.iter().map(key).collect();
        let expected_conditions: Vec<_> = expected.conditions.iter().map(key).collect();
        if got_conditions != expected_conditions {
            failures.push(format!(
                "{file}: conditions\n  written:  {got_conditions:?}\n  operator: {expected_conditions:?}\nthe operator would write (transition times aside):\n{full}"
            ));
        }
        // The command is golden-tested elsewhere; here only whether there is one.
        expected.command = expected.command.map(|_| "…".into());
        got.command = got.command.map(|_| "…".into());
        expected.conditions.clear();
        got.conditions.clear();
        if got != expected {
            failures.push(format!(
                "{file}: status\n  written:  {got:?}\n  operator: {expected:?}\nthe operator would write (transition times aside):\n{full}"
            ));
        }
        for c in written.conditions.iter().filter(|c| c.type_ == PUBLISHED) {
            assert!(
                ["True", "False"].contains(&c.status.as_str()) && !c.reason.is_empty(),
                "{file}: {c:?}"
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The route testdata's refusals carry the problems `compile` reports for those objects.
#[test]
fn route_refusals_are_what_compile_reports() {
    let dir = root().join("switchyard.dev/ModelRoute/testdata");
    let route =
        |file: &str| -> ModelRoute { serde_yaml::from_str(&read(&dir.join(file))).unwrap() };
    let backend = |name: &str| -> InferenceBackend {
        serde_yaml::from_str(&format!(
            "apiVersion: switchyard.dev/v1alpha1\nkind: InferenceBackend\nmetadata: {{name: {name}, namespace: ai}}\nspec: {{external: {{url: 'https://api.anthropic.com/v1', protocol: anthropic, servedModelName: m}}}}\n"
        ))
        .unwrap()
    };
    let stalled = |mr: &ModelRoute| -> (String, String) {
        let c = mr
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == STALLED))
            .expect("a Stalled condition");
        (c.reason.clone(), c.message.clone())
    };
    let problems = |routes: &[ModelRoute], backends: &[InferenceBackend], name: &str| {
        let out = compile(&CompileInput {
            backends,
            routes,
            ..Default::default()
        });
        let report = &out.routes[name];
        (
            report.problems[0].reason.to_owned(),
            report
                .problems
                .iter()
                .map(|p| p.message.clone())
                .collect::<Vec<_>>()
                .join("; "),
        )
    };

    let healthy = route("healthy.yaml");
    let backends: Vec<InferenceBackend> = healthy
        .spec
        .targets
        .iter()
        .map(|t| backend(&t.backend))
        .chain(healthy.spec.backend.as_deref().map(backend))
        .chain(healthy.spec.fallbacks.iter().map(|n| backend(n)))
        .collect();

    let missing = route("degraded_backend_not_found.yaml");
    assert_eq!(
        stalled(&missing),
        problems(
            std::slice::from_ref(&missing),
            &backends,
            &missing.metadata.name.clone().unwrap()
        )
    );

    let conflict = route("degraded_model_conflict.yaml");
    assert_eq!(
        stalled(&conflict),
        problems(
            &[healthy, conflict.clone()],
            &backends,
            &conflict.metadata.name.clone().unwrap()
        )
    );
}

/// `argocd-cm-patch.yaml` as it must be: the scripts of this directory under the keys Argo CD
/// reads (`resource.customizations.health.<group>_<kind>`).
fn argocd_cm_patch() -> String {
    let mut out = String::from(
        "# Argo CD health checks for Switchyard's custom resources, as an argocd-cm patch. Generated\n\
         # from switchyard.dev/*/health.lua: `UPDATE_ARGOCD_CM=1 cargo test -p switchyard-operator\n\
         # --test argocd_health` rewrites it, and the test fails when it differs.\n\
         #   kubectl -n argocd patch configmap argocd-cm --patch-file gitops/argocd/argocd-cm-patch.yaml\n\
         # or list it under `patches:` of the kustomization that installs Argo CD.\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: argocd-cm\n  namespace: argocd\ndata:\n",
    );
    for check in checks() {
        out.push_str(&format!(
            "  resource.customizations.health.{}_{}: |\n",
            check.group, check.kind
        ));
        for line in check.script.lines() {
            match line {
                "" => out.push('\n'),
                _ => out.push_str(&format!("    {line}\n")),
            }
        }
    }
    out
}

#[test]
fn the_argocd_cm_patch_carries_the_scripts() {
    let path = root().join("argocd-cm-patch.yaml");
    let wanted = argocd_cm_patch();
    if std::env::var("UPDATE_ARGOCD_CM").as_deref() == Ok("1") {
        std::fs::write(&path, &wanted).unwrap();
    }
    assert_eq!(
        read(&path),
        wanted,
        "{} is stale: UPDATE_ARGOCD_CM=1 cargo test -p switchyard-operator --test argocd_health",
        path.display()
    );
    // And YAML reads it back as the scripts themselves.
    let patch = object(&path);
    assert_eq!(patch["metadata"]["name"], "argocd-cm");
    let data = patch["data"].as_object().expect("data");
    assert_eq!(data.len(), 2);
    for check in checks() {
        let key = format!(
            "resource.customizations.health.{}_{}",
            check.group, check.kind
        );
        assert_eq!(data[&key], check.script.as_str(), "{key}");
    }
}
