#!/usr/bin/env node
// Transpiles the fuzz harness and its properties (test/fuzz/**/*.ts, test files left out) into
// build-fuzz/ (and the references they judge by, test/reference/*.ts, into build-fuzz/_reference/),
// so that the child processes the harness starts can run them with plain `node`.
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
// The plain references some properties judge by (test/reference/weight_only.ts): transpiled too,
// into build-fuzz/_reference/, with the properties' requires of them pointed there.
const referenceDir = path.join(root, 'test', 'reference');
const referenceOutputDir = path.join(outputDir, '_reference');

/** `text`'s relative requires that reach test/reference/ pointed at their transpiled copies, as seen from `target`. */
function redirectReferences(text, file, target) {
  return text.replace(/require\("(\.{1,2}\/[^"]+)"\)/g, (call, request) => {
    const resolved = path.resolve(path.dirname(file), request);
    if (!resolved.startsWith(referenceDir + path.sep)) return call;
    let relative = path.relative(path.dirname(target), path.join(referenceOutputDir, path.relative(referenceDir, resolved)));
    if (!relative.startsWith('.')) relative = `./${relative}`;
    return `require(${JSON.stringify(relative.split(path.sep).join('/'))})`;
  });
}

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
  const files = [...sources(sourceDir).map((file) => [file, path.join(outputDir, path.relative(sourceDir, file))]),
    ...sources(referenceDir).map((file) => [file, path.join(referenceOutputDir, path.relative(referenceDir, file))])];
  for (const [file, targetTs] of files) {
    const { outputText, diagnostics } = ts.transpileModule(fs.readFileSync(file, 'utf8'), {
      fileName: file,
      reportDiagnostics: true,
      // sourceRoot: stacks then name the file under test/fuzz, not a .ts beside the transpiled copy.
      compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.CommonJS, inlineSourceMap: true, sourceRoot: path.dirname(file) },
    });
    if (diagnostics && diagnostics.length > 0) {
      throw new Error(ts.formatDiagnostics(diagnostics, { getCanonicalFileName: (name) => name, getCurrentDirectory: () => root, getNewLine: () => '\n' }));
    }
    const target = targetTs.replace(/\.ts$/, '.js');
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.writeFileSync(target, redirectReferences(outputText, file, target));
  }
  return outputDir;
}

module.exports = { buildFuzz };

if (require.main === module) buildFuzz();
