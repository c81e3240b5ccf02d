#!/usr/bin/env node
// CI: the package installs from a prebuild in seconds, with no compiler. Packs this checkout with
// the addon `npm install` already built placed as its prebuild (no second compile), installs the
// tarball into a scratch app with cmake and nvcc off the PATH, and checks that `moekit info`
// reports the prebuild, that the install took seconds, and that a CPU forward runs.
'use strict';

const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const { placePrebuild } = require('./prebuild');

const root = path.resolve(__dirname, '..');
// Time for `npm install <tarball>` with the dependencies in npm's cache; a CUDA compile takes 10+ minutes.
const MAX_INSTALL_SECONDS = 60;

function fail(message) {
  console.error(`prebuild install check: ${message}`);
  process.exit(1);
}

/** A PATH with node, npm and a shell, and neither cmake nor nvcc. */
function pathWithoutCompilers(scratch) {
  const bin = path.join(scratch, 'bin');
  fs.mkdirSync(bin);
  for (const tool of ['node', 'npm', 'npx', 'sh', 'bash', 'env', 'uname']) {
    const found = spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim();
    if (found !== '') fs.symlinkSync(fs.realpathSync(found), path.join(bin, tool));
  }
  return bin;
}

function main() {
  const addon = path.join(root, 'build', 'Release', 'moekit.node');
  if (!fs.existsSync(addon)) fail(`no ${path.relative(root, addon)}: run npm install first`);
  if (!fs.existsSync(path.join(root, 'dist', 'index.js'))) fail('no dist/: run npm install (or npm run build) first');
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'moekit-prebuild-'));
  try {
    // The package as `npm pack` sees it, staged outside the checkout so its prebuilds/ stays as it is.
    const staged = path.join(scratch, 'package');
    const { files } = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
    for (const entry of [...files, 'package.json']) {
      if (fs.existsSync(path.join(root, entry))) fs.cpSync(path.join(root, entry), path.join(staged, entry), { recursive: true });
    }
    placePrebuild(addon, staged);
    const tarball = execFileSync('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', scratch], { cwd: staged, encoding: 'utf8' }).trim().split('\n').pop();

    const app = path.join(scratch, 'app');
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'scratch-app', version: '1.0.0', private: true }));
    const env = { ...process.env, PATH: pathWithoutCompilers(scratch) };
    delete env.npm_config_build_from_source;
    for (const tool of ['cmake', 'nvcc']) {
      if (spawnSync('sh', ['-c', `command -v ${tool}`], { env }).status === 0) fail(`${tool} is still on the PATH`);
    }
    const started = Date.now();
    const install = spawnSync('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', path.join(scratch, tarball)], { cwd: app, env, encoding: 'utf8' });
    const seconds = (Date.now() - started) / 1000;
    if (install.status !== 0) fail(`npm install of the tarball failed:\n${install.stdout}\n${install.stderr}`);
    console.log(`prebuild install check: installed ${tarball} in ${seconds.toFixed(1)} s without cmake or nvcc`);
    if (seconds > MAX_INSTALL_SECONDS) fail(`the install took ${seconds.toFixed(0)} s (more than ${MAX_INSTALL_SECONDS} s): did it compile?`);

    const info = execFileSync(path.join(app, 'node_modules', '.bin', 'moekit'), ['info'], { cwd: app, env, encoding: 'utf8' });
    const addonLine = info.split('\n').find((line) => line.startsWith('addon: ')) ?? '';
    if (!/\(prebuilds\/\S+\.node, prebuild\)$/.test(addonLine)) fail(`moekit info does not report the prebuild:\n${info}`);
    console.log(`prebuild install check: ${addonLine}`);

    const forward = `
      const { MoELayer, Tensor } = require('moekit');
      (async () => {
        const layer = MoELayer.random({ family: 'custom', hiddenSize: 64, intermediateSize: 32, numExperts: 4,
          routing: { method: 'softmax_topk', topK: 2, renormalize: true, numGroups: 1, topkGroups: 1, scalingFactor: 1 },
          activation: 'swiglu', activationAlpha: 1.702, activationLimit: 7, routerBias: false, expertBias: false, sharedExpert: null }, { seed: 1 });
        const x = Tensor.random([3, 64], { seed: 2 });
        const output = await layer.forward(x).output.toArray();
        if (output.length !== 192 || !output.every(Number.isFinite)) throw new Error('bad output');
        console.log('CPU forward: ok, ' + output.length + ' values');
      })().catch((error) => { console.error(error); process.exit(1); });`;
    console.log(`prebuild install check: ${execFileSync('node', ['-e', forward], { cwd: app, env, encoding: 'utf8' }).trim()}`);
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

main();
