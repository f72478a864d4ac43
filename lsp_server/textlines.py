"""Lines as git counts them: split after each "\\n", line endings kept.

`str.splitlines` also splits at "\\r", form feeds and Unicode separators, which neither git nor a diff
hunk treats as line ends; a "\\r" before "\\n" stays part of the line, so CRLF files round-trip. LSP
positions count characters in the negotiated encoding (UTF-16 unless the client chose otherwise).
"""

from __future__ import annotations

__all__ = ["split_lines", "units"]


def split_lines(text: str) -> list[str]:
    """The lines of `text`, each with its "\\n" (the last may have none); [] for ''."""
    if not text:
        return []
    lines = text.split("\n")
    last = lines.pop()
    out = [line + "\n" for line in lines]
    if last:
        out.append(last)
    return out


def units(text: str, encoding: str) -> int:
    """The length of `text` in LSP position units: "utf-8", "utf-16" (the default) or "utf-32"."""
    if encoding == "utf-32":
        return len(text)
    if encoding == "utf-8":
        return len(text.encode("utf-8", "surrogatepass"))
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2
