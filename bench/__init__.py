"""Benchmarks that print figures, each with a baseline measured in the same run (see docs/benchmarks.md)."""

import os

# The runner forks sandboxes while gRPC threads run; gRPC's fork handlers only log noise there.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
