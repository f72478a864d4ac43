"""Share links: signed, expiring tokens that open one task's page read-only, without a token.

Format (version 1): `1.<payload>.<signature>`, both parts url-safe base64 without padding. The payload is
`task_id:tenant:expires_at` (a task id and a tenant never contain ':'; expires_at is whole Unix seconds);
the signature is HMAC-SHA256 over a fixed context string and the payload, with the runner's share key.
The version comes first so a later format can be told apart and old links refused cleanly.

The key is 32 random bytes (hex in a file): `--share-key-file`, else generated once under CODEX_SYS_HOME
with mode 0600. Several API replicas behind one load balancer must be given the same key file, or a link
made by one is refused by the others. Replacing the key revokes every link made with the old one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from dataclasses import dataclass
from pathlib import Path

from runner.domain.errors import InvalidArgument, NotFound, PermanentError
from runner.tasks.ids import check_task_id
from runner.web.secret_file import SECRET_BYTES, load_secret

VERSION = "1"
DEFAULT_EXPIRY_S = 3600
MAX_EXPIRY_S = 7 * 24 * 3600
_CONTEXT = b"codex-sys task page share link v1\0"


class LinkExpired(PermanentError):
    """A share link that was genuine but is past its expiry."""

    def __init__(self, expires_at: float) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(expires_at))
        super().__init__(f"this share link expired at {stamp}")
        self.expires_at = expires_at


@dataclass(frozen=True, slots=True)
class Grant:
    """What a verified share link allows: reading one task of one tenant until `expires_at`."""

    task_id: str
    tenant: str
    expires_at: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def clamp_expiry(expires_s: int) -> int:
    """0 means the default (1 hour); more than 7 days or less than 0 is refused."""
    if expires_s == 0:
        return DEFAULT_EXPIRY_S
    if expires_s < 0 or expires_s > MAX_EXPIRY_S:
        raise InvalidArgument(f"a share link lasts from 1 s to {MAX_EXPIRY_S} s (7 days), not {expires_s} s")
    return expires_s


class ShareSigner:
    def __init__(self, key: bytes) -> None:
        if len(key) < SECRET_BYTES:
            raise InvalidArgument(f"the share key has {len(key)} bytes; it needs at least {SECRET_BYTES}")
        self._key = key

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, _CONTEXT + payload, hashlib.sha256).digest()

    def sign(self, task_id: str, tenant: str, expires_at: float) -> str:
        payload = f"{check_task_id(task_id)}:{tenant}:{int(expires_at)}".encode()
        return f"{VERSION}.{_b64(payload)}.{_b64(self._mac(payload))}"

    def verify(self, token: str, now: float | None = None) -> Grant:
        """The grant of a genuine, unexpired link. NotFound for anything not made with this key (the
        same answer as for an unknown task: a guessed or altered link learns nothing), LinkExpired for
        a genuine link past its time."""
        invalid = NotFound("this share link is not valid")
        parts = token.split(".")
        if len(token) > 512 or len(parts) != 3 or parts[0] != VERSION:
            raise invalid
        try:
            payload, mac = _unb64(parts[1]), _unb64(parts[2])
        except (binascii.Error, ValueError):
            raise invalid from None
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise invalid
        try:
            task_id, tenant, expiry = payload.decode().split(":")
            grant = Grant(check_task_id(task_id), tenant, int(expiry))
        except (UnicodeDecodeError, ValueError, InvalidArgument):
            raise invalid from None
        if grant.expires_at <= (time.time() if now is None else now):
            raise LinkExpired(grant.expires_at)
        return grant


def load_share_key(path: Path, *, create: bool) -> bytes:
    return bytes.fromhex(load_secret(path, "share key", create=create))
