"""Bearer tokens: the token book that maps a presented token to a `Principal` (tenant, roles, token id).

Where tokens come from (either, or both):
- a token file (`--token-file` / `CODEX_SYS_TOKEN_FILE`), re-read when it changes, so tokens are added,
  revoked and rotated without a restart;
- `CODEX_SYS_TOKENS`: lines of the same format separated by newlines or `;` (fixed for the process' life).

One token per line, `#` starts a comment line:

    TOKEN TENANT [ROLE[,ROLE]] [expires=2026-12-31T00:00:00Z] [revoked]

TOKEN is the secret itself (16+ printable characters, no spaces) or `sha256:<64 hex>`, the SHA-256 of the
secret, so the file need not hold it. TENANT is lowercase letters, digits, `-` and `_`. ROLE is `viewer`
or `member` (the default: the old `TOKEN TENANT` form still means a member). `expires=` takes an ISO 8601
time with a zone; `revoked` keeps the line (so the caller is told why) but refuses the token.

Only SHA-256 digests of tokens are kept in memory. A presented token is hashed and looked up by its
digest: what a timing difference could reveal is a digest prefix, which says nothing usable about any
token (the same reasoning as storing and looking up API keys by hash); `hmac.compare_digest` then
confirms the match. A token's `token_id` is the first 8 hex digits of its digest: safe to log, and the
same whether the file holds the secret or its digest. Errors name the file and line, never the token.

Reloading (`runner.auth.watched_file`): `identify` stats the file at most once per `check_interval_s`
(one `stat`, microseconds) and re-reads it only when its size, mtime or inode changed. A file that no
longer parses, or disappeared, leaves the previous book in force and logs an error (line number and
reason, no token).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from runner.auth.principal import Principal, Role
from runner.auth.watched_file import WatchedFile, read_text
from runner.domain.errors import InvalidArgument, Unauthenticated

log = logging.getLogger(__name__)

TOKEN_FILE_ENV = "CODEX_SYS_TOKEN_FILE"
TOKENS_ENV = "CODEX_SYS_TOKENS"
TENANT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
MIN_TOKEN_CHARS = 16
_TOKEN = re.compile(r"^[\x21-\x7e]+$")
_HASHED = re.compile(r"^sha256:([0-9a-f]{64})$")
_FORMAT = "TOKEN TENANT [ROLE[,ROLE]] [expires=TIME] [revoked]"


def fingerprint(digest: bytes) -> str:
    return digest.hex()[:8]


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True, slots=True)
class TokenEntry:
    digest: bytes  # SHA-256 of the token
    tenant: str
    roles: frozenset[Role]
    expires_at: datetime | None = None
    revoked: bool = False

    @property
    def token_id(self) -> str:
        return fingerprint(self.digest)

    def principal(self) -> Principal:
        return Principal(self.tenant, self.roles, self.token_id)


def _parse_line(fields: list[str], where: str) -> TokenEntry:
    def bad(reason: str) -> InvalidArgument:
        return InvalidArgument(f"{where}: {reason} (expected '{_FORMAT}')")

    if len(fields) < 2:
        raise bad("a token line needs at least a token and a tenant")
    token, tenant, *rest = fields
    hashed = _HASHED.match(token.lower()) if token.lower().startswith("sha256:") else None
    if token.lower().startswith("sha256:") and hashed is None:
        raise bad("a hashed token is 'sha256:' and 64 hex digits")
    if hashed is None and (len(token) < MIN_TOKEN_CHARS or not _TOKEN.match(token)):
        raise bad(f"the token must have {MIN_TOKEN_CHARS}+ printable characters without spaces")
    if not TENANT_PATTERN.match(tenant):
        raise bad(f"tenant {tenant[:64]!r} must be 1-63 lowercase letters, digits, '-' or '_'")
    roles: frozenset[Role] | None = None
    expires_at: datetime | None = None
    revoked = False
    for field in rest:
        if field == "revoked":
            revoked = True
        elif field.startswith("expires="):
            expires_at = _parse_time(field.removeprefix("expires="), bad)
        elif "=" in field:
            raise bad(f"unknown setting {field.split('=', 1)[0][:32]!r}; the only one is expires=")
        elif roles is None:
            roles = _parse_roles(field, bad)
        else:
            raise bad(f"unexpected {field[:32]!r} after the roles")
    digest = bytes.fromhex(hashed.group(1)) if hashed else token_digest(token)
    return TokenEntry(digest, tenant, roles or frozenset({Role.MEMBER}), expires_at, revoked)


def _parse_roles(field: str, bad: Callable[[str], InvalidArgument]) -> frozenset[Role]:
    roles = set()
    for name in field.split(","):
        try:
            roles.add(Role(name))
        except ValueError:
            known = ", ".join(r.value for r in Role)
            raise bad(f"unknown role {name[:32]!r}; roles are {known}") from None
    return frozenset(roles)


def _parse_time(text: str, bad: Callable[[str], InvalidArgument]) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise bad(f"expires={text[:40]!r} is not an ISO 8601 time like 2026-12-31T00:00:00Z") from None
    if when.tzinfo is None:
        raise bad(f"expires={text[:40]!r} has no time zone; add Z for UTC")
    return when.astimezone(UTC)


def parse_tokens(lines: list[str], origin: str, line_label: str = "") -> dict[bytes, TokenEntry]:
    """Entries by token digest. `origin` names the source in errors (a path, or the variable's name);
    `line_label` ("line" or "entry") how a position is named after it."""
    entries: dict[bytes, TokenEntry] = {}
    first_seen: dict[bytes, int] = {}
    for n, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{origin}:{n}" if not line_label else f"{origin} {line_label} {n}"
        entry = _parse_line(line.split(), where)
        if entry.digest in first_seen:
            raise InvalidArgument(f"{where}: the same token as on {line_label or 'line'} {first_seen[entry.digest]}; "
                                  "each token may appear once")
        first_seen[entry.digest] = n
        entries[entry.digest] = entry
    return entries


def read_token_file(path: Path) -> dict[bytes, TokenEntry]:
    return parse_tokens(read_text(path, "token file").splitlines(), str(path))


class TokenBook:
    """Bearer token → `Principal`, from a file (reloaded when it changes) and/or fixed lines.

    Thread-safe and without awaits: usable from a gRPC interceptor, an HTTP handler or a test.
    """

    def __init__(self, path: Path | None = None, inline: str = "", check_interval_s: float = 1.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._inline = parse_tokens(re.split(r"[;\n]", inline), TOKENS_ENV, "entry") if inline.strip() else {}
        self._clock = clock
        self._file = (WatchedFile(path, self._read_file, "token file", check_interval_s)
                      if path is not None else None)

    @classmethod
    def from_settings(cls, path: Path | None = None, env: Mapping[str, str] | None = None,
                      check_interval_s: float = 1.0) -> TokenBook | None:
        """The book for `--token-file PATH` (or `CODEX_SYS_TOKEN_FILE`) plus `CODEX_SYS_TOKENS`; None
        when neither is set."""
        env = os.environ if env is None else env
        if path is None and env.get(TOKEN_FILE_ENV):
            path = Path(env[TOKEN_FILE_ENV])
        inline = env.get(TOKENS_ENV, "")
        if path is None and not inline.strip():
            return None
        return cls(path, inline, check_interval_s)

    def _read_file(self, path: Path) -> dict[bytes, TokenEntry]:
        entries = read_token_file(path)
        for digest in entries.keys() & self._inline.keys():
            raise InvalidArgument(f"token {fingerprint(digest)} is both in {TOKENS_ENV} and in {path}; "
                                  "keep it in one place")
        return {**entries, **self._inline}

    def _entries(self, force: bool = False) -> dict[bytes, TokenEntry]:
        return self._file.current(force) if self._file is not None else self._inline

    def __len__(self) -> int:
        return len(self._entries())

    def refresh(self) -> None:
        """Re-read the file now if it changed (a request re-checks it at most once per interval)."""
        self._entries(force=True)

    def identify(self, authorization: str | None) -> Principal:
        """The caller named by an `Authorization` header (or gRPC metadata) value: `Bearer <token>`.

        Raises `Unauthenticated` with a message that says what is wrong and never contains the token.
        """
        if authorization is None or not authorization.strip():
            raise Unauthenticated("missing 'authorization: Bearer <token>'; this runner needs a token "
                                  "(codex-sys --token or CODEX_SYS_TOKEN)")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or " " in token:
            raise Unauthenticated("malformed authorization; expected 'Bearer <token>'")
        return self.principal(token)

    def principal(self, token: str) -> Principal:
        digest = token_digest(token)
        entry = self._entries().get(digest)
        if entry is None or not hmac.compare_digest(entry.digest, digest):
            raise Unauthenticated("the token is not valid for this runner")
        if entry.revoked:
            raise Unauthenticated(f"this token (id {entry.token_id}) was revoked; ask for a new one")
        if entry.expires_at is not None and self._clock() >= entry.expires_at.timestamp():
            stamp = entry.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
            raise Unauthenticated(f"this token (id {entry.token_id}) expired at {stamp}; ask for a new one")
        return entry.principal()
