"""Where the bytes of a blob to upload come from: a file on disk (a path, as `str` or `Path`) or bytes
held in memory (a symlink's target, an unsaved editor buffer). Snapshots hand out `str` paths: building
ten thousand `Path` objects costs more than the upload of the files they name."""

from __future__ import annotations

from pathlib import Path

BlobSource = str | Path | bytes
