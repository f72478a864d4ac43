# syntax=docker/dockerfile:1
# The runner image: `codex-sys runner serve` (the gRPC API), `codex-sys worker` (the queue consumer that
# starts agent pods) and the agent pods' `fetch` init container (`python -m runner.snapshots.fetch`).
# Build it from the repository root (the build context must be the repository):
#
#   docker build -f deploy/docker/runner.Dockerfile -t codex-sys-runner:dev .
#
# The base image is pinned by tag. A tag can move when Docker republishes it with security fixes; CI
# should resolve it to a digest when it builds a release and pin `FROM python:...@sha256:...` (see
# docs/kubernetes.md, "Images"). Every dependency ships manylinux wheels for Python 3.11, so no compiler
# is installed in either stage.

FROM python:3.11.14-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/codex-sys
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY runner ./runner
COPY agent ./agent
COPY lsp_server ./lsp_server
# Byte-code is compiled here on purpose (pip's default): the pods run with a read-only root filesystem,
# so an interpreter could never cache it later. pip itself is not needed at run time.
RUN /opt/codex-sys/bin/pip install --no-cache-dir . \
 && /opt/codex-sys/bin/pip uninstall --yes --quiet pip

# Only the virtual environment is carried over: no source tree, no build back-end, no pip cache.
FROM python:3.11.14-slim-bookworm
RUN groupadd --gid 1000 codex \
 && useradd --uid 1000 --gid 1000 --home-dir /home/codex --create-home --shell /usr/sbin/nologin codex \
 && install -d -o 1000 -g 1000 -m 0700 /var/lib/codex-sys
COPY --from=build /opt/codex-sys /opt/codex-sys
ENV PATH=/opt/codex-sys/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CODEX_SYS_HOME=/var/lib/codex-sys
# A numeric user: the kubelet can only check `runAsNonRoot` against a numeric USER.
USER 1000:1000
WORKDIR /home/codex
# No ENTRYPOINT: the Deployments run `codex-sys ...` and the executor's init container runs
# `python -m runner.snapshots.fetch ...`, each as its own command.
CMD ["codex-sys", "--help"]
