"""The codex-sys language server: editor commands to runner tasks, task diffs to code actions.

See docs/lsp.md for the contract every editor relies on. The modules, by concern:
`settings` (typed settings from the client), `runner_link` (the connection to the runner and the
messages a person sees when it fails), `snapshots` (the workspace as the editor sees it), `textlines`
(line splitting as LSP and git count lines), `changes` (a task's diff as changes), `anchoring` (where a
change fits in today's text), `documents` (today's text of a file), `workspace_edits` (changes to a
WorkspaceEdit a given client can apply), `translate` (lsprotocol types), `progress`, `tasks` (one task's
life in the editor), `applying`, and `server` (thin handlers).
"""
