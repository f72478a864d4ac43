/**
 * The bearer token for a shared runner, kept in VS Code's SecretStorage (the OS keychain), never in
 * settings files that could be committed or synced. The language server gets it in
 * `initializationOptions`, so a change of the token restarts the client (extension.ts listens to
 * `onDidChange`, which also fires when another window changes it).
 */
import * as vscode from 'vscode';

export const TOKEN_KEY = 'codexSys.runner.token';

export class RunnerToken {
  constructor(private readonly secrets: vscode.SecretStorage) {}

  async get(): Promise<string | undefined> {
    const token = await this.secrets.get(TOKEN_KEY);
    return token === undefined || token === '' ? undefined : token;
  }

  /** Fires when the token is stored or deleted, from this window or another one. */
  onDidChange(listener: () => unknown): vscode.Disposable {
    return this.secrets.onDidChange((event) => {
      if (event.key === TOKEN_KEY) listener();
    });
  }

  /** "Codex: Set Runner Token": asks for the token (hidden input) and stores it. */
  async promptAndStore(): Promise<boolean> {
    const entered = await vscode.window.showInputBox({
      title: 'Codex: Set Runner Token',
      prompt: 'Bearer token of the shared runner (codexSys.runner.address). Kept in the OS keychain, not in settings.',
      password: true,
      ignoreFocusOut: true,
    });
    if (entered === undefined) return false;
    const token = entered.trim();
    if (token === '') {
      void vscode.window.showWarningMessage(
        'Codex: the token is empty; nothing was stored. Use "Codex: Clear Runner Token" to remove the stored one.',
      );
      return false;
    }
    if (/\s/.test(token)) {
      void vscode.window.showErrorMessage('Codex: a runner token has no spaces; nothing was stored.');
      return false;
    }
    await this.secrets.store(TOKEN_KEY, token);
    void vscode.window.showInformationMessage('Codex: runner token stored; the language server restarts to use it.');
    return true;
  }

  /** "Codex: Clear Runner Token". */
  async clear(): Promise<boolean> {
    if ((await this.get()) === undefined) {
      void vscode.window.showInformationMessage('Codex: no runner token is stored.');
      return false;
    }
    await this.secrets.delete(TOKEN_KEY);
    void vscode.window.showInformationMessage('Codex: runner token removed; the language server restarts without it.');
    return true;
  }
}
