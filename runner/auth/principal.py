"""A caller, as the runner knows it after authentication: a tenant and the roles its token grants.

Roles are coarse on purpose. A `viewer` reads (tasks, events, artifacts, pages, share links); a `member`
also submits (uploads, tasks), cancels and opens pull requests. Every gRPC method and HTTP route names
the `Action` it needs, and `require` is the one place that decides.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from runner.domain.errors import PermissionDenied


class Role(enum.Enum):
    VIEWER = "viewer"
    MEMBER = "member"


class Action(enum.Enum):
    READ = "read"
    SUBMIT = "submit"
    CANCEL = "cancel"
    PULL_REQUEST = "pull request"


GRANTS: dict[Role, frozenset[Action]] = {
    Role.VIEWER: frozenset({Action.READ}),
    Role.MEMBER: frozenset(Action),
}


@dataclass(frozen=True, slots=True)
class Principal:
    tenant: str
    roles: frozenset[Role]
    # A short fingerprint of the token (never the token): safe to log, names the token in errors.
    token_id: str = ""

    def may(self, action: Action) -> bool:
        return any(action in GRANTS[role] for role in self.roles)


def require(principal: Principal, action: Action) -> None:
    if not principal.may(action):
        roles = ", ".join(sorted(r.value for r in principal.roles)) or "none"
        raise PermissionDenied(f"this token (roles: {roles}) may not {action.value}; a member token is needed")


LOCAL_TENANT = "local"
# Whoever reaches the embedded runner's 0600 unix socket is its owner: the local tenant, a member.
LOCAL_PRINCIPAL = Principal(LOCAL_TENANT, frozenset({Role.MEMBER}), "local")
