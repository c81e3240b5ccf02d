/**
 * autocannon's `setupRequest` for bench/serve_load.js: picks each POST /v1/forward body.
 *
 * autocannon loads this module by path in each of its worker threads (`workers` mode passes
 * options by structured clone, so functions cannot travel), or serve_load.js requires it with
 * `--workers 0`. It builds its own bodies at load time from MOEKIT_SERVE_LOAD_BODIES, a JSON object
 * { hidden, dtype, minTokens, maxTokens } that serve_load.js sets in process.env before autocannon
 * starts (a worker thread gets a copy of the parent's environment): four bodies of every token
 * count T in [minTokens, maxTokens], each a safetensors file with one tensor `input` [T, hidden] of
 * uniform random values in [-1, 1) in `dtype` (F32, BF16 or F16), shuffled, and cycled through
 * from a random start, so that T is uniform over requests and consecutive requests differ in size.
 */
'use strict';
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const { encodeSafetensors } = require(path.join(root, 'dist/checkpoint/safetensors.js'));
const { encodeHalf } = require(path.join(root, 'dist/dtype.js'));

const variable = 'MOEKIT_SERVE_LOAD_BODIES';

/** The request bodies for { hidden, dtype, minTokens, maxTokens }, shuffled. */
function bodies({ hidden, dtype, minTokens, maxTokens }) {
  const made = [];
  for (let variant = 0; variant < 4; variant += 1) {
    for (let tokens = minTokens; tokens <= maxTokens; tokens += 1) {
      const values = Float32Array.from({ length: tokens * hidden }, () => Math.random() * 2 - 1);
      const input = dtype === 'float32'
        ? { dtype: 'F32', shape: [tokens, hidden], data: values }
        : { dtype: dtype === 'bfloat16' ? 'BF16' : 'F16', shape: [tokens, hidden], data: encodeHalf(values, dtype) };
      made.push(encodeSafetensors({ input }));
    }
  }
  // Shuffled, so that consecutive requests differ in size.
  return made.sort(() => Math.random() - 0.5);
}

function parameters() {
  const text = process.env[variable];
  if (!text) throw new Error(`${variable} is not set (bench/serve_load.js sets it before starting autocannon)`);
  const { hidden, dtype, minTokens, maxTokens } = JSON.parse(text);
  if (!Number.isInteger(hidden) || hidden < 1) throw new Error(`${variable}: hidden must be a positive integer, got ${hidden}`);
  if (!['float32', 'bfloat16', 'float16'].includes(dtype)) throw new Error(`${variable}: dtype must be float32, bfloat16 or float16, got ${dtype}`);
  if (!Number.isInteger(minTokens) || !Number.isInteger(maxTokens) || minTokens < 1 || maxTokens < minTokens) {
    throw new Error(`${variable}: need integers 1 <= minTokens <= maxTokens, got ${minTokens}, ${maxTokens}`);
  }
  return { hidden, dtype, minTokens, maxTokens };
}

const payloads = bodies(parameters());
let next = Math.floor(Math.random() * payloads.length);

module.exports = function setupRequest(request) {
  next = (next + 1) % payloads.length;
  return { ...request, body: payloads[next] };
};
