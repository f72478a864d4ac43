/**
 * One activated extension against the fake VS Code, with a fake server behind it.
 */
import type * as vscodeTypes from 'vscode';
import { activateWith, type Extension } from '../src/activation';
import { FakeHost, FakeServer, ManualTimers } from './helpers';
import * as vscode from './vscode-fake';

export interface Activated {
  extension: Extension;
  server: FakeServer;
  host: FakeHost;
  secrets: vscode.FakeSecrets;
  timers: ManualTimers;
  subscriptions: { dispose(): unknown }[];
  statusItem: vscode.FakeStatusBarItem;
  output: vscode.FakeOutputChannel;
}

/** Activates the extension; the server's commands are registered as the client would once it runs. */
export function activate(options: { registerServer?: boolean } = {}): Activated {
  vscode.reset();
  const server = new FakeServer();
  const host = new FakeHost(server);
  const secrets = new vscode.FakeSecrets();
  const timers = new ManualTimers();
  const subscriptions: { dispose(): unknown }[] = [];
  const context = { secrets, subscriptions } as unknown as Pick<vscodeTypes.ExtensionContext, 'secrets' | 'subscriptions'>;
  const extension = activateWith(context, host.make, { timers, pollMs: 2000, soonMs: 250 });
  if (options.registerServer !== false) server.register();
  const statusItem = vscode.window.statusBarItems[0];
  const output = vscode.window.outputChannels[0];
  if (statusItem === undefined || output === undefined) throw new Error('no status bar item or output channel');
  return { extension, server, host, secrets, timers, subscriptions, statusItem, output };
}

/** Runs a palette command the way VS Code does, and lets its messages settle. */
export async function run(id: string, ...args: unknown[]): Promise<unknown> {
  const result = await vscode.commands.executeCommand(id, ...args);
  await vscode.settle();
  return result;
}
