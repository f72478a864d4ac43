"""Presigned links fetched the way a browser or a sandbox pod would: plain HTTP, no credentials."""

from __future__ import annotations

import asyncio
import os
import urllib.error
import urllib.parse
import urllib.request
from email.message import Message
from pathlib import Path

import pytest
from servers import MinioServer

from runner.adapters.minio import MinioBlobStore, content_disposition
from runner.domain.errors import InvalidArgument, NotFound
from runner.domain.models import Digest, FileKind, Manifest, ManifestEntry
from runner.ports import SignsLinks
from runner.snapshots import unpack

from .conftest import MAX_BLOB_SIZE, settings_of

pytestmark = pytest.mark.timeout(60)

TENANT = "tenant-a"


def fetch(url: str, *, method: str = "GET", data: bytes | None = None,
          host: str | None = None) -> tuple[int, Message, bytes]:
    request = urllib.request.Request(url, data=data, method=method)
    if host is not None:
        request.add_header("Host", host)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers, err.read()


async def fetch_async(url: str, **options: object) -> tuple[int, Message, bytes]:
    return await asyncio.to_thread(fetch, url, **options)  # type: ignore[arg-type]


def with_query(url: str, **changes: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    query.update(changes)
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


async def test_a_download_link_serves_the_blob_under_its_file_name(store: MinioBlobStore) -> None:
    assert isinstance(store, SignsLinks)
    data = os.urandom(100_000)
    digest = await store.put_bytes(TENANT, data)
    url = store.download_url(TENANT, digest, "diff.patch", expires_s=60)
    status, headers, body = await fetch_async(url)
    assert (status, body) == (200, data)
    assert headers["Content-Disposition"] == content_disposition("diff.patch")
    assert 'filename="diff.patch"' in headers["Content-Disposition"]

    url = store.download_url(TENANT, digest, "résumé \"final\".md", expires_s=60)
    status, headers, _ = await fetch_async(url)
    assert status == 200
    assert headers["Content-Disposition"] == \
        "attachment; filename=\"r_sum_ _final_.md\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22.md"


async def test_a_link_fails_once_expired_or_tampered_with(store: MinioBlobStore) -> None:
    digest = await store.put_bytes(TENANT, b"short-lived")
    url = store.download_url(TENANT, digest, "a.txt", expires_s=1)
    assert (await fetch_async(url))[0] == 200
    signature = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))["X-Amz-Signature"]
    forged = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    assert (await fetch_async(with_query(url, **{"X-Amz-Signature": forged})))[0] == 403
    assert (await fetch_async(with_query(url, **{"response-content-disposition": "attachment; filename=x.exe"})))[0] \
        == 403
    other = await store.put_bytes(TENANT, b"another blob")
    assert (await fetch_async(url.replace(digest.hash, other.hash)))[0] == 403
    await asyncio.sleep(2.2)
    status, _, body = await fetch_async(url)
    assert status == 403 and b"expired" in body.lower()


def test_link_lifetimes_are_checked(store: MinioBlobStore) -> None:
    digest = Digest.of(b"x")
    for bad in (0, -5, 7 * 24 * 3600 + 1):
        with pytest.raises(InvalidArgument, match="lifetime"):
            store.download_url(TENANT, digest, "x", expires_s=bad)
    store.download_url(TENANT, digest, "x", expires_s=7 * 24 * 3600)


async def test_links_are_signed_for_the_public_endpoint(minio_server: MinioServer, tmp_path: Path) -> None:
    public = f"localhost:{minio_server.port}"  # another name of the same server, as an ingress would be
    settings = settings_of(minio_server, public_endpoint=f"http://{public}")
    async with await MinioBlobStore.open(settings, max_blob_size=MAX_BLOB_SIZE) as store:
        digest = await store.put_bytes(TENANT, b"through the public name")
        url = store.download_url(TENANT, digest, "a.txt", expires_s=60)
        assert urllib.parse.urlsplit(url).netloc == public
        assert (await fetch_async(url))[:3:2] == (200, b"through the public name")
        # The signature covers the host: the same link presented under the internal name is refused,
        # which is why links must be signed for the name the client will use.
        assert (await fetch_async(url, host=minio_server.endpoint))[0] == 403

    elsewhere = settings_of(minio_server, public_endpoint="https://files.example.com")
    async with await MinioBlobStore.open(elsewhere, max_blob_size=MAX_BLOB_SIZE, create_bucket=False) as store:
        url = store.download_url(TENANT, Digest.of(b"x"), "a.txt", expires_s=60)  # no request made
        parts = urllib.parse.urlsplit(url)
        assert (parts.scheme, parts.netloc) == ("https", "files.example.com")
        assert parts.path.startswith(f"/{elsewhere.bucket}/cas/tenant-a/")


async def test_an_upload_link_stages_a_sandbox_output(store: MinioBlobStore) -> None:
    url = store.upload_url("task-1/attempt-1/outputs.tar", expires_s=60)
    data = os.urandom(300_000)
    assert (await fetch_async(url, method="PUT", data=data))[0] == 200
    got = b"".join([chunk async for chunk in store.read_staged("task-1/attempt-1/outputs.tar", 64 * 1024)])
    assert got == data
    await store.delete_staged("task-1/attempt-1/outputs.tar")
    with pytest.raises(NotFound):
        await anext(store.read_staged("task-1/attempt-1/outputs.tar"))
    with pytest.raises(InvalidArgument):
        store.upload_url("../cas/tenant-a/aa/evil", expires_s=60)


async def test_a_pack_link_gives_a_pod_its_snapshot_in_one_request(store: MinioBlobStore, tmp_path: Path) -> None:
    entries = (
        ManifestEntry("README.md", FileKind.FILE, await store.put_bytes(TENANT, b"# hello\n")),
        ManifestEntry("bin/run", FileKind.EXECUTABLE, await store.put_bytes(TENANT, b"#!/bin/sh\n")),
        ManifestEntry("docs/link", FileKind.SYMLINK, await store.put_bytes(TENANT, b"../README.md")),
    )
    manifest = Manifest(entries)
    pack = await store.packs.ensure(TENANT, manifest)
    url = store.pack_url(TENANT, pack, expires_s=60)
    status, _, body = await fetch_async(url)
    assert status == 200 and Digest.of(body) == pack.digest
    root = tmp_path / "ws"
    root.mkdir()
    # What an init container does: stream the pack through the unpacker, checked against the manifest.
    with urllib.request.urlopen(url, timeout=10) as response:
        done = await asyncio.to_thread(unpack, response, manifest, root, expected=pack.digest)
    assert (done.files, done.symlinks) == (2, 1)
    assert (root / "docs/link").read_bytes() == b"# hello\n"
