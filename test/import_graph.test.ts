// lib/'s imports point down: each folder is a layer that imports only from its own layer and the
// ones below it, and no module reaches itself through its imports (type-only imports included,
// since a type cycle ties two modules together as firmly as a value one).
import * as fs from 'node:fs';
import * as path from 'node:path';

import { describe, expect, it } from 'vitest';

const LIB = path.resolve(__dirname, '../lib');

/**
 * Layers from the bottom. `lib/*.ts` (errors, dtype, device, native, tensor, vocabulary...) is the
 * base; index.ts, the public surface, sits on top of everything.
 */
const LAYERS: readonly string[] = ['', 'ops', 'model', 'parallel', 'checkpoint', 'layer', 'bench', 'serve', 'cli', 'index.ts'];

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(full);
    return entry.name.endsWith('.ts') ? [full] : [];
  });
}

/** Relative imports and re-exports of a file, resolved to files under lib/. */
function importsOf(file: string): string[] {
  const text = fs.readFileSync(file, 'utf8');
  const specifiers = [...text.matchAll(/^(?:import|export)\b[^;]*?\bfrom\s+'(\.[^']+)'/gms)].map((match) => match[1]!);
  return specifiers.map((specifier) => {
    const base = path.resolve(path.dirname(file), specifier);
    const resolved = [`${base}.ts`, path.join(base, 'index.ts')].find((candidate) => fs.existsSync(candidate));
    if (resolved === undefined) throw new Error(`${path.relative(LIB, file)}: cannot resolve '${specifier}'`);
    return resolved;
  });
}

function layerOf(file: string): number {
  const relative = path.relative(LIB, file).split(path.sep);
  const name = relative.length === 1 ? (relative[0] === 'index.ts' ? 'index.ts' : '') : relative[0]!;
  const layer = LAYERS.indexOf(name);
  if (layer < 0) throw new Error(`lib/${relative.join('/')}: its folder has no place in LAYERS`);
  return layer;
}

const graph = new Map(sourceFiles(LIB).map((file) => [file, importsOf(file)] as const));
const show = (file: string): string => path.relative(LIB, file);

/** Every cycle, as the path of files that closes it (one per strongly connected group). */
function cycles(): string[][] {
  const found: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (file: string): void => {
    state.set(file, 'open');
    stack.push(file);
    for (const next of graph.get(file) ?? []) {
      if (state.get(next) === 'open') found.push([...stack.slice(stack.indexOf(next)), next].map(show));
      else if (!state.has(next)) visit(next);
    }
    stack.pop();
    state.set(file, 'done');
  };
  for (const file of graph.keys()) if (!state.has(file)) visit(file);
  return found;
}

describe("lib/'s import graph", () => {
  it('has no cycles', () => {
    expect(cycles()).toEqual([]);
  });

  it('imports only from the same layer or below', () => {
    const upward = [...graph].flatMap(([file, imports]) =>
      imports.filter((target) => layerOf(target) > layerOf(file)).map((target) => `${show(file)} → ${show(target)}`));
    expect(upward).toEqual([]);
  });

  it('finds the imports it checks', () => {
    expect(graph.get(path.join(LIB, 'layer/moe_layer.ts'))).toContain(path.join(LIB, 'ops/routing.ts'));
    expect(graph.size).toBeGreaterThan(40);
  });
});
