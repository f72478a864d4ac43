/**
 * Composition: the pieces of the extension and the events that connect them. extension.ts calls
 * `activateWith` with the real language client; tests call it with a stand-in.
 */
import * as vscode from 'vscode';
import { Commands, guarded, UserCommand } from './commands';
import type { Host, HostDeps } from './host';
import { CodexServer, executeThroughVsCode } from './server';
import { needsRestart } from './settings';
import { TaskStatus, type TaskStatusOptions } from './status';
import { RunnerToken } from './token';

export interface Extension {
  host: Host;
  status: TaskStatus;
  commands: Commands;
  token: RunnerToken;
  output: vscode.LogOutputChannel;
}

export function activateWith(
  context: Pick<vscode.ExtensionContext, 'secrets' | 'subscriptions'>,
  makeHost: (deps: HostDeps) => Host,
  statusOptions: Omit<TaskStatusOptions, 'command'> = {},
): Extension {
  const output = vscode.window.createOutputChannel('Codex', { log: true });
  const log = (line: string): void => {
    output.info(line);
  };
  const token = new RunnerToken(context.secrets);

  // The status bar lists tasks through the host's quiet path (used only once the host reports a
  // running server); the host tells it the server's state and progress activity.
  const quiet = new CodexServer((command, args) => host.quietExecute(command, args));
  const status = new TaskStatus(() => quiet.listTasks(), { ...statusOptions, command: UserCommand.showTasks });
  const host = makeHost({
    output,
    token,
    stateChanged: (state) => {
      status.setServerState(state);
    },
    progress: {
      activity: () => {
        status.refreshSoon();
      },
      // The server shows how a task ended (window/showMessage); the output keeps it.
      ended: (title, message) => {
        if (message !== undefined) log(message.startsWith(title) ? message : `${title}: ${message}`);
      },
    },
  });

  const server = new CodexServer(executeThroughVsCode(() => host.ready()));
  const commands = new Commands({ server, log, tasksChanged: () => {
      status.refreshSoon();
    } });
  const register = (id: string, run: (...args: unknown[]) => Promise<unknown>): vscode.Disposable =>
    vscode.commands.registerCommand(id, guarded(log, run));

  context.subscriptions.push(
    output,
    status,
    host,
    register(UserCommand.runTask, () => commands.runTask()),
    register(UserCommand.runTaskOnSelection, () => commands.runTaskOnSelection()),
    register(UserCommand.showTasks, () => commands.showTasks()),
    register(UserCommand.showDiff, (arg) => commands.showDiff(arg)),
    register(UserCommand.applyAll, (arg) => commands.applyAll(arg)),
    register(UserCommand.discardTask, (arg) => commands.discardTask(arg)),
    register(UserCommand.cancelTask, (arg) => commands.cancelTask(arg)),
    register(UserCommand.setRunnerToken, () => token.promptAndStore()),
    register(UserCommand.clearRunnerToken, () => token.clear()),
    register(UserCommand.showOutput, () => {
      output.show(true);
      return Promise.resolve();
    }),
    // One path for every token change, this window's or another's: a new server gets it.
    token.onDidChange(() => void host.restart('the runner token changed')),
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (needsRestart((section) => event.affectsConfiguration(section))) {
        void host.restart('codexSys.server settings changed');
      }
    }),
  );
  return { host, status, commands, token, output };
}
