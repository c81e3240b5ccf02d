#!/usr/bin/env node
// `npm run make-prebuilds`: the Linux x64 prebuild with the CUDA backend (sm_80, sm_90a and
// compute_90 PTX for newer GPUs; cudart linked statically, so only the NVIDIA driver is needed at
// run time), built with cmake-js, stripped, and placed in prebuilds/ for `npm pack`.
// (prebuildify builds through node-gyp, which would give the CPU-only binding.gyp build.)
'use strict';

const { spawnSync } = require('node:child_process');
const os = require('node:os');
const path = require('node:path');

const { placePrebuild } = require('./prebuild');

const root = path.resolve(__dirname, '..');

function run(command, args) {
  console.log(`make-prebuilds: ${path.basename(command)} ${args.join(' ')}`);
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit' });
  if (result.status !== 0) {
    console.error(`make-prebuilds: ${path.basename(command)} failed`);
    process.exit(1);
  }
}

run(process.execPath, [require.resolve('cmake-js/bin/cmake-js'), 'rebuild', '--parallel', String(os.cpus().length), '--CDMOEKIT_CUDA=ON']);
const built = path.join(root, 'build', 'Release', 'moekit.node');
// eslint-disable-next-line import/no-dynamic-require
const variant = require(built).variant;
if (variant !== 'cuda') {
  console.error(`make-prebuilds: the build has no CUDA backend (variant ${variant})`);
  process.exit(1);
}
const target = placePrebuild(built, root);
run('strip', ['--strip-unneeded', target]);
console.log(`make-prebuilds: wrote ${path.relative(root, target)}`);
