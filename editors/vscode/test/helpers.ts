/**
 * Stand-ins for the language server side: the commands vscode-languageclient would register for
 * the server (`codexSys.*`), answering like docs/lsp.md says, and a Host without a process.
 */
import type { Host, HostDeps } from '../src/host';
import type { TaskInfo } from '../src/server';
import * as vscode from './vscode-fake';

export function task(taskId: string, state: string, more: Partial<TaskInfo> = {}): TaskInfo {
  return {
    taskId,
    state,
    instruction: `instruction of ${taskId}`,
    reason: '',
    folder: 'file:///work/app',
    createdAt: '2025-01-01T10:00:00Z',
    filesChanged: 0,
    changes: 0,
    applicable: 0,
    discarded: false,
    ...more,
  };
}

type Handler = (args: Record<string, unknown> | undefined) => unknown;

/** The server's commands, as the language client registers them in VS Code. */
export class FakeServer {
  readonly calls: { command: string; args: unknown[] }[] = [];
  tasks: TaskInfo[] = [];
  readonly handlers = new Map<string, Handler>();

  constructor() {
    this.handlers.set('codexSys.runTask', () => ({ taskId: 't-new', folder: 'file:///work/app' }));
    this.handlers.set('codexSys.listTasks', () => ({ tasks: this.tasks }));
    this.handlers.set('codexSys.applyTask', () => ({ applied: ['1', '2'], skipped: [] }));
    this.handlers.set('codexSys.discardTask', (a) => ({ taskId: a?.taskId, discarded: true }));
    this.handlers.set('codexSys.cancelTask', (a) => ({ taskId: a?.taskId, state: 'CANCELLED' }));
    this.handlers.set('codexSys.showDiff', (a) => ({
      taskId: a?.taskId,
      diff: 'diff --git a/x b/x\n',
      uri: 'file:///home/u/.codex-sys/tasks/t1/diff.patch',
    }));
  }

  /** Answers a command like the server would (arguments as one object, the first of the list). */
  handle(command: string, args: unknown[]): unknown {
    this.calls.push({ command, args });
    const handler = this.handlers.get(command);
    if (handler === undefined) throw new Error(`unknown command ${command}`);
    return handler(args[0] as Record<string, unknown> | undefined);
  }

  /** What the client does once the server announced its commands. */
  register(): void {
    for (const command of this.handlers.keys()) {
      vscode.commands.registerCommand(command, (...args: unknown[]) => this.handle(command, args));
    }
  }

  /** Arguments of each call of a command. */
  argsOf(command: string): unknown[] {
    return this.calls.filter((c) => c.command === command).map((c) => c.args[0]);
  }
}

export class FakeHost implements Host {
  readonly restarts: string[] = [];
  readyCalls = 0;
  disposed = false;
  deps: HostDeps | undefined;

  constructor(private readonly server: FakeServer) {}

  make = (deps: HostDeps): Host => {
    this.deps = deps;
    return this;
  };

  ready(): Promise<void> {
    this.readyCalls++;
    return Promise.resolve();
  }
  restart(reason: string): Promise<void> {
    this.restarts.push(reason);
    return Promise.resolve();
  }
  quietExecute(command: string, args: object): Promise<unknown> {
    try {
      return Promise.resolve(this.server.handle(command, [args]));
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
  }
  dispose(): Promise<void> {
    this.disposed = true;
    return Promise.resolve();
  }
}

export function editor(path: string, selection?: [number, number, number, number]): vscode.FakeTextEditor {
  const [l1, c1, l2, c2] = selection ?? [0, 0, 0, 0];
  return {
    document: new vscode.FakeTextDocument(vscode.Uri.file(path), 'python', ''),
    selection: new vscode.Selection(new vscode.Position(l1, c1), new vscode.Position(l2, c2)),
  };
}

/** Timers that only fire when the test says so. */
export class ManualTimers {
  private nextId = 1;
  readonly pending = new Map<number, { callback: () => void; ms: number }>();

  setTimeout = (callback: () => void, ms: number): unknown => {
    const id = this.nextId++;
    this.pending.set(id, { callback, ms });
    return id;
  };
  clearTimeout = (handle: unknown): void => {
    this.pending.delete(handle as number);
  };
  /** Delays of the timers now pending. */
  delays(): number[] {
    return [...this.pending.values()].map((t) => t.ms);
  }
  /** Fires every pending timer with this delay. */
  fire(ms: number): void {
    for (const [id, t] of [...this.pending]) {
      if (t.ms === ms) {
        this.pending.delete(id);
        t.callback();
      }
    }
  }
}
