import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { findExecutable } from '../src/launch';
import { needsRestart, serverLaunch, serverSettings } from '../src/settings';

/** The `codexSys` section with these keys set, like WorkspaceConfiguration.get. */
function config(values: Record<string, unknown>) {
  return { get: (key: string) => values[key] };
}

describe('settings → initializationOptions', () => {
  it('has the shape of docs/lsp.md with its defaults', () => {
    const { value, problems } = serverSettings(config({}), undefined);
    assert.deepEqual(value, {
      runner: { address: '', token: '' },
      model: '',
      snapshot: { exclude: [], maxFiles: 100000, maxBytes: 536870912 },
    });
    assert.deepEqual(problems, []);
  });

  it('maps every setting and the token from SecretStorage', () => {
    const { value } = serverSettings(
      config({
        'runner.address': ' runner.example.com:50051 ',
        model: 'deepseek-chat',
        'snapshot.exclude': ['*.log', 'data/'],
        'snapshot.maxFiles': 500,
        'snapshot.maxBytes': 1048576,
        'server.path': '/opt/codex-sys',
      }),
      'tok-123',
    );
    assert.deepEqual(value, {
      runner: { address: 'runner.example.com:50051', token: 'tok-123' },
      model: 'deepseek-chat',
      snapshot: { exclude: ['*.log', 'data/'], maxFiles: 500, maxBytes: 1048576 },
    });
  });

  it('never sends how the server is started', () => {
    const { value } = serverSettings(config({ 'server.path': '/opt/codex-sys', 'server.args': ['-v'] }), undefined);
    assert.equal('server' in value, false);
  });

  it('keeps the default of a setting with the wrong type, and names it', () => {
    const { value, problems } = serverSettings(
      config({ 'snapshot.maxFiles': -3, 'snapshot.exclude': ['ok', 4], model: 42, 'snapshot.maxBytes': 1.5 }),
      undefined,
    );
    assert.deepEqual(value.snapshot, { exclude: [], maxFiles: 100000, maxBytes: 536870912 });
    assert.equal(value.model, '');
    assert.deepEqual(
      problems.map((p) => p.setting),
      ['codexSys.model', 'codexSys.snapshot.exclude', 'codexSys.snapshot.maxFiles', 'codexSys.snapshot.maxBytes'],
    );
    assert.equal(problems[2]?.message, 'codexSys.snapshot.maxFiles must be a positive integer; using 100000');
  });
});

describe('server launch', () => {
  it('is `codex-sys lsp` by default', () => {
    assert.deepEqual(serverLaunch(config({})).value, { command: 'codex-sys', args: ['lsp'] });
    assert.deepEqual(serverLaunch(config({ 'server.path': '  ' })).value, { command: 'codex-sys', args: ['lsp'] });
  });

  it('takes the path setting, with ~ as the home folder, and extra arguments after lsp', () => {
    const { value } = serverLaunch(
      config({ 'server.path': '~/proj/.venv/bin/codex-sys', 'server.args': ['--log-level', 'debug'] }),
      '/home/dev',
    );
    assert.deepEqual(value, { command: '/home/dev/proj/.venv/bin/codex-sys', args: ['lsp', '--log-level', 'debug'] });
  });

  it('restarts the server only for codexSys.server changes', () => {
    const changed = (...keys: string[]) => (section: string) =>
      keys.some((k) => k === section || k.startsWith(`${section}.`));
    assert.equal(needsRestart(changed('codexSys.server.path')), true);
    assert.equal(needsRestart(changed('codexSys.server.args')), true);
    assert.equal(needsRestart(changed('codexSys.model', 'codexSys.runner.address')), false);
  });
});

describe('finding the executable', () => {
  const files = new Set(['/usr/local/bin/codex-sys', '/work/.venv/bin/codex-sys', 'C:\\tools\\codex-sys.EXE'.toLowerCase()]);
  const exists = (f: string) => files.has(f.toLowerCase());

  it('looks a bare name up on PATH', () => {
    assert.equal(findExecutable('codex-sys', { PATH: '/usr/bin:/usr/local/bin' }, 'linux', exists), '/usr/local/bin/codex-sys');
    assert.equal(findExecutable('codex-sys', { PATH: '/usr/bin' }, 'linux', exists), undefined);
  });

  it('takes a path as it is, relative ones from the workspace', () => {
    assert.equal(findExecutable('/work/.venv/bin/codex-sys', {}, 'linux', exists), '/work/.venv/bin/codex-sys');
    assert.equal(findExecutable('.venv/bin/codex-sys', {}, 'linux', exists, '/work'), '/work/.venv/bin/codex-sys');
    assert.equal(findExecutable('/nowhere/codex-sys', { PATH: '/usr/local/bin' }, 'linux', exists), undefined);
  });

  it('tries PATHEXT on Windows', () => {
    assert.equal(
      findExecutable('codex-sys', { Path: 'C:\\Windows;C:\\tools', PATHEXT: '.COM;.EXE' }, 'win32', exists),
      'C:\\tools\\codex-sys.exe',
    );
  });
});
