/**
 * The test double of `vscode` (test/vscode-fake.ts) for the smoke run: the real
 * vscode-languageclient touches far more of the API than the extension does, so every member the
 * double lacks answers with an inert stub (callable, constructible, disposable). What the extension
 * and the smoke run look at (commands, prompts, status bar, notifications, output) is the double's.
 */
import { existsSync, readFileSync } from 'node:fs';
import * as fake from '../test/vscode-fake';
import { stubbed } from './stubbed';

function stub(name: string): unknown {
  const target = function inert(): void {
    /* stands for a VS Code API the smoke run does not need */
  };
  return new Proxy(target, {
    get(_t, p) {
      if (p === 'then') return undefined; // not a promise
      if (p === 'dispose') return () => undefined;
      if (p === Symbol.iterator) return [][Symbol.iterator].bind([]);
      if (p === Symbol.toPrimitive) return () => name;
      return stub(`${name}.${String(p)}`);
    },
    apply() {
      stubbed.add(name);
      return stub(`${name}()`);
    },
    construct() {
      stubbed.add(`new ${name}`);
      return stub(`new ${name}`) as object;
    },
  });
}

function permissive<T extends object>(target: T, name: string): T {
  return new Proxy(target, {
    get(t, p, receiver) {
      if (p in t) return Reflect.get(t, p, receiver) as unknown;
      if (p === 'then') return undefined;
      return stub(`${name}.${String(p)}`);
    },
  });
}

const noEvent = (): { dispose(): void } => ({ dispose: () => undefined });

const window = Object.assign(fake.window, {
  visibleTextEditors: [],
  tabGroups: { all: [], onDidChangeTabs: noEvent, onDidChangeTabGroups: noEvent },
});
const createOutputChannel = fake.window.createOutputChannel.bind(fake.window);
window.createOutputChannel = (name: string) =>
  // The client's output channel is a LogOutputChannel.
  Object.assign(createOutputChannel(name), {
    logLevel: 2,
    onDidChangeLogLevel: noEvent,
    trace: () => undefined,
    debug: () => undefined,
    clear: () => undefined,
    replace: () => undefined,
  });
const workspace = Object.assign(fake.workspace, { textDocuments: [], notebookDocuments: [] });
const openTextDocument = fake.workspace.openTextDocument.bind(fake.workspace);
// Files on disk open too (the server's diff.patch).
workspace.openTextDocument = (arg) => {
  if (arg instanceof fake.Uri && !workspace.files.has(arg.path) && existsSync(arg.path)) {
    workspace.files.set(arg.path, readFileSync(arg.path, 'utf8'));
  }
  return openTextDocument(arg);
};

class CancellationTokenSource {
  readonly token = { isCancellationRequested: false, onCancellationRequested: noEvent };
  cancel(): void {
    this.token.isCancellationRequested = true;
  }
  dispose(): void {
    /* nothing held */
  }
}

export = permissive(
  {
    ...fake,
    version: '1.91.0',
    env: { language: 'en', appName: 'smoke', machineId: 'smoke', sessionId: 'smoke', uiKind: 1 },
    CancellationTokenSource,
    CancellationError: class CancellationError extends Error {},
    window: permissive(window, 'window'),
    workspace: permissive(workspace, 'workspace'),
    languages: permissive(fake.languages, 'languages'),
    commands: permissive(fake.commands, 'commands'),
  },
  'vscode',
);
