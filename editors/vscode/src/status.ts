/**
 * The status bar item: how many tasks are running, and whether the language server is up.
 *
 * The count comes from `codexSys.listTasks`, asked again every `pollMs` while a task runs (and not
 * at all while none does), and soon after any progress report or command that changes tasks.
 * Listing goes through the quiet path (extension.ts): a failed background refresh never pops up a
 * message; the item says it instead.
 */
import * as vscode from 'vscode';
import { isActive, type TaskInfo } from './server';

export interface Timers {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export type ServerState = 'starting' | 'running' | 'stopped';

export interface TaskStatusOptions {
  /** Interval between refreshes while tasks run. */
  pollMs?: number;
  /** Delay that coalesces bursts of `refreshSoon` (progress reports) into one listing. */
  soonMs?: number;
  timers?: Timers;
  /** Command run by a click on the item. */
  command?: string;
}

const realTimers: Timers = {
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => {
    clearTimeout(handle as ReturnType<typeof setTimeout>);
  },
};

export class TaskStatus implements vscode.Disposable {
  private readonly item: vscode.StatusBarItem;
  private readonly pollMs: number;
  private readonly soonMs: number;
  private readonly timers: Timers;
  private serverState: ServerState = 'starting';
  private running = 0;
  private lastError: string | undefined;
  private pollTimer: unknown;
  private soonTimer: unknown;
  private inFlight: Promise<void> | undefined;
  private again = false;
  private disposed = false;

  constructor(
    private readonly list: () => Promise<TaskInfo[]>,
    options: TaskStatusOptions = {},
  ) {
    this.pollMs = options.pollMs ?? 2000;
    this.soonMs = options.soonMs ?? 250;
    this.timers = options.timers ?? realTimers;
    this.item = vscode.window.createStatusBarItem('codexSys.tasks', vscode.StatusBarAlignment.Left, 10);
    this.item.name = 'Codex tasks';
    if (options.command !== undefined) this.item.command = options.command;
    this.render();
    this.item.show();
  }

  /** Tasks running at the last successful listing. */
  get runningCount(): number {
    return this.running;
  }

  setServerState(state: ServerState): void {
    this.serverState = state;
    if (state === 'running') {
      void this.refresh();
    } else {
      this.stopTimers();
      this.render();
    }
  }

  /** Lists tasks now (a listing already under way is followed by one more, not doubled). */
  refresh(): Promise<void> {
    if (this.inFlight !== undefined) {
      this.again = true;
      return this.inFlight;
    }
    this.inFlight = this.listAndRender().finally(() => {
      this.inFlight = undefined;
      if (this.again) {
        this.again = false;
        void this.refresh();
      }
    });
    return this.inFlight;
  }

  /** Lists tasks shortly; calls in a burst (progress reports) make one listing. */
  refreshSoon(): void {
    if (this.disposed || this.soonTimer !== undefined) return;
    this.soonTimer = this.timers.setTimeout(() => {
      this.soonTimer = undefined;
      void this.refresh();
    }, this.soonMs);
  }

  private async listAndRender(): Promise<void> {
    if (this.pollTimer !== undefined) {
      this.timers.clearTimeout(this.pollTimer);
      this.pollTimer = undefined;
    }
    if (!this.live()) return;
    try {
      const tasks = await this.list();
      this.running = tasks.filter((t) => isActive(t.state)).length;
      this.lastError = undefined;
    } catch (error) {
      this.lastError = error instanceof Error ? error.message : String(error);
    }
    if (!this.live()) return;
    this.render();
    if (this.running > 0) {
      this.pollTimer = this.timers.setTimeout(() => {
        this.pollTimer = undefined;
        void this.refresh();
      }, this.pollMs);
    }
  }

  /** Not disposed and the server runs (a method, so it is read again after an await). */
  private live(): boolean {
    return !this.disposed && this.serverState === 'running';
  }

  private render(): void {
    const item = this.item;
    item.backgroundColor = undefined;
    if (this.serverState === 'stopped') {
      item.text = '$(warning) Codex';
      item.tooltip = 'The codex-sys language server is not running. See the "Codex" output.';
      item.backgroundColor = new vscode.ThemeColor('statusBarItem.warningBackground');
      return;
    }
    if (this.serverState === 'starting') {
      item.text = '$(loading~spin) Codex';
      item.tooltip = 'Starting the codex-sys language server…';
      return;
    }
    if (this.running > 0) {
      item.text = `$(sync~spin) Codex: ${this.running} running`;
      item.tooltip = `${this.running} task${this.running === 1 ? '' : 's'} running. Click to show tasks.`;
    } else {
      item.text = '$(hubot) Codex';
      item.tooltip = 'No task running. Click to show tasks.';
    }
    if (this.lastError !== undefined) item.tooltip += `\nLast refresh failed: ${this.lastError}`;
  }

  private stopTimers(): void {
    for (const handle of [this.pollTimer, this.soonTimer]) {
      if (handle !== undefined) this.timers.clearTimeout(handle);
    }
    this.pollTimer = undefined;
    this.soonTimer = undefined;
  }

  dispose(): void {
    this.disposed = true;
    this.stopTimers();
    this.item.dispose();
  }
}
