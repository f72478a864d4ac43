"""What the API checks of a Git or zip source when a task is created, before anything is queued.

Git: the URL against the operator's policy, the ref's syntax, and `git ls-remote` with a short timeout,
so an unreachable host, a missing repository, refused credentials or an unknown branch or tag are refused
at once (an unreachable host is FAILED_PRECONDITION here, not a retry). A full commit id cannot be
checked without fetching; the worker's clone checks it.

Zip: the blob must be uploaded and within `max_zip_bytes`; its central directory is checked by
`zip_archive.plan` and its symbolic links' targets read, so a hostile archive is refused with the
entry and the rule. The archive is copied into a temporary file for that (a zip is read from its end).
"""

from __future__ import annotations

import asyncio
import functools
import shutil
import tempfile
from pathlib import Path
from typing import IO

from runner.domain.errors import FailedPrecondition, NotFound, ResourceExhausted, Unavailable
from runner.domain.models import Digest
from runner.ports import BlobStore
from runner.sources import zip_archive
from runner.sources.git_fetch import Target, list_refs, resolve
from runner.sources.settings import MiB, SourceSettings
from runner.sources.urls import GitUrl, check_git_url, check_ref


@functools.cache
def _scratch_home() -> Path:
    """An empty HOME for git run by the API (no user config is read)."""
    return Path(tempfile.mkdtemp(prefix="codex-sys-git-"))


async def check_git(url: str, ref: str, settings: SourceSettings, home: Path | None = None) -> tuple[GitUrl, Target]:
    checked = check_git_url(url, allow_local=settings.allow_local)
    ref = check_ref(ref)
    try:
        refs = await list_refs(checked, settings, home or _scratch_home(), settings.check_timeout_s)
    except Unavailable as exc:
        raise FailedPrecondition(f"{exc}; check the URL, or try again once the server is reachable") from exc
    return checked, resolve(refs, ref, checked)


async def blob_to_file(blobs: BlobStore, tenant: str, digest: Digest, out: IO[bytes]) -> None:
    """Copy a stored archive into the open file `out`."""
    try:
        async for data in blobs.read(tenant, digest):
            await asyncio.to_thread(out.write, data)
    except NotFound:
        raise FailedPrecondition(f"the zip archive blob {digest} has not been uploaded; upload it, then create "
                                 "the task again") from None
    await asyncio.to_thread(out.flush)


def check_zip_size(digest: Digest, settings: SourceSettings) -> None:
    if digest.size > settings.max_zip_bytes:
        raise ResourceExhausted(f"the zip archive is {digest.size // MiB} MiB; the limit is "
                                f"{settings.max_zip_bytes // MiB} MiB (the operator sets it with --zip-max-mb / "
                                "CODEX_SYS_ZIP_MAX_MB)")


async def check_zip(blobs: BlobStore, tenant: str, digest: Digest, settings: SourceSettings) -> zip_archive.Plan:
    check_zip_size(digest, settings)
    if await blobs.find_missing(tenant, [digest]):
        raise FailedPrecondition(f"the zip archive blob {digest} has not been uploaded; upload it, then create "
                                 "the task again")
    with tempfile.TemporaryFile(prefix="codex-sys-zip-") as f:
        await blob_to_file(blobs, tenant, digest, f)
        return await asyncio.to_thread(_plan, f, settings)


def _plan(f: IO[bytes], settings: SourceSettings) -> zip_archive.Plan:
    f.seek(0)
    with zip_archive.open_archive(f) as archive:  # type: ignore[arg-type]
        planned = zip_archive.plan(archive, settings)
        zip_archive.read_symlink_targets(archive, planned)
        return planned


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
