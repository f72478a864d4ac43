/**
 * The language client: starts `codex-sys lsp` over stdio and keeps one client for the window.
 *
 * Each (re)start builds a new LanguageClient, because what it needs may have changed: the
 * executable (codexSys.server.*) and the runner token (SecretStorage), which the server receives in
 * `initializationOptions`. Starts, restarts and stops are queued, so a token change during a start
 * ends with a server that has the new token.
 */
import * as vscode from 'vscode';
import {
  type ClientCapabilities,
  ExecuteCommandRequest,
  type FeatureState,
  LanguageClient,
  type LanguageClientOptions,
  type ServerOptions,
  State,
  type StaticFeature,
  TransportKind,
  WorkDoneProgress,
  WorkDoneProgressCancelNotification,
  WorkDoneProgressCreateRequest,
} from 'vscode-languageclient/node';
import type { Host, HostDeps } from './host';
import { findExecutable } from './launch';
import { configurationResult, executeCommand } from './middleware';
import { NotificationProgress, type ProgressChannel } from './progress';
import { ReportedError } from './server';
import { SECTION, type SettingProblem, serverLaunch, serverSettings } from './settings';

/** Replaces the built-in handling of server-initiated progress (see progress.ts). */
class CancellableProgressFeature implements StaticFeature {
  private readonly progress: NotificationProgress;

  constructor(
    private readonly client: LanguageClient,
    events: HostDeps['progress'],
  ) {
    const channel: ProgressChannel = {
      onProgress: (token, handler) => client.onProgress(WorkDoneProgress.type, token, handler),
      cancel: (token) => {
        void client.sendNotification(WorkDoneProgressCancelNotification.type, { token }).catch(() => undefined);
      },
    };
    this.progress = new NotificationProgress(channel, events);
  }

  fillClientCapabilities(capabilities: ClientCapabilities): void {
    capabilities.window = { ...capabilities.window, workDoneProgress: true };
  }

  initialize(): void {
    // Registered after the built-in ProgressFeature, so this handler replaces its handler.
    this.client.onRequest(WorkDoneProgressCreateRequest.type, (params) => {
      this.progress.create(params.token);
    });
  }

  getState(): FeatureState {
    return { kind: 'static' };
  }

  clear(): void {
    this.progress.clear();
  }
}

export class ClientHost implements Host {
  private client: LanguageClient | undefined;
  private token: string | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private disposed = false;

  constructor(private readonly deps: HostDeps) {}

  ready(): Promise<void> {
    if (this.client?.isRunning() === true) return Promise.resolve();
    return this.enqueue(async () => {
      if (this.client?.isRunning() !== true) await this.start();
    });
  }

  restart(reason: string): Promise<void> {
    return this.enqueue(async () => {
      this.deps.output.info(`Restarting the language server: ${reason}`);
      await this.start();
    }).catch(() => undefined);
  }

  async quietExecute(command: string, args: object): Promise<unknown> {
    const client = this.client;
    if (client?.isRunning() !== true) throw new Error('the language server is not running');
    return client.sendRequest(ExecuteCommandRequest.type, { command, arguments: [args] });
  }

  dispose(): Promise<void> {
    this.disposed = true;
    return this.enqueue(() => this.stopClient());
  }

  private enqueue(operation: () => Promise<void>): Promise<void> {
    const next = this.queue.then(operation);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private report(problems: readonly SettingProblem[]): void {
    for (const p of problems) {
      this.deps.output.warn(p.message);
      void vscode.window.showWarningMessage(`Codex: ${p.message}`);
    }
  }

  private async start(): Promise<void> {
    await this.stopClient();
    if (this.disposed) throw new ReportedError('the extension is shutting down');
    this.deps.stateChanged('starting');
    this.token = await this.deps.token.get();
    const launch = serverLaunch(vscode.workspace.getConfiguration(SECTION));
    this.report(launch.problems);
    const cwd = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
    const executable = findExecutable(launch.value.command, process.env, process.platform, undefined, cwd);
    if (executable === undefined) {
      this.deps.stateChanged('stopped');
      const message =
        `Codex: cannot find "${launch.value.command}" to start the language server. ` +
        'Install codex-sys (pip install -e . in its checkout) or set codexSys.server.path to its executable.';
      this.deps.output.error(message);
      void vscode.window.showErrorMessage(message, 'Open Settings').then((choice) => {
        if (choice !== undefined) void vscode.commands.executeCommand('workbench.action.openSettings', 'codexSys.server');
      });
      throw new ReportedError(message);
    }
    this.deps.output.info(`Starting ${executable} ${launch.value.args.join(' ')}`);

    const serverOptions: ServerOptions = {
      command: executable,
      args: launch.value.args,
      transport: TransportKind.stdio,
      options: cwd === undefined ? {} : { cwd },
    };
    const client = new LanguageClient('codexSys', 'Codex', serverOptions, this.clientOptions());
    client.registerFeature(new CancellableProgressFeature(client, this.deps.progress));
    client.onDidChangeState((event) => {
      if (this.client !== client) return;
      if (event.newState === State.Running) this.deps.stateChanged('running');
      else if (event.newState === State.Stopped) this.deps.stateChanged('stopped');
      else this.deps.stateChanged('starting');
    });
    this.client = client;
    try {
      await client.start();
    } catch (error) {
      // The client has shown its own message; the status bar and the output say the rest.
      this.deps.stateChanged('stopped');
      throw new ReportedError(`the language server did not start: ${String(error)}`);
    }
  }

  private clientOptions(): LanguageClientOptions {
    const sendCommand = (command: string, args: unknown[]): Promise<unknown> => {
      const client = this.client;
      if (client === undefined) return Promise.reject(new Error('the language server is not running'));
      return client.sendRequest(ExecuteCommandRequest.type, { command, arguments: args });
    };
    const execute = executeCommand(
      sendCommand,
      (message) => {
        this.deps.output.error(message);
        void vscode.window.showErrorMessage(message);
      },
      (message) => {
        this.deps.output.warn(message);
      },
    );
    return {
      documentSelector: [{ scheme: 'file' }],
      synchronize: { configurationSection: SECTION },
      outputChannel: this.deps.output,
      initializationOptions: () => {
        const settings = serverSettings(vscode.workspace.getConfiguration(SECTION), this.token);
        this.report(settings.problems);
        return settings.value;
      },
      initializationFailedHandler: (error: unknown) => {
        this.deps.output.error(`The language server failed to initialize: ${String(error)}`);
        return false;
      },
      middleware: {
        executeCommand: (command, args) => execute(command, args),
        workspace: {
          configuration: async (params, token, next) => {
            const result = await next(params, token);
            return Array.isArray(result) ? configurationResult(params.items, result, this.token) : result;
          },
        },
      },
    };
  }

  private async stopClient(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (client === undefined) return;
    try {
      if (client.needsStop()) await client.stop(2000);
    } catch (error) {
      this.deps.output.warn(`Stopping the language server: ${String(error)}`);
    }
    try {
      await client.dispose();
    } catch {
      // Already stopped; nothing more to release.
    }
  }
}
