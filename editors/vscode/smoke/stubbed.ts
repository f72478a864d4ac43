/** Names of the VS Code APIs the smoke run answered with an inert stub (smoke/vscode-permissive.ts). */
export const stubbed = new Set<string>();
