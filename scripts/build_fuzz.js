#!/usr/bin/env node
// Transpiles the fuzz harness and its properties (test/fuzz/**/*.ts, test files left out) into
// build-fuzz/, so that the child processes the harness starts can run them with plain `node`.
//
// Transpile only, one file at a time, with no type check: `tsc -p tsconfig.test.json` type-checks
// these files with the rest of the tests, and a whole-program tsc build would also emit a copy of
// lib/ that nothing runs (the properties load moekit from dist/, or from MOEKIT_FUZZ_DIST).
'use strict';

const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const sourceDir = path.join(root, 'test', 'fuzz');
const outputDir = path.join(root, 'build-fuzz');

function sources(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) return sources(file);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts') ? [file] : [];
  });
}

function buildFuzz() {
  const ts = require('typescript');
  fs.rmSync(outputDir, { recursive: true, force: true });
  for (const file of sources(sourceDir)) {
    const { outputText, diagnostics } = ts.transpileModule(fs.readFileSync(file, 'utf8'), {
      fileName: file,
      reportDiagnostics: true,
      // sourceRoot: stacks then name the file under test/fuzz, not a .ts beside the transpiled copy.
      compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.CommonJS, inlineSourceMap: true, sourceRoot: path.dirname(file) },
    });
    if (diagnostics && diagnostics.length > 0) {
      throw new Error(ts.formatDiagnostics(diagnostics, { getCanonicalFileName: (name) => name, getCurrentDirectory: () => root, getNewLine: () => '\n' }));
    }
    const target = path.join(outputDir, path.relative(sourceDir, file)).replace(/\.ts$/, '.js');
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.writeFileSync(target, outputText);
  }
  return outputDir;
}

module.exports = { buildFuzz };

if (require.main === module) buildFuzz();
