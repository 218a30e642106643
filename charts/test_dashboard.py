#!/usr/bin/env python3
"""The Grafana dashboard ConfigMap of charts/switchyard (`grafanaDashboard.*`): off by
default; when on, it carries the sidecar label and the exact JSON of
charts/switchyard/dashboards/switchyard.json, in the release namespace or the one asked for.

Uses test_chart.py's helpers (real Helm engine, kubernetes-validate); run it with the same
virtualenv as charts/test.sh: `$venv/bin/python charts/test_dashboard.py`.
"""

from __future__ import annotations

import json
import sys

import test_chart as t

DASHBOARD = t.CHART / "dashboards" / "switchyard.json"


def configmaps(objects: list[dict]) -> list[dict]:
    return [o for o in objects if o["kind"] == "ConfigMap" and "switchyard.json" in o.get("data", {})]


def check_off_by_default() -> None:
    assert not configmaps(t.render(None)), "the dashboard ConfigMap is off by default"


def check_on(values: dict, name: str, namespace: str, labels: dict) -> None:
    t.lint(values)
    objects = t.render(values)
    cms = configmaps(objects)
    assert len(cms) == 1, f"{len(cms)} dashboard ConfigMaps"
    cm = cms[0]
    assert cm["metadata"]["name"] == name, cm["metadata"]
    assert cm["metadata"]["namespace"] == namespace, cm["metadata"]
    assert labels.items() <= cm["metadata"]["labels"].items(), cm["metadata"]["labels"]
    assert cm["metadata"]["labels"]["app.kubernetes.io/name"] == "switchyard"
    assert json.loads(cm["data"]["switchyard.json"]) == json.loads(DASHBOARD.read_text())
    t.kube_validate(cm)
    # Every other object stays in the release namespace.
    for o in objects:
        if o is not cm and o["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert o["metadata"].get("namespace") == t.NAMESPACE, o["metadata"]


def main() -> int:
    t.check("dashboard: no ConfigMap by default", check_off_by_default)
    t.check("dashboard: enabled, sidecar label, JSON intact", lambda: check_on(
        {"grafanaDashboard": {"enabled": True}}, "switchyard-dashboard", t.NAMESPACE,
        {"grafana_dashboard": "1"}))
    t.check("dashboard: other namespace and labels", lambda: check_on(
        {"grafanaDashboard": {"enabled": True, "namespace": "monitoring",
                              "labels": {"grafana_dashboard": "switchyard", "team": "ai"}}},
        f"switchyard-dashboard-{t.NAMESPACE}", "monitoring",
        {"grafana_dashboard": "switchyard", "team": "ai"}))
    print(f"\ndashboard chart: {t.passed} passed, {t.failed} failed")
    return 1 if t.failed else 0


if __name__ == "__main__":
    sys.exit(main())
