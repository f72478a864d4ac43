#!/usr/bin/env bash
# The demo: copy examples/calc to build/demo/calc, run a task on it with the embedded runner, apply the
# diff and run the project's tests. With no OPENAI_BASE_URL/OPENAI_API_KEY the runner uses its scripted
# demo model; set them (and CODEX_SYS_MODEL) to use a real provider.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$root/.venv/bin"
work="$root/build/demo/calc"
rm -rf "$work" && mkdir -p "$(dirname "$work")" && cp -r "$root/examples/calc" "$work"
cd "$work"
out="$root/build/demo/artifacts"
"$bin/codex-sys" run --out "$out" "Fix the failing test in calc.py"
task_id="$("$bin/codex-sys" list --limit 1 --json | "$bin/python" -c 'import json,sys; print(json.loads(sys.stdin.readline())["task_id"])')"
"$bin/codex-sys" apply "$task_id"
echo "--- the project's tests after applying the diff:"
python3 -m unittest -q
echo "--- artifacts of task $task_id are in $out:"
ls -l "$out"
