"""The object layout of the bucket: which key each kind of object lives under.

    cas/<tenant>/<first two hex digits>/<sha256 hex>   a blob: its bytes, never anything else
    packs/<tenant>/<pack key>.tar                       a snapshot packed into one object (`runner.snapshots`)
    staging/<key>                                       uploads through presigned PUT links (sandbox outputs)
    quarantine/<tenant>/<sha256 hex>.<unix time>        blobs found damaged on read, set aside

The top-level prefixes are what the lifecycle rules select (see `lifecycle`). Blobs are keyed by their
SHA-256 alone, as in the embedded store: the size is checked against the object's own size. The two hex
digits of fan-out keep listings of one prefix short and let `presence` list only the prefixes a query
touches.

A tenant name becomes one path segment, whatever it contains: bytes other than lowercase letters,
digits, `-` and `_` are written as `~` and two hex digits (so `.`, `..`, `/` and upper case never reach
the key, and two different tenants never share a segment). A name whose encoding would pass 200 bytes is
replaced by `~h` and its SHA-256, still unique and short enough for any S3 server's key limits.
"""

from __future__ import annotations

import hashlib
import string

from runner.domain.errors import InvalidArgument
from runner.domain.models import Digest
from runner.domain.paths import check_relative_path

BLOBS = "cas/"
PACKS = "packs/"
STAGING = "staging/"
QUARANTINE = "quarantine/"

_SAFE = frozenset((string.ascii_lowercase + string.digits + "-_").encode())
_MAX_SEGMENT = 200


def tenant_segment(tenant: str) -> str:
    """The key segment of a tenant (see the module docstring). Raises `InvalidArgument` if empty."""
    if not tenant:
        raise InvalidArgument("tenant name is empty")
    raw = tenant.encode("utf-8", "surrogatepass")
    encoded = "".join(chr(b) if b in _SAFE else f"~{b:02x}" for b in raw)
    if len(encoded) > _MAX_SEGMENT:
        return "~h" + hashlib.sha256(raw).hexdigest()
    return encoded


def blob_prefix(tenant: str) -> str:
    return f"{BLOBS}{tenant_segment(tenant)}/"


def blob_key(tenant: str, digest: Digest) -> str:
    return f"{blob_prefix(tenant)}{digest.hash[:2]}/{digest.hash}"


def fanout_prefix(tenant: str, first_two: str) -> str:
    return f"{blob_prefix(tenant)}{first_two}/"


def pack_object(tenant: str, pack_key: str) -> str:
    if len(pack_key) != 64 or not all(c in string.hexdigits for c in pack_key):
        raise InvalidArgument(f"pack key {pack_key[:80]!r} is not 64 hex digits")
    return f"{PACKS}{tenant_segment(tenant)}/{pack_key}.tar"


def staging_key(key: str) -> str:
    """`staging/<key>` for a caller's relative key (checked like a workspace path: no `..`, no `/` at
    either end)."""
    check_relative_path(key, "staging key")
    return f"{STAGING}{key}"


def quarantine_key(tenant: str, digest: Digest, unix_time: int) -> str:
    return f"{QUARANTINE}{tenant_segment(tenant)}/{digest.hash}.{unix_time}"


def just_before(key: str) -> str:
    """A string that sorts right before `key` and after every shorter-or-equal key of the same length
    that sorts before it: the `start-after` that makes a listing begin at `key` itself."""
    return key[:-1] + chr(ord(key[-1]) - 1)
