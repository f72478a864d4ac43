import * as assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { editor, task } from './helpers';
import { activate, run } from './setup';
import * as vscode from './vscode-fake';

afterEach(() => {
  assert.deepEqual(vscode.unusedAnswers(), [], 'every scripted answer was asked for');
});

const APP = vscode.folder('/work/app', 0);
const LIB = vscode.folder('/work/lib', 1);

describe('Codex: Run Task…', () => {
  it('sends the instruction and the only folder', async () => {
    const { server, host } = activate();
    vscode.workspace.workspaceFolders = [APP];
    vscode.ui.answer('showInputBox', '  Fix the failing test  ');
    await run('codex-sys.runTask');
    assert.deepEqual(server.argsOf('codexSys.runTask'), [{ instruction: 'Fix the failing test', folder: 'file:///work/app' }]);
    assert.equal(host.readyCalls, 1, 'the client is started before the command is sent');
    assert.deepEqual(vscode.ui.callsOf('showWorkspaceFolderPick'), []);
  });

  it('uses the folder of the active editor in a multi-root workspace, without asking', async () => {
    const { server } = activate();
    vscode.workspace.workspaceFolders = [APP, LIB];
    vscode.window.activeTextEditor = editor('/work/lib/src/util.py');
    vscode.ui.answer('showInputBox', 'Add type hints');
    await run('codex-sys.runTask');
    assert.deepEqual(server.argsOf('codexSys.runTask'), [{ instruction: 'Add type hints', folder: 'file:///work/lib' }]);
    const [options] = vscode.ui.callsOf('showInputBox')[0] as [{ prompt: string }];
    assert.match(options.prompt, /in lib\?/, 'the prompt names the folder');
  });

  it('asks for the folder in a multi-root workspace when no editor is in one', async () => {
    const { server } = activate();
    vscode.workspace.workspaceFolders = [APP, LIB];
    vscode.window.activeTextEditor = editor('/tmp/scratch.txt');
    vscode.ui.answer('showWorkspaceFolderPick', LIB);
    vscode.ui.answer('showInputBox', 'Refactor');
    await run('codex-sys.runTask');
    assert.deepEqual(server.argsOf('codexSys.runTask'), [{ instruction: 'Refactor', folder: 'file:///work/lib' }]);
  });

  it('does nothing when the folder pick is dismissed', async () => {
    const { server } = activate();
    vscode.workspace.workspaceFolders = [APP, LIB];
    vscode.ui.answer('showWorkspaceFolderPick', undefined);
    await run('codex-sys.runTask');
    assert.deepEqual(vscode.ui.callsOf('showInputBox'), []);
    assert.deepEqual(server.calls, []);
    assert.deepEqual(vscode.ui.messages(), []);
  });

  it('refuses a blank instruction without calling the server', async () => {
    const { server } = activate();
    vscode.workspace.workspaceFolders = [APP];
    vscode.ui.answer('showInputBox', '   ');
    await run('codex-sys.runTask');
    assert.deepEqual(server.calls, []);
    assert.deepEqual(vscode.ui.messages(), ['warning: Codex: the instruction is empty; no task was started.']);
  });

  it('stops silently when the input box is dismissed', async () => {
    const { server } = activate();
    vscode.workspace.workspaceFolders = [APP];
    vscode.ui.answer('showInputBox', undefined);
    await run('codex-sys.runTask');
    assert.deepEqual(server.calls, []);
    assert.deepEqual(vscode.ui.messages(), []);
  });

  it('says a folder must be open when there is none', async () => {
    const { server } = activate();
    await run('codex-sys.runTask');
    assert.deepEqual(server.calls, []);
    assert.deepEqual(vscode.ui.messages(), ['warning: Codex: open a folder first; a task runs on a workspace folder.']);
  });

  it('logs the new task and refreshes the status bar soon', async () => {
    const { timers, output } = activate();
    vscode.workspace.workspaceFolders = [APP];
    vscode.ui.answer('showInputBox', 'Fix it');
    await run('codex-sys.runTask');
    assert.ok(output.lines.some((l) => l.includes('Task t-new started: Fix it')), output.lines.join('\n'));
    assert.deepEqual(timers.delays(), [250]);
  });
});

describe('Codex: Run Task on Selection', () => {
  it('sends the document, the selection as an LSP range, and its folder', async () => {
    const { server } = activate();
    vscode.workspace.workspaceFolders = [APP, LIB];
    vscode.window.activeTextEditor = editor('/work/lib/src/util.py', [12, 4, 3, 0]); // selected upwards
    vscode.ui.answer('showInputBox', 'Explain and simplify');
    await run('codex-sys.runTaskOnSelection');
    const args = server.argsOf('codexSys.runTask');
    assert.deepEqual(args, [
      {
        instruction: 'Explain and simplify',
        uris: ['file:///work/lib/src/util.py'],
        folder: 'file:///work/lib',
        range: { start: { line: 3, character: 0 }, end: { line: 12, character: 4 } },
      },
    ]);
    // A plain object, not a vscode.Range: it goes over JSON-RPC as is.
    assert.equal(Object.getPrototypeOf((args[0] as { range: object }).range), Object.prototype);
    const [options] = vscode.ui.callsOf('showInputBox')[0] as [{ prompt: string }];
    assert.match(options.prompt, /lines 4–13 of lib\/src\/util\.py/);
  });

  it('sends the document alone when nothing is selected', async () => {
    const { server } = activate();
    vscode.workspace.workspaceFolders = [APP];
    vscode.window.activeTextEditor = editor('/work/app/main.py', [5, 2, 5, 2]);
    vscode.ui.answer('showInputBox', 'Add logging');
    await run('codex-sys.runTaskOnSelection');
    assert.deepEqual(server.argsOf('codexSys.runTask'), [
      { instruction: 'Add logging', uris: ['file:///work/app/main.py'], folder: 'file:///work/app' },
    ]);
  });

  it('needs an editor', async () => {
    const { server } = activate();
    vscode.workspace.workspaceFolders = [APP];
    await run('codex-sys.runTaskOnSelection');
    assert.deepEqual(server.calls, []);
    assert.deepEqual(vscode.ui.messages(), ['warning: Codex: open a file and select the code the task is about.']);
  });

  it('needs the file to be in a workspace folder', async () => {
    const { server } = activate();
    vscode.workspace.workspaceFolders = [APP];
    vscode.window.activeTextEditor = editor('/etc/hosts', [0, 0, 1, 0]);
    await run('codex-sys.runTaskOnSelection');
    assert.deepEqual(server.calls, []);
    assert.match(vscode.ui.messages()[0] ?? '', /\/etc\/hosts is not in a workspace folder/);
  });

  it('refuses an unsaved untitled document', async () => {
    const { server } = activate();
    vscode.workspace.workspaceFolders = [APP];
    vscode.window.activeTextEditor = {
      document: new vscode.FakeTextDocument(vscode.Uri.parse('untitled:Untitled-1'), 'plaintext', 'x'),
      selection: new vscode.Selection(new vscode.Position(0, 0), new vscode.Position(0, 1)),
    };
    await run('codex-sys.runTaskOnSelection');
    assert.deepEqual(server.calls, []);
    assert.match(vscode.ui.messages()[0] ?? '', /save the file/);
  });

  it('refuses a blank instruction without calling the server', async () => {
    const { server } = activate();
    vscode.workspace.workspaceFolders = [APP];
    vscode.window.activeTextEditor = editor('/work/app/main.py', [0, 0, 2, 0]);
    vscode.ui.answer('showInputBox', '');
    await run('codex-sys.runTaskOnSelection');
    assert.deepEqual(server.calls, []);
    assert.deepEqual(vscode.ui.messages(), ['warning: Codex: the instruction is empty; no task was started.']);
  });
});

/** Picks the quick-pick item whose label or description contains `text`. */
function choose(text: string) {
  return (items: { label: string; description?: string }[]) =>
    items.find((i) => i.label.includes(text) || (i.description ?? '').includes(text));
}

function labels(call: unknown[] | undefined): string[] {
  return ((call?.[0] ?? []) as { label: string; description?: string }[]).map((i) => `${i.label} | ${i.description ?? ''}`);
}

describe('Codex: Show Tasks', () => {
  it('lists tasks with state icons, then offers what fits the chosen one', async () => {
    const { server } = activate();
    server.tasks = [
      task('t3', 'RUNNING', { instruction: 'Add a --verbose flag\nand document it' }),
      task('t2', 'COMPLETED', { changes: 3, applicable: 2, filesChanged: 2 }),
      task('t1', 'FAILED', { reason: 'the model is unreachable' }),
    ];
    vscode.ui.answer('showQuickPick', choose('t2'), choose('Apply All'));
    await run('codex-sys.showTasks');
    const picks = vscode.ui.callsOf('showQuickPick');
    assert.deepEqual(labels(picks[0]), [
      '$(sync~spin) Add a --verbose flag | t3 · RUNNING',
      '$(pass) instruction of t2 | t2 · COMPLETED',
      '$(error) instruction of t1 | t1 · FAILED',
    ]);
    const details = ((picks[0]?.[0] ?? []) as { detail: string }[]).map((i) => i.detail);
    assert.match(details[1] ?? '', /^3 changes, 2 still applicable, 2 files · app · /);
    assert.match(details[2] ?? '', /^the model is unreachable · /);
    assert.deepEqual(
      labels(picks[1]).map((l) => l.split(' | ')[0]),
      ['$(diff) Show Diff', '$(check-all) Apply All Changes', '$(trash) Discard Task'],
    );
    assert.deepEqual(server.argsOf('codexSys.applyTask'), [{ taskId: 't2' }]);
    assert.deepEqual(vscode.ui.messages(), ['information: Codex: applied 2 changes from task t2.']);
  });

  it('offers Cancel for a running task', async () => {
    const { server } = activate();
    server.tasks = [task('t3', 'RUNNING')];
    vscode.ui.answer('showQuickPick', choose('t3'), (items: { label: string }[]) => {
      assert.deepEqual(items.map((i) => i.label), ['$(stop-circle) Cancel Task']);
      return items[0];
    });
    await run('codex-sys.showTasks');
    assert.deepEqual(server.argsOf('codexSys.cancelTask'), [{ taskId: 't3' }]);
    assert.deepEqual(vscode.ui.messages(), ['information: Codex: task t3 is CANCELLED.']);
  });

  it('says why nothing can be done with a failed task', async () => {
    const { server } = activate();
    server.tasks = [task('t1', 'FAILED', { reason: 'budget exceeded' })];
    vscode.ui.answer('showQuickPick', choose('t1'));
    await run('codex-sys.showTasks');
    assert.deepEqual(vscode.ui.messages(), ['information: Codex: task t1 is FAILED: budget exceeded. Nothing to do with it.']);
  });

  it('says when there are no tasks', async () => {
    activate();
    await run('codex-sys.showTasks');
    assert.match(vscode.ui.messages()[0] ?? '', /no tasks yet/);
  });
});

describe('task commands', () => {
  it('Apply All offers only completed tasks with changes that still apply', async () => {
    const { server } = activate();
    server.tasks = [
      task('t4', 'RUNNING'),
      task('t3', 'COMPLETED', { changes: 2, applicable: 0 }),
      task('t2', 'COMPLETED', { changes: 1, applicable: 1 }),
    ];
    vscode.ui.answer('showQuickPick', (items: { description: string }[]) => {
      assert.deepEqual(items.map((i) => i.description), ['t2 · COMPLETED']);
      return items[0];
    });
    await run('codex-sys.applyAll');
    assert.deepEqual(server.argsOf('codexSys.applyTask'), [{ taskId: 't2' }]);
  });

  it('Apply All logs each skipped change with its reason, and leaves the pop-up to the server', async () => {
    const { server, output } = activate();
    server.handlers.set('codexSys.applyTask', () => ({
      applied: ['1'],
      skipped: [
        { hunk: '2', reason: 'calc.py changed since the snapshot: the hunk no longer fits' },
        { hunk: '3', reason: 'binary change: use codex-sys apply t2' },
      ],
    }));
    await run('codex-sys.applyAll', { taskId: 't2' });
    assert.deepEqual(vscode.ui.messages(), []);
    assert.deepEqual(vscode.window.statusBarMessages, [
      'Codex: applied 1 of 3 changes from task t2 (reasons in the Codex output)',
    ]);
    assert.ok(output.lines.includes('[info] Task t2: change 2 skipped: calc.py changed since the snapshot: the hunk no longer fits'));
    assert.ok(output.lines.includes('[info] Task t2: change 3 skipped: binary change: use codex-sys apply t2'));
  });

  it('Cancel offers only running tasks', async () => {
    const { server } = activate();
    server.tasks = [task('t3', 'QUEUED'), task('t2', 'COMPLETED', { changes: 1, applicable: 1 }), task('t1', 'UPLOADING')];
    vscode.ui.answer('showQuickPick', (items: { description: string }[]) => {
      assert.deepEqual(items.map((i) => i.description), ['t3 · QUEUED', 't1 · UPLOADING']);
      return items[1];
    });
    await run('codex-sys.cancelTask');
    assert.deepEqual(server.argsOf('codexSys.cancelTask'), [{ taskId: 't1' }]);
  });

  it('Cancel says so when no task runs, without a picker', async () => {
    const { server } = activate();
    server.tasks = [task('t2', 'COMPLETED')];
    await run('codex-sys.cancelTask');
    assert.deepEqual(vscode.ui.messages(), ['information: Codex: no task is running.']);
    assert.deepEqual(server.argsOf('codexSys.cancelTask'), []);
  });

  it('Discard sends the chosen task id', async () => {
    const { server } = activate();
    server.tasks = [task('t2', 'COMPLETED', { changes: 4, applicable: 1 })];
    vscode.ui.answer('showQuickPick', choose('t2'));
    await run('codex-sys.discardTask');
    assert.deepEqual(server.argsOf('codexSys.discardTask'), [{ taskId: 't2' }]);
    assert.match(vscode.ui.messages()[0] ?? '', /changes of task t2 are discarded/);
  });

  it('a task id given as argument skips the picker', async () => {
    const { server } = activate();
    await run('codex-sys.discardTask', 't9');
    await run('codex-sys.cancelTask', { taskId: 't8' });
    assert.deepEqual(server.argsOf('codexSys.discardTask'), [{ taskId: 't9' }]);
    assert.deepEqual(server.argsOf('codexSys.cancelTask'), [{ taskId: 't8' }]);
    assert.deepEqual(server.argsOf('codexSys.listTasks'), []);
  });
});

describe('Codex: Show Diff', () => {
  it('opens the saved diff.patch as a diff', async () => {
    const { server } = activate();
    vscode.workspace.files.set('/home/u/.codex-sys/tasks/t1/diff.patch', 'diff --git a/x b/x\n');
    server.tasks = [task('t1', 'COMPLETED', { changes: 1, applicable: 1 })];
    vscode.ui.answer('showQuickPick', choose('t1'));
    await run('codex-sys.showDiff');
    assert.deepEqual(server.argsOf('codexSys.showDiff'), [{ taskId: 't1' }]);
    assert.equal(vscode.window.shownDocuments.length, 1);
    const [doc] = vscode.window.shownDocuments;
    assert.ok(doc);
    assert.equal(doc.uri.toString(), 'file:///home/u/.codex-sys/tasks/t1/diff.patch');
    assert.equal(doc.languageId, 'diff');
  });

  it('shows the diff text in an untitled diff editor when the file cannot be opened', async () => {
    const { output } = activate();
    await run('codex-sys.showDiff', 't1');
    assert.equal(vscode.window.shownDocuments.length, 1);
    const [doc] = vscode.window.shownDocuments;
    assert.ok(doc);
    assert.equal(doc.uri.scheme, 'untitled');
    assert.equal(doc.languageId, 'diff');
    assert.equal(doc.text, 'diff --git a/x b/x\n');
    assert.ok(output.lines.some((l) => l.includes('could not open')));
  });

  it('says so when a task has no diff', async () => {
    const { server } = activate();
    server.handlers.set('codexSys.showDiff', () => ({ taskId: 't1', diff: '', uri: '' }));
    await run('codex-sys.showDiff', 't1');
    assert.deepEqual(vscode.window.shownDocuments, []);
    assert.deepEqual(vscode.ui.messages(), ['information: Codex: task t1 has no diff.']);
  });
});

describe('failures', () => {
  it('a command the server refused (already reported by the client) adds no second message', async () => {
    const { server } = activate();
    // vscode-languageclient answers undefined for a failed request after showing its message.
    server.handlers.set('codexSys.runTask', () => undefined);
    vscode.workspace.workspaceFolders = [APP];
    vscode.ui.answer('showInputBox', 'Do it');
    await run('codex-sys.runTask');
    assert.deepEqual(vscode.ui.messages(), []);
  });

  it('an answer outside the contract is one readable error', async () => {
    const { server, output } = activate();
    server.handlers.set('codexSys.listTasks', () => ({ items: [] }));
    await run('codex-sys.showTasks');
    assert.deepEqual(vscode.ui.messages(), ['error: Codex: codexSys.listTasks: "tasks" must be a list']);
    assert.ok(output.lines.some((l) => l.includes('Unexpected answer from the language server')));
  });

  it('a server whose commands are not registered yet gives a message, not a crash', async () => {
    activate({ registerServer: false });
    await run('codex-sys.showTasks');
    assert.deepEqual(vscode.ui.messages(), ["error: Codex: command 'codexSys.listTasks' not found"]);
  });
});

describe('what each task offers', () => {
  it('follows the state, the changes and whether they were discarded', async () => {
    const { server } = activate();
    server.tasks = [
      task('done', 'COMPLETED', { changes: 2, applicable: 1, filesChanged: 1 }),
      task('stale', 'COMPLETED', { changes: 2, applicable: 0, filesChanged: 1 }),
      task('unloaded', 'COMPLETED', { changes: 0, applicable: 0, filesChanged: 3 }),
      task('gone', 'COMPLETED', { changes: 0, applicable: 0, filesChanged: 2, discarded: true }),
      task('empty', 'COMPLETED'),
      task('busy', 'PREPARING'),
    ];
    const offered: Record<string, string[]> = {};
    for (const t of server.tasks) {
      if (t.taskId === 'empty') {
        vscode.ui.answer('showQuickPick', choose(t.taskId)); // nothing to offer: no second picker
      } else {
        vscode.ui.answer('showQuickPick', choose(t.taskId), (items: { label: string }[]) => {
          offered[t.taskId] = items.map((i) => i.label.replace(/^\$\([^)]*\) /, ''));
          return undefined;
        });
      }
      await run('codex-sys.showTasks');
    }
    assert.deepEqual(offered, {
      done: ['Show Diff', 'Apply All Changes', 'Discard Task'],
      stale: ['Show Diff', 'Discard Task'],
      unloaded: ['Show Diff', 'Apply All Changes'],
      gone: ['Show Diff'],
      busy: ['Cancel Task'],
    });
    assert.match(vscode.ui.messages().join('\n'), /task empty is COMPLETED\. Nothing to do with it\./);
  });
});
