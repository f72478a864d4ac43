import * as assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import type { ProgressToken } from 'vscode-languageclient';
import { NotificationProgress, type ProgressChannel, type WorkDoneValue } from '../src/progress';
import * as vscode from './vscode-fake';

/** The client side of $/progress: a test sends values for a token; cancellations are recorded. */
class Channel implements ProgressChannel {
  readonly handlers = new Map<ProgressToken, (value: WorkDoneValue) => void>();
  readonly cancelled: ProgressToken[] = [];
  onProgress(token: ProgressToken, handler: (value: WorkDoneValue) => void) {
    this.handlers.set(token, handler);
    return new vscode.Disposable(() => this.handlers.delete(token));
  }
  cancel(token: ProgressToken): void {
    this.cancelled.push(token);
  }
  send(token: ProgressToken, value: WorkDoneValue): void {
    const handler = this.handlers.get(token);
    if (handler === undefined) throw new Error(`no handler for ${String(token)}`);
    handler(value);
  }
}

function setup() {
  const channel = new Channel();
  const activity: number[] = [];
  const ended: [string, string | undefined][] = [];
  const progress = new NotificationProgress(channel, {
    activity: () => activity.push(1),
    ended: (title, message) => ended.push([title, message]),
  });
  return { channel, progress, activity, ended };
}

beforeEach(() => {
  vscode.reset();
});

describe('task progress', () => {
  it('is a notification with a Cancel button that cancels the task', async () => {
    const { channel, progress } = setup();
    progress.create('tok-1');
    channel.send('tok-1', { kind: 'begin', title: 'Codex t1: Fix the test', cancellable: true, message: 'QUEUED' });
    await vscode.settle();
    const [run] = vscode.window.progressRuns;
    assert.deepEqual(run?.options, {
      location: vscode.ProgressLocation.Notification,
      title: 'Codex t1: Fix the test',
      cancellable: true,
    });
    assert.deepEqual(run.reports, [{ message: 'QUEUED' }]);
    run.cancel();
    assert.deepEqual(channel.cancelled, ['tok-1']);
  });

  it('follows reports and closes at the end', async () => {
    const { channel, progress, ended, activity } = setup();
    progress.create(7);
    channel.send(7, { kind: 'begin', title: 'Codex t2', cancellable: true });
    await vscode.settle();
    channel.send(7, { kind: 'report', message: 'RUNNING' });
    channel.send(7, { kind: 'report', message: 'run_shell_command pytest -q' });
    channel.send(7, { kind: 'end', message: 'COMPLETED: 2 changes' });
    await vscode.settle();
    const [run] = vscode.window.progressRuns;
    assert.deepEqual(run?.reports, [{ message: 'RUNNING' }, { message: 'run_shell_command pytest -q' }]);
    assert.equal(run.finished, true);
    assert.deepEqual(ended, [['Codex t2', 'COMPLETED: 2 changes']]);
    assert.equal(activity.length, 4);
    assert.equal(progress.active, 0);
    assert.equal(channel.handlers.size, 0, 'unsubscribed from the token');
  });

  it('turns percentages into increments', async () => {
    const { channel, progress } = setup();
    progress.create('p');
    channel.send('p', { kind: 'begin', title: 'Upload', percentage: 10 });
    await vscode.settle();
    channel.send('p', { kind: 'report', percentage: 40, message: 'uploading' });
    channel.send('p', { kind: 'report', percentage: 30 });
    channel.send('p', { kind: 'report', percentage: 250 });
    const [run] = vscode.window.progressRuns;
    assert.deepEqual(run?.reports, [
      { message: undefined, increment: 10 },
      { message: 'uploading', increment: 30 },
      { message: undefined, increment: 0 },
      { message: undefined, increment: 60 },
    ]);
  });

  it('is not cancellable when the server says so', async () => {
    const { channel, progress } = setup();
    progress.create('q');
    channel.send('q', { kind: 'begin', title: 'Codex' });
    await vscode.settle();
    assert.equal(vscode.window.progressRuns[0]?.options.cancellable, false);
  });

  it('closes every notification when the connection goes', async () => {
    const { channel, progress } = setup();
    for (const t of ['a', 'b']) {
      progress.create(t);
      channel.send(t, { kind: 'begin', title: t, cancellable: true });
    }
    await vscode.settle();
    progress.clear();
    await vscode.settle();
    assert.deepEqual(vscode.window.progressRuns.map((r) => r.finished), [true, true]);
    assert.equal(progress.active, 0);
  });

  it('a progress that ends before it begins shows nothing', async () => {
    const { channel, progress } = setup();
    progress.create('z');
    channel.send('z', { kind: 'end' });
    await vscode.settle();
    assert.deepEqual(vscode.window.progressRuns, []);
  });
});
