/**
 * Entry point of the VS Code extension: a thin shell over the codex-sys language server
 * (docs/lsp.md). The server snapshots, submits, watches and applies; the extension asks the user
 * what to do and shows what happens.
 */
import type * as vscode from 'vscode';
import { activateWith } from './activation';
import { ClientHost } from './client';
import type { Host } from './host';

let host: Host | undefined;

export function activate(context: vscode.ExtensionContext): void {
  const extension = activateWith(context, (deps) => new ClientHost(deps));
  host = extension.host;
  // Start now: the status bar shows running tasks, and completed tasks' changes get their code actions.
  extension.host.ready().catch(() => undefined);
}

export async function deactivate(): Promise<void> {
  await host?.dispose();
  host = undefined;
}
