#!/usr/bin/env node
// `npm install` step for the native addon. In order:
//   1. a prebuild in prebuilds/ that loads on this machine (node-gyp-build's rules), unless
//      --build-from-source / npm_config_build_from_source is set;
//   2. a source build with cmake-js (the CUDA backend is included when CMake finds nvcc;
//      MOEKIT_CUDA=ON|OFF forces it);
//   3. a CPU-only source build with node-gyp (binding.gyp), for machines without CMake.
'use strict';

const { spawnSync } = require('node:child_process');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '..');

function log(message) {
  console.log(`moekit install: ${message}`);
}

function prebuildLoads() {
  try {
    const nodeGypBuild = require('node-gyp-build');
    const file = nodeGypBuild.resolve(root);
    if (!file.includes(`${path.sep}prebuilds${path.sep}`)) return false;
    require(file);
    log(`using prebuild ${path.relative(root, file)}`);
    return true;
  } catch {
    return false;
  }
}

function run(command, args) {
  log(`${path.basename(command)} ${args.join(' ')}`);
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit', env: process.env });
  return result.status === 0;
}

function haveCommand(command) {
  return spawnSync(command, ['--version'], { stdio: 'ignore' }).status === 0;
}

function buildWithCmakeJs() {
  if (!haveCommand('cmake')) {
    log('cmake not found; skipping the cmake-js build');
    return false;
  }
  const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
  const args = [cmakeJs, 'compile', '--parallel', String(Math.max(1, os.cpus().length))];
  const cuda = (process.env.MOEKIT_CUDA || 'AUTO').toUpperCase();
  args.push(`--CDMOEKIT_CUDA=${cuda}`);
  return run(process.execPath, args);
}

function buildWithNodeGyp() {
  // npm tells lifecycle scripts where its bundled node-gyp is.
  const nodeGyp = process.env.npm_config_node_gyp;
  if (nodeGyp) return run(process.execPath, [nodeGyp, 'rebuild']);
  return run(process.platform === 'win32' ? 'npx.cmd' : 'npx', ['node-gyp', 'rebuild']);
}

function main() {
  const fromSource = process.env.npm_config_build_from_source === 'true' || process.argv.includes('--build-from-source');
  if (!fromSource && prebuildLoads()) return;
  if (buildWithCmakeJs()) return;
  log('cmake-js build failed or unavailable; building the CPU-only addon with node-gyp');
  if (buildWithNodeGyp()) return;
  console.error('moekit install: could not build the native addon (tried cmake-js and node-gyp)');
  process.exit(1);
}

main();
