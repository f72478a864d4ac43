# syntax=docker/dockerfile:1
# MinIO for the dev overlay (deploy/k8s/overlays/dev). MinIO is a source-only distribution since
# October 2025: its Docker Hub images are gone and the quay.io ones stop before that month's security
# release. This builds the same pinned commit as scripts/build_minio.sh, which the tests run against
# (a test keeps the two pins equal). It needs no build context:
#
#   docker build -t codex-sys-minio:dev - < deploy/docker/minio.Dockerfile
#
# Base images are pinned by tag; CI should pin their digests when it builds (docs/kubernetes.md).

FROM golang:1.24.6-bookworm AS build
ARG MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
RUN CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOBIN=/out \
    go install -trimpath -ldflags "-s -w" "github.com/minio/minio@${MINIO_VERSION}"

FROM debian:12.11-slim
COPY --from=build /out/minio /usr/local/bin/minio
# A numeric user: the kubelet can only check `runAsNonRoot` against a numeric USER.
USER 1000:1000
CMD ["minio", "--help"]
