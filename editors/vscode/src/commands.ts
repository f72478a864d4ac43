/**
 * The palette commands. Each one asks what it needs (instruction, folder, task) and calls one
 * server command; the server does the work. Their ids (`codex-sys.*`) differ from the server's
 * (`codexSys.*`), which vscode-languageclient registers by itself.
 */
import * as vscode from 'vscode';
import {
  type CodexServer,
  ProtocolError,
  ReportedError,
  type LspRange,
  type RunTaskArgs,
  type RunTaskResult,
  type TaskInfo,
} from './server';
import { ACTION_LABELS, canDo, firstLine, pickTask, type TaskAction, taskItem } from './tasks';

export const UserCommand = {
  runTask: 'codex-sys.runTask',
  runTaskOnSelection: 'codex-sys.runTaskOnSelection',
  showTasks: 'codex-sys.showTasks',
  showDiff: 'codex-sys.showDiff',
  applyAll: 'codex-sys.applyAll',
  discardTask: 'codex-sys.discardTask',
  cancelTask: 'codex-sys.cancelTask',
  setRunnerToken: 'codex-sys.setRunnerToken',
  clearRunnerToken: 'codex-sys.clearRunnerToken',
  showOutput: 'codex-sys.showOutput',
} as const;

export interface CommandDeps {
  server: CodexServer;
  /** A line in the "Codex" output channel. */
  log(line: string): void;
  /** Tasks were started or changed state: the status bar refreshes. */
  tasksChanged(): void;
}

export function toLspRange(range: vscode.Range): LspRange {
  return {
    start: { line: range.start.line, character: range.start.character },
    end: { line: range.end.line, character: range.end.character },
  };
}

/**
 * The workspace folder a task runs on: the active editor's, else the only one, else the one the
 * user picks. `undefined`: no folder is open (a message says so) or the user dismissed the picker.
 */
export async function chooseFolder(): Promise<vscode.WorkspaceFolder | undefined> {
  const folders = vscode.workspace.workspaceFolders ?? [];
  if (folders.length === 0) {
    void vscode.window.showWarningMessage('Codex: open a folder first; a task runs on a workspace folder.');
    return undefined;
  }
  const editor = vscode.window.activeTextEditor;
  if (editor !== undefined) {
    const own = vscode.workspace.getWorkspaceFolder(editor.document.uri);
    if (own !== undefined) return own;
  }
  if (folders.length === 1) return folders[0];
  return vscode.window.showWorkspaceFolderPick({
    placeHolder: 'Workspace folder the agent works on',
    ignoreFocusOut: true,
  });
}

/** Asks for the instruction. `undefined`: dismissed, or blank (a message says so). */
export async function askInstruction(prompt: string): Promise<string | undefined> {
  const entered = await vscode.window.showInputBox({
    title: 'Codex: Run Task',
    prompt,
    placeHolder: 'e.g. Fix the failing test in calc.py',
    ignoreFocusOut: true,
  });
  if (entered === undefined) return undefined;
  const instruction = entered.trim();
  if (instruction === '') {
    void vscode.window.showWarningMessage('Codex: the instruction is empty; no task was started.');
    return undefined;
  }
  return instruction;
}

/** A task id given as a command argument (`"id"` or `{taskId: "id"}`), e.g. from a keybinding. */
export function taskIdArgument(arg: unknown): string | undefined {
  if (typeof arg === 'string' && arg !== '') return arg;
  if (arg !== null && typeof arg === 'object' && 'taskId' in arg) {
    const id = arg.taskId;
    if (typeof id === 'string' && id !== '') return id;
  }
  return undefined;
}

export class Commands {
  constructor(private readonly deps: CommandDeps) {}

  /** "Codex: Run Task…": an instruction for the whole workspace folder. */
  async runTask(): Promise<RunTaskResult | undefined> {
    const folder = await chooseFolder();
    if (folder === undefined) return undefined;
    const multiRoot = (vscode.workspace.workspaceFolders?.length ?? 0) > 1;
    const instruction = await askInstruction(
      multiRoot ? `What should the agent do in ${folder.name}?` : 'What should the agent do?',
    );
    if (instruction === undefined) return undefined;
    return this.start({ instruction, folder: folder.uri.toString() });
  }

  /** "Codex: Run Task on Selection": an instruction about the active file and its selection. */
  async runTaskOnSelection(): Promise<RunTaskResult | undefined> {
    const editor = vscode.window.activeTextEditor;
    if (editor === undefined) {
      void vscode.window.showWarningMessage('Codex: open a file and select the code the task is about.');
      return undefined;
    }
    const document = editor.document;
    if (document.uri.scheme !== 'file') {
      void vscode.window.showWarningMessage('Codex: save the file in a workspace folder first; the agent works on files.');
      return undefined;
    }
    const folder = vscode.workspace.getWorkspaceFolder(document.uri);
    if (folder === undefined) {
      void vscode.window.showWarningMessage(
        `Codex: ${vscode.workspace.asRelativePath(document.uri)} is not in a workspace folder; the agent works on a workspace folder.`,
      );
      return undefined;
    }
    const selection = editor.selection;
    const where = vscode.workspace.asRelativePath(document.uri);
    const prompt = selection.isEmpty
      ? `What should the agent do about ${where}?`
      : `What should the agent do about lines ${selection.start.line + 1}–${selection.end.line + 1} of ${where}?`;
    const instruction = await askInstruction(prompt);
    if (instruction === undefined) return undefined;
    const args: RunTaskArgs = { instruction, uris: [document.uri.toString()], folder: folder.uri.toString() };
    if (!selection.isEmpty) args.range = toLspRange(selection);
    return this.start(args);
  }

  private async start(args: RunTaskArgs): Promise<RunTaskResult> {
    const result = await this.deps.server.runTask(args);
    this.deps.log(`Task ${result.taskId} started: ${firstLine(args.instruction)}` + (result.folder ? ` (${result.folder})` : ''));
    this.deps.tasksChanged();
    return result;
  }

  /** "Codex: Show Tasks": every task, then what can be done with the chosen one. */
  async showTasks(): Promise<void> {
    const tasks = await this.deps.server.listTasks();
    if (tasks.length === 0) {
      void vscode.window.showInformationMessage('Codex: no tasks yet. "Codex: Run Task…" starts one.');
      return;
    }
    const chosen = await vscode.window.showQuickPick(tasks.map(taskItem), {
      title: 'Codex: Tasks',
      placeHolder: 'Choose a task to see what can be done with it',
      matchOnDescription: true,
      matchOnDetail: true,
    });
    if (chosen === undefined) return;
    const task = chosen.task;
    const actions = (Object.keys(ACTION_LABELS) as TaskAction[]).filter((a) => canDo(a, task));
    if (actions.length === 0) {
      const why = task.reason !== '' ? `: ${task.reason}` : '';
      void vscode.window.showInformationMessage(`Codex: task ${task.taskId} is ${task.state}${why}. Nothing to do with it.`);
      return;
    }
    const action = await vscode.window.showQuickPick(
      actions.map((a) => ({ label: ACTION_LABELS[a], action: a })),
      { title: `Codex: task ${task.taskId}`, placeHolder: firstLine(task.instruction) },
    );
    if (action === undefined) return;
    await this.act(action.action, task.taskId);
  }

  async showDiff(arg?: unknown): Promise<void> {
    await this.withTask('showDiff', arg);
  }

  async applyAll(arg?: unknown): Promise<void> {
    await this.withTask('applyAll', arg);
  }

  async discardTask(arg?: unknown): Promise<void> {
    await this.withTask('discard', arg);
  }

  async cancelTask(arg?: unknown): Promise<void> {
    await this.withTask('cancel', arg);
  }

  /** Runs an action on the task given as argument, or on the one the user picks. */
  private async withTask(action: TaskAction, arg: unknown): Promise<void> {
    let taskId = taskIdArgument(arg);
    if (taskId === undefined) {
      const task: TaskInfo | undefined = await pickTask(await this.deps.server.listTasks(), action);
      if (task === undefined) return;
      taskId = task.taskId;
    }
    await this.act(action, taskId);
  }

  private async act(action: TaskAction, taskId: string): Promise<void> {
    switch (action) {
      case 'showDiff':
        return this.openDiff(taskId);
      case 'applyAll':
        return this.applyAllOf(taskId);
      case 'discard':
        await this.deps.server.discardTask(taskId);
        this.deps.log(`Task ${taskId}: changes discarded`);
        void vscode.window.showInformationMessage(
          `Codex: the changes of task ${taskId} are discarded (the runner keeps the task: codex-sys diff ${taskId}).`,
        );
        this.deps.tasksChanged();
        return;
      case 'cancel': {
        const result = await this.deps.server.cancelTask(taskId);
        this.deps.log(`Task ${taskId}: cancel requested, now ${result.state}`);
        void vscode.window.showInformationMessage(`Codex: task ${taskId} is ${result.state || 'being cancelled'}.`);
        this.deps.tasksChanged();
        return;
      }
    }
  }

  private async applyAllOf(taskId: string): Promise<void> {
    const { applied, skipped } = await this.deps.server.applyTask(taskId);
    const n = (count: number): string => `${count} change${count === 1 ? '' : 's'}`;
    this.deps.log(`Task ${taskId}: ${n(applied.length)} applied, ${skipped.length} skipped`);
    for (const s of skipped) this.deps.log(`Task ${taskId}: change ${s.hunk} skipped: ${s.reason}`);
    if (skipped.length === 0) {
      void vscode.window.showInformationMessage(`Codex: applied ${n(applied.length)} from task ${taskId}.`);
    } else {
      // The server shows why changes were skipped (window/showMessage); no second pop-up here.
      vscode.window.setStatusBarMessage(
        `Codex: applied ${applied.length} of ${applied.length + skipped.length} changes from task ${taskId} (reasons in the Codex output)`,
        15_000,
      );
    }
    this.deps.tasksChanged();
  }

  /**
   * Opens the task's diff.patch (the server may already have shown it with window/showDocument:
   * opening the same file again only focuses it), or the diff text in an untitled editor when there
   * is no file to open.
   */
  private async openDiff(taskId: string): Promise<void> {
    const { diff, uri } = await this.deps.server.showDiff(taskId);
    if (uri !== '') {
      try {
        let document = await vscode.workspace.openTextDocument(vscode.Uri.parse(uri, true));
        if (document.languageId !== 'diff') document = await vscode.languages.setTextDocumentLanguage(document, 'diff');
        await vscode.window.showTextDocument(document, { preview: true });
        return;
      } catch (error) {
        this.deps.log(`Task ${taskId}: could not open ${uri} (${String(error)}); showing the diff text instead`);
      }
    }
    if (diff === '') {
      void vscode.window.showInformationMessage(`Codex: task ${taskId} has no diff.`);
      return;
    }
    const document = await vscode.workspace.openTextDocument({ content: diff, language: 'diff' });
    await vscode.window.showTextDocument(document, { preview: true });
  }
}

/**
 * Wraps a command so a failure ends as one readable message: a failed server request was already
 * shown by the client (see middleware.ts), anything else is shown here and logged.
 */
export function guarded<A extends unknown[]>(
  log: (line: string) => void,
  run: (...args: A) => Promise<unknown>,
): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await run(...args);
    } catch (error) {
      if (error instanceof ReportedError) return;
      const message = error instanceof Error ? error.message : String(error);
      log(error instanceof ProtocolError ? `Unexpected answer from the language server: ${message}` : message);
      void vscode.window.showErrorMessage(`Codex: ${message}`);
    }
  };
}
