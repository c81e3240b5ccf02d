// Where a prebuild goes: prebuilds/<platform>-<arch>/node.napi.node, the layout and tags
// node-gyp-build resolves (scripts/install.js and lib/native.ts load through it). Shared by
// make_prebuild.js (which compiles one) and check_prebuild_install.js (which reuses the addon
// `npm install` already built, so CI does not compile CUDA twice).
'use strict';

const fs = require('node:fs');
const path = require('node:path');

function prebuildPath(packageRoot) {
  return path.join(packageRoot, 'prebuilds', `${process.platform}-${process.arch}`, 'node.napi.node');
}

/** Copies a built addon into packageRoot's prebuilds/ and returns where it went. */
function placePrebuild(addonFile, packageRoot) {
  const target = prebuildPath(packageRoot);
  fs.mkdirSync(path.dirname(target), { recursive: true });
  fs.copyFileSync(addonFile, target);
  return target;
}

module.exports = { placePrebuild, prebuildPath };
