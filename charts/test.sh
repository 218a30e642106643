#!/usr/bin/env bash
# Chart tests, runnable in CI: installs the real Helm engine (PyPI `helm-python-sdk`, Helm's Go
# SDK as a shared library, no helm binary), `kubernetes-validate`, `jsonschema` and
# `cel-python` into a virtualenv, then lints and renders charts/switchyard (default and
# override values), validates every rendered object for Kubernetes v1.31, and validates
# examples/ manifests against the CRD schemas, and the Flux example (test_gitops.py). Needs only PyPI; no cluster.
set -euo pipefail
cd "$(dirname "$0")"
venv="${SWITCHYARD_CHART_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/switchyard/chart-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check \
  helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 jsonschema==4.26.0 \
  cel-python==0.5.0 PyYAML==6.0.3
"$venv/bin/python" test_chart.py "$@"
"$venv/bin/python" test_gitops.py
exec "$venv/bin/python" test_dashboard.py
