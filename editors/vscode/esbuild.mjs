// Bundles the extension (dist/extension.js, vscode-languageclient included, so the .vsix needs no
// node_modules) or, with --tests, each unit test (out/test/*.test.js) with `vscode` replaced by the
// test double in test/vscode-fake.ts: VS Code itself cannot run in CI. --smoke: the smoke run
// against a real server (smoke/run.ts).
import * as esbuild from 'esbuild';
import { readdirSync } from 'node:fs';

const tests = process.argv.includes('--tests');
const smoke = process.argv.includes('--smoke');
const production = process.argv.includes('--production');

const common = {
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  logLevel: 'warning',
};

if (smoke) {
  // The real extension and vscode-languageclient against a permissive test double (smoke/run.ts).
  await esbuild.build({
    ...common,
    entryPoints: ['smoke/run.ts'],
    outfile: 'out/smoke/run.js',
    alias: { vscode: './smoke/vscode-permissive.ts' },
    sourcemap: 'inline',
  });
} else if (tests) {
  await esbuild.build({
    ...common,
    entryPoints: readdirSync('test').filter((f) => f.endsWith('.test.ts')).map((f) => `test/${f}`),
    outdir: 'out/test',
    alias: { vscode: './test/vscode-fake.ts' },
    sourcemap: 'inline',
  });
} else {
  await esbuild.build({
    ...common,
    entryPoints: ['src/extension.ts'],
    outfile: 'dist/extension.js',
    external: ['vscode'],
    minify: production,
    sourcemap: !production,
  });
}
