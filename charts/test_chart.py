#!/usr/bin/env python3
"""Chart tests: lint and render charts/switchyard with the real Helm engine (helm-python-sdk,
Helm's Go SDK as a library), validate every rendered object with kubernetes-validate (strict,
Kubernetes v1.31), check what the operator and proxies rely on, and validate examples/
manifests against the CRD schemas (structure, defaults, unknown fields, CEL rules).

No cluster and no network. Run through charts/test.sh, which installs the dependencies.
"""

from __future__ import annotations

import copy
import pathlib
import re
import sys
import traceback
from typing import Any, Callable

import celpy
import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "switchyard"
CRDS = CHART / "crds" / "switchyard.dev.yaml"
EXAMPLES = ROOT / "examples"
KUBE_VERSION = "1.31.0"
NAMESPACE = "switchyard"

OVERRIDES: dict[str, Any] = {
    "operator": {"replicas": 2, "watchNamespace": "ai", "readBackendSecrets": False,
                 "image": {"tag": "dev"}},
    "proxy": {"replicas": 5, "image": {"repository": "registry.local/proxy", "tag": "1.2.3"},
              "service": {"port": 4000}, "podDisruptionBudget": {"enabled": False},
              "nodeSelector": {"kubernetes.io/arch": "arm64"},
              "extraArgs": ["--log-format=text"]},
    "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    "imagePullSecrets": [{"name": "regcred"}],
}

passed = 0
failed = 0


def check(name: str, fn: Callable[[], Any]) -> Any:
    global passed, failed
    try:
        result = fn()
    except Exception as e:  # noqa: BLE001 — every failure is reported, then the run goes on
        failed += 1
        print(f"FAIL {name}: {e}")
        if not isinstance(e, AssertionError):
            traceback.print_exc(limit=2)
        return None
    passed += 1
    print(f"PASS {name}")
    return result


def skip(name: str, why: str) -> None:
    print(f"SKIP {name}: {why}")


# ---------------------------------------------------------------- rendering

def lint(values: dict | None) -> None:
    report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE,
                       kube_version=f"v{KUBE_VERSION}")
    problems = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
    problems += [{"error": e} for e in report.get("errors") or []]
    assert not problems, "; ".join(f"{m.get('path', '')} {m['error']}" for m in problems)


def render(values: dict | None) -> list[dict]:
    with helm.Chart.load(str(CHART)) as chart:
        files = chart.render(values, name="switchyard", namespace=NAMESPACE, is_install=True)
    objects = []
    for path, text in sorted(files.items()):
        if path.endswith("NOTES.txt") or not text.strip():
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("metadata", {})
                objects.append(doc | {"__source": path})
    return objects


def notes(values: dict | None) -> str:
    with helm.Chart.load(str(CHART)) as chart:
        files = chart.render(values, name="switchyard", namespace=NAMESPACE, is_install=True)
    return next(t for p, t in files.items() if p.endswith("NOTES.txt"))


def kube_validate(obj: dict) -> None:
    clean = {k: v for k, v in obj.items() if k != "__source"}
    kubernetes_validate.validate(clean, KUBE_VERSION, strict=True)


def validate_all(label: str, objects: list[dict]) -> None:
    for obj in objects:
        name = f"{label}: kubernetes-validate {obj['kind']}/{obj['metadata'].get('name')}"
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            check(f"{name} (Prometheus Operator CRD, checked structurally)",
                  lambda o=obj: check_service_monitor(o))
            continue
        check(name, lambda o=obj: kube_validate(o))


def check_service_monitor(o: dict) -> None:
    spec = o["spec"]
    assert spec["selector"]["matchLabels"], "selector"
    for e in spec["endpoints"]:
        assert set(e) <= {"port", "path", "interval"}, e
        assert e["path"] == "/metrics"


# ---------------------------------------------------------------- what the chart must say

def find(objects: list[dict], kind: str, name: str) -> dict:
    hits = [o for o in objects if o["kind"] == kind and o["metadata"].get("name") == name]
    assert len(hits) == 1, f"expected one {kind}/{name}, found {len(hits)}"
    return hits[0]


def container(deploy: dict) -> dict:
    return deploy["spec"]["template"]["spec"]["containers"][0]


def check_proxy(objects: list[dict], replicas: int) -> None:
    d = find(objects, "Deployment", "switchyard-proxy")
    spec = d["spec"]
    pod = spec["template"]["spec"]
    c = container(d)
    labels = spec["template"]["metadata"]["labels"]
    assert spec["replicas"] == replicas, spec["replicas"]
    assert labels["app.kubernetes.io/name"] == "switchyard"
    assert labels["app.kubernetes.io/component"] == "proxy"
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    args = c["args"]
    want = ["--kube-namespace", "$(POD_NAMESPACE)", "--kube-snapshot", "switchyard-snapshot",
            "--kube-credentials", "switchyard-credentials"]
    assert args[:6] == want, args
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"api": 4000, "admin": 4001}, ports
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    # Default drain (600 s) plus shutdown grace (2 s) must fit.
    assert pod["terminationGracePeriodSeconds"] >= 602, pod["terminationGracePeriodSeconds"]
    assert pod["serviceAccountName"] == "switchyard-proxy"
    assert pod["securityContext"]["runAsNonRoot"] is True
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert c["resources"]["requests"] and c["resources"]["limits"]

    svc = find(objects, "Service", "switchyard-proxy")
    assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [(4000, "api")]
    assert svc["spec"]["selector"].items() <= labels.items(), "Service selects the proxy pods"


def check_proxy_rbac(objects: list[dict]) -> None:
    role = find(objects, "Role", "switchyard-proxy")
    got = sorted((r["resources"], r.get("resourceNames"), sorted(r["verbs"]))
                 for r in role["rules"])
    assert got == [
        (["configmaps"], ["switchyard-snapshot"], ["get", "list", "watch"]),
        (["secrets"], ["switchyard-credentials"], ["get", "list", "watch"]),
    ], got
    rb = find(objects, "RoleBinding", "switchyard-proxy")
    assert rb["roleRef"]["name"] == "switchyard-proxy"
    assert rb["subjects"] == [{"kind": "ServiceAccount", "name": "switchyard-proxy",
                               "namespace": NAMESPACE}]
    find(objects, "ServiceAccount", "switchyard-proxy")


def allows(rules: list[dict], group: str, resource: str, verb: str,
           name: str | None = None) -> bool:
    for r in rules:
        if group in r.get("apiGroups", []) and resource in r["resources"] and verb in r["verbs"]:
            names = r.get("resourceNames")
            if not names or (name is not None and name in names):
                return True
    return False


def check_operator(objects: list[dict], replicas: int, watch_ns: str | None,
                   read_secrets: bool) -> None:
    d = find(objects, "Deployment", "switchyard-operator")
    c = container(d)
    assert d["spec"]["replicas"] == replicas
    args = c["args"]
    for a in [f"--snapshot-namespace={NAMESPACE}", "--metrics-listen=0.0.0.0:8080",
              f"--leader-election-namespace={NAMESPACE}", "--proxy-admin-port=4001"]:
        assert a in args, f"{a} not in {args}"
    assert (f"--watch-namespace={watch_ns}" in args) == bool(watch_ns), args
    if not watch_ns:
        assert not any(a.startswith("--watch-namespace") for a in args), args
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"metrics": 8080}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True

    cr = find(objects, "ClusterRole", f"switchyard-operator-{NAMESPACE}")["rules"]
    need = [
        ("switchyard.dev", "inferencebackends", "watch"),
        ("switchyard.dev", "modelroutes", "watch"),
        ("switchyard.dev", "inferencebackends/status", "patch"),
        ("switchyard.dev", "modelroutes/status", "patch"),
        ("apps", "deployments", "patch"), ("apps", "deployments", "delete"),
        ("", "services", "patch"),
        ("discovery.k8s.io", "endpointslices", "watch"),
        ("", "events", "create"),
        ("leaderworkerset.x-k8s.io", "leaderworkersets", "patch"),
        ("", "pods", "list"), ("", "pods", "get"),
    ]
    for g, res, verb in need:
        assert allows(cr, g, res, verb), f"ClusterRole lacks {verb} {g}/{res}"
    assert allows(cr, "", "secrets", "get") == read_secrets, "backend Secret access"
    crb = find(objects, "ClusterRoleBinding", f"switchyard-operator-{NAMESPACE}")
    assert crb["subjects"][0]["name"] == "switchyard-operator"

    role = find(objects, "Role", "switchyard-operator")["rules"]
    for res, name in [("configmaps", "switchyard-snapshot"),
                      ("secrets", "switchyard-credentials")]:
        for verb in ["get", "watch", "patch", "update", "create"]:
            assert allows(role, "", res, verb, name), f"Role lacks {verb} {res}/{name}"
        assert not allows(role, "", res, "get", "someone-elses"), f"{res} get not limited"
    for verb in ["get", "create", "update"]:
        assert allows(role, "coordination.k8s.io", "leases", verb, "switchyard-operator")


def check_overrides(objects: list[dict]) -> None:
    kinds = sorted(o["metadata"]["name"] for o in objects if o["kind"] == "ServiceMonitor")
    assert kinds == ["switchyard-operator", "switchyard-proxy"], kinds
    for sm in (o for o in objects if o["kind"] == "ServiceMonitor"):
        assert sm["metadata"]["labels"]["release"] == "prometheus"
        sel = sm["spec"]["selector"]["matchLabels"]
        port = sm["spec"]["endpoints"][0]["port"]
        svcs = [s for s in objects if s["kind"] == "Service"
                and sel.items() <= s["metadata"].get("labels", {}).items()]
        assert len(svcs) == 1, f"{sm['metadata']['name']} selects {len(svcs)} Services"
        assert port in [p["name"] for p in svcs[0]["spec"]["ports"]]
    c = container(find(objects, "Deployment", "switchyard-proxy"))
    assert c["image"] == "registry.local/proxy:1.2.3", c["image"]
    assert c["args"][-1] == "--log-format=text"
    assert container(find(objects, "Deployment", "switchyard-operator"))["image"].endswith(":dev")
    assert not [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    pod = find(objects, "Deployment", "switchyard-proxy")["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["nodeSelector"] == {"kubernetes.io/arch": "arm64"}


def check_defaults(objects: list[dict]) -> None:
    assert not [o for o in objects if o["kind"] == "ServiceMonitor"], "off by default"
    version = helm.Chart.load(str(CHART)).metadata["appVersion"]
    for name in ["switchyard-proxy", "switchyard-operator"]:
        image = container(find(objects, "Deployment", name))["image"]
        assert image.endswith(f":{version}"), image
    find(objects, "PodDisruptionBudget", "switchyard-proxy")
    for o in objects:
        if o["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert o["metadata"].get("namespace") == NAMESPACE, o["metadata"]


# ---------------------------------------------------------------- CRD schemas

def load_crd_schemas() -> dict[tuple[str, str], dict]:
    out = {}
    for crd in yaml.safe_load_all(CRDS.read_text()):
        if not crd:
            continue
        kubernetes_validate.validate(crd, KUBE_VERSION, strict=True)
        group = crd["spec"]["group"]
        for v in crd["spec"]["versions"]:
            out[(f"{group}/{v['name']}", crd["spec"]["names"]["kind"])] = \
                v["schema"]["openAPIV3Schema"]
    return out


def to_json_schema(s: Any) -> Any:
    """OpenAPI v3 (Kubernetes structural) → JSON Schema: `nullable`, int-or-string, and
    unknown fields refused (kubectl's default strict field validation)."""
    if isinstance(s, list):
        return [to_json_schema(x) for x in s]
    if not isinstance(s, dict):
        return s
    out = {k: to_json_schema(v) for k, v in s.items()
           if k not in ("properties", "additionalProperties", "items")}
    if "properties" in s:
        out["properties"] = {k: to_json_schema(v) for k, v in s["properties"].items()}
    if isinstance(s.get("additionalProperties"), dict):
        out["additionalProperties"] = to_json_schema(s["additionalProperties"])
    if "items" in s:
        out["items"] = to_json_schema(s["items"])
    if s.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if s.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if (s.get("type") == "object" and "properties" in s
            and "additionalProperties" not in s
            and not s.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def apply_defaults(s: dict, v: Any) -> Any:
    """Schema defaults, as the API server applies them before CEL rules run."""
    if isinstance(v, dict):
        for k, sub in s.get("properties", {}).items():
            if k not in v and "default" in sub:
                v[k] = copy.deepcopy(sub["default"])
            if k in v:
                v[k] = apply_defaults(sub, v[k])
        if isinstance(s.get("additionalProperties"), dict):
            for k in v:
                if k not in s.get("properties", {}):
                    v[k] = apply_defaults(s["additionalProperties"], v[k])
    elif isinstance(v, list) and "items" in s:
        return [apply_defaults(s["items"], x) for x in v]
    return v


CEL = celpy.Environment()


def cel_errors(s: dict, v: Any, path: str) -> list[str]:
    errors = []
    for rule in s.get("x-kubernetes-validations", []):
        if "oldSelf" in rule["rule"]:
            continue  # transition rules need the previous object
        prg = CEL.program(CEL.compile(rule["rule"]))
        result = prg.evaluate({"self": celpy.json_to_cel(v)})
        if not isinstance(result, celpy.celtypes.BoolType) or not bool(result):
            errors.append(f"{path or '<root>'}: {rule.get('message', rule['rule'])}")
    if isinstance(v, dict):
        for k, sub in s.get("properties", {}).items():
            if k in v:
                errors += cel_errors(sub, v[k], f"{path}.{k}" if path else k)
    elif isinstance(v, list) and "items" in s:
        for i, x in enumerate(v):
            errors += cel_errors(s["items"], x, f"{path}[{i}]")
    return errors


def validate_custom(schemas: dict, obj: dict) -> None:
    key = (obj.get("apiVersion"), obj.get("kind"))
    assert key in schemas, f"no CRD for {key}"
    schema = schemas[key]
    obj = apply_defaults(schema, copy.deepcopy(obj))
    root = to_json_schema(schema)
    # The API server supplies these for every custom resource; the generated schema omits them.
    root["properties"] = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "maxLength": 253,
                         "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"},
                "namespace": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
    } | root.get("properties", {})
    validator = jsonschema.Draft7Validator(root)
    errors = [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
              for e in validator.iter_errors(obj)]
    if not errors:
        errors = cel_errors(schema, obj, "")
    assert not errors, "; ".join(errors)


def check_examples(schemas: dict) -> int:
    count = 0
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        text = path.read_text()
        if "apiVersion:" not in text:
            continue  # proxy configs, checked by proxy/tests/examples.rs
        for i, obj in enumerate(o for o in yaml.safe_load_all(text) if o):
            name = f"example {path.relative_to(ROOT)}#{i} {obj['kind']}/{obj['metadata']['name']}"
            if obj["apiVersion"].startswith("switchyard.dev/"):
                check(name + " (CRD schema + CEL rules)", lambda o=obj: validate_custom(schemas, o))
            else:
                check(name + " (kubernetes-validate)", lambda o=obj: kube_validate(o))
            count += 1
    return count


def must_refuse(schemas: dict, label: str, obj: dict, expect: str) -> None:
    def run() -> None:
        try:
            validate_custom(schemas, obj)
        except AssertionError as e:
            assert re.search(expect, str(e)), f"refused for another reason: {e}"
            return
        raise AssertionError("accepted a bad manifest")
    check(f"negative: {label}", run)


def main() -> int:
    print(f"helm engine {helm.helm_sdk_version()} (helm-python-sdk {helm.__version__}), "
          f"kubernetes-validate {kubernetes_validate.__version__ if hasattr(kubernetes_validate, '__version__') else ''}"
          f", Kubernetes v{KUBE_VERSION}")
    check("helm lint (default values, strict)", lambda: lint(None))
    check("helm lint (override values, strict)", lambda: lint(OVERRIDES))
    default = check("helm template (default values)", lambda: render(None)) or []
    override = check("helm template (override values)", lambda: render(OVERRIDES)) or []
    validate_all("default", default)
    validate_all("override", override)
    if default:
        check("default: proxy Deployment and Service", lambda: check_proxy(default, 2))
        check("default: proxy RBAC limited to the two objects", lambda: check_proxy_rbac(default))
        check("default: operator Deployment and RBAC",
              lambda: check_operator(default, 1, None, True))
        check("default: images, namespaces, PDB, no ServiceMonitor",
              lambda: check_defaults(default))
        check("default: NOTES tell the ANTHROPIC_BASE_URL", lambda: assert_in(
            f"ANTHROPIC_BASE_URL=http://switchyard-proxy.{NAMESPACE}.svc:4000", notes(None)))
    if override:
        check("override: proxy Deployment and Service", lambda: check_proxy(override, 5))
        check("override: proxy RBAC limited to the two objects",
              lambda: check_proxy_rbac(override))
        check("override: operator Deployment and RBAC",
              lambda: check_operator(override, 2, "ai", False))
        check("override: ServiceMonitors, images, pull secrets, extra args",
              lambda: check_overrides(override))
    check("negative: replicas \"two\" is refused by kubernetes-validate", lambda: assert_raises(
        lambda: kube_validate(find(render({"proxy": {"replicas": "two"}}),
                                   "Deployment", "switchyard-proxy"))))

    schemas = check("CRDs: kubernetes-validate and schemas loaded", load_crd_schemas)
    if schemas:
        n = check_examples(schemas)
        check("examples found", lambda: assert_true(n >= 4, f"only {n} example objects"))
        base = {"apiVersion": "switchyard.dev/v1alpha1", "kind": "InferenceBackend",
                "metadata": {"name": "x"}}
        must_refuse(schemas, "neither vllm nor external", base | {"spec": {}},
                    "set exactly one of `vllm`")
        must_refuse(schemas, "unknown field", base | {"spec": {"vllm": {"model": "m",
                    "tensorParalel": 2}}}, "tensorParalel")
        must_refuse(schemas, "TP does not match nodes", base | {"spec": {"vllm": {
                    "model": "m", "nodes": 2}}}, "tensorParallel × pipelineParallel")
        must_refuse(schemas, "external URL scheme", base | {"spec": {"external": {
                    "url": "api.example.com"}}}, "http://")
        must_refuse(schemas, "route without backend", {
            "apiVersion": "switchyard.dev/v1alpha1", "kind": "ModelRoute",
            "metadata": {"name": "r"}, "spec": {"models": ["claude-*"]}}, "set `backend`")
    print(f"\nchart: {passed} passed, {failed} failed")
    return 1 if failed else 0


def assert_in(needle: str, haystack: str) -> None:
    assert needle in haystack, f"{needle!r} not in NOTES.txt"


def assert_true(cond: bool, msg: str) -> None:
    assert cond, msg


def assert_raises(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except Exception:  # noqa: BLE001
        return
    raise AssertionError("no error")


if __name__ == "__main__":
    sys.exit(main())
