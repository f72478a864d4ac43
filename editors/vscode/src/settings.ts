/**
 * The `codexSys.*` settings, read from VS Code and shaped for the language server.
 *
 * The server takes one settings object (docs/lsp.md, "Settings") in `initializationOptions`, in
 * answers to `workspace/configuration` and in `workspace/didChangeConfiguration`. Every place that
 * builds that object goes through `serverSettings`, so they cannot disagree. The runner token is not
 * a VS Code setting: it lives in SecretStorage (see token.ts) and is merged in here.
 *
 * `codexSys.server.*` says how to start the server and is never sent to it.
 */
import * as os from 'node:os';

export const SECTION = 'codexSys';

/** The part of `vscode.WorkspaceConfiguration` these functions read. */
export interface ConfigurationReader {
  get(section: string): unknown;
}

export interface SnapshotSettings {
  exclude: string[];
  maxFiles: number;
  maxBytes: number;
}

/** The settings object of docs/lsp.md. */
export interface ServerSettings {
  runner: { address: string; token: string };
  model: string;
  snapshot: SnapshotSettings;
}

export const DEFAULT_SNAPSHOT: Readonly<SnapshotSettings> = Object.freeze({
  exclude: [],
  maxFiles: 100_000,
  maxBytes: 536_870_912,
});

/** A setting whose value has the wrong type; its default is used instead. */
export interface SettingProblem {
  setting: string;
  message: string;
}

export interface ReadResult<T> {
  value: T;
  problems: SettingProblem[];
}

class Reader {
  readonly problems: SettingProblem[] = [];

  constructor(private readonly config: ConfigurationReader) {}

  string(key: string, fallback: string): string {
    const value = this.config.get(key);
    if (value === undefined || value === null) return fallback;
    if (typeof value === 'string') return value.trim();
    return this.wrong(key, 'a string', fallback);
  }

  strings(key: string, fallback: readonly string[]): string[] {
    const value = this.config.get(key);
    if (value === undefined || value === null) return [...fallback];
    if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return [...value];
    return this.wrong(key, 'a list of strings', [...fallback]);
  }

  positiveInteger(key: string, fallback: number): number {
    const value = this.config.get(key);
    if (value === undefined || value === null) return fallback;
    if (typeof value === 'number' && Number.isSafeInteger(value) && value > 0) return value;
    return this.wrong(key, 'a positive integer', fallback);
  }

  private wrong<T>(key: string, expected: string, fallback: T): T {
    this.problems.push({
      setting: `${SECTION}.${key}`,
      message: `${SECTION}.${key} must be ${expected}; using ${JSON.stringify(fallback)}`,
    });
    return fallback;
  }
}

/**
 * The settings object sent to the server, from the `codexSys` section (of a folder, or of the
 * window) and the runner token kept in SecretStorage.
 */
export function serverSettings(config: ConfigurationReader, token: string | undefined): ReadResult<ServerSettings> {
  const read = new Reader(config);
  const value: ServerSettings = {
    runner: { address: read.string('runner.address', ''), token: token ?? '' },
    model: read.string('model', ''),
    snapshot: {
      exclude: read.strings('snapshot.exclude', DEFAULT_SNAPSHOT.exclude),
      maxFiles: read.positiveInteger('snapshot.maxFiles', DEFAULT_SNAPSHOT.maxFiles),
      maxBytes: read.positiveInteger('snapshot.maxBytes', DEFAULT_SNAPSHOT.maxBytes),
    },
  };
  return { value, problems: read.problems };
}

export interface ServerLaunch {
  command: string;
  args: string[];
}

/**
 * How to start the language server: `<codexSys.server.path> lsp <codexSys.server.args…>`.
 * A leading `~` in the path is the home folder; a bare name is looked up on PATH.
 */
export function serverLaunch(config: ConfigurationReader, home: string = os.homedir()): ReadResult<ServerLaunch> {
  const read = new Reader(config);
  let command = read.string('server.path', '') || 'codex-sys';
  if (command === '~' || command.startsWith('~/')) command = home + command.slice(1);
  const args = ['lsp', ...read.strings('server.args', [])];
  return { value: { command, args }, problems: read.problems };
}

/** Whether a change of these settings needs a new server process (the others reach it live). */
export function needsRestart(affects: (section: string) => boolean): boolean {
  return affects(`${SECTION}.server`);
}
