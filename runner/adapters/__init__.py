"""Adapters of the ports in `runner.ports`.

`embedded/` holds the zero-infrastructure adapters (SQLite, the local filesystem) that the embedded
runner uses by default; the distributed adapters (NATS JetStream, MinIO, Kubernetes) live beside it.
Adapters are chosen in `runner.composition` and nowhere else; `tests/contract/` runs one suite per port
against every adapter so they cannot drift.
"""
