#!/usr/bin/env python3
"""The Flux example in examples/gitops/flux/, checked the way Flux would meet it, without a
cluster: each Flux object against the fields its API requires, every reference (sources,
paths, dependsOn, the chart path) resolved, the HelmRelease's values rendered through the
real Helm engine with values.schema.json and every rendered object validated, the
InferenceBackends and ModelRoutes against the CRD schemas, and kustomize files listing
exactly the files beside them.

Flux's CRDs are not vendored here, so the Flux objects are checked against the required
fields and enums of the Flux API references (fluxcd.io/flux/components/source/api/v1,
kustomize/api/v1, helm/api/v2): GitRepositorySpec needs `url` and `interval`;
KustomizationSpec `interval`, `prune` and `sourceRef`; HelmReleaseSpec `interval` and one
of `chart` / `chartRef`; `install.crds` and `upgrade.crds` are Skip, Create or
CreateReplace. Unknown spec fields are refused so a typo is caught.

Uses test_chart.py's helpers; run with the same virtualenv (charts/test.sh runs it).
"""

from __future__ import annotations

import copy
import pathlib
import re
import sys

import jsonschema
import yaml

import test_chart as t

FLUX = t.ROOT / "examples" / "gitops" / "flux"

DURATION = {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"}
CRDS_POLICY = {"enum": ["Skip", "Create", "CreateReplace"]}
REF = {"type": "object", "required": ["kind", "name"], "additionalProperties": False,
       "properties": {"kind": {"type": "string"}, "name": {"type": "string"},
                      "namespace": {"type": "string"}, "apiVersion": {"type": "string"}}}
REMEDIATION = {"type": "object", "properties": {"retries": {"type": "integer"}}}


def spec_schema(required: list[str], properties: dict, **extra) -> dict:
    return {"type": "object", "required": ["metadata", "spec"], "properties": {
        "metadata": {"type": "object", "required": ["name", "namespace"]},
        "spec": {"type": "object", "required": required, "additionalProperties": False,
                 "properties": properties, **extra}}}


FLUX_SCHEMAS = {
    ("source.toolkit.fluxcd.io/v1", "GitRepository"): spec_schema(["url", "interval"], {
        "url": {"type": "string", "pattern": r"^(https?|ssh)://"},
        "interval": DURATION, "timeout": DURATION, "ignore": {"type": "string"},
        "secretRef": {"type": "object"}, "suspend": {"type": "boolean"},
        "ref": {"type": "object", "additionalProperties": False, "properties": {
            k: {"type": "string"} for k in ("branch", "tag", "semver", "name", "commit")}},
    }),
    ("kustomize.toolkit.fluxcd.io/v1", "Kustomization"): spec_schema(
        ["interval", "prune", "sourceRef"], {
            "interval": DURATION, "timeout": DURATION, "retryInterval": DURATION,
            "prune": {"type": "boolean"}, "wait": {"type": "boolean"},
            "path": {"type": "string"}, "sourceRef": REF, "targetNamespace": {"type": "string"},
            "dependsOn": {"type": "array", "items": {"type": "object", "required": ["name"]}},
            "healthChecks": {"type": "array", "items": REF}, "suspend": {"type": "boolean"},
        }),
    ("helm.toolkit.fluxcd.io/v2", "HelmRelease"): spec_schema(["interval"], {
        "interval": DURATION, "timeout": DURATION, "releaseName": {"type": "string"},
        "targetNamespace": {"type": "string"}, "suspend": {"type": "boolean"},
        "chart": {"type": "object", "required": ["spec"], "properties": {"spec": {
            "type": "object", "required": ["chart", "sourceRef"], "additionalProperties": False,
            "properties": {"chart": {"type": "string"}, "version": {"type": "string"},
                           "sourceRef": REF, "interval": DURATION,
                           "reconcileStrategy": {"enum": ["ChartVersion", "Revision"]}}}}},
        "chartRef": REF,
        "install": {"type": "object", "properties": {"crds": CRDS_POLICY,
                                                     "remediation": REMEDIATION}},
        "upgrade": {"type": "object", "properties": {"crds": CRDS_POLICY,
                                                     "remediation": REMEDIATION}},
        "values": {"type": "object"},
    }, oneOf=[{"required": ["chart"]}, {"required": ["chartRef"]}]),
}


def documents() -> list[tuple[pathlib.Path, dict]]:
    docs = []
    for path in sorted(FLUX.rglob("*.yaml")):
        docs += [(path, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def flux_errors(obj: dict) -> list[str]:
    schema = FLUX_SCHEMAS.get((obj["apiVersion"], obj["kind"]))
    if schema is None:
        return [f"not a Flux kind this test knows: {obj['apiVersion']} {obj['kind']}"]
    return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in jsonschema.Draft7Validator(schema).iter_errors(obj)]


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"([0-9.]+)(ms|s|m|h)", duration))


def check_flux_object(obj: dict) -> None:
    errors = flux_errors(obj)
    assert not errors, "; ".join(errors)


def check_kustomize_file(path: pathlib.Path, doc: dict) -> None:
    listed = set(doc.get("resources", []))
    beside = {p.name for p in path.parent.glob("*.yaml")} - {path.name}
    assert listed == beside, f"resources {sorted(listed)} but the folder has {sorted(beside)}"


def check_references(docs: list[tuple[pathlib.Path, dict]]) -> None:
    by_kind: dict[str, dict[str, dict]] = {}
    for _, d in docs:
        by_kind.setdefault(d["kind"], {})[d.get("metadata", {}).get("name", "")] = d
    sources = by_kind.get("GitRepository", {})
    for k in by_kind["Kustomization"].values():
        if k["apiVersion"].startswith("kustomize.config.k8s.io"):
            continue
        ref = k["spec"]["sourceRef"]
        # `flux bootstrap` creates GitRepository flux-system: the user's own repository.
        assert ref["name"] == "flux-system" or ref["name"] in sources, ref
        assert (FLUX / k["spec"]["path"]).is_dir(), f"{k['spec']['path']} is not a folder"
        for dep in k["spec"].get("dependsOn", []):
            assert dep["name"] in by_kind["Kustomization"], f"dependsOn {dep['name']}"
    for hr in by_kind["HelmRelease"].values():
        spec = hr["spec"]["chart"]["spec"]
        assert spec["sourceRef"]["kind"] == "GitRepository"
        source = sources[spec["sourceRef"]["name"]]
        assert (t.ROOT / spec["chart"]).resolve() == t.CHART, spec["chart"]
        # The source's ignore rules keep the chart folder.
        assert "!/charts/switchyard/" in source["spec"].get("ignore", "!/charts/switchyard/")
        assert source["spec"]["ref"]["tag"] == "v" + chart_app_version()


def chart_app_version() -> str:
    return yaml.safe_load((t.CHART / "Chart.yaml").read_text())["appVersion"]


def check_helm_release_renders(hr: dict) -> None:
    values = hr["spec"].get("values", {})
    objects = t.render(values)  # real Helm engine: values.schema.json applies
    for obj in objects:
        if not obj["apiVersion"].startswith("monitoring.coreos.com/"):
            t.kube_validate(obj)
    deployment = next(o for o in objects if o["kind"] == "Deployment"
                      and o["metadata"]["name"] == "switchyard-proxy")
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    # Helm's wait (the HelmRelease timeout) must outlast one proxy's drain on a rollout.
    assert seconds(hr["spec"]["timeout"]) > grace, (hr["spec"]["timeout"], grace)


def must_refuse(label: str, obj: dict, expect: str) -> None:
    def run() -> None:
        errors = flux_errors(obj)
        assert errors, "accepted a bad object"
        assert any(re.search(expect, e) for e in errors), f"refused for another reason: {errors}"
    t.check(f"negative: {label}", run)


def main() -> int:
    docs = documents()
    schemas = t.load_crd_schemas()
    kinds = [d["kind"] for _, d in docs]
    t.check("flux example: every object kind present", lambda: t.assert_true(
        sorted(set(kinds)) == ["GitRepository", "HelmRelease", "InferenceBackend",
                               "Kustomization", "ModelRoute", "Namespace"], str(kinds)))
    for path, d in docs:
        name = f"flux example {path.relative_to(t.ROOT)} {d['kind']}/{d.get('metadata', {}).get('name', '')}"
        group = d["apiVersion"].split("/")[0]
        if group.endswith(".toolkit.fluxcd.io"):
            t.check(name + " (Flux API fields)", lambda o=d: check_flux_object(o))
        elif group == "kustomize.config.k8s.io":
            t.check(name + " (lists the files beside it)", lambda p=path, o=d: check_kustomize_file(p, o))
        elif group == "switchyard.dev":
            t.check(name + " (CRD schema + CEL rules)", lambda o=d: t.validate_custom(schemas, o))
        else:
            t.check(name + " (kubernetes-validate)", lambda o=d: t.kube_validate(o))
        if d["kind"] == "HelmRelease":
            t.check(name + " values render with the chart", lambda o=d: check_helm_release_renders(o))
    t.check("flux example: sources, paths, dependsOn and chart resolve",
            lambda: check_references(docs))

    hr = next(d for _, d in docs if d["kind"] == "HelmRelease")
    ks = next(d for _, d in docs if d["kind"] == "Kustomization" and "prune" in d.get("spec", {}))
    no_prune = copy.deepcopy(ks)
    del no_prune["spec"]["prune"]
    must_refuse("Kustomization without prune", no_prune, "'prune' is a required property")
    typo = copy.deepcopy(hr)
    typo["spec"]["upgrade"]["crds"] = "Replace"
    must_refuse("HelmRelease upgrade.crds typo", typo, r"'Replace' is not one of")
    both = copy.deepcopy(hr)
    both["spec"]["chartRef"] = {"kind": "OCIRepository", "name": "switchyard"}
    must_refuse("HelmRelease with chart and chartRef", both, "valid under each of")
    bad_values = copy.deepcopy(hr)
    bad_values["spec"]["values"] = {"proxy": {"replicas": "two"}}
    t.check("negative: HelmRelease values the chart schema refuses",
            lambda: t.expect_schema_error(bad_values["spec"]["values"], "/proxy/replicas",
                                          "got string, want integer"))
    print(f"\ngitops: {t.passed} passed, {t.failed} failed")
    return 1 if t.failed else 0


if __name__ == "__main__":
    sys.exit(main())
