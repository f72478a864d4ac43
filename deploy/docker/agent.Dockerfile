# syntax=docker/dockerfile:1
# The agent image: what runs in an agent pod (`python -m agent.pod`). The agent uses only the standard
# library (import-linter keeps it away from the runner and from every client library), so the package
# is installed without its dependencies: no gRPC, NATS, MinIO, Kubernetes or OpenAI client in the pod.
# The agent needs git (its shadow repository computes the diff) and the shell tools a model expects.
# Build it from the repository root:
#
#   docker build -f deploy/docker/agent.Dockerfile -t codex-sys-agent:dev .
#
# The base image is pinned by tag; CI should pin its digest when it builds (docs/kubernetes.md, "Images").

FROM python:3.11.14-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY runner ./runner
COPY agent ./agent
COPY lsp_server ./lsp_server
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11.14-slim-bookworm
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install --yes --no-install-recommends \
      git patch diffutils file less procps ripgrep jq unzip xz-utils make \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 1000 agent \
 && useradd --uid 1000 --gid 1000 --home-dir /home/agent --create-home --shell /bin/bash agent \
 && install -d -o 1000 -g 1000 -m 0755 /workspace /output
# The wheel is bind-mounted from the build stage, so it never becomes a layer of this image.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-deps /wheels/*.whl
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A numeric user: the kubelet can only check `runAsNonRoot` against a numeric USER.
USER 1000:1000
WORKDIR /workspace
CMD ["python", "-m", "agent.pod", "--help"]
