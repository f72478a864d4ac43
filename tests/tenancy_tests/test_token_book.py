"""The token book: the file format and each of its errors, the env form, what each refusal says, reload."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import pytest

from runner.auth.principal import Role
from runner.auth.tokens import TokenBook
from runner.domain.errors import InvalidArgument, Unauthenticated

pytestmark = pytest.mark.timeout(10)

SECRET = "s3cret-token-0123456789"
OTHER = "other-token-0123456789"


def book_of(tmp_path: Path, text: str, inline: str = "") -> TokenBook:
    path = tmp_path / "tokens"
    path.write_text(text)
    return TokenBook(path, inline)


@pytest.mark.parametrize(("line", "message"), [
    (f"{SECRET}", "at least a token and a tenant"),
    ("short-token tenant-a", "16+ printable characters"),
    (f"{SECRET}\u00e9 tenant-a", "16+ printable characters"),
    ("sha256:abcd tenant-a", "64 hex digits"),
    (f"{SECRET} Tenant-A", "must be 1-63 lowercase letters"),
    (f"{SECRET} tenant-a owner", "unknown role 'owner'; roles are viewer, member"),
    (f"{SECRET} tenant-a member,admin", "unknown role 'admin'"),
    (f"{SECRET} tenant-a expires=tomorrow", "is not an ISO 8601 time"),
    (f"{SECRET} tenant-a expires=2026-12-31T00:00:00", "has no time zone"),
    (f"{SECRET} tenant-a scope=all", "unknown setting 'scope'"),
    (f"{SECRET} tenant-a viewer member", "unexpected 'member' after the roles"),
])
def test_each_bad_line_is_refused_with_its_file_and_line_and_without_the_token(tmp_path: Path, line: str,
                                                                                message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        book_of(tmp_path, f"# comment\n\n{OTHER} tenant-b\n{line}\n")
    text = str(caught.value)
    assert text.startswith(f"{tmp_path / 'tokens'}:4: ") and message in text
    assert SECRET not in text and OTHER not in text


def test_a_duplicate_token_is_refused_naming_both_lines_even_when_one_is_hashed(tmp_path: Path) -> None:
    digest = hashlib.sha256(SECRET.encode()).hexdigest()
    for second in (f"{SECRET} tenant-b", f"sha256:{digest} tenant-b", f"sha256:{digest.upper()} tenant-b"):
        with pytest.raises(InvalidArgument, match=r"tokens:3: the same token as on line 1") as caught:
            book_of(tmp_path, f"{SECRET} tenant-a\n{OTHER} tenant-a\n{second}\n")
        assert SECRET not in str(caught.value) and digest not in str(caught.value).lower()


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match=r"cannot read the token file .*/absent: No such file"):
        TokenBook(tmp_path / "absent")


def test_lines_give_tenant_roles_and_a_fingerprint_the_same_for_a_hashed_token(tmp_path: Path) -> None:
    digest = hashlib.sha256(OTHER.encode()).hexdigest()
    book = book_of(tmp_path, f"{SECRET} tenant-a\nsha256:{digest} tenant-b viewer,member expires=2999-01-01T00:00Z\n")
    a = book.identify(f"Bearer {SECRET}")
    assert (a.tenant, a.roles, a.token_id) == ("tenant-a", frozenset({Role.MEMBER}),
                                               hashlib.sha256(SECRET.encode()).hexdigest()[:8])
    b = book.identify(f"bearer   {OTHER}  ")
    assert (b.tenant, b.roles, b.token_id) == ("tenant-b", frozenset(Role), digest[:8])


def test_env_lines_are_separated_by_semicolons_or_newlines_and_may_not_repeat_the_file(tmp_path: Path) -> None:
    book = book_of(tmp_path, f"{SECRET} tenant-a\n", inline=f"{OTHER} tenant-b viewer; \nthird-token-0123456789 c")
    assert book.identify(f"Bearer {OTHER}").roles == frozenset({Role.VIEWER})
    assert book.identify("Bearer third-token-0123456789").tenant == "c"
    assert len(book) == 3
    only_env = TokenBook.from_settings(env={"CODEX_SYS_TOKENS": f"{OTHER} tenant-b"})
    assert only_env is not None and only_env.identify(f"Bearer {OTHER}").tenant == "tenant-b"
    assert TokenBook.from_settings(env={}) is None
    with pytest.raises(InvalidArgument, match="CODEX_SYS_TOKENS entry 2: the token must have 16"):
        TokenBook(None, f"{OTHER} tenant-b;short x")
    with pytest.raises(InvalidArgument, match="is both in CODEX_SYS_TOKENS and in") as caught:
        book_of(tmp_path, f"{SECRET} tenant-a\n", inline=f"{SECRET} tenant-b")
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(("header", "message"), [
    (None, "missing 'authorization: Bearer <token>'"),
    ("", "missing 'authorization: Bearer <token>'"),
    (f"Basic {SECRET}", "malformed authorization; expected 'Bearer <token>'"),
    ("Bearer", "malformed authorization"),
    (f"Bearer {SECRET} extra", "malformed authorization"),
    ("Bearer unknown-token-0123456789", "the token is not valid for this runner"),
    (f"Bearer {OTHER}", "expired at 2020-01-01T00:00:00Z"),
    ("Bearer revoked-token-0123456789", "was revoked"),
])
def test_each_refusal_says_what_is_wrong_without_the_token(tmp_path: Path, header: str | None, message: str) -> None:
    book = book_of(tmp_path, f"{SECRET} a\n{OTHER} a member expires=2020-01-01T00:00:00+00:00\n"
                             "revoked-token-0123456789 a revoked\n")
    with pytest.raises(Unauthenticated, match=message) as caught:
        book.identify(header)
    assert SECRET not in str(caught.value) and "0123456789" not in str(caught.value)


def test_an_expiry_takes_effect_at_its_time(tmp_path: Path) -> None:
    now = [1_900_000_000.0]
    path = tmp_path / "tokens"
    path.write_text(f"{SECRET} a expires=2030-03-17T17:46:40Z\n")  # 1_900_000_000
    book = TokenBook(path, clock=lambda: now[0])
    now[0] -= 1
    assert book.identify(f"Bearer {SECRET}").tenant == "a"
    now[0] += 1
    with pytest.raises(Unauthenticated, match="expired at 2030-03-17T17:46:40Z"):
        book.identify(f"Bearer {SECRET}")


def test_the_file_is_reloaded_when_it_changes_and_a_broken_one_keeps_the_last_good_book(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"{SECRET} a\n")
    book = TokenBook(path, check_interval_s=3600)
    path.write_text(f"{SECRET} a revoked\n{OTHER} b\n")
    # Within the interval the file is not looked at again...
    assert book.identify(f"Bearer {SECRET}").tenant == "a"
    book.refresh()  # ...and it is once the interval has passed.
    with pytest.raises(Unauthenticated, match="revoked"):
        book.identify(f"Bearer {SECRET}")
    assert book.identify(f"Bearer {OTHER}").tenant == "b"
    caplog.set_level(logging.INFO)
    path.write_text(f"{OTHER} b\n{SECRET} short role\n")
    book.refresh()
    assert book.identify(f"Bearer {OTHER}").tenant == "b"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == ["token file not reloaded; keeping what was loaded before"]
    assert "tokens:2: unknown role 'role'" in errors[0].__dict__["error"]
    os.unlink(path)
    book.refresh()
    assert book.identify(f"Bearer {OTHER}").tenant == "b"
    logged = " ".join(str(r.__dict__) for r in caplog.records)
    assert SECRET not in logged and OTHER not in logged
