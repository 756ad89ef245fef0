#!/usr/bin/env bash
# Checks the deployment files without a cluster or an image:
#   1. renders deploy/k8s with kustomize (`kubectl kustomize`; kubectl from
#      Debian's kubernetes-client when none is installed);
#   2. validates every rendered object against Kubernetes $K8S_VERSION
#      (kubernetes-validate from PyPI, strict: unknown fields fail);
#   3. runs `sett --config-check` with exactly the flags and environment
#      each StatefulSet pod and each compose service gets (config_check.py).
# Needs a debug `sett` (built here if missing or stale).
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSION=${K8S_VERSION:-1.37.0}
VALIDATE_VERSION=1.37.0
work=target/deploy-check
venv=$work/venv
mkdir -p "$work"

if ! command -v kubectl >/dev/null; then
    bash .ci/apt-install.sh kubernetes-client
fi
if ! "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('kubernetes-validate') != '$VALIDATE_VERSION')" 2>/dev/null; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==$VALIDATE_VERSION"
fi

echo "== cargo build (sett)"
nice -n 10 cargo build -q -p sett-server --bin sett

echo "== kustomize deploy/k8s"
kubectl kustomize deploy/k8s > "$work/k8s.yaml"
grep '^kind:' "$work/k8s.yaml" | sort | uniq -c

echo "== kubernetes-validate $K8S_VERSION"
"$venv/bin/kubernetes-validate" --strict --quiet -k "$K8S_VERSION" "$work/k8s.yaml"
echo "all objects valid"

echo "== sett --config-check with the manifests' flags"
"$venv/bin/python" deploy/config_check.py target/debug/sett \
    --k8s "$work/k8s.yaml" --compose deploy/docker-compose.yml
