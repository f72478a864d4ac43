"""The HTML of the task pages: plain server-rendered markup, every value through `html.escape`.

Pages are strings built from small functions (no template engine: the page is small, and a string join
keeps a 5,000-line diff page in milliseconds, see bench/bench_task_page.py). The one stylesheet and the
one script are static files served by the app, so the Content-Security-Policy allows no inline code.
A timeline entry is rendered by `event_html` both into the page and into the live event stream, so the
page and what the script appends look the same.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html import escape
from urllib.parse import quote, urlsplit, urlunsplit

from agent.fileops import human_size
from runner.domain import models as m
from runner.web.diffview import FileDiff

OUTPUT_CHARS = 4000  # of a tool call's output in the timeline (the event itself is already truncated)
_ICON = {"state": "●", "log": "│", "tool": "▶", "tool-ok": "✓", "tool-failed": "✗", "message": "✎",
         "usage": "Σ", "result": "■"}


def _e(text: str) -> str:
    return escape(text, quote=True)


def when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts)) if ts else "—"


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def badge(state: m.TaskState, element_id: str = "") -> str:
    ident = f' id="{element_id}"' if element_id else ""
    return f'<span{ident} class="badge st-{state.value.lower()}">{state.value}</span>'


def layout(title: str, body: str, *, signed_in: str = "", body_attrs: str = "") -> str:
    user = ""
    if signed_in:
        user = (f'<span class="who">tenant <b>{_e(signed_in)}</b></span>'
                '<form method="post" action="/logout" class="inline"><button class="link">Sign out</button></form>')
    return ("<!doctype html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<meta name="referrer" content="no-referrer">'
            f"<title>{_e(title)} · codex-sys</title>"
            '<link rel="stylesheet" href="/static/style.css">'
            '<script src="/static/task.js" defer></script></head>'
            f"<body{body_attrs}>"
            f'<header class="top"><a class="brand" href="/">codex-sys</a><nav>{user}</nav></header>'
            f"<main>{body}</main></body></html>\n")


def message_page(title: str, text: str, *, signed_in: str = "") -> str:
    return layout(title, f'<section class="card message"><h1>{_e(title)}</h1><p>{_e(text)}</p></section>',
                  signed_in=signed_in)


def login_page(next_path: str, error: str = "", hint: str = "") -> str:
    err = f'<p class="error">{_e(error)}</p>' if error else ""
    tip = f'<p class="hint">{_e(hint)}</p>' if hint else ""
    body = ('<section class="card login"><h1>Sign in</h1>'
            "<p>Paste the bearer token you use with <code>codex-sys --token</code>. "
            "It is kept in an HttpOnly cookie of this browser until you sign out.</p>"
            f'{err}<form method="post" action="/login"><input type="hidden" name="next" value="{_e(next_path)}">'
            '<label>Token <input type="password" name="token" autocomplete="off" required autofocus></label>'
            f'<button class="primary">Sign in</button></form>{tip}</section>')
    return layout("Sign in", body)


def task_list(tasks: Sequence[m.TaskRecord], tenant: str) -> str:
    rows = []
    for t in tasks:
        first = t.instruction.splitlines()[0] if t.instruction else ""
        rows.append(f'<tr><td><a href="/tasks/{t.id}"><code>{t.id}</code></a></td><td>{badge(t.state)}</td>'
                    f'<td class="num">{t.files_changed}</td><td>{when(t.created_at)}</td>'
                    f'<td class="instr">{_e(first[:160])}</td></tr>')
    table = ('<table class="list"><thead><tr><th>Task</th><th>State</th><th>Files</th><th>Created</th>'
             f'<th>Instruction</th></tr></thead><tbody>{"".join(rows)}</tbody></table>' if rows
             else '<p class="empty">No tasks yet. Start one with <code>codex-sys run "…"</code>.</p>')
    return layout("Tasks", f'<section class="card"><h1>Tasks</h1>{table}</section>', signed_in=tenant)


def share_created(task_id: str, url: str, expires_at: float, tenant: str) -> str:
    body = (f'<section class="card"><h1>Share link for <code>{task_id}</code></h1>'
            "<p>Anyone with this link can read the task's page, its diff and its artifacts, without a token, "
            f"until <b>{when(expires_at)}</b>.</p>"
            f'<input class="share-url" readonly value="{_e(url)}">'
            f'<p><a href="/tasks/{task_id}">Back to the task</a></p></section>')
    return layout("Share link", body, signed_in=tenant)


# ---- the task page -----------------------------------------------------------------------------------


def safe_url(url: str) -> str:
    """A URL without its credentials (a Git source's `https://user:token@host/…`)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unreadable URL)"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _source(record: m.TaskRecord) -> str:
    s = record.source
    if s.kind is m.SourceKind.GIT:
        text = f"git {safe_url(s.git_url)}" + (f" @ {s.git_ref}" if s.git_ref else "")
    elif s.kind is m.SourceKind.ZIP:
        text = "zip archive" + (f" {s.zip_digest.hash[:12]}" if s.zip_digest else "")
    else:
        text = f"workspace snapshot {record.manifest_digest.hash[:12] if record.manifest_digest else ''}".rstrip()
    if s.base_commit:
        text += f" (base {s.base_commit[:12]})"
    return _e(text)


@dataclass(slots=True)
class TaskPage:
    record: m.TaskRecord
    events: list[m.Event]
    events_truncated: bool
    base: str  # "/tasks/<id>" or "/s/<token>": where the page's own links start
    files: list[FileDiff] | None = None
    diff_note: str = ""  # why the diff is not (fully) shown
    diff_truncated: bool = False
    shared_until: float = 0.0  # a shared view: when its link expires
    signed_in: str = ""  # the tenant, on a signed-in view
    share_choices: Sequence[tuple[int, str]] = field(default_factory=tuple)


def task_page(p: TaskPage) -> str:
    r = p.record
    live = not r.state.final and not p.events_truncated
    last_seq = p.events[-1].seq if p.events else 0
    attrs = (f' data-events="{_e(p.base)}/events?after={last_seq}" data-live="{1 if live else 0}"'
             f' data-task="{r.id}"')
    parts = [_header(p), _timeline(p, live)]
    if r.state.final:
        parts.append(_diff(p))
    parts.append(_artifacts(p))
    return layout(f"Task {r.id}", "".join(parts), signed_in=p.signed_in, body_attrs=attrs)


def _header(p: TaskPage) -> str:
    r = p.record
    u = r.usage
    ended = r.updated_at if r.state.final else time.time()
    facts = [("Model", _e(r.model)), ("Created", when(r.created_at)), ("Updated", when(r.updated_at)),
             ("Duration", _duration(ended - r.created_at)),
             ("Usage", f"{u.total_tokens:,} tokens in {u.requests} requests "
                       f"({u.prompt_tokens:,} prompt, {u.completion_tokens:,} completion)"),
             ("Files changed", str(r.files_changed)), ("Source", _source(r))]
    if r.attempt > 1:
        facts.append(("Attempt", str(r.attempt)))
    dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)
    reason = f'<p class="reason">{_e(r.reason)}</p>' if r.reason else ""
    share = ""
    if p.shared_until:
        share = f'<p class="shared">Shared view, read-only; the link works until {when(p.shared_until)}.</p>'
    elif p.share_choices:
        options = "".join(f'<option value="{s}"{" selected" if i == 0 else ""}>{_e(label)}</option>'
                          for i, (s, label) in enumerate(p.share_choices))
        share = (f'<form class="share" method="post" action="/tasks/{r.id}/share">'
                 f'<select name="expires" aria-label="Link lifetime">{options}</select>'
                 '<button class="primary">Create share link</button></form>')
    hint = ('<p class="hint nojs">This page shows the task as of loading; '
            '<a href="">reload</a> for newer events.</p>' if not r.state.final else "")
    return (f'<section class="card head"><div class="title"><h1>Task <code>{r.id}</code></h1>'
            f'{badge(r.state, "state-badge")}{share}</div>{reason}'
            f'<pre class="instruction">{_e(r.instruction)}</pre><dl class="facts">{dl}</dl>{hint}'
            '<p id="ended" class="notice" hidden>The task has ended. <a href="">Reload</a> for its diff and '
            "artifacts.</p></section>")


def event_kind(p: m.EventPayload) -> str:
    if isinstance(p, m.StateChanged):
        return "state"
    if isinstance(p, m.LogLine):
        return "log"
    if isinstance(p, m.ToolCallStarted):
        return "tool"
    if isinstance(p, m.ToolCallFinished):
        return "tool-ok" if p.ok else "tool-failed"
    if isinstance(p, m.AssistantMessage):
        return "message"
    if isinstance(p, m.TokenUsageEvent):
        return "usage"
    return "result"


def event_html(e: m.Event, started: float) -> str:
    p = e.payload
    kind = event_kind(p)
    body: str
    if isinstance(p, m.StateChanged):
        body = f"{badge(p.state)}" + (f' <span class="dim">{_e(p.reason)}</span>' if p.reason else "")
    elif isinstance(p, m.LogLine):
        body = f'<span class="stream">{_e(p.stream)}</span> <code class="logline">{_e(p.text.rstrip())}</code>'
    elif isinstance(p, m.ToolCallStarted):
        body = f'<b>{_e(p.name)}</b> <code class="args">{_e(p.arguments)}</code>'
    elif isinstance(p, m.ToolCallFinished):
        status = "ok" if p.exit_code is None else f"exit {p.exit_code}"
        body = (f'<b>{_e(p.name)}</b> <span class="exit">{status}</span> '
                f'<span class="dim">{p.duration_s:.2f} s</span>')
        if p.output.strip():
            out = p.output if len(p.output) <= OUTPUT_CHARS else p.output[:OUTPUT_CHARS] + "\n… (cut)"
            lines = p.output.count("\n") + 1
            body += f"<details><summary>output ({lines} lines)</summary><pre>{_e(out)}</pre></details>"
    elif isinstance(p, m.AssistantMessage):
        body = f'<div class="msg">{_e(p.text)}</div>'
    elif isinstance(p, m.TokenUsageEvent):
        body = (f'<span class="dim">+{p.usage.total_tokens:,} tokens, {p.total.total_tokens:,} in '
                f"{p.total.requests} requests so far</span>")
    else:
        body = (f"{badge(p.state)} <b>{p.files_changed} file(s) changed</b>"
                + (f' <span class="dim">{_e(p.reason)}</span>' if p.reason else ""))
    offset = _duration(e.time - started) if started else ""
    return (f'<li class="ev ev-{kind}" id="ev-{e.seq}"><span class="icon" aria-hidden="true">{_ICON[kind]}</span>'
            f'<span class="at" title="{when(e.time)}">{offset}</span><div class="body">{body}</div></li>')


def _timeline(p: TaskPage, live: bool) -> str:
    started = p.record.created_at
    items = "".join(event_html(e, started) for e in p.events)
    more = ""
    if p.events_truncated:
        more = (f'<p class="more">Only the first {len(p.events):,} events are shown. The whole run is in '
                f'<a href="{p.base}/artifacts/agent.log">agent.log</a> and '
                f'<a href="{p.base}/artifacts/llm_response.txt">llm_response.txt</a>.</p>')
    status = '<span id="live" class="live">live</span>' if live else ""
    return (f'<section class="card"><h2>Timeline {status}</h2><ol id="timeline" class="timeline">{items}</ol>'
            f"{more}</section>")


_COLUMNS = '<colgroup><col class="n"><col><col class="n"><col></colgroup>'


def _line(text: str) -> str:
    return _e(text.rstrip("\r\n"))


def _file_rows(f: FileDiff) -> Iterable[str]:
    for row in f.rows:
        kind = row.kind
        if kind == "hunk":
            yield f'<tr class="hunk"><td colspan="4">{_e(row.old)}</td></tr>'
            continue
        left = (f'<td class="ln">{row.old_no}</td><td class="code{" del" if kind in ("del", "chg") else ""}">'
                f"{_line(row.old)}</td>") if row.old_no else '<td class="ln"></td><td class="code empty"></td>'
        right = (f'<td class="ln">{row.new_no}</td><td class="code{" add" if kind in ("add", "chg") else ""}">'
                 f"{_line(row.new)}</td>") if row.new_no else '<td class="ln"></td><td class="code empty"></td>'
        yield f"<tr>{left}{right}</tr>"


def _diff(p: TaskPage) -> str:
    download = f'<a href="{p.base}/artifacts/diff.patch?download=1">download diff.patch</a>'
    if p.files is None:
        note = p.diff_note or "This task has no diff."
        return f'<section class="card"><h2>Diff</h2><p class="empty">{_e(note)} {download}</p></section>'
    if not p.files:
        return '<section class="card"><h2>Diff</h2><p class="empty">The task changed no files.</p></section>'
    index = []
    bodies = []
    for n, f in enumerate(p.files):
        anchor = f"file-{n}"
        name = _e(f.path) if f.old_path == f.path else f"{_e(f.old_path)} → {_e(f.path)}"
        label = f'<span class="label l-{f.label}">{f.label}</span>'
        counts = f'<span class="add-n">+{f.added}</span> <span class="del-n">&minus;{f.removed}</span>'
        index.append(f'<li><a href="#{anchor}">{name}</a> {label} {counts}</li>')
        if not f.shown:
            body = f'<p class="empty">Not shown: the page shows at most this many lines. {download}</p>'
        elif f.label == "binary":
            body = '<p class="empty">Binary file: not shown.</p>'
        elif not f.rows:
            body = '<p class="empty">No content changes.</p>'
        else:
            body = (f'<table class="sbs">{_COLUMNS}<tbody>{"".join(_file_rows(f))}</tbody></table>')
        bodies.append(f'<div class="file" id="{anchor}"><h3>{name} {label} {counts}</h3>{body}</div>')
    note = ""
    if p.diff_truncated:
        note = f'<p class="more">The diff is longer than this page shows; {download} for all of it.</p>'
    total_add = sum(f.added for f in p.files)
    total_del = sum(f.removed for f in p.files)
    return (f'<section class="card"><h2>Diff <span class="dim">{len(p.files)} files, '
            f'<span class="add-n">+{total_add}</span> <span class="del-n">&minus;{total_del}</span></span> '
            f'<span class="right">{download}</span></h2>'
            f'<ul class="files">{"".join(index)}</ul>{note}{"".join(bodies)}</section>')


def _artifacts(p: TaskPage) -> str:
    refs = p.record.artifacts
    if not refs:
        return ('<section class="card"><h2>Artifacts</h2><p class="empty">The artifacts appear once the task '
                "ends.</p></section>")
    rows = "".join(
        f'<tr><td><code>{_e(a.name)}</code></td><td class="num">{human_size(a.digest.size)}</td>'
        f'<td><a href="{p.base}/artifacts/{quote(a.name)}">view</a> · '
        f'<a href="{p.base}/artifacts/{quote(a.name)}?download=1">download</a></td></tr>'
        for a in refs if a.name in m.ARTIFACT_NAMES)
    return (f'<section class="card"><h2>Artifacts</h2><table class="artifacts"><tbody>{rows}</tbody></table>'
            "</section>")
