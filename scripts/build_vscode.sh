#!/usr/bin/env bash
# Lint, type-check, test and package the VS Code extension: editors/vscode -> build/codex-sys.vsix.
# Called by `make vscode` (and so by `make test`). Needs Node >= 20 and npm; only the npm registry is
# used. The .vsix holds one bundled file (dist/extension.js, vscode-languageclient included), so it
# installs without node_modules: code --install-extension build/codex-sys.vsix
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ext="$root/editors/vscode"
vsix="$root/build/codex-sys.vsix"
started=$SECONDS

fail() {
  echo "build_vscode: $*" >&2
  exit 1
}
step() { printf '==> %s\n' "$*"; }

command -v node >/dev/null || fail "node is not installed (Node >= 20 is needed)"
command -v npm >/dev/null || fail "npm is not installed"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
((node_major >= 20)) || fail "Node >= 20 is needed, found $(node --version)"

cd "$ext"
# Quiet npm: no audit, funding or update notices, warnings only when something fails.
export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false npm_config_loglevel=error

# npm ci wipes and reinstalls node_modules; skip it when they were installed from this very lockfile.
stamp=node_modules/.installed-from-lockfile
lock_sum="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [[ -f $stamp && "$(cat "$stamp")" == "$lock_sum" ]]; then
  step "dependencies: up to date with package-lock.json"
else
  step "npm ci"
  npm ci
  echo "$lock_sum" >"$stamp"
fi

step "eslint"
npx --no-install eslint --max-warnings=0 .
step "tsc --noEmit"
npx --no-install tsc --noEmit
step "unit tests"
node esbuild.mjs --tests
node --test --test-reporter=dot out/test/*.test.js

step "bundle and package"
mkdir -p "$(dirname "$vsix")"
rm -f "$vsix"
# vsce runs the vscode:prepublish script first: the production bundle (esbuild, minified).
# No public repository URL exists yet: say so rather than invent one.
npx --no-install vsce package --no-dependencies --allow-missing-repository --out "$vsix"
[[ -s $vsix ]] || fail "vsce did not write $vsix"

size="$(stat -c %s "$vsix")"
printf '==> %s: %s KiB (%s bytes), built in %ss\n' "${vsix#"$root"/}" "$((size / 1024))" "$size" "$((SECONDS - started))"
