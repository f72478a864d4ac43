import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, it } from 'node:test';
import { ServerCommand } from '../src/server';
import { serverSettings } from '../src/settings';
import { TOKEN_KEY } from '../src/token';
import { activate, run } from './setup';
import * as vscode from './vscode-fake';

const root = path.resolve(__dirname, '../..');
const manifest = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as {
  contributes: { commands: { command: string; title: string; category: string }[] };
};

afterEach(() => {
  assert.deepEqual(vscode.unusedAnswers(), [], 'every scripted answer was asked for');
});

describe('activation', () => {
  it('registers exactly the contributed commands, and none of the server ids', () => {
    activate({ registerServer: false });
    const contributed = manifest.contributes.commands.map((c) => c.command).sort();
    assert.deepEqual(vscode.commands.registered(), contributed);
    for (const id of Object.values(ServerCommand)) assert.ok(!contributed.includes(id), id);
  });

  it('leaves the server ids free for vscode-languageclient to register', () => {
    activate({ registerServer: false });
    // The fake throws on a second registration of an id, as VS Code does.
    for (const id of Object.values(ServerCommand)) vscode.commands.registerCommand(id, () => undefined);
  });

  it('has the palette titles of the spec', () => {
    const titles = manifest.contributes.commands.map((c) => `${c.category}: ${c.title}`);
    for (const title of [
      'Codex: Run Task…',
      'Codex: Run Task on Selection',
      'Codex: Show Tasks',
      'Codex: Show Diff',
      'Codex: Apply All Changes',
      'Codex: Discard Task',
      'Codex: Cancel Task',
      'Codex: Set Runner Token',
      'Codex: Clear Runner Token',
    ]) {
      assert.ok(titles.includes(title), title);
    }
  });

  it('creates the "Codex" output channel and a status bar item that shows the tasks', () => {
    const { statusItem, output } = activate();
    assert.equal(output.name, 'Codex');
    assert.equal(statusItem.command, 'codex-sys.showTasks');
    assert.ok(statusItem.visible);
  });

  it('restarts the server when codexSys.server settings change, not for the others', () => {
    const { host } = activate();
    vscode.workspace.changeConfiguration('codexSys.model', 'codexSys.snapshot.exclude', 'codexSys.runner.address');
    assert.deepEqual(host.restarts, []);
    vscode.workspace.changeConfiguration('codexSys.server.path');
    assert.deepEqual(host.restarts, ['codexSys.server settings changed']);
  });

  it('disposes of everything it made', () => {
    const { subscriptions, host, statusItem } = activate();
    for (const s of subscriptions) s.dispose();
    assert.ok(host.disposed);
    assert.ok(statusItem.disposed);
    assert.deepEqual(vscode.commands.registered().filter((id) => id.startsWith('codex-sys.')), []);
  });
});

describe('runner token', () => {
  it('Set Runner Token keeps the token in SecretStorage, not in settings, and restarts the server with it', async () => {
    const { secrets, host } = activate();
    vscode.ui.answer('showInputBox', (options: { password: boolean }) => {
      assert.equal(options.password, true, 'the token is typed in a password box');
      return '  s3cret-token ';
    });
    await run('codex-sys.setRunnerToken');
    assert.deepEqual([...secrets.values], [[TOKEN_KEY, 's3cret-token']]);
    assert.deepEqual(vscode.workspace.settings, {});
    assert.deepEqual(host.restarts, ['the runner token changed']);
    // What the restarted client sends in initializationOptions.
    const token = await host.deps?.token.get();
    const init = serverSettings(vscode.workspace.getConfiguration('codexSys'), token).value;
    assert.deepEqual(init.runner, { address: '', token: 's3cret-token' });
  });

  it('Clear Runner Token removes it and restarts the server without it', async () => {
    const { secrets, host } = activate();
    await secrets.store(TOKEN_KEY, 'old');
    host.restarts.length = 0;
    await run('codex-sys.clearRunnerToken');
    assert.deepEqual([...secrets.values], []);
    assert.deepEqual(host.restarts, ['the runner token changed']);
    assert.equal(await host.deps?.token.get(), undefined);
    assert.match(vscode.ui.messages()[0] ?? '', /runner token removed/);
  });

  it('a token changed in another window restarts this one too', async () => {
    const { secrets, host } = activate();
    await secrets.store(TOKEN_KEY, 'from-elsewhere');
    await secrets.store('someOtherKey', 'x');
    assert.deepEqual(host.restarts, ['the runner token changed']);
  });

  it('an empty or dismissed token input stores nothing and restarts nothing', async () => {
    const { secrets, host } = activate();
    await secrets.store(TOKEN_KEY, 'kept');
    host.restarts.length = 0;
    vscode.ui.answer('showInputBox', '   ', undefined);
    await run('codex-sys.setRunnerToken');
    await run('codex-sys.setRunnerToken');
    assert.deepEqual([...secrets.values], [[TOKEN_KEY, 'kept']]);
    assert.deepEqual(host.restarts, []);
    assert.match(vscode.ui.messages()[0] ?? '', /the token is empty; nothing was stored/);
  });

  it('Clear Runner Token with no token says so and restarts nothing', async () => {
    const { host } = activate();
    await run('codex-sys.clearRunnerToken');
    assert.deepEqual(host.restarts, []);
    assert.deepEqual(vscode.ui.messages(), ['information: Codex: no runner token is stored.']);
  });
});

describe('progress end', () => {
  it('logs the closing message (the server shows it)', () => {
    const { host, output } = activate();
    host.deps?.progress.ended('Codex t1', 'COMPLETED: 3 changes');
    host.deps?.progress.ended('Codex t2', undefined);
    host.deps?.progress.ended('Codex', 'Codex: task t3 ended CANCELLED: cancelled by the user');
    assert.deepEqual(
      output.lines.filter((l) => l.includes('Codex')),
      ['[info] Codex t1: COMPLETED: 3 changes', '[info] Codex: task t3 ended CANCELLED: cancelled by the user'],
    );
    assert.deepEqual(vscode.ui.messages(), []);
  });
});
