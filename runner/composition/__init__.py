"""Composition: the one place that chooses adapters and wires the runner together.

`Runner` is one runner process: the gRPC API, a worker with its gateway and bubblewrap sandboxes, or
both, over `Backends` opened by `open_backends`, which is where the choice of adapters is made:

* embedded (the default): SQLite task store, event log and queue plus a filesystem CAS, all under
  `CODEX_SYS_HOME`, for one machine and zero infrastructure;
* distributed (`RunnerConfig.distributed` set): NATS JetStream (queue, KV task store, event streams) and
  MinIO (blobs, packed snapshots, presigned links), shared by any number of runner and worker processes.

Everything above the ports (task service, worker, API, gateway) is the same code in both.
"""

from runner.composition.backends import Backends, DistributedSettings, open_backends
from runner.composition.codec import ProtoManifestCodec
from runner.composition.runner import Runner, RunnerConfig

__all__ = ["Backends", "DistributedSettings", "ProtoManifestCodec", "Runner", "RunnerConfig", "open_backends"]
