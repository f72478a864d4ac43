#!/usr/bin/env bash
# Builds the MinIO server from source (MinIO ships no binaries or Debian package any more) with
# `go install` at a pinned commit, into $(go env GOPATH)/bin/minio. The Go module and build caches make
# only the first build slow (several minutes on 2 cores); a stamp beside the binary records the version,
# so a second run with the same pin does nothing. Prints the binary's path.
set -euo pipefail
# The last commit of github.com/minio/minio on the Go module proxy (2026-02-12).
MINIO_VERSION="${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}"
command -v go >/dev/null 2>&1 || { echo "Go (>= 1.24) is needed to build MinIO: https://go.dev/dl/" >&2; exit 1; }
bin="$(go env GOPATH)/bin"
stamp="$bin/.minio-version"
if [ -x "$bin/minio" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$MINIO_VERSION" ]; then
  echo "$bin/minio"
  exit 0
fi
echo "building MinIO $MINIO_VERSION (first time only; a few minutes)" >&2
GOFLAGS=-buildvcs=false go install "github.com/minio/minio@$MINIO_VERSION" >&2
echo "$MINIO_VERSION" > "$stamp"
echo "$bin/minio"
