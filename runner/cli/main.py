"""`codex-sys`: the command line (argument parsing and dispatch; the work is in `runner.cli.commands`).

Exit codes: 0 success (for `run`/`watch`: the task COMPLETED), 1 the task ended otherwise, 2 bad input
(usage, unknown task, invalid workspace, a request the task's state does not allow, a quota reached), 3 the
runner is unreachable or refused the credentials (or their role does not allow the request).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from runner.cli import deployment, executor_flags, source_flags
from runner.domain.errors import (
    CodexError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)

EXIT_OK, EXIT_TASK, EXIT_INPUT, EXIT_RUNNER = 0, 1, 2, 3


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="codex-sys", description="Run an AI coding agent on a workspace, in a sandbox.")
    p.add_argument("--runner", default=os.environ.get("CODEX_SYS_RUNNER"),
                   help="runner address (unix:/path or host:port); default: the embedded runner (env CODEX_SYS_RUNNER)")
    p.add_argument("--token", default=os.environ.get("CODEX_SYS_TOKEN"),
                   help="bearer token for a shared runner (env CODEX_SYS_TOKEN)")
    p.add_argument("--ca-file", default=os.environ.get("CODEX_SYS_CA_FILE"), metavar="PEM",
                   help="CA certificate that signed the runner's TLS certificate; implies TLS (env CODEX_SYS_CA_FILE)")
    p.add_argument("--plaintext", action="store_true", default=None,
                   help="allow sending the token without TLS to a non-loopback runner (env CODEX_SYS_PLAINTEXT=1)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="snapshot a workspace, run a task on it and wait for the diff")
    run.add_argument("instruction", help="what the agent should do")
    source = run.add_mutually_exclusive_group()
    source.add_argument("--workspace", help="the folder to snapshot (default: the current one)")
    source.add_argument("--git", metavar="URL[#REF]",
                        help="clone this repository instead (shallow), at REF: a branch, tag or full commit id "
                             "(default: its default branch)")
    source.add_argument("--zip", metavar="FILE", help="unpack this zip archive instead (see docs/sources.md)")
    run.add_argument("--model", default="", help="model name (default: the runner's CODEX_SYS_MODEL)")
    run.add_argument("--json", action="store_true", help="one JSON object per line: every event, then the result")
    run.add_argument("--out", metavar="DIR", help="download every artifact of the task into DIR")
    run.add_argument("--no-wait", action="store_true", help="print the task id once it is queued and exit")
    run.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                     help="gitignore-style pattern to leave out of the snapshot (repeatable)")
    run.add_argument("--timeout", type=float, default=0, metavar="SECONDS", help="the task's wall-time limit")
    run.add_argument("--max-steps", type=int, default=0, help="the agent's step budget")

    for name, text in (("status", "show a task"), ("watch", "follow a task's events until it ends"),
                       ("diff", "print a task's diff"), ("cancel", "cancel a task")):
        c = sub.add_parser(name, help=text)
        c.add_argument("task_id")
        if name in ("status", "watch", "cancel"):
            c.add_argument("--json", action="store_true")
        if name == "watch":
            c.add_argument("--after-seq", type=int, default=0, help="replay only events after this sequence number")

    art = sub.add_parser("artifacts", help="list or download a task's artifacts")
    art.add_argument("task_id")
    art.add_argument("--out", metavar="DIR", help="download them into DIR (default: only list them)")
    art.add_argument("--name", action="append", default=[], help="only this artifact (repeatable)")
    art.add_argument("--link", action="store_true",
                     help="print share links that download each artifact without a token (runner on MinIO)")
    art.add_argument("--expires", type=int, default=3600, metavar="SECONDS",
                     help="how long the links work (default 3600, at most 604800)")

    app = sub.add_parser("apply", help="apply a task's diff to the workspace with git apply")
    app.add_argument("task_id")
    app.add_argument("--workspace", default=".", help="the folder to apply the diff to (default: the current one)")
    app.add_argument("--check", action="store_true", help="only check that the diff applies")

    pr = sub.add_parser("pr", help="push a task's diff as a branch on a Git remote (and open a GitHub pull request)")
    pr.add_argument("task_id")
    pr.add_argument("--remote", default="", metavar="URL",
                    help="the Git remote to push to (default: the task's own Git URL, for a task made from one)")
    pr.add_argument("--branch", required=True, metavar="NAME", help="the branch to create (or update) on the remote")
    pr.add_argument("--base", default="", metavar="BRANCH",
                    help="the branch the change is for (default: the task's branch, else the remote's default)")
    pr.add_argument("--title", default="", help="commit subject and pull request title (default: the instruction)")
    pr.add_argument("--draft", action="store_true", help="open the pull request as a draft")
    pr.add_argument("--github-token-env", default="GITHUB_TOKEN", metavar="NAME",
                    help="the environment variable holding the GitHub token (default GITHUB_TOKEN); with a "
                         "token and a GitHub remote a pull request is opened")
    pr.add_argument("--json", action="store_true")

    shr = sub.add_parser("share", help="print a link that opens a task's page read-only, without a token")
    shr.add_argument("task_id")
    shr.add_argument("--expires", type=int, default=3600, metavar="SECONDS",
                     help="how long the link works (default 3600, at most 604800)")

    lst = sub.add_parser("list", help="list recent tasks")
    lst.add_argument("--limit", type=int, default=20)
    lst.add_argument("--json", action="store_true")

    srv = sub.add_parser("runner", help="run or stop a runner").add_subparsers(dest="runner_command", required=True)
    serve = srv.add_parser("serve", help="serve the runner API (and, embedded, a worker and the gateway)")
    serve.add_argument("--embedded", action="store_true",
                       help="embedded adapters under CODEX_SYS_HOME (the default when no NATS URL is given)")
    serve.add_argument("--listen", action="append", default=[], metavar="ADDR",
                       help="extra TCP address host:port (needs --token-file or CODEX_SYS_TOKENS)")
    serve.add_argument("--token-file", help="tokens of TCP clients, one 'TOKEN TENANT [ROLES] [expires=TIME] "
                                            "[revoked]' per line, re-read when it changes (env CODEX_SYS_TOKEN_FILE; "
                                            "docs/tenants.md)")
    serve.add_argument("--tls-cert", metavar="PEM",
                       help="serve TCP with TLS: certificate chain (env CODEX_SYS_TLS_CERT)")
    serve.add_argument("--tls-key", metavar="PEM", help="the certificate's private key (env CODEX_SYS_TLS_KEY)")
    serve.add_argument("--tenants-file", metavar="TOML",
                       help="per-tenant quotas, re-read when it changes (env CODEX_SYS_TENANTS_FILE)")
    serve.add_argument("--no-worker", action="store_true", help="serve the API only; run workers separately")
    serve.add_argument("--workers", type=int, default=0, help="tasks run at once (default: CODEX_SYS_WORKERS or 2)")
    serve.add_argument("--warm-pool", type=int, default=-1,
                       help="sandboxes kept started ahead of tasks (default: CODEX_SYS_WARM_POOL or 1)")
    serve.add_argument("--git-author", metavar="'NAME <EMAIL>'",
                       help="author of pull request commits (env CODEX_SYS_GIT_AUTHOR; default codex-sys)")
    serve.add_argument("--github-host", action="append", default=[], metavar="HOST[=API_URL]",
                       help="a host whose remotes get GitHub pull requests (repeatable; env CODEX_SYS_GITHUB_HOSTS; "
                            "default github.com)")
    deployment.add_flags(serve)
    executor_flags.add_flags(serve)
    source_flags.add_flags(serve)
    serve.add_argument("--http-listen", default=os.environ.get("CODEX_SYS_HTTP_LISTEN"), metavar="HOST:PORT",
                       help="serve the task pages over HTTP here (env CODEX_SYS_HTTP_LISTEN)")
    serve.add_argument("--public-url", default=os.environ.get("CODEX_SYS_PUBLIC_URL"), metavar="URL",
                       help="base URL of the task pages and share links (env CODEX_SYS_PUBLIC_URL; "
                            "default: from --http-listen)")
    serve.add_argument("--share-key-file", default=os.environ.get("CODEX_SYS_SHARE_KEY_FILE"), metavar="FILE",
                       help="key that signs share links, shared by all API replicas (env CODEX_SYS_SHARE_KEY_FILE; "
                            "default: made once under CODEX_SYS_HOME)")
    srv.add_parser("stop", help="stop the embedded runner")

    wrk = sub.add_parser("worker", help="run a worker and its gateway: on NATS + MinIO, or on the embedded "
                                        "state under CODEX_SYS_HOME")
    wrk.add_argument("--workers", type=int, default=0, help="tasks run at once (default: CODEX_SYS_WORKERS or 2)")
    wrk.add_argument("--warm-pool", type=int, default=-1,
                     help="sandboxes kept started ahead of tasks (default: CODEX_SYS_WARM_POOL or 1)")
    deployment.add_flags(wrk)
    executor_flags.add_flags(wrk)
    source_flags.add_flags(wrk)

    lsp = sub.add_parser("lsp", help="serve the language server over stdio (for editors)")
    lsp.add_argument("--stdio", action="store_true",
                     help="accepted for editors that pass it; stdio is the only transport")

    llm = sub.add_parser("scripted-llm", help="serve the scripted OpenAI-compatible model (tests and demos)")
    llm.add_argument("--scenario", required=True, help="scenario JSON file")
    llm.add_argument("--host", default="127.0.0.1")
    llm.add_argument("--port", type=int, default=8750)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # The runner forks sandboxes while gRPC threads run; gRPC's fork handlers only log noise there.
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    if args.command == "lsp":
        from lsp_server.main import serve_stdio
        from runner import logs

        logs.configure(os.environ.get("CODEX_SYS_LOG_LEVEL", "INFO"), sys.stderr)
        logging.getLogger("pygls").setLevel(logging.WARNING)  # it logs every message at INFO
        return serve_stdio()
    from runner.cli import commands  # imported late: `--help` stays fast

    try:
        return asyncio.run(commands.dispatch(args))
    except KeyboardInterrupt:
        return 130
    except (InvalidArgument, NotFound, FailedPrecondition, ResourceExhausted) as exc:
        sys.stderr.write(f"codex-sys: {exc}\n")
        return EXIT_INPUT
    except (Unavailable, Unauthenticated, PermissionDenied) as exc:
        sys.stderr.write(f"codex-sys: {exc}\n")
        return EXIT_RUNNER
    except CodexError as exc:
        sys.stderr.write(f"codex-sys: {exc}\n")
        return EXIT_TASK


if __name__ == "__main__":
    raise SystemExit(main())
