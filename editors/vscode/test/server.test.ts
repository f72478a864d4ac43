import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CodexServer, decodeTaskInfo, isActive, ProtocolError, ReportedError, TASK_STATES } from '../src/server';

function server(answer: unknown) {
  const sent: [string, object][] = [];
  const s = new CodexServer((command, args) => {
    sent.push([command, args]);
    return Promise.resolve(answer);
  });
  return { s, sent };
}

describe('server command results', () => {
  it('decode a task list', async () => {
    const { s, sent } = server({
      tasks: [
        {
          taskId: 't1',
          instruction: 'Fix',
          state: 'COMPLETED',
          reason: null,
          folder: 'file:///w',
          createdAt: 1735725600,
          filesChanged: 2,
          changes: 3,
          applicable: 3,
        },
      ],
    });
    assert.deepEqual(await s.listTasks(), [
      {
        taskId: 't1',
        instruction: 'Fix',
        state: 'COMPLETED',
        reason: '',
        folder: 'file:///w',
        createdAt: '1735725600',
        filesChanged: 2,
        changes: 3,
        applicable: 3,
        discarded: false,
      },
    ]);
    assert.deepEqual(sent, [['codexSys.listTasks', {}]]);
  });

  it('refuse a task without an id or a state', () => {
    assert.throws(() => decodeTaskInfo({ state: 'RUNNING' }), ProtocolError);
    assert.throws(() => decodeTaskInfo({ taskId: 't', state: 3 }), /"state" must be a string/);
    assert.throws(() => decodeTaskInfo('t1'), /expected an object, got "t1"/);
  });

  it('apply all sends no hunks; apply some sends them', async () => {
    const { s, sent } = server({ applied: ['1'], skipped: [{ hunk: '2', reason: 'no longer fits' }] });
    assert.deepEqual(await s.applyTask('t1'), { applied: ['1'], skipped: [{ hunk: '2', reason: 'no longer fits' }] });
    await s.applyTask('t1', ['1', '2']);
    assert.deepEqual(sent, [
      ['codexSys.applyTask', { taskId: 't1' }],
      ['codexSys.applyTask', { taskId: 't1', hunks: ['1', '2'] }],
    ]);
  });

  it('a failed (already reported) command is a ReportedError', async () => {
    await assert.rejects(server(undefined).s.runTask({ instruction: 'x' }), ReportedError);
  });

  it('a runTask answer without a task id is a ProtocolError', async () => {
    await assert.rejects(server({ folder: 'f' }).s.runTask({ instruction: 'x' }), /codexSys.runTask: "taskId" must be a string/);
  });

  it('running means not in a final state', () => {
    assert.deepEqual(
      TASK_STATES.filter((s) => isActive(s)),
      ['QUEUED', 'PREPARING', 'SETTING_UP', 'RUNNING', 'UPLOADING'],
    );
    assert.equal(isActive('WHATEVER'), false);
  });
});
