/**
 * Server-initiated work-done progress as VS Code notifications with a Cancel button.
 *
 * vscode-languageclient shows such progress at `ProgressLocation.Window` (a status bar spinner),
 * where VS Code draws no Cancel button whatever `cancellable` says: only notifications have one.
 * A task runs for minutes and cancelling it from the editor is part of the contract (docs/lsp.md,
 * "Progress"), so client.ts installs this handler of `window/workDoneProgress/create` in place of
 * the built-in one. Cancel sends `window/workDoneProgress/cancel`, which cancels the task.
 */
import * as vscode from 'vscode';
import type {
  ProgressToken,
  WorkDoneProgressBegin,
  WorkDoneProgressEnd,
  WorkDoneProgressReport,
} from 'vscode-languageclient';

export type WorkDoneValue = WorkDoneProgressBegin | WorkDoneProgressReport | WorkDoneProgressEnd;

/** The client's side of a progress token. */
export interface ProgressChannel {
  onProgress(token: ProgressToken, handler: (value: WorkDoneValue) => void): vscode.Disposable;
  cancel(token: ProgressToken): void;
}

export interface ProgressEvents {
  /** Any begin, report or end: tasks may have changed state. */
  activity(): void;
  /** The end of a progress, with the server's closing message if any. */
  ended(title: string, message: string | undefined): void;
}

class Part {
  private subscription: vscode.Disposable | undefined;
  private progress: vscode.Progress<{ message?: string; increment?: number }> | undefined;
  private cancelListener: vscode.Disposable | undefined;
  private resolve: (() => void) | undefined;
  private reported = 0;
  private title = '';
  private finished = false;

  constructor(
    private readonly token: ProgressToken,
    private readonly channel: ProgressChannel,
    private readonly events: ProgressEvents,
    private readonly onDone: (part: Part) => void,
  ) {
    this.subscription = channel.onProgress(token, (value) => {
      this.handle(value);
    });
  }

  private handle(value: WorkDoneValue): void {
    switch (value.kind) {
      case 'begin':
        this.begin(value);
        break;
      case 'report':
        this.report(value);
        break;
      case 'end':
        this.end(value.message);
        break;
    }
    this.events.activity();
  }

  private begin(value: WorkDoneProgressBegin): void {
    if (this.finished || this.progress !== undefined) return;
    this.title = value.title;
    void vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: value.title, cancellable: value.cancellable === true },
      (progress, cancellation) => {
        if (this.finished) return Promise.resolve();
        this.progress = progress;
        this.cancelListener = cancellation.onCancellationRequested(() => {
          this.channel.cancel(this.token);
        });
        this.report(value);
        return new Promise<void>((resolve) => {
          this.resolve = resolve;
        });
      },
    );
  }

  private report(value: WorkDoneProgressBegin | WorkDoneProgressReport): void {
    if (this.progress === undefined) return;
    if (typeof value.percentage === 'number') {
      const percentage = Math.max(0, Math.min(value.percentage, 100));
      const increment = Math.max(0, percentage - this.reported);
      this.reported += increment;
      this.progress.report({ message: value.message, increment });
    } else if (value.message !== undefined) {
      this.progress.report({ message: value.message });
    }
  }

  end(message?: string): void {
    if (this.finished) return;
    this.finished = true;
    this.subscription?.dispose();
    this.cancelListener?.dispose();
    this.subscription = undefined;
    this.cancelListener = undefined;
    this.progress = undefined;
    this.resolve?.();
    this.resolve = undefined;
    this.events.ended(this.title, message);
    this.onDone(this);
  }
}

export class NotificationProgress {
  private readonly parts = new Set<Part>();

  constructor(
    private readonly channel: ProgressChannel,
    private readonly events: ProgressEvents,
  ) {}

  /** Handles `window/workDoneProgress/create`. */
  create(token: ProgressToken): void {
    this.parts.add(
      new Part(token, this.channel, this.events, (part) => {
        this.parts.delete(part);
      }),
    );
  }

  get active(): number {
    return this.parts.size;
  }

  /** The connection is gone: close every notification. */
  clear(): void {
    for (const part of [...this.parts]) part.end();
    this.parts.clear();
  }
}
