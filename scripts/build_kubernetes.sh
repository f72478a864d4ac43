#!/usr/bin/env bash
# Builds the Kubernetes control plane the executor's tests run against: kube-apiserver,
# kube-controller-manager (so Jobs create Pods) and kube-scheduler (so Pods get a node) from the
# k8s.io/kubernetes Go module, plus KWOK (which plays the kubelet: it moves pods through their phases,
# failures included) and kustomize (which renders deploy/). Kubernetes publishes no binaries through
# the Go module proxy, and its own go.mod points the staging modules (k8s.io/api, k8s.io/client-go,
# ...) at ./staging with replace directives that a dependent module does not inherit; so the build goes
# through a small wrapper module that pins each staging module to the release's matching v0.X.Y tag.
# Binaries land in $(go env GOPATH)/bin/kubernetes-$KUBERNETES_VERSION/; a stamp makes later runs a
# no-op, and a tool whose binary already reports the pinned version is not built again. Only the first
# build is slow (module download and compile: about 10 minutes on 2 cores). Prints the folder.
set -euo pipefail
KUBERNETES_VERSION="${KUBERNETES_VERSION:-v1.36.3}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
# kustomize v5.8.3 needs Go 1.27; v5.8.2 is the newest that builds with Go 1.26.
KUSTOMIZE_VERSION="${KUSTOMIZE_VERSION:-v5.8.2}"
command -v go >/dev/null 2>&1 || { echo "Go (>= 1.25) is needed to build Kubernetes: https://go.dev/dl/" >&2; exit 1; }
dest="$(go env GOPATH)/bin/kubernetes-$KUBERNETES_VERSION"
stamp="$dest/.version"
want="kubernetes $KUBERNETES_VERSION kwok $KWOK_VERSION kustomize $KUSTOMIZE_VERSION"
# has BINARY VERSION ARGS...: the binary exists and its version output names VERSION.
has() { local out; [ -x "$dest/$1" ] && out="$("$dest/$1" "${@:3}" 2>/dev/null)" && [[ "$out" == *"$2"* ]]; }
kube_built() {
  for b in kube-apiserver kube-controller-manager kube-scheduler; do has "$b" "Kubernetes $KUBERNETES_VERSION" --version || return 1; done
}
kwok_built() { has kwok "kwok version $KWOK_VERSION " --version; }
kustomize_built() { has kustomize "$KUSTOMIZE_VERSION" version; }
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && kube_built && kwok_built && kustomize_built; then
  echo "$dest"
  exit 0
fi
mkdir -p "$dest"
export GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0
if ! kube_built; then
  echo "building Kubernetes $KUBERNETES_VERSION (first time only; several minutes)" >&2
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  ( cd "$work"
    gomod="$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
    [ -f "$gomod" ] || { echo "could not download k8s.io/kubernetes@$KUBERNETES_VERSION" >&2; exit 1; }
    staging_version="v0.${KUBERNETES_VERSION#v1.}"
    {
      echo "module codex-sys.local/kubernetes-build"
      echo
      echo "go $(go env GOVERSION | sed 's/^go//; s/^\([0-9]*\.[0-9]*\).*/\1/')"
      echo
      echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
      echo
      echo "replace ("
      # `k8s.io/api => ./staging/src/k8s.io/api` in Kubernetes' go.mod becomes `k8s.io/api => k8s.io/api v0.N.P`.
      sed -n 's#^[[:space:]]*\(k8s\.io/[^ ]*\) => \./staging/src/.*$#\t\1 => \1 '"$staging_version"'#p' "$gomod"
      echo ")"
    } > go.mod
    cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
GO
    go mod tidy -e >&2 2>&1 || true
    go mod download >&2
    ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2) -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=$KUBERNETES_VERSION"
    for cmd in kube-apiserver kube-controller-manager kube-scheduler; do
      echo "compiling $cmd" >&2
      go build -trimpath -ldflags "$ldflags" -o "$dest/$cmd" "k8s.io/kubernetes/cmd/$cmd" >&2
    done )
fi
if ! kwok_built; then
  echo "compiling kwok $KWOK_VERSION" >&2
  GOBIN="$dest" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" >&2
fi
if ! kustomize_built; then
  echo "compiling kustomize $KUSTOMIZE_VERSION" >&2
  # No -s -w here: `kustomize version` reads its own version from the module build information.
  GOBIN="$dest" go install -trimpath "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION" >&2
fi
kube_built && kwok_built && kustomize_built || { echo "the built tools do not report the pinned versions ($want)" >&2; exit 1; }
echo "$want" > "$stamp"
echo "$dest"
