/**
 * The language server's commands (docs/lsp.md, "Commands"), typed.
 *
 * vscode-languageclient registers each command the server announces as a VS Code command of the
 * same id, so the extension calls them with `vscode.commands.executeCommand('codexSys.…', args)` and
 * never registers those ids itself. Results are checked here: a server that answers something else
 * than the contract gets a clear error, not an `undefined` deep in the UI code.
 */
import * as vscode from 'vscode';

export const ServerCommand = {
  runTask: 'codexSys.runTask',
  listTasks: 'codexSys.listTasks',
  applyTask: 'codexSys.applyTask',
  discardTask: 'codexSys.discardTask',
  cancelTask: 'codexSys.cancelTask',
  showDiff: 'codexSys.showDiff',
} as const;

export const TASK_STATES = [
  'QUEUED',
  'PREPARING',
  'SETTING_UP',
  'RUNNING',
  'UPLOADING',
  'COMPLETED',
  'FAILED',
  'CANCELLED',
  'TIMED_OUT',
] as const;
export type TaskState = (typeof TASK_STATES)[number];

const FINAL_STATES: ReadonlySet<string> = new Set(['COMPLETED', 'FAILED', 'CANCELLED', 'TIMED_OUT']);

/** A task that has not reached a final state (an unknown state counts as not running). */
export function isActive(state: string): boolean {
  return (TASK_STATES as readonly string[]).includes(state) && !FINAL_STATES.has(state);
}

export interface LspPosition {
  line: number;
  character: number;
}
export interface LspRange {
  start: LspPosition;
  end: LspPosition;
}

export interface RunTaskArgs {
  instruction: string;
  uris?: string[];
  range?: LspRange;
  folder?: string;
}

export interface TaskInfo {
  taskId: string;
  instruction: string;
  state: string;
  reason: string;
  folder: string;
  createdAt: string;
  filesChanged: number;
  changes: number;
  applicable: number;
  /** Beyond docs/lsp.md, when the server says so: its changes were discarded. */
  discarded: boolean;
}

export interface RunTaskResult {
  taskId: string;
  folder: string;
}
export interface ApplyResult {
  applied: string[];
  skipped: { hunk: string; reason: string }[];
}
export interface CancelResult {
  taskId: string;
  state: string;
}
export interface DiffResult {
  taskId: string;
  diff: string;
  uri: string;
}

/** The server answered with something the contract does not allow. */
export class ProtocolError extends Error {
  override name = 'ProtocolError';
}

/**
 * The command failed and the failure was already shown to the user (see middleware.ts): the
 * caller stops without a second message.
 */
export class ReportedError extends Error {
  override name = 'ReportedError';
}

export type Execute = (command: string, args: object) => Promise<unknown>;

/** Runs a server command through the command vscode-languageclient registered for it. */
export function executeThroughVsCode(ready: () => Promise<void>): Execute {
  return async (command, args) => {
    await ready();
    return vscode.commands.executeCommand(command, args);
  };
}

type Json = Record<string, unknown>;

function object(value: unknown, what: string): Json {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ProtocolError(`${what}: expected an object, got ${value === undefined ? 'nothing' : JSON.stringify(value)}`);
  }
  return value as Json;
}

function str(o: Json, key: string, what: string): string {
  const v = o[key];
  if (typeof v !== 'string') throw new ProtocolError(`${what}: "${key}" must be a string`);
  return v;
}

function optStr(o: Json, key: string): string {
  const v = o[key];
  return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : '';
}

function optCount(o: Json, key: string): number {
  const v = o[key];
  return typeof v === 'number' && Number.isFinite(v) ? v : 0;
}

function list(o: Json, key: string, what: string): unknown[] {
  const v = o[key];
  if (!Array.isArray(v)) throw new ProtocolError(`${what}: "${key}" must be a list`);
  return v;
}

export function decodeTaskInfo(value: unknown): TaskInfo {
  const o = object(value, 'task');
  return {
    taskId: str(o, 'taskId', 'task'),
    state: str(o, 'state', 'task'),
    instruction: optStr(o, 'instruction'),
    reason: optStr(o, 'reason'),
    folder: optStr(o, 'folder'),
    createdAt: optStr(o, 'createdAt'),
    filesChanged: optCount(o, 'filesChanged'),
    changes: optCount(o, 'changes'),
    applicable: optCount(o, 'applicable'),
    discarded: o.discarded === true,
  };
}

export class CodexServer {
  constructor(private readonly execute: Execute) {}

  private async call(command: string, args: object): Promise<Json> {
    const result = await this.execute(command, args);
    // vscode-languageclient answers `undefined` for a request that failed (and was reported).
    if (result === undefined || result === null) throw new ReportedError(`${command} failed`);
    return object(result, command);
  }

  async runTask(args: RunTaskArgs): Promise<RunTaskResult> {
    const r = await this.call(ServerCommand.runTask, args);
    return { taskId: str(r, 'taskId', ServerCommand.runTask), folder: optStr(r, 'folder') };
  }

  async listTasks(): Promise<TaskInfo[]> {
    const r = await this.call(ServerCommand.listTasks, {});
    return list(r, 'tasks', ServerCommand.listTasks).map(decodeTaskInfo);
  }

  /** Applies the given changes of a task, or all of them without `hunks`. */
  async applyTask(taskId: string, hunks?: string[]): Promise<ApplyResult> {
    const args = hunks === undefined ? { taskId } : { taskId, hunks };
    const r = await this.call(ServerCommand.applyTask, args);
    const what = ServerCommand.applyTask;
    return {
      applied: list(r, 'applied', what).map(String),
      skipped: list(r, 'skipped', what).map((s) => {
        const o = object(s, what);
        return { hunk: optStr(o, 'hunk'), reason: optStr(o, 'reason') };
      }),
    };
  }

  async discardTask(taskId: string): Promise<void> {
    await this.call(ServerCommand.discardTask, { taskId });
  }

  async cancelTask(taskId: string): Promise<CancelResult> {
    const r = await this.call(ServerCommand.cancelTask, { taskId });
    return { taskId: optStr(r, 'taskId') || taskId, state: optStr(r, 'state') };
  }

  async showDiff(taskId: string): Promise<DiffResult> {
    const r = await this.call(ServerCommand.showDiff, { taskId });
    return { taskId, diff: optStr(r, 'diff'), uri: optStr(r, 'uri') };
  }
}
