/**
 * Client middleware: what vscode-languageclient does by default, adjusted in two places.
 *
 * - `workspace/configuration` answers for the `codexSys` section carry the runner token from
 *   SecretStorage (it is not a VS Code setting) and leave out `server` (how to start the server is
 *   none of its business). So a server that reads settings per folder sees the same token as in
 *   `initializationOptions`.
 * - `workspace/executeCommand`: a refused command ends as one message, whether it came from a
 *   palette command or a code action, and the command answers `undefined` (see server.ts:
 *   ReportedError). The codex-sys server shows its refusals itself (`window/showMessage`) and
 *   answers them with RequestFailed, so those are only logged here; any other failure (a server
 *   without the command, a crash) is shown with its message. The client's default would add a
 *   second, generic "Request workspace/executeCommand failed" notification.
 */
import { SECTION } from './settings';

export interface ConfigurationItemLike {
  scopeUri?: string;
  section?: string;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** A `codexSys` section as the server should see it. */
export function sectionForServer(value: unknown, token: string | undefined): unknown {
  if (!isRecord(value)) return value;
  const { server: _server, ...rest } = value;
  const runner = isRecord(rest.runner) ? rest.runner : {};
  return { ...rest, runner: { ...runner, token: token ?? '' } };
}

/** Adjusts the answer to a `workspace/configuration` request (one entry per item asked). */
export function configurationResult(
  items: readonly ConfigurationItemLike[],
  result: readonly unknown[],
  token: string | undefined,
): unknown[] {
  return result.map((value: unknown, i) => {
    const section = items[i]?.section;
    if (section === SECTION) return sectionForServer(value, token);
    if (section === `${SECTION}.runner` && isRecord(value)) return { ...value, token: token ?? '' };
    if ((section === undefined || section === '') && isRecord(value) && SECTION in value) {
      return { ...value, [SECTION]: sectionForServer(value[SECTION], token) };
    }
    return value;
  });
}

// JSON-RPC / LSP error codes (vscode-jsonrpc ErrorCodes, LSPErrorCodes).
const REQUEST_CANCELLED = -32800;
const SERVER_CANCELLED = -32802;
const PENDING_RESPONSE_REJECTED = -32097;
const CONNECTION_INACTIVE = -32096;
const REQUEST_FAILED = -32803;

function errorCode(error: unknown): number | undefined {
  if (isRecord(error) || error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return typeof code === 'number' ? code : undefined;
  }
  return undefined;
}

export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  if (isRecord(error) && typeof error.message === 'string') return error.message;
  return String(error);
}

/**
 * Sends a server command; a failure becomes at most one message and an `undefined` answer. `send`
 * is the bare request (no default error handling), `report` shows a message to the user (and logs
 * it), `log` only logs.
 */
export function executeCommand(
  send: (command: string, args: unknown[]) => Promise<unknown>,
  report: (message: string) => void,
  log: (message: string) => void,
): (command: string, args: unknown[]) => Promise<unknown> {
  return async (command, args) => {
    try {
      return await send(command, args);
    } catch (error) {
      const code = errorCode(error);
      if (code === REQUEST_CANCELLED || code === SERVER_CANCELLED) return undefined;
      if (code === PENDING_RESPONSE_REJECTED || code === CONNECTION_INACTIVE) {
        report(`Codex: the language server stopped before answering ${command}. See the "Codex" output.`);
        return undefined;
      }
      if (code === REQUEST_FAILED) {
        log(`${command} refused: ${errorMessage(error)}`);
        return undefined;
      }
      report(`Codex: ${errorMessage(error)}`);
      return undefined;
    }
  };
}
