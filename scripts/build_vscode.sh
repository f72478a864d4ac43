#!/usr/bin/env bash
# Placeholder until the extension lands: replaced by the real build (npm ci, lint, tsc, tests, vsce package).
set -euo pipefail
echo "editors/vscode: not built yet" >&2
exit 1
