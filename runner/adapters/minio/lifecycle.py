"""The bucket and its lifecycle rules, made idempotently when a store opens.

`ensure_bucket` creates the bucket if it is missing (a concurrent creation by another runner is fine)
and makes sure the bucket's lifecycle configuration holds the runner's rules, one per prefix of the
layout (`keys`), each expiring objects a number of days after they were written (`settings.Lifecycle`):

    codex-sys-packs        packs/        Lifecycle.packs_days       (7)
    codex-sys-staging      staging/      Lifecycle.staging_days     (2)
    codex-sys-quarantine   quarantine/   Lifecycle.quarantine_days  (14)
    codex-sys-blobs        cas/          Lifecycle.blobs_days       (only when set)

S3 has one lifecycle configuration per bucket, so rules are merged, not replaced: rules of other owners
(any ID not starting with `codex-sys-`) are kept as they are, the runner's own are replaced by the
wanted set, and the configuration is written only when it differs, so starting many runners does not
rewrite it each time. Keys that may use objects but not manage the bucket's lifecycle are accepted
with a warning: the store works, and derived data expires once an administrator installs the rules.
Interrupted multipart uploads need no rule: MinIO removes them itself after a day
(its `stale_uploads_expiry`), and it refuses `AbortIncompleteMultipartUpload` rules anyway.
"""

from __future__ import annotations

import logging

from minio import Minio
from minio.commonconfig import ENABLED, Filter
from minio.error import S3Error
from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule

from runner.adapters.minio import keys
from runner.adapters.minio.settings import Lifecycle

log = logging.getLogger(__name__)

RULE_ID_PREFIX = "codex-sys-"

# (rule id, prefix, days): the comparable form of one rule.
RuleSpec = tuple[str, str, int]


def wanted_rules(lifecycle: Lifecycle) -> list[RuleSpec]:
    specs = [
        (f"{RULE_ID_PREFIX}packs", keys.PACKS, lifecycle.packs_days),
        (f"{RULE_ID_PREFIX}staging", keys.STAGING, lifecycle.staging_days),
        (f"{RULE_ID_PREFIX}quarantine", keys.QUARANTINE, lifecycle.quarantine_days),
    ]
    if lifecycle.blobs_days is not None:
        specs.append((f"{RULE_ID_PREFIX}blobs", keys.BLOBS, lifecycle.blobs_days))
    return specs


def rule_specs(config: LifecycleConfig | None) -> list[RuleSpec]:
    """The runner's rules found in `config` (enabled expirations by prefix), in order."""
    found = []
    for rule in config.rules if config else []:
        if not (rule.rule_id or "").startswith(RULE_ID_PREFIX) or rule.status != ENABLED:
            continue
        prefix = rule.rule_filter.prefix if rule.rule_filter else None
        days = rule.expiration.days if rule.expiration else None
        if prefix is not None and days is not None:
            found.append((str(rule.rule_id), prefix, int(days)))
    return found


def merged(current: LifecycleConfig | None, wanted: list[RuleSpec]) -> LifecycleConfig:
    others = [r for r in (current.rules if current else []) if not (r.rule_id or "").startswith(RULE_ID_PREFIX)]
    ours = [Rule(ENABLED, rule_filter=Filter(prefix=prefix), rule_id=rule_id, expiration=Expiration(days=days))
            for rule_id, prefix, days in wanted]
    return LifecycleConfig([*others, *ours])


def _ours_exactly(current: LifecycleConfig | None, wanted: list[RuleSpec]) -> bool:
    ours = [r for r in (current.rules if current else []) if (r.rule_id or "").startswith(RULE_ID_PREFIX)]
    return len(ours) == len(wanted) and sorted(rule_specs(current)) == sorted(wanted)


def ensure_bucket(client: Minio, bucket: str, lifecycle: Lifecycle) -> bool:
    """Blocking. Create `bucket` if needed and install the lifecycle rules; True when anything changed."""
    changed = False
    if not client.bucket_exists(bucket):
        try:
            client.make_bucket(bucket)
            changed = True
            log.info("created bucket", extra={"bucket": bucket})
        except S3Error as exc:
            if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
    wanted = wanted_rules(lifecycle)
    try:
        current = client.get_bucket_lifecycle(bucket)
        if not _ours_exactly(current, wanted):
            client.set_bucket_lifecycle(bucket, merged(current, wanted))
            changed = True
            log.info("set the bucket's lifecycle rules", extra={"bucket": bucket, "rules": wanted})
    except S3Error as exc:
        if exc.code not in ("AccessDenied", "NotImplemented"):
            raise
        # Keys that may read and write objects but not manage the bucket (a worker's, say) still work;
        # only the expiry of derived data depends on someone installing the rules.
        log.warning("could not check or install the bucket's lifecycle rules; packs, staged uploads and "
                    "set-aside blobs expire only if an administrator installs them (see docs/minio.md)",
                    extra={"bucket": bucket, "code": exc.code, "rules": wanted})
    return changed
