"""The Kubernetes `Executor`: each task attempt as a Job in the agent namespace (see `executor`)."""

from runner.adapters.kubernetes.executor import KubernetesExecutor, Transfers
from runner.adapters.kubernetes.settings import KubernetesSettings, Peer

__all__ = ["KubernetesExecutor", "KubernetesSettings", "Peer", "Transfers"]
