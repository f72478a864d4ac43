/**
 * A test double of the `vscode` module: the part of the API the extension uses, with a scripted
 * user. esbuild.mjs aliases `vscode` to this file when it bundles the tests, so the extension's own
 * modules run unchanged against it.
 *
 * Prompts (input box, quick pick, folder pick) must be scripted with `ui.answer(...)` before the
 * code under test asks: an unexpected prompt fails the test. Messages resolve to `undefined` unless
 * an answer is scripted for them. Every call is recorded in `ui.calls`.
 */

type Listener<T> = (event: T) => unknown;

export class Disposable {
  constructor(private readonly callOnDispose: () => unknown) {}
  static from(...items: { dispose(): unknown }[]): Disposable {
    return new Disposable(() => {
      for (const i of items) i.dispose();
    });
  }
  dispose(): void {
    this.callOnDispose();
  }
}

export class EventEmitter<T> {
  private listeners: Listener<T>[] = [];
  readonly event = (listener: Listener<T>): Disposable => {
    this.listeners.push(listener);
    return new Disposable(() => {
      this.listeners = this.listeners.filter((l) => l !== listener);
    });
  };
  fire(event: T): void {
    for (const l of [...this.listeners]) l(event);
  }
  get listenerCount(): number {
    return this.listeners.length;
  }
  dispose(): void {
    this.listeners = [];
  }
}

export class Uri {
  private constructor(
    readonly scheme: string,
    readonly authority: string,
    readonly path: string,
  ) {}
  static file(path: string): Uri {
    return new Uri('file', '', path);
  }
  static parse(value: string): Uri {
    const m = /^([a-z][a-z0-9+.-]*):(?:\/\/([^/]*))?(.*)$/i.exec(value);
    if (m === null) throw new Error(`not a URI: ${value}`);
    return new Uri(m[1] ?? '', m[2] ?? '', decodeURI(m[3] ?? ''));
  }
  get fsPath(): string {
    return this.path;
  }
  toString(): string {
    return `${this.scheme}:${this.scheme === 'file' || this.authority !== '' ? `//${this.authority}` : ''}${encodeURI(this.path)}`;
  }
}

export class Position {
  constructor(
    readonly line: number,
    readonly character: number,
  ) {}
}

export class Range {
  constructor(
    readonly start: Position,
    readonly end: Position,
  ) {}
  get isEmpty(): boolean {
    return this.start.line === this.end.line && this.start.character === this.end.character;
  }
}

export class Selection extends Range {
  constructor(
    readonly anchor: Position,
    readonly active: Position,
  ) {
    const forward = anchor.line < active.line || (anchor.line === active.line && anchor.character <= active.character);
    super(forward ? anchor : active, forward ? active : anchor);
  }
}

export class ThemeColor {
  constructor(readonly id: string) {}
}

export enum StatusBarAlignment {
  Left = 1,
  Right = 2,
}

export enum ProgressLocation {
  SourceControl = 1,
  Window = 10,
  Notification = 15,
}

// ---------------------------------------------------------------- the scripted user

type Answer = unknown;

export const ui = {
  calls: [] as { fn: string; args: unknown[] }[],
  answers: new Map<string, Answer[]>(),
  /** Scripts the next answers of a prompt; a function answer gets the prompt's arguments. */
  answer(fn: string, ...values: Answer[]): void {
    const queue = this.answers.get(fn) ?? [];
    queue.push(...values);
    this.answers.set(fn, queue);
  },
  callsOf(fn: string): unknown[][] {
    return this.calls.filter((c) => c.fn === fn).map((c) => c.args);
  },
  /** The text of every message shown, as `kind: text`. */
  messages(): string[] {
    return this.calls
      .filter((c) => c.fn.startsWith('show') && c.fn.endsWith('Message'))
      .map((c) => `${c.fn.replace(/^show|Message$/g, '').toLowerCase()}: ${String(c.args[0])}`);
  },
};

async function prompt(fn: string, args: unknown[], required: boolean): Promise<unknown> {
  ui.calls.push({ fn, args });
  const queue = ui.answers.get(fn);
  if (queue === undefined || queue.length === 0) {
    if (required) throw new Error(`unexpected ${fn}(${JSON.stringify(args[0])})`);
    return undefined;
  }
  const answer = queue.shift();
  if (typeof answer === 'function') {
    const resolved = await Promise.all(args.map((a) => a));
    return (answer as (...a: unknown[]) => unknown)(...resolved);
  }
  return answer;
}

// ---------------------------------------------------------------- window

export class FakeStatusBarItem {
  text = '';
  tooltip: string | undefined;
  command: string | undefined;
  name: string | undefined;
  backgroundColor: ThemeColor | undefined;
  visible = false;
  disposed = false;
  constructor(
    readonly id: string,
    readonly alignment: StatusBarAlignment,
    readonly priority: number,
  ) {}
  show(): void {
    this.visible = true;
  }
  hide(): void {
    this.visible = false;
  }
  dispose(): void {
    this.disposed = true;
  }
}

export class FakeOutputChannel {
  readonly lines: string[] = [];
  shown = false;
  constructor(readonly name: string) {}
  appendLine(line: string): void {
    this.lines.push(line);
  }
  append(text: string): void {
    this.lines.push(text);
  }
  info(line: string): void {
    this.lines.push(`[info] ${line}`);
  }
  warn(line: string): void {
    this.lines.push(`[warn] ${line}`);
  }
  error(line: string): void {
    this.lines.push(`[error] ${line}`);
  }
  show(): void {
    this.shown = true;
  }
  dispose(): void {
    /* nothing held */
  }
}

export interface FakeProgressRun {
  options: { location: ProgressLocation; title?: string; cancellable?: boolean };
  reports: { message?: string; increment?: number }[];
  /** Presses the notification's Cancel button. */
  cancel(): void;
  finished: boolean;
}

export class FakeTextDocument {
  constructor(
    readonly uri: Uri,
    readonly languageId: string,
    readonly text: string,
  ) {}
  getText(): string {
    return this.text;
  }
}

export interface FakeTextEditor {
  document: FakeTextDocument;
  selection: Selection;
}

export const window = {
  activeTextEditor: undefined as FakeTextEditor | undefined,
  statusBarItems: [] as FakeStatusBarItem[],
  outputChannels: [] as FakeOutputChannel[],
  progressRuns: [] as FakeProgressRun[],
  shownDocuments: [] as FakeTextDocument[],
  statusBarMessages: [] as string[],

  showInputBox: (options?: unknown): Promise<unknown> => prompt('showInputBox', [options], true),
  showQuickPick: (items: unknown, options?: unknown): Promise<unknown> => prompt('showQuickPick', [items, options], true),
  showWorkspaceFolderPick: (options?: unknown): Promise<unknown> => prompt('showWorkspaceFolderPick', [options], true),
  showInformationMessage: (message: string, ...rest: unknown[]): Promise<unknown> => prompt('showInformationMessage', [message, ...rest], false),
  showWarningMessage: (message: string, ...rest: unknown[]): Promise<unknown> => prompt('showWarningMessage', [message, ...rest], false),
  showErrorMessage: (message: string, ...rest: unknown[]): Promise<unknown> => prompt('showErrorMessage', [message, ...rest], false),

  createStatusBarItem(id: string, alignment: StatusBarAlignment, priority: number): FakeStatusBarItem {
    const item = new FakeStatusBarItem(id, alignment, priority);
    this.statusBarItems.push(item);
    return item;
  },
  createOutputChannel(name: string): FakeOutputChannel {
    const channel = new FakeOutputChannel(name);
    this.outputChannels.push(channel);
    return channel;
  },
  setStatusBarMessage(text: string): Disposable {
    this.statusBarMessages.push(text);
    return new Disposable(() => undefined);
  },
  showTextDocument(document: FakeTextDocument): Promise<FakeTextEditor> {
    this.shownDocuments.push(document);
    return Promise.resolve({ document, selection: new Selection(new Position(0, 0), new Position(0, 0)) });
  },
  withProgress<R>(
    options: FakeProgressRun['options'],
    task: (progress: { report(value: object): void }, token: { isCancellationRequested: boolean; onCancellationRequested: (l: Listener<void>) => Disposable }) => Promise<R>,
  ): Promise<R> {
    const cancelled = new EventEmitter<undefined>();
    const token = { isCancellationRequested: false, onCancellationRequested: cancelled.event };
    const run: FakeProgressRun = {
      options,
      reports: [],
      finished: false,
      cancel: () => {
        token.isCancellationRequested = true;
        cancelled.fire(undefined);
      },
    };
    this.progressRuns.push(run);
    return task({ report: (value) => run.reports.push(value) }, token).finally(() => {
      run.finished = true;
    });
  },
};

// ---------------------------------------------------------------- workspace

export interface FakeWorkspaceFolder {
  uri: Uri;
  name: string;
  index: number;
}

export function folder(path: string, index = 0): FakeWorkspaceFolder {
  return { uri: Uri.file(path), name: path.slice(path.lastIndexOf('/') + 1), index };
}

const configurationChanged = new EventEmitter<{ affectsConfiguration(section: string): boolean }>();

export const workspace = {
  workspaceFolders: undefined as FakeWorkspaceFolder[] | undefined,
  /** Settings by full key, e.g. `codexSys.model`. */
  settings: {} as Record<string, unknown>,
  /** Files `openTextDocument` can open, by path. */
  files: new Map<string, string>(),

  getWorkspaceFolder(uri: Uri): FakeWorkspaceFolder | undefined {
    return (this.workspaceFolders ?? [])
      .filter((f) => uri.scheme === f.uri.scheme && (uri.path === f.uri.path || uri.path.startsWith(`${f.uri.path}/`)))
      .sort((a, b) => b.uri.path.length - a.uri.path.length)[0];
  },
  asRelativePath(pathOrUri: Uri | string, includeWorkspaceFolder?: boolean): string {
    const uri = typeof pathOrUri === 'string' ? Uri.file(pathOrUri) : pathOrUri;
    const f = this.getWorkspaceFolder(uri);
    if (f === undefined) return uri.path;
    const relative = uri.path.slice(f.uri.path.length + 1);
    const multi = (this.workspaceFolders?.length ?? 0) > 1;
    return (includeWorkspaceFolder ?? multi) && multi ? `${f.name}/${relative}` : relative;
  },
  getConfiguration(section: string): { get(key: string, fallback?: unknown): unknown } {
    const settings = this.settings;
    return {
      get: (key: string, fallback?: unknown) => settings[`${section}.${key}`] ?? fallback,
    };
  },
  openTextDocument(arg: Uri | { content?: string; language?: string }): Promise<FakeTextDocument> {
    if (arg instanceof Uri) {
      const text = this.files.get(arg.path);
      if (text === undefined) return Promise.reject(new Error(`cannot open ${arg.toString()}`));
      return Promise.resolve(new FakeTextDocument(arg, arg.path.endsWith('.patch') ? 'diff' : 'plaintext', text));
    }
    return Promise.resolve(new FakeTextDocument(Uri.parse('untitled:Untitled-1'), arg.language ?? 'plaintext', arg.content ?? ''));
  },
  onDidChangeConfiguration: configurationChanged.event,
  /** Fires onDidChangeConfiguration for these changed keys. */
  changeConfiguration(...keys: string[]): void {
    configurationChanged.fire({
      affectsConfiguration: (section) => keys.some((k) => k === section || k.startsWith(`${section}.`)),
    });
  },
};

export const languages = {
  setTextDocumentLanguage(document: FakeTextDocument, languageId: string): Promise<FakeTextDocument> {
    return Promise.resolve(new FakeTextDocument(document.uri, languageId, document.text));
  },
};

// ---------------------------------------------------------------- commands

const registry = new Map<string, (...args: unknown[]) => unknown>();

export const commands = {
  executed: [] as { id: string; args: unknown[] }[],
  registerCommand(id: string, handler: (...args: unknown[]) => unknown): Disposable {
    // Like VS Code: a second registration of an id is an error.
    if (registry.has(id)) throw new Error(`command '${id}' already exists`);
    registry.set(id, handler);
    return new Disposable(() => registry.delete(id));
  },
  executeCommand(id: string, ...args: unknown[]): Promise<unknown> {
    this.executed.push({ id, args });
    const handler = registry.get(id);
    if (handler === undefined) return Promise.reject(new Error(`command '${id}' not found`));
    try {
      return Promise.resolve(handler(...args));
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
  },
  registered(): string[] {
    return [...registry.keys()].sort();
  },
};

// ---------------------------------------------------------------- secrets (ExtensionContext.secrets)

export class FakeSecrets {
  readonly values = new Map<string, string>();
  private readonly changed = new EventEmitter<{ key: string }>();
  readonly onDidChange = this.changed.event;
  get(key: string): Promise<string | undefined> {
    return Promise.resolve(this.values.get(key));
  }
  store(key: string, value: string): Promise<void> {
    this.values.set(key, value);
    this.changed.fire({ key });
    return Promise.resolve();
  }
  delete(key: string): Promise<void> {
    this.values.delete(key);
    this.changed.fire({ key });
    return Promise.resolve();
  }
}

/** Back to a fresh VS Code: no folders, no settings, no editor, nothing registered or scripted. */
export function reset(): void {
  ui.calls.length = 0;
  ui.answers.clear();
  window.activeTextEditor = undefined;
  window.statusBarItems.length = 0;
  window.outputChannels.length = 0;
  window.progressRuns.length = 0;
  window.shownDocuments.length = 0;
  window.statusBarMessages.length = 0;
  workspace.workspaceFolders = undefined;
  workspace.settings = {};
  workspace.files.clear();
  configurationChanged.dispose();
  registry.clear();
  commands.executed.length = 0;
}

/** Scripted answers nobody asked for: a test that leaves some did not go the way it meant. */
export function unusedAnswers(): string[] {
  return [...ui.answers.entries()].filter(([, q]) => q.length > 0).map(([fn, q]) => `${fn} x${q.length}`);
}

/** Lets pending promise callbacks run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve));
}
