/**
 * Smoke run: the bundled extension, with the real vscode-languageclient, against the real
 * `codex-sys lsp` and an embedded runner (its scripted demo model, slowed down), in a copy of
 * examples/calc.
 * VS Code itself is the test double (smoke/vscode-permissive.ts). Not part of the build: it needs
 * the Python package and bubblewrap. Usage: npm run smoke -- /path/to/codex-sys
 *
 * It checks that the client starts and registers the server's commands next to the extension's,
 * that Run Task shows a cancellable notification and a running count, that Show Tasks offers the
 * completed task's actions, that Show Diff opens the patch, that a refused command gives exactly
 * one message, that Cancel in a notification cancels a task, that a token change restarts the
 * server, and that deactivation stops it.
 */
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import * as extension from '../src/extension';
import * as fake from '../test/vscode-fake';
import { stubbed } from './stubbed';

async function waitFor(what: string, done: () => boolean, ms = 120_000): Promise<void> {
  const start = Date.now();
  while (!done()) {
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function step(text: string): void {
  process.stdout.write(`smoke: ${text}\n`);
}

async function main(executable: string, folder: string): Promise<void> {
  fake.reset();
  fake.workspace.workspaceFolders = [fake.folder(folder)];
  fake.workspace.settings = { 'codexSys.server.path': executable };
  const secrets = new fake.FakeSecrets();
  extension.activate({ secrets, subscriptions: [] } as never);
  const item = fake.window.statusBarItems[0];
  assert.ok(item);
  await waitFor('the server to run', () => item.text === '$(hubot) Codex', 30_000);
  const registered = fake.commands.registered();
  for (const id of ['codexSys.runTask', 'codexSys.listTasks', 'codex-sys.runTask', 'codex-sys.showTasks']) {
    assert.ok(registered.includes(id), `${id} registered`);
  }
  step('server started; client and extension commands registered side by side');

  fake.ui.answer('showInputBox', 'Fix the failing test in calc.py');
  await fake.commands.executeCommand('codex-sys.runTask');
  await waitFor('a notification', () => fake.window.progressRuns.length === 1, 30_000);
  const run = fake.window.progressRuns[0];
  assert.ok(run);
  assert.deepEqual(run.options, { location: fake.ProgressLocation.Notification, title: 'Codex', cancellable: true });
  await waitFor('the running count', () => item.text === '$(sync~spin) Codex: 1 running', 30_000);
  step(`task running: a cancellable notification, status bar "${item.text}"`);
  await waitFor('the task to end', () => run.finished);
  await waitFor('the status bar to settle', () => item.text === '$(hubot) Codex', 10_000);
  step(`task ended after ${run.reports.length} progress reports: ${run.reports.at(-1)?.message ?? ''}`);

  let offered: string[] = [];
  fake.ui.answer(
    'showQuickPick',
    (tasks: { label: string }[]) => tasks[0],
    (actions: { label: string }[]) => {
      offered = actions.map((a) => a.label);
      return actions.find((a) => a.label.includes('Show Diff'));
    },
  );
  await fake.commands.executeCommand('codex-sys.showTasks');
  await waitFor('the diff to open', () => fake.window.shownDocuments.length > 0, 10_000);
  assert.deepEqual(offered, ['$(diff) Show Diff', '$(check-all) Apply All Changes', '$(trash) Discard Task']);
  // The client opens it for the server's window/showDocument, the extension once more (same editor).
  const diff = fake.window.shownDocuments.at(-1);
  assert.ok(diff);
  assert.equal(diff.languageId, 'diff');
  assert.match(diff.uri.toString(), /\.patch$/);
  assert.match(diff.text, /^diff --git a\/calc\.py b\/calc\.py/);
  step(`Show Tasks offered ${offered.length} actions; Show Diff opened ${diff.uri.toString()}`);

  const before = fake.ui.messages().length;
  await fake.commands.executeCommand('codex-sys.cancelTask', 't0000000000000000');
  await fake.settle();
  await new Promise((resolve) => setTimeout(resolve, 300));
  const refusal = fake.ui.messages().slice(before);
  assert.deepEqual(refusal, ['error: Codex: no task t0000000000000000']);
  step(`a refused command gives one message: ${refusal[0] ?? ''}`);

  fake.ui.answer('showInputBox', 'Fix the failing test in calc.py');
  await fake.commands.executeCommand('codex-sys.runTask');
  await waitFor('a second notification', () => fake.window.progressRuns.length === 2, 30_000);
  const second = fake.window.progressRuns[1];
  assert.ok(second);
  second.cancel();
  await waitFor('the cancelled task to end', () => second.finished);
  const cancelled = fake.ui.messages().filter((m) => m.includes('CANCELLED'));
  assert.equal(cancelled.length, 1, fake.ui.messages().join('\n'));
  step(`Cancel in the notification: ${cancelled[0] ?? ''}`);

  fake.ui.answer('showInputBox', 'smoke-token');
  await fake.commands.executeCommand('codex-sys.setRunnerToken');
  await waitFor('the restart', () => item.text !== '$(hubot) Codex', 10_000);
  await waitFor('the server to run again', () => item.text === '$(hubot) Codex', 30_000);
  step('token stored; the server restarted');

  await extension.deactivate();
  step(`deactivated (${stubbed.size} VS Code APIs were stubbed: ${[...stubbed].slice(0, 4).join(', ')}, …)`);
}

function stopRunner(executable: string, home: string): void {
  try {
    execFileSync(executable, ['runner', 'stop'], { env: { ...process.env, CODEX_SYS_HOME: home }, stdio: 'ignore' });
  } catch {
    // No runner was started.
  }
}

const executable = process.argv[2];
if (executable === undefined) {
  process.stderr.write('usage: npm run smoke -- /path/to/codex-sys\n');
  process.exit(2);
}
const scratch = mkdtempSync(path.join(tmpdir(), 'codex-sys-vscode-smoke-'));
const home = path.join(scratch, 'home');
const folder = path.join(scratch, 'calc');
const repo = path.resolve(__dirname, '../../../..');
cpSync(path.join(repo, 'examples/calc'), folder, { recursive: true });
// The demo model, slowed down at its first answer so a task is seen running and can be cancelled.
const scenario = JSON.parse(
  readFileSync(path.join(repo, 'runner/scripted_llm/scenarios/demo-fix-calc.json'), 'utf8'),
) as { steps: Record<string, unknown>[] };
if (scenario.steps[0] !== undefined) scenario.steps[0].delay_s = 3;
writeFileSync(path.join(scratch, 'scenario.json'), JSON.stringify(scenario));
// The server and the embedded runner it starts inherit these.
process.env.CODEX_SYS_HOME = home;
process.env.CODEX_SYS_SCRIPTED_SCENARIO = path.join(scratch, 'scenario.json');
main(path.resolve(executable), folder).then(
  () => {
    stopRunner(path.resolve(executable), home);
    rmSync(scratch, { recursive: true, force: true, maxRetries: 5 });
    process.stdout.write('smoke: passed\n');
    process.exit(0);
  },
  (error: unknown) => {
    stopRunner(path.resolve(executable), home);
    process.stderr.write(`smoke: FAILED: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    for (const line of fake.window.outputChannels[0]?.lines.slice(-15) ?? []) process.stderr.write(`  ${line.slice(0, 300)}\n`);
    process.stderr.write(`  (scratch kept: ${scratch})\n`);
    process.exit(1);
  },
);
