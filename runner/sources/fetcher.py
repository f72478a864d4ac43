"""The worker's side of Git and zip sources: fetch, ingest, clean up.

For a task whose manifest is not known yet, `SourceFetcher.fetch` works in a private folder of its own
under the worker's home (`<home>/sources/<task>-<attempt>`, mode 0700, removed afterwards whatever
happens): a Git source is resolved again (`git ls-remote`) and cloned at depth 1 (`git_fetch`); a zip
archive is copied from the BlobStore, checked (`zip_archive.plan`) and unpacked (`zip_archive.extract`)
into a fresh repository (`git init`, so that no repository around the worker's home lends its ignore
rules). The tree is then ingested (`ingest`) as a snapshot, and the worker records its manifest and,
for Git, the commit.

Errors keep their class: the worker retries a `TemporaryError` (a Git server that cannot be reached or
timed out) and ends the task FAILED with the message for anything else (no such ref, a hostile archive,
a limit).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from runner.domain import models as m
from runner.domain.errors import InvalidArgument, TemporaryError
from runner.ports import BlobStore
from runner.sources import zip_archive
from runner.sources.checks import blob_to_file, check_zip_size, remove_tree
from runner.sources.git_command import HardenedGit
from runner.sources.git_fetch import clone, list_refs, resolve
from runner.sources.ingest import IngestLimits, ingest, summary
from runner.sources.settings import SourceSettings
from runner.sources.urls import check_git_url, check_ref

log = logging.getLogger(__name__)

INIT_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Fetched:
    manifest: m.Manifest
    base_commit: str  # Git: the commit checked out
    note: str  # one line for the task's events


class SourceFetcher:
    def __init__(self, settings: SourceSettings, workdir: Path, limits: IngestLimits) -> None:
        self.settings = settings
        self._workdir = workdir
        self._limits = limits

    async def fetch(self, record: m.TaskRecord, attempt: int, blobs: BlobStore) -> Fetched:
        folder = self._workdir / f"{record.id}-{attempt}"
        await asyncio.to_thread(_fresh_folder, folder)
        try:
            if record.source.kind is m.SourceKind.GIT:
                return await self._git(record, folder, blobs)
            if record.source.kind is m.SourceKind.ZIP:
                return await self._zip(record, folder, blobs)
            raise InvalidArgument(f"task {record.id} has no manifest and no Git or zip source")
        finally:
            await asyncio.to_thread(remove_tree, folder)

    async def _git(self, record: m.TaskRecord, folder: Path, blobs: BlobStore) -> Fetched:
        settings = self.settings
        url = check_git_url(record.source.git_url, allow_local=settings.allow_local)
        home = folder / "home"
        refs = await list_refs(url, settings, home, settings.check_timeout_s)
        target = resolve(refs, check_ref(record.source.git_ref), url)
        cloned = await clone(url, target, folder / "tree", settings, home)
        snapshot = await ingest(folder / "tree", blobs, record.tenant, self._limits)
        note = f"cloned {url} at {cloned.label} ({cloned.commit[:12]}): {summary(snapshot)}"
        return Fetched(snapshot.manifest, cloned.commit, note)

    async def _zip(self, record: m.TaskRecord, folder: Path, blobs: BlobStore) -> Fetched:
        digest = record.source.zip_digest
        if digest is None:
            raise InvalidArgument(f"task {record.id} is a zip task without an archive digest")
        check_zip_size(digest, self.settings)
        archive_path = folder / "archive.zip"
        with await asyncio.to_thread(open, archive_path, "xb") as out:
            await blob_to_file(blobs, record.tenant, digest, out)
        tree = folder / "tree"
        planned, written = await asyncio.to_thread(self._unpack, archive_path, tree)
        # A repository of its own: the snapshot looks no further up for ignore rules.
        init = await HardenedGit(folder / "home", allow_local=False).run(
            ["init", "-q", "--", str(tree)], timeout_s=INIT_TIMEOUT_S)
        if init.returncode != 0:
            raise TemporaryError(f"git init of the unpacked archive failed: {init.err.strip()[:300]}", delay_s=10.0)
        snapshot = await ingest(tree, blobs, record.tenant, self._limits)
        top = f" (top folder {planned.stripped}/ stripped)" if planned.stripped else ""
        left_out = f"; left out {len(planned.left_out)} .git entries" if planned.left_out else ""
        note = f"unpacked the zip archive {digest.hash[:12]}{top}: {summary(snapshot)}{left_out}"
        log.info("zip archive unpacked", extra={"task_id": record.id, "entries": len(planned.entries),
                                                "bytes": written})
        return Fetched(snapshot.manifest, "", note)

    def _unpack(self, archive_path: Path, tree: Path) -> tuple[zip_archive.Plan, int]:
        tree.mkdir(mode=0o700)
        with zip_archive.open_archive(archive_path) as archive:
            planned = zip_archive.plan(archive, self.settings)
            return planned, zip_archive.extract(archive, planned, tree, self.settings)


def _fresh_folder(folder: Path) -> None:
    remove_tree(folder)
    folder.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder.mkdir(mode=0o700)
