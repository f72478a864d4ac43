"""The embedded `Executor`: bubblewrap sandboxes on the local machine, with a warm pool.

See `executor.py` for the flow of a run, `bwrap_args.py` for what a sandbox can see, `limits.py` and
`cgroups.py` for how its resources are bounded, `pool.py` for warm sandboxes.
"""

from runner.adapters.local_executor.agent_command import AgentCommand, base_interpreter
from runner.adapters.local_executor.executor import LocalExecutor
from runner.adapters.local_executor.limits import OutputLimits, SandboxLimits

__all__ = ["AgentCommand", "LocalExecutor", "OutputLimits", "SandboxLimits", "base_interpreter"]
