#!/usr/bin/env bash
# Installs the Debian packages codex-sys needs: bubblewrap (the local sandbox), git (the agent's
# baseline and diff), Neovim (the editor end-to-end tests run the real client, 0.7.2 on Debian 12) and
# nats-server (JetStream, 2.9.10 on Debian 12: the distributed queue, task store and event log) and
# etcd-server (3.4 on Debian 12: the store of the Kubernetes control plane the executor's tests start;
# the tests run their own etcd, they do not use the service the package may enable).
# Idempotent: does nothing when they are already there. MinIO is built from source by build_minio.sh.
set -euo pipefail
need=()
command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
command -v git >/dev/null 2>&1 || need+=(git)
command -v nvim >/dev/null 2>&1 || need+=(neovim)
command -v nats-server >/dev/null 2>&1 || need+=(nats-server)
[ -x /usr/bin/etcd ] || need+=(etcd-server)
command -v openssl >/dev/null 2>&1 || need+=(openssl)  # the test control plane's certificates
command -v chromedriver >/dev/null 2>&1 || need+=(chromium chromium-driver)  # the task pages' browser tests
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing packages: ${need[*]}; install them with: sudo apt-get install ${need[*]}" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
