"""Where the MinIO (or any S3-compatible) store is, how to reach it, and how long derived data lives.

`S3Settings` is what a deployment configures (the CLI builds it from flags and the environment);
everything is checked when the object is made, and a bad value raises `InvalidArgument` naming the
setting, so a typo is reported at start-up rather than on the first upload.

Two endpoints. `endpoint` is where the runner and workers talk to MinIO (often a cluster-internal
name such as `minio.codex.svc:9000`). `public_endpoint` is the host that links handed to someone else
are signed for: a browser following a share link, or a sandbox pod fetching its snapshot. A presigned
URL's signature covers the `Host` header, so a link signed for the internal name does not work when
fetched through an ingress under another name; links are therefore always signed for the public
endpoint (the internal one when none is set). It may be a bare `host:port` (same TLS setting as
`endpoint`) or a URL `https://files.example.com`.

`Lifecycle` says how long objects the runner can rebuild or no longer needs are kept; `ensure_bucket`
installs these as the bucket's lifecycle rules (see `lifecycle` and docs/minio.md for the layout):

* packs (`packs/`): a snapshot packed into one object, rebuilt on demand: 7 days;
* staging (`staging/`): what sandboxes upload through presigned PUT links before the worker stores it
  in the CAS: 2 days;
* quarantine (`quarantine/`): blobs whose bytes were found damaged, kept for inspection: 14 days;
* blobs (`cas/`): snapshot files and task artifacts. Kept forever by default (`blobs_days=None`); set a
  number of days to bound the storage, at the price of artifacts of older tasks expiring too.

An object the rules may expire soon is treated as absent: `find_missing` reports a blob older than
`blobs_days - margin_days` (so the client uploads it again, which renews it), and a pack older than
`packs_days - margin_days` is rebuilt. S3 expires an object no earlier than its age in days rounded up
to the next midnight UTC, so whatever is reported present stays for at least `margin_days` (1 day by
default): longer than a task waits in the queue and runs.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from runner.domain.errors import InvalidArgument

# S3 bucket naming rules (the subset every S3-compatible server accepts).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_REGION = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$")


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """Expiry of the objects the runner derives or stages, in days. See the module docstring."""

    packs_days: int = 7
    staging_days: int = 2
    quarantine_days: int = 14
    blobs_days: int | None = None
    # An object within this many days of its expiry counts as absent (re-uploaded, rebuilt).
    margin_days: float = 1.0

    def __post_init__(self) -> None:
        for name in ("packs_days", "staging_days", "quarantine_days", "blobs_days"):
            value = getattr(self, name)
            if value is None and name == "blobs_days":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidArgument(f"S3 lifecycle setting {name}: {value!r} is not a whole number of days >= 1")
        if not self.margin_days > 0:
            raise InvalidArgument(f"S3 lifecycle setting margin_days: {self.margin_days!r} must be positive")
        for name in ("packs_days", "blobs_days"):
            days = getattr(self, name)
            if days is not None and days <= self.margin_days:
                raise InvalidArgument(
                    f"S3 lifecycle setting {name}: {days} days leaves nothing once the {self.margin_days:g}-day "
                    "margin_days is taken off (objects that close to expiry count as absent); use more days "
                    "or a smaller margin")

    def fresh_for_s(self, days: int | None) -> float | None:
        """How old (in seconds) an object whose rule expires it after `days` may be and still count as
        present; None when it never expires."""
        if days is None:
            return None
        return (days - self.margin_days) * 86400.0


@dataclass(frozen=True, slots=True)
class S3Settings:
    """How to reach the bucket. See the module docstring; `describe()` is safe to log."""

    endpoint: str  # host:port the runner and workers connect to
    access_key: str
    secret_key: str = field(repr=False)
    bucket: str = "codex-sys"
    secure: bool = False  # TLS to `endpoint`
    region: str = "us-east-1"
    public_endpoint: str | None = None  # host:port or URL links are signed for; None: `endpoint`
    ca_file: Path | None = None  # CA bundle for TLS with a private CA; None: the system's (certifi)
    lifecycle: Lifecycle = field(default_factory=Lifecycle)

    def __post_init__(self) -> None:
        _check_host_port(self.endpoint, "endpoint")
        if not self.access_key:
            raise InvalidArgument("S3 setting access_key is empty")
        if not self.secret_key:
            raise InvalidArgument("S3 setting secret_key is empty")
        if not _BUCKET.match(self.bucket) or ".." in self.bucket or _is_ip(self.bucket):
            raise InvalidArgument(
                f"S3 setting bucket: {self.bucket!r} is not a valid bucket name (3-63 lowercase letters, digits, "
                "'.' and '-', starting and ending with a letter or digit)")
        if not _REGION.match(self.region):
            raise InvalidArgument(f"S3 setting region: {self.region!r} is not a region name such as 'us-east-1'")
        if self.public_endpoint is not None:
            self.public_host_and_tls()  # validates
        if self.ca_file is not None and not isinstance(self.ca_file, Path):
            raise InvalidArgument(f"S3 setting ca_file: {self.ca_file!r} is not a path")

    def public_host_and_tls(self) -> tuple[str, bool]:
        """The `host:port` links are signed for, and whether they use https."""
        raw = self.public_endpoint
        if raw is None:
            return self.endpoint, self.secure
        if "://" not in raw:
            _check_host_port(raw, "public_endpoint")
            return raw, self.secure
        parts = urlsplit(raw)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") \
                or parts.query or parts.fragment or parts.username or parts.password:
            raise InvalidArgument(
                f"S3 setting public_endpoint: {raw!r} is not an endpoint like https://files.example.com or "
                "host:9000 (no path: S3 signatures cover the bucket's path from the root)")
        _check_host_port(parts.netloc, "public_endpoint")
        return parts.netloc, parts.scheme == "https"

    def describe(self) -> str:
        """One line for logs and error messages: no secret."""
        scheme = "https" if self.secure else "http"
        return f"{scheme}://{self.endpoint}/{self.bucket}"


def _check_host_port(value: str, name: str) -> None:
    if not isinstance(value, str) or not _HOST_PORT.match(value):
        raise InvalidArgument(f"S3 setting {name}: {value!r} is not host:port (for example minio:9000)")
    try:
        urlsplit(f"//{value}").port  # noqa: B018 -- raises on a port out of range
    except ValueError:
        raise InvalidArgument(f"S3 setting {name}: the port of {value!r} is out of range") from None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
