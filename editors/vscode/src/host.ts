/**
 * What the rest of the extension needs from the language client (client.ts implements it; tests
 * use a stand-in, since vscode-languageclient cannot run without VS Code).
 */
import type * as vscode from 'vscode';
import type { ProgressEvents } from './progress';
import type { ServerState } from './status';
import type { RunnerToken } from './token';

export interface Host {
  /** Resolves once the server runs (starting it if needed); rejects with a ReportedError if it cannot. */
  ready(): Promise<void>;
  /** A new server process, with the current settings and token. */
  restart(reason: string): Promise<void>;
  /** A server command outside the VS Code command path: no message on failure, for background work. */
  quietExecute(command: string, args: object): Promise<unknown>;
  /** Stops the server for good. */
  dispose(): Promise<void>;
}

export interface HostDeps {
  output: vscode.LogOutputChannel;
  token: RunnerToken;
  progress: ProgressEvents;
  stateChanged(state: ServerState): void;
}
