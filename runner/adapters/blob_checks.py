"""The checks a blob store makes before it stores anything, and the errors they raise.

Both stores (the embedded `FsBlobStore` and `MinioBlobStore`) refuse a blob over their size limit up
front, and store one only once its bytes are known to match its digest: no more bytes than the digest
says, exactly that many at the end, and the SHA-256 it names. The checks and their words live here so
that a client gets the same error from either runner.
"""

from __future__ import annotations

import hashlib

from runner.domain.errors import InvalidArgument, ResourceExhausted
from runner.domain.models import Digest


def check_blob_size(size: int, digest: Digest | None, max_blob_size: int) -> None:
    """`ResourceExhausted` when a blob (or, without a digest, data to be stored) is over the limit."""
    if size > max_blob_size:
        what = f"blob {digest}" if digest else "data"
        raise ResourceExhausted(f"{what} is {size} bytes, over the limit of {max_blob_size} bytes per blob")


def verify(digest: Digest, data: bytes) -> None:
    """Raise `mismatch` unless in-memory bytes are exactly those the digest names."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != digest.hash or len(data) != digest.size:
        raise mismatch(digest, actual)


def mismatch(digest: Digest, actual: str) -> InvalidArgument:
    return InvalidArgument(f"blob {digest}: the uploaded bytes hash to sha256:{actual}, not to the digest; "
                           "nothing was stored")


def too_many_bytes(digest: Digest) -> InvalidArgument:
    return InvalidArgument(f"blob {digest}: more than {digest.size} bytes were sent; nothing was stored")


def wrong_size(digest: Digest, received: int) -> InvalidArgument:
    return InvalidArgument(f"blob {digest}: {received} bytes were sent, the digest says {digest.size}; "
                           "nothing was stored")
