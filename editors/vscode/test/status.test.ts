import * as assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import type { TaskInfo } from '../src/server';
import { TaskStatus } from '../src/status';
import { ManualTimers, task } from './helpers';
import * as vscode from './vscode-fake';

function setup(tasks: () => TaskInfo[] | Promise<TaskInfo[]>) {
  const timers = new ManualTimers();
  let listings = 0;
  const status = new TaskStatus(
    async () => {
      listings++;
      return tasks();
    },
    { timers, pollMs: 2000, soonMs: 250, command: 'codex-sys.showTasks' },
  );
  const item = vscode.window.statusBarItems.at(-1);
  if (item === undefined) throw new Error('no item');
  return { status, timers, item, listings: () => listings };
}

beforeEach(() => {
  vscode.reset();
});

describe('status bar', () => {
  it('shows the number of running tasks once the server runs', async () => {
    const { status, item } = setup(() => [
      task('a', 'RUNNING'),
      task('b', 'QUEUED'),
      task('c', 'SETTING_UP'),
      task('d', 'COMPLETED'),
      task('e', 'FAILED'),
      task('f', 'SOMETHING_NEW'),
    ]);
    assert.equal(item.text, '$(loading~spin) Codex');
    status.setServerState('running');
    await vscode.settle();
    assert.equal(item.text, '$(sync~spin) Codex: 3 running');
    assert.equal(status.runningCount, 3);
    assert.equal(item.command, 'codex-sys.showTasks');
  });

  it('polls while tasks run and stops when none does', async () => {
    let tasks = [task('a', 'RUNNING')];
    const { status, timers, item, listings } = setup(() => tasks);
    status.setServerState('running');
    await vscode.settle();
    assert.equal(listings(), 1);
    assert.deepEqual(timers.delays(), [2000]);

    timers.fire(2000);
    await vscode.settle();
    assert.equal(listings(), 2);
    assert.deepEqual(timers.delays(), [2000], 'still running: polls again');

    tasks = [task('a', 'COMPLETED')];
    timers.fire(2000);
    await vscode.settle();
    assert.equal(listings(), 3);
    assert.equal(item.text, '$(hubot) Codex');
    assert.deepEqual(timers.delays(), [], 'nothing runs: no more polling');
  });

  it('coalesces a burst of progress reports into one listing', async () => {
    const { status, timers, listings } = setup(() => []);
    status.setServerState('running');
    await vscode.settle();
    for (let i = 0; i < 20; i++) status.refreshSoon();
    assert.deepEqual(timers.delays(), [250]);
    timers.fire(250);
    await vscode.settle();
    assert.equal(listings(), 2);
  });

  it('a refresh asked during a listing runs once after it, not in parallel', async () => {
    let release: (() => void) | undefined;
    let running = 0;
    let maxRunning = 0;
    const { status, listings } = setup(async () => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      await new Promise<void>((resolve) => (release = resolve));
      running--;
      return [];
    });
    status.setServerState('running');
    void status.refresh();
    void status.refresh();
    release?.();
    await vscode.settle();
    release?.();
    await vscode.settle();
    assert.equal(listings(), 2);
    assert.equal(maxRunning, 1);
  });

  it('says when the server is not running, and does not list then', async () => {
    const { status, timers, item, listings } = setup(() => [task('a', 'RUNNING')]);
    status.setServerState('running');
    await vscode.settle();
    status.setServerState('stopped');
    assert.equal(item.text, '$(warning) Codex');
    assert.match(item.tooltip ?? '', /not running/);
    assert.deepEqual(timers.delays(), [], 'no polling without a server');
    await status.refresh();
    assert.equal(listings(), 1);
  });

  it('keeps the last count when a listing fails, and says so in the tooltip', async () => {
    let fail = false;
    const { status, timers, item } = setup(() => {
      if (fail) throw new Error('runner unreachable');
      return [task('a', 'RUNNING')];
    });
    status.setServerState('running');
    await vscode.settle();
    fail = true;
    timers.fire(2000);
    await vscode.settle();
    assert.equal(item.text, '$(sync~spin) Codex: 1 running');
    assert.match(item.tooltip ?? '', /Last refresh failed: runner unreachable/);
    assert.deepEqual(timers.delays(), [2000], 'tries again');
  });

  it('stops its timers and removes the item when disposed', async () => {
    const { status, timers, item } = setup(() => [task('a', 'RUNNING')]);
    status.setServerState('running');
    await vscode.settle();
    status.refreshSoon();
    status.dispose();
    assert.deepEqual(timers.delays(), []);
    assert.ok(item.disposed);
  });
});
