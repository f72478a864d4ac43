"""Branch names from outside, checked with the rules of `git check-ref-format --branch`.

The name is validated here rather than by running git so the error can say which rule it broke, and so
a name never reaches a git command line unchecked (a leading '-' would read as an option).
"""

from __future__ import annotations

import re

from runner.domain.errors import InvalidArgument

MAX_BRANCH_CHARS = 200
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def check_branch(name: str, what: str = "branch") -> str:
    """`name` if it is a valid branch name (without `refs/heads/`), else `InvalidArgument` saying why."""

    def bad(why: str) -> InvalidArgument:
        return InvalidArgument(f"{what} {name[:80]!r} is not a valid branch name: {why}")

    if not name:
        raise InvalidArgument(f"the {what} name is empty")
    if len(name) > MAX_BRANCH_CHARS:
        raise bad(f"longer than {MAX_BRANCH_CHARS} characters")
    if name.startswith("refs/"):
        raise bad("give the branch name without refs/heads/")
    if name.startswith("-"):
        raise bad("it starts with '-'")
    if name in ("@", "HEAD"):
        raise bad(f"{name!r} is reserved")
    if match := _FORBIDDEN.search(name):
        raise bad(f"it contains {match.group()!r} (spaces, control characters and ~ ^ : ? * [ \\ are not allowed)")
    if ".." in name or "@{" in name:
        raise bad("it contains '..' or '@{'")
    if name.startswith("/") or name.endswith("/") or "//" in name:
        raise bad("a '/' at either end or two in a row")
    if name.endswith("."):
        raise bad("it ends with '.'")
    for component in name.split("/"):
        if component.startswith("."):
            raise bad(f"the part {component!r} starts with '.'")
        if component.endswith(".lock"):
            raise bad(f"the part {component!r} ends with '.lock'")
    return name
