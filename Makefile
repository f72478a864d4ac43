# One task runner for developers, the README and CI.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export CODEX_SYS_BWRAP ?= bwrap

.PHONY: setup system-deps minio kubernetes protos protos-check lint typecheck vscode test test-fast demo bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

setup: $(BIN)/python  ## install the project and its development tools into .venv
	$(BIN)/pip install -q -e '.[dev]'

system-deps:  ## Debian packages the sandboxes and tests need (run as root), nats-server included
	bash scripts/install_system_deps.sh

minio:  ## build the MinIO server from source at the pinned commit (cached; the tests start it)
	bash scripts/build_minio.sh >/dev/null

kubernetes:  ## build kube-apiserver, kube-controller-manager, kube-scheduler, KWOK and kustomize (cached; the tests start them)
	bash scripts/build_kubernetes.sh >/dev/null

protos: setup  ## regenerate runner/_proto from protos/
	$(BIN)/python scripts/gen_protos.py

protos-check: setup
	$(BIN)/python scripts/gen_protos.py --check

lint: setup
	$(BIN)/ruff check runner agent lsp_server tests bench scripts
	$(BIN)/lint-imports

typecheck: setup
	$(BIN)/mypy

vscode:  ## lint, type-check, test and package the VS Code extension (editors/vscode -> build/codex-sys.vsix)
	bash scripts/build_vscode.sh

test: system-deps minio kubernetes setup protos-check lint typecheck vscode  ## everything CI runs
	$(BIN)/pytest -q

test-fast: system-deps minio kubernetes setup
	$(BIN)/pytest -q -m 'not e2e'

demo: system-deps setup  ## run the example task on the embedded runner
	bash scripts/demo.sh

bench: system-deps minio kubernetes setup
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
