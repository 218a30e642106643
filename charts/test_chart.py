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

import json

import celpy
import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "switchyard"
CRDS = CHART / "crds" / "switchyard.dev.yaml"
SCHEMA = CHART / "values.schema.json"
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


def notes(values: dict | None, namespace: str = NAMESPACE) -> str:
    with helm.Chart.load(str(CHART)) as chart:
        files = chart.render(values, name="switchyard", namespace=namespace, is_install=True)
    return next(t for p, t in files.items() if p.endswith("NOTES.txt"))


# A kubeconfig for a server nobody listens on: `install` with dry_run="client" renders,
# validates the values against values.schema.json and renders NOTES.txt exactly as
# `helm install --dry-run=client` does, without contacting it (a contact would fail the test).
OFFLINE_KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:1"}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
users: [{name: none, user: {}}]
"""


def install_dry_run(values: dict | None, namespace: str = NAMESPACE) -> dict:
    with helm.Config(kubeconfig_content=OFFLINE_KUBECONFIG, storage_driver="memory",
                     namespace=namespace) as cfg:
        return cfg.install(str(CHART), "switchyard", values, namespace=namespace,
                           dry_run="client")


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


# ---------------------------------------------------------------- values schema

# Wrong values, each with the path and the words Helm's schema validation (values.schema.json,
# santhosh-tekuri/jsonschema inside Helm) must name. The same text reaches `helm install`,
# `helm template` and `helm lint`.
BAD_VALUES: list[tuple[str, dict, str, str]] = [
    ("proxy.replicas a string", {"proxy": {"replicas": "two"}},
     "/proxy/replicas", "got string, want integer"),
    ("operator.replicas negative", {"operator": {"replicas": -1}},
     "/operator/replicas", "minimum: got -1, want 0"),
    ("top-level key typo `proxyy`", {"proxyy": {"replicas": 3}},
     "", "additional properties 'proxyy' not allowed"),
    ("nested key typo proxy.servce", {"proxy": {"servce": {"port": 80}}},
     "/proxy", "additional properties 'servce' not allowed"),
    ("resources typo `limit`", {"operator": {"resources": {"limit": {"memory": "1Gi"}}}},
     "/operator/resources", "additional properties 'limit' not allowed"),
    ("proxy.logFormat not an enum value", {"proxy": {"logFormat": "xml"}},
     "/proxy/logFormat", "value must be one of 'json', 'text'"),
    ("operator.image.pullPolicy not an enum value",
     {"operator": {"image": {"pullPolicy": "Sometimes"}}},
     "/operator/image/pullPolicy", "value must be one of 'Always', 'IfNotPresent', 'Never'"),
    ("proxy.service.type not an enum value", {"proxy": {"service": {"type": "Ingress"}}},
     "/proxy/service/type", "value must be one of"),
    ("proxy.service.port above 65535", {"proxy": {"service": {"port": 70000}}},
     "/proxy/service/port", "maximum: got 70,000, want 65,535"),
    ("proxy.adminPort 0", {"proxy": {"adminPort": 0}},
     "/proxy/adminPort", "minimum: got 0, want 1"),
    ("operator.metricsPort a string", {"operator": {"metricsPort": "8080"}},
     "/operator/metricsPort", "got string, want integer"),
    ("proxy.terminationGracePeriodSeconds negative",
     {"proxy": {"terminationGracePeriodSeconds": -5}},
     "/proxy/terminationGracePeriodSeconds", "minimum: got -5, want 0"),
    ("serviceMonitor.interval not a duration", {"serviceMonitor": {"interval": "30 seconds"}},
     "/serviceMonitor/interval", "does not match pattern"),
    ("proxy.autoscaling.enabled a string", {"proxy": {"autoscaling": {"enabled": "yes"}}},
     "/proxy/autoscaling/enabled", "got string, want boolean"),
    ("operator.watchNamespace not a namespace name", {"operator": {"watchNamespace": "AI_ns"}},
     "/operator/watchNamespace", "'AI_ns' does not match pattern"),
    ("podDisruptionBudget.maxUnavailable not int or percent",
     {"proxy": {"podDisruptionBudget": {"maxUnavailable": "half"}}},
     "/proxy/podDisruptionBudget/maxUnavailable", "'half' does not match pattern '^[0-9]+%$'"),
    ("podAnnotations value not a string", {"proxy": {"podAnnotations": {"a": 1}}},
     "/proxy/podAnnotations/a", "got number, want string"),
    ("clientKeys.existingSecret not a string", {"clientKeys": {"existingSecret": True}},
     "/clientKeys/existingSecret", "got boolean, want string"),
    ("proxy.requestView.history.postgresSecret not a Secret name (a DSN pasted in)",
     {"proxy": {"requestView": {"history": {"postgresSecret": "postgres://u:p@db/x"}}}},
     "/proxy/requestView/history/postgresSecret", "does not match pattern"),
    ("proxy.requestView.history.store not an enum value",
     {"proxy": {"requestView": {"history": {"store": "mysql"}}}},
     "/proxy/requestView/history/store", "value must be one of 'sqlite', 'postgres', 'memory'"),
    ("proxy.requestView.history.maxMegabytes 0",
     {"proxy": {"requestView": {"history": {"maxMegabytes": 0}}}},
     "/proxy/requestView/history/maxMegabytes", "minimum: got 0, want 1"),
    ("clientKeys.existingSecret not a Secret name",
     {"clientKeys": {"existingSecret": "Team_Keys"}},
     "/clientKeys/existingSecret", "'Team_Keys' does not match pattern"),
]

SCHEMA_HEADER = "values don't meet the specifications of the schema(s) in the following chart(s)"


def expect_schema_error(values: dict, path: str, words: str) -> None:
    """The values fail on every path a user takes (template, install, lint), and each
    message names the value (`at '<json pointer>'`) and the broken constraint."""
    where = f"at '{path}': "
    with helm.Chart.load(str(CHART)) as chart:
        try:
            chart.render(values, name="switchyard", namespace=NAMESPACE, is_install=True)
        except helm.HelmValuesError as e:
            msg = str(e)
            assert SCHEMA_HEADER in msg and "switchyard:" in msg, f"render: {msg!r}"
            assert where + words in msg or (where in msg and words in msg), f"render: {msg!r}"
        else:
            raise AssertionError(f"render accepted {values}")
    try:
        install_dry_run(values)
    except helm.HelmReleaseError as e:
        msg = str(e)
        assert SCHEMA_HEADER in msg and where in msg and words in msg, f"install: {msg!r}"
    else:
        raise AssertionError(f"install --dry-run=client accepted {values}")
    report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE,
                       kube_version=f"v{KUBE_VERSION}")
    errors = [m["error"] for m in report["messages"] if m["severity"] == 3]
    assert any(where in m and words in m for m in errors), f"lint: {errors}"


def resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        node = schema["definitions"][node["$ref"].rsplit("/", 1)[1]]
    return node


def schema_gaps(schema: dict, node: dict, value: Any, path: str) -> list[str]:
    """Values of values.yaml the schema does not describe by name (free-form maps aside), or
    describes without any constraint."""
    node = resolve(schema, node)
    if isinstance(value, dict):
        gaps = []
        if node.get("type") != "object":
            gaps.append(f"{path or '<root>'}: no `type: object`")
        for k, v in value.items():
            sub = node.get("properties", {}).get(k)
            if sub is None:
                extra = node.get("additionalProperties")
                if not isinstance(extra, dict):
                    gaps.append(f"{path}.{k}".lstrip("."))
                    continue
                sub = extra  # a free-form map's entry
            gaps += schema_gaps(schema, sub, v, f"{path}.{k}".lstrip("."))
        return gaps
    if not any(k in node for k in ("type", "enum", "const", "anyOf")):
        return [f"{path}: unconstrained"]
    if isinstance(value, list) and value and "items" in node:
        return [g for i, x in enumerate(value)
                for g in schema_gaps(schema, node["items"], x, f"{path}[{i}]")]
    return []


def check_schema_file() -> None:
    schema = json.loads(SCHEMA.read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)
    with helm.Chart.load(str(CHART)) as chart:
        assert chart.schema == schema, "Helm loads another schema"
        defaults = chart.values
        chart.validate_schema(None)  # the defaults themselves
    gaps = schema_gaps(schema, schema, defaults, "")
    assert not gaps, f"values.yaml entries the schema does not cover: {gaps}"
    # The same schema through an independent validator: defaults and the override set pass.
    v = jsonschema.Draft7Validator(schema)
    for vals in (defaults, merged(OVERRIDES), merged(ALL_ON)):
        errs = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(vals)]
        assert not errs, errs


def merged(values: dict) -> dict:
    with helm.Chart.load(str(CHART)) as chart:
        return chart.merge_values(values)


# Every optional part on, free-form maps with arbitrary keys.
ALL_ON: dict[str, Any] = {
    "operator": {"podAnnotations": {"example.com/any": "x"},
                 "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
                 "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                     "nodeSelectorTerms": [{"matchExpressions": [
                         {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]}]}}},
                 "resources": {"requests": {"cpu": 0.1, "memory": "128Mi"},
                               "limits": {"memory": "1Gi"}}},
    "proxy": {"autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 12,
                              "targetCPUUtilizationPercentage": 60},
              "resources": {"requests": {"cpu": "500m", "memory": "128Mi"},
                            "limits": {"memory": "1Gi", "example.com/widget": 1}},
              "podDisruptionBudget": {"maxUnavailable": "25%"},
              "service": {"type": "LoadBalancer", "port": 8080}},
    "networkPolicy": {
        "enabled": True,
        "apiFrom": [{"namespaceSelector": {"matchLabels": {"team": "agents"}}},
                    {"ipBlock": {"cidr": "10.0.0.0/8"}}],
        "metricsFrom": [{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": "monitoring"}}}],
    },
    "serviceMonitor": {"enabled": True, "interval": "1m30s"},
    "grafanaDashboard": {"enabled": True, "namespace": "grafana"},
    "clientKeys": {"existingSecret": "team-keys"},
}
ALL_ON["proxy"]["requestView"] = {
    "adminKeySecret": "ui-admin",
    "history": {"store": "postgres", "postgresSecret": "ui-history", "maxAgeHours": 24,
                "maxRows": 5000, "maxMegabytes": 100, "existingClaim": ""}}


def option(args: list[str], name: str) -> str | None:
    """The value after `name` in a container's args, None when absent."""
    return args[args.index(name) + 1] if name in args else None


def check_request_view(objects: list[dict], on: bool) -> None:
    """Default: SQLite on an emptyDir sized from maxMegabytes, with its retention; all-on:
    the admin key and the PostgreSQL DSN from their Secrets, by reference only, no volume."""
    pod = pod_spec(objects, "switchyard-proxy")
    c = container(find(objects, "Deployment", "switchyard-proxy"))
    env = {e["name"]: e for e in c["env"]}
    args = c["args"]
    op_args = container(find(objects, "Deployment", "switchyard-operator"))["args"]
    if not on:
        # The operator makes the admin key's Secret; the proxies read it.
        assert env["SWITCHYARD_ADMIN_KEY"] == {"name": "SWITCHYARD_ADMIN_KEY", "valueFrom": {
            "secretKeyRef": {"name": "switchyard-admin-key", "key": "admin-key"}}}, env
        assert "--admin-key-secret=switchyard-admin-key" in op_args, op_args
        assert "SWITCHYARD_HISTORY_POSTGRES" not in env, env
        assert option(args, "--history") == "/var/lib/switchyard/history.db", args
        assert (option(args, "--history-max-mb"), option(args, "--history-max-age-hours"),
                option(args, "--history-max-rows")) == ("512", "168", "1000000"), args
        assert c["volumeMounts"] == [{"name": "history", "mountPath": "/var/lib/switchyard"}]
        # 512 MiB + 25% + 64 MiB: room for the WAL and the batch written before a check.
        assert pod["volumes"] == [{"name": "history", "emptyDir": {"sizeLimit": "704Mi"}}]
        assert env["SQLITE_TMPDIR"]["value"] == "/var/lib/switchyard", env
        return
    assert env["SWITCHYARD_ADMIN_KEY"] == {"name": "SWITCHYARD_ADMIN_KEY", "valueFrom": {
        "secretKeyRef": {"name": "ui-admin", "key": "admin-key"}}}, env
    assert not [a for a in op_args if a.startswith("--admin-key-secret")], "the user's Secret"
    assert env["SWITCHYARD_HISTORY_POSTGRES"] == {"name": "SWITCHYARD_HISTORY_POSTGRES", "valueFrom": {
        "secretKeyRef": {"name": "ui-history", "key": "dsn"}}}, env
    assert "--history" not in args and "--history-max-mb" not in args, args
    assert (option(args, "--history-max-age-hours"), option(args, "--history-max-rows")) \
        == ("24", "5000"), args
    assert "volumes" not in pod and "volumeMounts" not in c, pod


def check_open_admin_api() -> None:
    """openAdminApi: no key anywhere, and NOTES say the API is open."""
    values = {"proxy": {"requestView": {"openAdminApi": True}}}
    objects = render(values)
    env = {e["name"] for e in container(find(objects, "Deployment", "switchyard-proxy"))["env"]}
    op_args = container(find(objects, "Deployment", "switchyard-operator"))["args"]
    assert "SWITCHYARD_ADMIN_KEY" not in env, env
    assert not [a for a in op_args if a.startswith("--admin-key-secret")], op_args
    assert "Its API is open to whoever reaches the admin port" in notes(values, NAMESPACE)
    default = notes(None, NAMESPACE)
    assert (f"kubectl -n {NAMESPACE} get secret switchyard-admin-key -o jsonpath="
            "'{.data.admin-key}' | base64 -d") in default, default


def check_history_stores() -> None:
    """A claim for one proxy; memory writes nothing; what cannot work is refused by name."""
    one = {"proxy": {"replicas": 1, "requestView": {"history": {"existingClaim": "proxy-history"}}}}
    objects = render(one)
    for o in objects:
        kube_validate(o)
    assert pod_spec(objects, "switchyard-proxy")["volumes"] == [
        {"name": "history", "persistentVolumeClaim": {"claimName": "proxy-history"}}]
    args = container(find(render({"proxy": {"requestView": {"history": {"store": "memory"}}}}),
                          "Deployment", "switchyard-proxy"))["args"]
    assert not [a for a in args if a.startswith("--history")], args
    expect_render_failure(
        {"proxy": {"replicas": 2, "requestView": {"history": {"existingClaim": "proxy-history"}}}},
        "proxy.requestView.history.existingClaim needs proxy.replicas 1 and no autoscaling")
    expect_render_failure(
        {"proxy": {"replicas": 1, "autoscaling": {"enabled": True},
                   "requestView": {"history": {"existingClaim": "proxy-history"}}}},
        "proxy.requestView.history.existingClaim needs proxy.replicas 1 and no autoscaling")
    expect_render_failure(
        {"proxy": {"requestView": {"history": {"store": "postgres"}}}},
        "proxy.requestView.history.store postgres needs proxy.requestView.history.postgresSecret")


# ---------------------------------------------------------------- additions of issue 9

def pod_spec(objects: list[dict], name: str) -> dict:
    return find(objects, "Deployment", name)["spec"]["template"]["spec"]


def check_security(objects: list[dict]) -> None:
    for name in ["switchyard-operator", "switchyard-proxy"]:
        pod = pod_spec(objects, name)
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True, (name, psc)
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, (name, psc)
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True, (name, sc)
            assert sc["readOnlyRootFilesystem"] is True, (name, sc)
            assert sc["allowPrivilegeEscalation"] is False, (name, sc)
            assert sc["capabilities"] == {"drop": ["ALL"]}, (name, sc)
            assert "privileged" not in sc or sc["privileged"] is False


def check_resources(objects: list[dict], values: dict) -> None:
    for comp in ["operator", "proxy"]:
        c = container(find(objects, "Deployment", f"switchyard-{comp}"))
        assert c["resources"] == values[comp]["resources"], (comp, c["resources"])


def drain_constants() -> tuple[int, int]:
    """ServerSettings::default() of the routing snapshot, which the operator publishes."""
    src = (ROOT / "crds" / "src" / "snapshot.rs").read_text()
    body = src[src.index("impl Default for ServerSettings"):]
    num = lambda field: int(re.search(rf"\b{field}:\s*([0-9_]+)", body)[1].replace("_", ""))
    return num("shutdown_grace_ms"), num("drain_timeout_ms")


def check_drain_source() -> None:
    grace_ms, drain_ms = drain_constants()
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    assert f"$shutdownGraceMs := {grace_ms}" in helpers, "chart's shutdownGraceMs != crds/"
    assert f"$drainTimeoutMs := {drain_ms}" in helpers, "chart's drainTimeoutMs != crds/"
    # The operator compiles its snapshot with the default `server` settings (the chart cannot
    # set them): the grace period relies on it. Client `keys` come from `clientKeys` only.
    op = (ROOT / "operator" / "src" / "controller" / "snapshot.rs").read_text()
    call = op[op.index("compile(&CompileInput {"):]
    call = call[:call.index("});")]
    assert "..Default::default()" in call, call
    assert not re.search(r"\bserver\s*[:,]", call), \
        f"the operator now sets `server` of its snapshot: update the chart ({call})"


def grace(values: dict | None) -> int:
    return pod_spec(render(values), "switchyard-proxy")["terminationGracePeriodSeconds"]


def check_grace() -> None:
    grace_ms, drain_ms = drain_constants()
    deadline = -(-(grace_ms + drain_ms) // 1000)  # 602 s
    assert grace(None) == 630, grace(None)  # the default value, above deadline + 10
    assert grace({"proxy": {"terminationGracePeriodSeconds": 60}}) == deadline + 10
    assert grace({"proxy": {"terminationGracePeriodSeconds": 0,
                            "terminationGraceMarginSeconds": 45}}) == deadline + 45
    assert grace({"proxy": {"terminationGracePeriodSeconds": 900}}) == 900


def check_hpa(objects: list[dict], default: list[dict]) -> None:
    assert not [o for o in default if o["kind"] == "HorizontalPodAutoscaler"], "off by default"
    hpa = find(objects, "HorizontalPodAutoscaler", "switchyard-proxy")
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                      "name": "switchyard-proxy"}, spec["scaleTargetRef"]
    assert (spec["minReplicas"], spec["maxReplicas"]) == (3, 12), spec
    assert spec["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}]
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    d = find(objects, "Deployment", "switchyard-proxy")
    assert "replicas" not in d["spec"], "the HPA owns the replica count"
    assert find(default, "Deployment", "switchyard-proxy")["spec"]["replicas"] == 2


def expect_render_failure(values: dict, words: str) -> None:
    try:
        render(values)
    except helm.HelmRenderError as e:
        assert words in str(e), str(e)
        return
    raise AssertionError(f"rendered {values}")


def check_network_policies(objects: list[dict], default: list[dict]) -> None:
    assert not [o for o in default if o["kind"] == "NetworkPolicy"], "off by default"
    labels = {c: find(objects, "Deployment", f"switchyard-{c}")["spec"]["template"]
              ["metadata"]["labels"] for c in ("proxy", "operator")}
    proxy = find(objects, "NetworkPolicy", "switchyard-proxy")["spec"]
    assert proxy["podSelector"]["matchLabels"].items() <= labels["proxy"].items()
    assert proxy["policyTypes"] == ["Ingress"]
    by_port = {r["ports"][0]["port"]: r.get("from") for r in proxy["ingress"]}
    assert set(by_port) == {"api", "admin"}, by_port
    assert by_port["api"] == ALL_ON["networkPolicy"]["apiFrom"], by_port["api"]
    operator_peer = by_port["admin"][0]["podSelector"]["matchLabels"]
    assert operator_peer.items() <= labels["operator"].items(), "the operator polls /config"
    assert by_port["admin"][1:] == ALL_ON["networkPolicy"]["metricsFrom"], by_port["admin"]
    op = find(objects, "NetworkPolicy", "switchyard-operator")["spec"]
    assert op["podSelector"]["matchLabels"].items() <= labels["operator"].items()
    assert [(r["ports"], r.get("from")) for r in op["ingress"]] == [
        ([{"port": "metrics", "protocol": "TCP"}], ALL_ON["networkPolicy"]["metricsFrom"])]
    # Named ports exist on the selected containers.
    for comp, ports in (("proxy", {"api", "admin"}), ("operator", {"metrics"})):
        c = container(find(objects, "Deployment", f"switchyard-{comp}"))
        assert ports <= {p["name"] for p in c["ports"]}, (comp, c["ports"])


def check_network_policies_open() -> None:
    objects = render({"networkPolicy": {"enabled": True}})
    proxy = find(objects, "NetworkPolicy", "switchyard-proxy")["spec"]
    # Empty lists: any source, on the declared ports only.
    assert [(r["ports"][0]["port"], r.get("from")) for r in proxy["ingress"]] == [
        ("api", None), ("admin", None)], proxy["ingress"]
    for o in objects:
        if o["kind"] == "NetworkPolicy":
            kube_validate(o)


def check_client_keys() -> None:
    """`clientKeys.existingSecret` → the operator's `--client-keys-secret`; off by default."""
    def args(values: dict | None) -> list[str]:
        return container(find(render(values), "Deployment", "switchyard-operator"))["args"]
    assert not [a for a in args(None) if a.startswith("--client-keys-secret")], args(None)
    on = args({"clientKeys": {"existingSecret": "team-keys"}})
    assert "--client-keys-secret=team-keys" in on, on

    # The operator may read and watch that Secret (by name) even without readBackendSecrets.
    def rules(values: dict) -> list[dict]:
        return find(render(values), "Role", "switchyard-operator")["rules"]
    wanted = {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["team-keys"],
              "verbs": ["get", "list", "watch"]}
    assert wanted not in rules({}), rules({})
    assert wanted in rules({"clientKeys": {"existingSecret": "team-keys"},
                            "operator": {"readBackendSecrets": False}})


def check_notes(values: dict | None, namespace: str, port: int) -> None:
    objects = render_ns(values, namespace)
    svc = find(objects, "Service", "switchyard-proxy")
    assert svc["spec"]["ports"][0]["port"] == port
    url = f"ANTHROPIC_BASE_URL=http://{svc['metadata']['name']}.{namespace}.svc:{port}"
    rendered = notes(values, namespace)
    installed = install_dry_run(values, namespace)["notes"]
    assert rendered.strip() == installed.strip(), "install prints other NOTES than render"
    for text in (rendered, installed):
        lines = [line.strip() for line in text.splitlines()]
        assert f"export {url}" in lines, f"{url!r} not in NOTES:\n{text}"
        secret = ((values or {}).get("clientKeys") or {}).get("existingSecret")
        if secret:
            assert "export ANTHROPIC_AUTH_TOKEN=<one of your keys>" in lines, text
            assert "export ANTHROPIC_AUTH_TOKEN=unused" not in lines, text
            assert 'printf %s "$KEY" | sha256sum | cut -d\' \' -f1' in lines, text
            assert f"Secret {namespace}/{secret}. A new key and its hash:" in lines, text
        else:
            assert "export ANTHROPIC_AUTH_TOKEN=unused" in lines, text
            assert not any("ANTHROPIC_AUTH_TOKEN=<" in line for line in lines), text
            assert not any("sha256sum" in line for line in lines), text
        assert "kubectl get modelroutes -A" in lines, text
        assert f"kubectl -n {namespace} port-forward svc/switchyard-proxy {port}:{port}" \
            in lines, text
        assert "{{" not in text and "<no value>" not in text, text


def render_ns(values: dict | None, namespace: str) -> list[dict]:
    with helm.Chart.load(str(CHART)) as chart:
        files = chart.render(values, name="switchyard", namespace=namespace, is_install=True)
    return [d for p, t in files.items() if not p.endswith("NOTES.txt")
            for d in yaml.safe_load_all(t) if d]


def chart_additions(default: list[dict]) -> None:
    check("values.schema.json: draft-07, loaded by Helm, covers every value, defaults pass",
          check_schema_file)
    for label, values, path, words in BAD_VALUES:
        check(f"schema refuses {label}: template, install --dry-run, lint name "
              f"'{path or '<root>'}'",
              lambda v=values, p=path, w=words: expect_schema_error(v, p, w))
    all_on = check("helm template (every option on, free-form maps)",
                   lambda: render(ALL_ON)) or []
    check("helm lint (every option on, strict)", lambda: lint(ALL_ON))
    validate_all("all-on", all_on)
    if default:
        check("default: security contexts of both Deployments", lambda: check_security(default))
        check("default: resources from values",
              lambda: check_resources(default, merged({})))
    if all_on:
        check("default: admin key from the operator's Secret, SQLite history on a sized emptyDir",
              lambda: check_request_view(default, False))
        check("all-on: request view's admin key and PostgreSQL DSN from their Secrets",
              lambda: check_request_view(all_on, True))
        check("all-on: security contexts of both Deployments", lambda: check_security(all_on))
        check("all-on: resources from values", lambda: check_resources(all_on, merged(ALL_ON)))
        check("all-on: HorizontalPodAutoscaler (CPU), Deployment without replicas",
              lambda: check_hpa(all_on, default))
        check("all-on: NetworkPolicies (ports, peers, operator → proxy admin)",
              lambda: check_network_policies(all_on, default))
    check("history: a claim for one proxy, memory writes nothing, what cannot work refused",
          check_history_stores)
    check("openAdminApi: no admin key Secret or env; NOTES say how to read the key, or that "
          "the API is open", check_open_admin_api)
    check("NetworkPolicies with empty peer lists admit any source on their ports",
          check_network_policies_open)
    check("HPA minReplicas above maxReplicas is refused, naming both", lambda:
          expect_render_failure({"proxy": {"autoscaling": {"enabled": True, "minReplicas": 5,
                                                           "maxReplicas": 2}}},
                                "proxy.autoscaling.minReplicas (5) is above "
                                "proxy.autoscaling.maxReplicas (2)"))
    check("HPA without a CPU request is refused", lambda: expect_render_failure(
        {"proxy": {"autoscaling": {"enabled": True}, "resources": {"requests": None}}},
        "proxy.autoscaling needs proxy.resources.requests.cpu"))
    check("drain deadline constants match crds/ ServerSettings, operator sets no server/keys",
          check_drain_source)
    check("proxy terminationGracePeriodSeconds = max(value, shutdownGrace + drain + margin)",
          check_grace)
    check("NOTES (template and install --dry-run): base URL, auth token, model list; default",
          lambda: check_notes(None, NAMESPACE, 4000))
    check("NOTES: other namespace and service port",
          lambda: check_notes({"proxy": {"service": {"port": 8443}}}, "agents", 8443))
    check("NOTES with client keys: a key of yours as the token, how to hash one",
          lambda: check_notes({"clientKeys": {"existingSecret": "team-keys"}}, NAMESPACE, 4000))
    check("clientKeys.existingSecret → operator --client-keys-secret (off by default)",
          check_client_keys)


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
        if "gitops" in path.parts:
            continue  # Flux objects and kustomize files: charts/test_gitops.py
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
    chart_additions(default)

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
