import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { configurationResult, executeCommand } from '../src/middleware';

describe('workspace/configuration answers', () => {
  const section = {
    runner: { address: 'runner:50051' },
    model: 'm',
    snapshot: { exclude: [], maxFiles: 10, maxBytes: 20 },
    server: { path: '/opt/codex-sys', args: [] },
  };

  it('carry the token in the codexSys section and leave out how the server starts', () => {
    const [answer] = configurationResult([{ section: 'codexSys', scopeUri: 'file:///w' }], [section], 'tok');
    assert.deepEqual(answer, {
      runner: { address: 'runner:50051', token: 'tok' },
      model: 'm',
      snapshot: { exclude: [], maxFiles: 10, maxBytes: 20 },
    });
    assert.deepEqual(section.runner, { address: 'runner:50051' }, 'the original is not changed');
  });

  it('carry an empty token when none is stored', () => {
    const [answer] = configurationResult([{ section: 'codexSys' }], [{ model: '' }], undefined);
    assert.deepEqual(answer, { model: '', runner: { token: '' } });
  });

  it('carry the token for codexSys.runner, and nothing for other sections', () => {
    const answers = configurationResult(
      [{ section: 'codexSys.runner' }, { section: 'editor' }, { section: 'codexSys.model' }],
      [{ address: '' }, { tabSize: 4 }, 'm'],
      'tok',
    );
    assert.deepEqual(answers, [{ address: '', token: 'tok' }, { tabSize: 4 }, 'm']);
  });

  it('carry the token when the whole configuration is asked for', () => {
    const [answer] = configurationResult([{}], [{ codexSys: { model: 'x' }, editor: {} }], 'tok');
    assert.deepEqual(answer, { codexSys: { model: 'x', runner: { token: 'tok' } }, editor: {} });
  });
});

describe('server commands', () => {
  function setup(outcome: () => Promise<unknown>) {
    const reported: string[] = [];
    const logged: string[] = [];
    const sent: [string, unknown[]][] = [];
    const execute = executeCommand(
      (command, args) => {
        sent.push([command, args]);
        return outcome();
      },
      (message) => reported.push(message),
      (message) => logged.push(message),
    );
    return { execute, reported, logged, sent };
  }

  it('pass the arguments through and answer the result', async () => {
    const { execute, reported, sent } = setup(() => Promise.resolve({ taskId: 't1', folder: 'f' }));
    assert.deepEqual(await execute('codexSys.runTask', [{ instruction: 'x' }]), { taskId: 't1', folder: 'f' });
    assert.deepEqual(sent, [['codexSys.runTask', [{ instruction: 'x' }]]]);
    assert.deepEqual(reported, []);
  });

  it('only log a refusal the server has shown itself (RequestFailed), and answer undefined', async () => {
    const error = Object.assign(new Error('Codex: no task t9 on the runner'), { code: -32803 });
    const { execute, reported, logged } = setup(() => Promise.reject(error));
    assert.equal(await execute('codexSys.applyTask', [{ taskId: 't9' }]), undefined);
    assert.deepEqual(reported, []);
    assert.deepEqual(logged, ['codexSys.applyTask refused: Codex: no task t9 on the runner']);
  });

  it('show any other failure once, with its message', async () => {
    const error = Object.assign(new Error('Unhandled method workspace/executeCommand'), { code: -32601 });
    const { execute, reported } = setup(() => Promise.reject(error));
    assert.equal(await execute('codexSys.runTask', [{ instruction: 'x' }]), undefined);
    assert.deepEqual(reported, ['Codex: Unhandled method workspace/executeCommand']);
  });

  it('show a failure that is not a JSON-RPC error', async () => {
    const { execute, reported } = setup(() => Promise.reject(new Error('the language server is not running')));
    assert.equal(await execute('codexSys.listTasks', []), undefined);
    assert.deepEqual(reported, ['Codex: the language server is not running']);
  });

  it('stay quiet about a cancelled request', async () => {
    const { execute, reported } = setup(() => Promise.reject(Object.assign(new Error('cancelled'), { code: -32800 })));
    assert.equal(await execute('codexSys.listTasks', []), undefined);
    assert.deepEqual(reported, []);
  });

  it('say when the server went away before answering', async () => {
    const { execute, reported } = setup(() => Promise.reject(Object.assign(new Error('gone'), { code: -32097 })));
    assert.equal(await execute('codexSys.applyTask', [{ taskId: 't' }]), undefined);
    assert.deepEqual(reported, ['Codex: the language server stopped before answering codexSys.applyTask. See the "Codex" output.']);
  });
});
