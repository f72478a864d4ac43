/**
 * How tasks look in pickers: a state icon, the instruction, and what can be done with each task.
 */
import * as vscode from 'vscode';
import { isActive, type TaskInfo } from './server';

const STATE_ICONS: Readonly<Record<string, string>> = {
  QUEUED: '$(clock)',
  PREPARING: '$(loading~spin)',
  SETTING_UP: '$(loading~spin)',
  RUNNING: '$(sync~spin)',
  UPLOADING: '$(cloud-upload)',
  COMPLETED: '$(pass)',
  FAILED: '$(error)',
  CANCELLED: '$(circle-slash)',
  TIMED_OUT: '$(watch)',
};

export function stateIcon(state: string): string {
  return STATE_ICONS[state] ?? '$(question)';
}

export function firstLine(text: string): string {
  const line = text.trim().split(/\r?\n/, 1)[0] ?? '';
  return line.length > 80 ? `${line.slice(0, 79)}…` : line;
}

/** The folder's name for display, from its URI. */
function folderName(folder: string): string {
  const trimmed = folder.replace(/\/+$/, '');
  const name = trimmed.slice(trimmed.lastIndexOf('/') + 1);
  try {
    return decodeURIComponent(name);
  } catch {
    return name;
  }
}

export interface TaskItem extends vscode.QuickPickItem {
  task: TaskInfo;
}

export function taskItem(task: TaskInfo): TaskItem {
  const details: string[] = [];
  if (task.state === 'COMPLETED') {
    const files = `${task.filesChanged} file${task.filesChanged === 1 ? '' : 's'}`;
    if (task.discarded) details.push('changes discarded');
    else if (task.changes > 0) {
      details.push(
        `${task.changes} change${task.changes === 1 ? '' : 's'}, ${task.applicable} still applicable` +
          (task.filesChanged > 0 ? `, ${files}` : ''),
      );
    } else details.push(task.filesChanged > 0 ? `${files} changed` : 'no changes');
  }
  if (task.reason !== '') details.push(task.reason);
  if (task.folder !== '') details.push(folderName(task.folder));
  if (task.createdAt !== '') details.push(task.createdAt);
  return {
    label: `${stateIcon(task.state)} ${firstLine(task.instruction) || '(no instruction)'}`,
    description: `${task.taskId} · ${task.state}`,
    detail: details.join(' · '),
    task,
  };
}

/** What the user may do with a task, given its state. */
export type TaskAction = 'showDiff' | 'applyAll' | 'discard' | 'cancel';

export function canDo(action: TaskAction, task: TaskInfo): boolean {
  // A completed task whose changes the server has not loaded yet has files changed but no
  // change count: it is loaded when asked for.
  const notLoaded = task.changes === 0 && task.filesChanged > 0 && !task.discarded;
  const completed = task.state === 'COMPLETED';
  switch (action) {
    case 'cancel':
      return isActive(task.state);
    case 'showDiff':
      return completed && (task.changes > 0 || task.filesChanged > 0);
    case 'discard':
      return completed && !task.discarded && task.changes > 0;
    case 'applyAll':
      return completed && !task.discarded && (task.applicable > 0 || notLoaded);
  }
}

export const ACTION_LABELS: Readonly<Record<TaskAction, string>> = {
  showDiff: '$(diff) Show Diff',
  applyAll: '$(check-all) Apply All Changes',
  discard: '$(trash) Discard Task',
  cancel: '$(stop-circle) Cancel Task',
};

const NOTHING_TO: Readonly<Record<TaskAction, string>> = {
  showDiff: 'no completed task has changes to show',
  applyAll: 'no completed task has changes that still apply',
  discard: 'no completed task has changes to discard',
  cancel: 'no task is running',
};

/**
 * Asks which task to act on, among those the action fits. `undefined`: the user dismissed the
 * picker, or there was none (and a message said so).
 */
export async function pickTask(tasks: readonly TaskInfo[], action: TaskAction): Promise<TaskInfo | undefined> {
  const candidates = tasks.filter((t) => canDo(action, t));
  if (candidates.length === 0) {
    void vscode.window.showInformationMessage(`Codex: ${NOTHING_TO[action]}.`);
    return undefined;
  }
  const chosen = await vscode.window.showQuickPick(candidates.map(taskItem), {
    title: `Codex: ${ACTION_LABELS[action].replace(/^\$\([^)]*\) /, '')}`,
    placeHolder: 'Choose a task',
    matchOnDescription: true,
    matchOnDetail: true,
  });
  return chosen?.task;
}
