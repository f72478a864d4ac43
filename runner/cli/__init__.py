"""The `codex-sys` command line."""
