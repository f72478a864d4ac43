"""The coding agent that runs inside the sandbox.

`python -m agent` reads one `agent.wire.AgentTaskSpec` line from standard input, runs `setup.sh`, records
a baseline of the workspace, then lets the model work through tools until it answers without a tool
call, and leaves `diff.patch`, `prompt.txt`, `setup.log`, `summary.md` and `result.json` in the output
folder. Its only channel out is the runner gateway's unix socket.

The package imports nothing but the standard library and itself: the sandbox runs a bare interpreter.
Importing this package has no side effects; the work starts in `agent.__main__`.
"""
