"""The ignore rules on their own: precedence, folders against files, and work shared between folders."""

from __future__ import annotations

from runner.client.ignore import IgnoreRules, match_name, parse_patterns


def rules(*files: str, exclude: str = "") -> IgnoreRules:
    """Rules from ignore files at the same folder, outermost first (as if nested), plus caller patterns."""
    r = IgnoreRules.empty()
    for i, text in enumerate(files):
        r = r.with_file(parse_patterns(text.encode(), f"file{i}"))
    return r.with_exclude(parse_patterns(exclude.encode(), "exclude")) if exclude else r


def test_the_last_matching_line_decides() -> None:
    r = rules("*.log\n!keep.log\n")
    assert r.is_ignored("a.log", is_dir=False)
    assert not r.is_ignored("keep.log", is_dir=False)
    assert not rules("!keep.log\n*.log\n").is_ignored("x.txt", is_dir=False)
    assert rules("!keep.log\n*.log\n").is_ignored("keep.log", is_dir=False)


def test_deeper_files_and_caller_patterns_outrank() -> None:
    r = rules("*.log\n", "!*.log\n")  # the second file is the deeper one
    assert not r.is_ignored("a.log", is_dir=False)
    assert rules("!*.log\n", exclude="*.log").is_ignored("a.log", is_dir=False)
    low = IgnoreRules.empty().with_lowest(parse_patterns(b"*.tmp\n", "info")).with_file(
        parse_patterns(b"!x.tmp\n", "gitignore"))
    assert low.is_ignored("a.tmp", is_dir=False) and not low.is_ignored("x.tmp", is_dir=False)


def test_folder_only_patterns() -> None:
    r = rules("build/\n")
    assert r.is_ignored("build", is_dir=True)
    assert not r.is_ignored("build", is_dir=False)


def test_anchored_patterns_follow_the_path_down() -> None:
    r = rules("/src/gen/*.py\nsrc/**/tmp/\n")
    assert not r.is_ignored("x.py", is_dir=False)
    gen = r.child("src").child("gen")
    assert gen.is_ignored("x.py", is_dir=False)
    assert not r.child("lib").child("gen").is_ignored("x.py", is_dir=False)
    assert r.child("src").child("a").child("b").is_ignored("tmp", is_dir=True)
    assert r.child("other").file_match is None  # nothing can match below: no work there


def test_basename_patterns_share_one_compiled_rule_set_with_every_subfolder() -> None:
    r = rules("*.pyc\n__pycache__/\n")
    assert r.child("a").child("b") is r


def test_non_ascii_names_are_matched_by_their_bytes() -> None:
    r = rules("caf?\ncaf??x\n")
    assert not r.is_ignored("caf\u00e9", is_dir=False)  # 'é' is two bytes
    assert r.is_ignored("caf\u00e9x", is_dir=False)
    assert match_name("caf\u00e9") == "caf\xc3\xa9"


def test_origins_name_the_file_and_line() -> None:
    patterns = parse_patterns(b"# comment\n\n*.log\n!keep.log\n", "sub/.gitignore")
    assert [(p.origin, p.text, p.negated) for p in patterns] == [
        ("sub/.gitignore:3", "*.log", False), ("sub/.gitignore:4", "!keep.log", True)]
