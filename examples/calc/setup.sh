#!/usr/bin/env bash
# Prepares the workspace before the agent starts. Files made here never appear in the task's diff.
set -euo pipefail
python3 --version
printf '__version__ = "0.1.0"\n' > _version.py
