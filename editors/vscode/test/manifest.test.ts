/**
 * package.json against the contracts it must follow: the settings of docs/lsp.md, the server
 * command ids it must leave alone, and what vsce and VS Code need.
 */
import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { DEFAULT_SNAPSHOT } from '../src/settings';

const extensionRoot = path.resolve(__dirname, '../..');
const repoRoot = path.resolve(extensionRoot, '../..');

interface Manifest {
  main: string;
  engines: { vscode: string };
  activationEvents: string[];
  publisher: string;
  license: string;
  repository?: { url: string };
  contributes: { configuration: { properties: Record<string, { type: string; default: unknown; scope: string }> } };
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
}
const manifest = JSON.parse(readFileSync(path.join(extensionRoot, 'package.json'), 'utf8')) as Manifest;
const properties = manifest.contributes.configuration.properties;

describe('package.json', () => {
  it('contributes the settings of docs/lsp.md, except the token, plus how to start the server', () => {
    const lspDoc = readFileSync(path.join(repoRoot, 'docs/lsp.md'), 'utf8').split('\n## Settings')[1] ?? '';
    const documented = [...lspDoc.matchAll(/^\| `(codexSys\.[\w.]+)`(?: \/ `(\w+)`)? \|/gm)].flatMap((m) => {
      const key = m[1] ?? '';
      return m[2] === undefined ? [key] : [key, key.replace(/\.\w+$/, `.${m[2]}`)];
    });
    assert.ok(documented.includes('codexSys.snapshot.maxBytes'), `parsed: ${documented.join(', ')}`);
    const expected = [...documented.filter((k) => k !== 'codexSys.runner.token'), 'codexSys.server.path', 'codexSys.server.args'];
    assert.deepEqual(Object.keys(properties).sort(), expected.sort());
  });

  it('has the defaults the server uses', () => {
    assert.equal(properties['codexSys.snapshot.maxFiles']?.default, DEFAULT_SNAPSHOT.maxFiles);
    assert.equal(properties['codexSys.snapshot.maxBytes']?.default, DEFAULT_SNAPSHOT.maxBytes);
    assert.deepEqual(properties['codexSys.snapshot.exclude']?.default, []);
    assert.equal(properties['codexSys.runner.address']?.default, '');
    assert.equal(properties['codexSys.server.path']?.default, 'codex-sys');
  });

  it('does not let a workspace choose the executable that runs', () => {
    assert.equal(properties['codexSys.server.path']?.scope, 'machine');
    assert.equal(properties['codexSys.server.args']?.scope, 'machine');
  });

  it('has what vsce needs to package without asking', () => {
    assert.equal(manifest.main, './dist/extension.js');
    assert.equal(manifest.license, 'Apache-2.0');
    assert.ok(manifest.publisher);
    // No public repository URL exists yet: the build passes --allow-missing-repository instead.
    assert.equal(manifest.repository, undefined);
    assert.ok(readFileSync(path.join(extensionRoot, 'LICENSE'), 'utf8').includes('Apache License'));
  });

  it('targets a VS Code no newer than the API types it is checked against', () => {
    const engine = /^\^(\d+\.\d+)\.\d+$/.exec(manifest.engines.vscode)?.[1];
    const types = /^(\d+\.\d+)\.\d+$/.exec(manifest.devDependencies['@types/vscode'] ?? '')?.[1];
    assert.ok(engine !== undefined && engine === types, `${manifest.engines.vscode} vs @types/vscode ${String(types)}`);
  });

  it('pins vsce to 3.x (4.x needs Node 22) and a languageclient of at least 10', () => {
    assert.match(manifest.devDependencies['@vscode/vsce'] ?? '', /^3\./);
    assert.match(manifest.dependencies['vscode-languageclient'] ?? '', /^(1\d|[2-9]\d)\./);
  });
});
