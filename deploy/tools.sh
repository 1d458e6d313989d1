#!/usr/bin/env bash
# Install the Kubernetes chart checkers into .cache/bin (idempotent; used by `make tools`, which `make test` runs):
#   helm            helm.sh/helm/v4 (lint --strict against values.schema.json, template)
#   nightshift-kubecheck   deploy/kubecheck: strict decoding of every rendered object into the Kubernetes API
#                   types (k8s.io/api) and KEDA's own ScaledObject types, plus KEDA's trigger validation
# Both are built from the Go module proxy with the machine's Go; nothing is downloaded by hand.
set -euo pipefail
HELM_VERSION=v4.3.2
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/.cache/bin"
mkdir -p "$bin"
command -v go >/dev/null 2>&1 || { echo "tools: need Go (https://go.dev/doc/install) to build helm and kubecheck" >&2; exit 1; }
# (helm built by `go install` reports only its minor version, so a stamp file records the exact one)
if [ ! -x "$bin/helm" ] || [ ! -e "$bin/.helm-$HELM_VERSION" ]; then
  echo "tools: building helm $HELM_VERSION into $bin (first time only, a few minutes)"
  GOBIN="$bin" GOFLAGS=-buildvcs=false go install "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
  rm -f "$bin"/.helm-*; touch "$bin/.helm-$HELM_VERSION"
fi
src="$root/deploy/kubecheck"
stamp="$bin/.kubecheck-$(cat "$src"/go.mod "$src"/go.sum "$src"/*.go | sha256sum | cut -c1-12)"
if [ ! -x "$bin/nightshift-kubecheck" ] || [ ! -e "$stamp" ]; then
  echo "tools: building nightshift-kubecheck into $bin"
  (cd "$src" && GOFLAGS=-buildvcs=false go build -o "$bin/nightshift-kubecheck" .)
  rm -f "$bin"/.kubecheck-*; touch "$stamp"
fi
