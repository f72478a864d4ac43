"""Git URLs from users: which forms are accepted, and how they are shown without their secrets.

Accepted (`check_git_url`): `https://`, `http://`, `git://`, `ssh://` (and `git+ssh://`, `ssh+git://`),
and scp-like `user@host:path`. `file://` URLs and local paths (`/srv/repo.git`, `../repo`) read the
runner's own disk, so they are refused unless the operator enables them (`--git-allow-local`,
`CODEX_SYS_GIT_ALLOW_LOCAL=1`). Every other transport is refused, `ext::` (which runs a command) first
of all; git itself is also told which protocols it may use (`allowed_protocols`), so a redirect or a
submodule cannot reach another.

Credentials: a URL may carry them (`https://user:token@host/repo.git`); they are used to clone and kept in
the task record, but never shown. `redact_url` is the one form every message, event, log line and API
record uses: the userinfo of an http(s) or git URL is removed entirely (a lone user name may be a token),
an ssh user name is kept (it is `git` almost always) but a password is not, and a query string is
replaced by `?<redacted>`. `scrub` removes the secrets of a URL from text written by git itself.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

from runner.domain.errors import InvalidArgument

ALLOW_LOCAL_SETTING = "--git-allow-local / CODEX_SYS_GIT_ALLOW_LOCAL=1"
MAX_URL_CHARS = 2048
MAX_REF_CHARS = 255
REDACTED = "<redacted>"

_NETWORK_SCHEMES = {"https": "https", "http": "http", "git": "git", "ssh": "ssh", "git+ssh": "ssh",
                    "ssh+git": "ssh"}
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# user@host:path or host:path (git's scp-like syntax: no slash before the colon).
_SCP = re.compile(r"^(?:(?P<user>[^@/]+)@)?(?P<host>\[[^\]/]+\]|[^@/:\[\]]+):(?P<path>.*)$")
_FULL_COMMIT = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
# Any userinfo in a URL-looking string (for text git wrote).
_USERINFO_IN_TEXT = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s'\"]+@")


@dataclass(frozen=True, slots=True)
class GitUrl:
    url: str  # as given, credentials included: for git only
    transport: str  # "https", "http", "git", "ssh", "file", or "local" (a path)
    redacted: str
    secrets: tuple[str, ...]  # the parts of `url` that must never be shown

    @property
    def is_local(self) -> bool:
        return self.transport in ("file", "local")

    def __str__(self) -> str:
        return self.redacted

    def __repr__(self) -> str:
        return f"GitUrl({self.redacted!r})"


def check_git_url(url: str, *, allow_local: bool) -> GitUrl:
    """Parse a Git URL and check it against the operator's policy; `InvalidArgument` names what is wrong
    (with the URL redacted)."""
    url = url.strip()
    if not url:
        raise InvalidArgument("the Git URL is empty")
    if len(url) > MAX_URL_CHARS:
        raise InvalidArgument(f"the Git URL is longer than {MAX_URL_CHARS} characters")
    if any(ord(c) < 0x20 or c == "\x7f" for c in url) or " " in url:
        raise InvalidArgument(f"the Git URL {redact_url(url)!r} contains spaces or control characters")
    if url.startswith("-"):
        raise InvalidArgument(f"the Git URL {redact_url(url)!r} starts with '-'")
    if "::" in url.split("/", 1)[0]:
        raise InvalidArgument(f"the Git URL {redact_url(url)!r} names a remote helper (transport::address), "
                              "which is not allowed; use an https://, git:// or ssh:// URL")
    scheme_match = _SCHEME.match(url)
    if scheme_match:
        scheme = scheme_match.group(1).lower()
        if scheme == "file":
            return _local(url, "file", allow_local)
        transport = _NETWORK_SCHEMES.get(scheme)
        if transport is None:
            raise InvalidArgument(f"the Git URL {redact_url(url)!r} uses {scheme}://, which is not allowed; "
                                  "use https://, http://, git:// or ssh://")
        parts = urllib.parse.urlsplit(url)
        try:
            host = parts.hostname
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            raise InvalidArgument(f"the Git URL {redact_url(url)!r} is malformed: {exc}") from exc
        if not host:
            raise InvalidArgument(f"the Git URL {redact_url(url)!r} names no host")
        return GitUrl(url, transport, redact_url(url), _secrets_of(parts, transport))
    scp = _SCP.match(url)
    if scp and not _looks_like_drive(url):
        password = (scp.group("user") or "").partition(":")[2]
        return GitUrl(url, "ssh", redact_url(url), (password,) if len(password) >= 3 else ())
    return _local(url, "local", allow_local)


def _looks_like_drive(url: str) -> bool:
    return len(url) >= 2 and url[1] == ":" and url[0].isalpha() and (len(url) == 2 or url[2] in "/\\")


def _local(url: str, transport: str, allow_local: bool) -> GitUrl:
    if not allow_local:
        what = "a file:// URL" if transport == "file" else "a local path"
        raise InvalidArgument(
            f"the Git URL {url[:200]!r} is {what}, which reads the runner's own disk; it is refused unless the "
            f"operator enables it ({ALLOW_LOCAL_SETTING}); use an https://, git:// or ssh:// URL")
    return GitUrl(url, transport, url, ())


def _secrets_of(parts: urllib.parse.SplitResult, transport: str) -> tuple[str, ...]:
    found = []
    if parts.password:
        found.append(parts.password)
        found.append(urllib.parse.unquote(parts.password))
    if parts.username and transport != "ssh":
        found.append(parts.username)
        found.append(urllib.parse.unquote(parts.username))
    if parts.query:
        found.append(parts.query)
    # Longest first, so a secret that contains another is removed whole.
    return tuple(sorted({s for s in found if len(s) >= 3}, key=len, reverse=True))


def redact_url(url: str) -> str:
    """The URL without its secrets (see the module docstring); any string is accepted."""
    scheme_match = _SCHEME.match(url)
    if scheme_match is None:
        scp = _SCP.match(url)
        if scp and scp.group("user") and ":" in scp.group("user"):
            return url.replace(scp.group("user"), scp.group("user").split(":", 1)[0], 1)
        return url
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return _USERINFO_IN_TEXT.sub(r"\g<scheme>", url)
    netloc = parts.netloc.rpartition("@")[2]
    scheme = scheme_match.group(1).lower()
    if _NETWORK_SCHEMES.get(scheme) == "ssh" and parts.username:
        netloc = f"{parts.username.split(':', 1)[0]}@{netloc}"
    query = REDACTED if parts.query else ""
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def scrub(text: str, url: GitUrl) -> str:
    """`text` (git's own output) with the URL's secrets removed."""
    if url.url in text:
        text = text.replace(url.url, url.redacted)
    for secret in url.secrets:
        text = text.replace(secret, REDACTED)
    return _USERINFO_IN_TEXT.sub(r"\g<scheme>", text)


def check_ref(ref: str) -> str:
    """A branch, tag or full commit id as git would accept it (empty: the default branch)."""
    ref = ref.strip()
    if not ref:
        return ""
    if len(ref) > MAX_REF_CHARS:
        raise InvalidArgument(f"the Git ref is longer than {MAX_REF_CHARS} characters")
    bad = next((c for c in ref if ord(c) < 0x21 or c in "~^:?*[\\\x7f"), None)
    if bad is not None or ref.startswith(("-", "/")) or ref.endswith(("/", ".", ".lock")) or ".." in ref \
            or "@{" in ref or "//" in ref:
        raise InvalidArgument(f"{ref[:100]!r} is not a valid branch, tag or commit name")
    return ref


def is_full_commit(ref: str) -> bool:
    return bool(_FULL_COMMIT.match(ref))


def allowed_protocols(allow_local: bool) -> str:
    """The value of GIT_ALLOW_PROTOCOL: what git itself may use, redirects and submodules included."""
    return "https:http:git:ssh" + (":file" if allow_local else "")
