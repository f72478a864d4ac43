/**
 * Finding the `codex-sys` executable before starting it, so that a missing one is reported with
 * the setting to change (codexSys.server.path) rather than as a failed connection.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export type IsExecutable = (file: string) => boolean;

export const isExecutableFile: IsExecutable = (file) => {
  try {
    if (!fs.statSync(file).isFile()) return false;
    if (process.platform !== 'win32') fs.accessSync(file, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
};

/**
 * The file `command` starts: itself when it names a path (relative ones from `cwd`), else the
 * first match on PATH (with PATHEXT's extensions on Windows). `undefined` when there is none.
 */
export function findExecutable(
  command: string,
  env: NodeJS.ProcessEnv = process.env,
  platform: NodeJS.Platform = process.platform,
  isExecutable: IsExecutable = isExecutableFile,
  cwd: string = process.cwd(),
): string | undefined {
  const p = platform === 'win32' ? path.win32 : path.posix;
  const extensions =
    platform === 'win32'
      ? ['', ...(env.PATHEXT ?? '.COM;.EXE;.BAT;.CMD').split(';').filter((e) => e !== '').map((e) => e.toLowerCase())]
      : [''];
  const candidates = (base: string): string[] => extensions.map((ext) => base + ext);
  if (command.includes('/') || (platform === 'win32' && command.includes('\\'))) {
    return candidates(p.resolve(cwd, command)).find(isExecutable);
  }
  const dirs = (env.PATH ?? env.Path ?? '').split(p.delimiter).filter((d) => d !== '');
  for (const dir of dirs) {
    const found = candidates(p.join(dir, command)).find(isExecutable);
    if (found !== undefined) return found;
  }
  return undefined;
}
