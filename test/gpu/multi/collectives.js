// Run under `moekit launch --nproc N` (N = 2 or 4; 1 checks the trivial group): each of
// ProcessGroup's collectives against what one process computes on the host. Every rank's data is a
// function of its rank, so each rank knows what all the others hold and computes the expected
// result itself: sums in every dtype allReduce takes, data moved in every dtype (the byte dtypes
// included), broadcast from each root, a send/recv ring, all-to-all with equal splits, uneven ones
// (rank 0 receiving far more, zero splits, a rank sending nothing, nothing at all), barrier() holding
// every rank until the last arrives, and allGather, reduceScatter and an uneven allToAll recorded in
// one CUDA graph and replayed on new inputs. Rank 0 prints one line per check; every rank prints its
// failures; exits 1 on any. A peer that dies or stalls in these collectives: collective_failures.js.
const { ProcessGroup, Tensor } = require('../../../dist/index');
const { addon } = require('../../../dist/native');
const { deviceIndex } = require('../../../dist/device');

const WIDTH = 3; // elements per row
const ROWS = 2; // rows per rank where a collective takes equal parts
const SUMMED = ['float32', 'float16', 'bfloat16', 'int32'];
const MOVED = ['float32', 'bfloat16', 'int32', 'uint8', 'float8_e4m3'];
const BARRIER_STEP_MS = 300; // rank r reaches the barrier r steps late

/** What `key` (a rank, or a rank and a replay round) holds at flat index i: exact in `dtype`, summed over ranks too. */
function valueOf(dtype, key, i) {
  switch (dtype) {
    case 'uint8':
    case 'float8_e4m3': return (key * 61 + i * 7 + 1) & 0xff; // raw bytes: moved, never added
    case 'float16':
    case 'bfloat16': return (key + 1) * 8 + (i % 16); // small integers, exact in 8 bits of mantissa
    default: return key * 1000 + i;
  }
}

const valuesOf = (dtype, key, count, from = 0) => Array.from({ length: count }, (_, i) => valueOf(dtype, key, from + i));
const numel = (shape) => shape.reduce((product, extent) => product * extent, 1);

function hostArray(dtype, values) {
  if (dtype === 'int32') return Int32Array.from(values);
  if (dtype === 'uint8' || dtype === 'float8_e4m3') return Uint8Array.from(values);
  return Float32Array.from(values); // converted to float16 / bfloat16 on the device
}

function tensorOf(group, dtype, shape, values = valuesOf(dtype, group.rank, numel(shape))) {
  return Tensor.fromArray(hostArray(dtype, values), shape, { dtype, device: group.device });
}

async function read(tensor) {
  const half = tensor.dtype === 'float16' || tensor.dtype === 'bfloat16';
  return Array.from(half ? await tensor.toFloat32Array() : await tensor.toArray());
}

/** The element-wise sum over ranks of valuesOf(dtype, key(rank)). */
function summed(group, dtype, count, from = 0, key = (rank) => rank) {
  const total = new Array(count).fill(0);
  for (let rank = 0; rank < group.worldSize; rank++) valuesOf(dtype, key(rank), count, from).forEach((value, i) => (total[i] += value));
  return total;
}

/** Every rank's valuesOf(dtype, key(rank)), in rank order. */
function gathered(group, dtype, count, key = (rank) => rank) {
  return [...Array(group.worldSize).keys()].flatMap((rank) => valuesOf(dtype, key(rank), count));
}

/** An all-to-all's pattern: split(q, p) rows go from rank q to rank p. */
function allToAllCase(group, split) {
  const ranks = [...Array(group.worldSize).keys()];
  const sendSplits = ranks.map((peer) => split(group.rank, peer));
  const recvSplits = ranks.map((peer) => split(peer, group.rank));
  return { sendSplits, recvSplits, inputRows: sendSplits.reduce((a, b) => a + b, 0), outputRows: recvSplits.reduce((a, b) => a + b, 0) };
}

/** What rank `rank` receives in an all-to-all of `split` rows from inputs made of valuesOf(dtype, key(q)). */
function exchanged(group, dtype, split, key = (rank) => rank) {
  const expected = [];
  for (let source = 0; source < group.worldSize; source++) {
    let firstRow = 0;
    for (let peer = 0; peer < group.rank; peer++) firstRow += split(source, peer);
    expected.push(...valuesOf(dtype, key(source), split(source, group.rank) * WIDTH, firstRow * WIDTH));
  }
  return expected;
}

function makeChecks(group) {
  const failures = [];
  return {
    failures,
    expect(ok, what) {
      if (!ok) failures.push(what);
      if (group.rank === 0) console.log(`${ok ? 'PASS' : 'FAIL'} ${what}`);
    },
    async values(tensor, expected, what) {
      const actual = await read(tensor);
      const wrong = actual.findIndex((value, i) => value !== expected[i]);
      const ok = actual.length === expected.length && wrong < 0;
      this.expect(ok, ok ? what : `${what} (rank ${group.rank}: at ${wrong}, ${actual[wrong]} instead of ${expected[wrong]}; ${actual.length} values for ${expected.length})`);
    },
  };
}

async function sums(group, checks) {
  const n = group.worldSize;
  for (const dtype of SUMMED) {
    const tensor = tensorOf(group, dtype, [ROWS, WIDTH]);
    group.allReduce(tensor);
    const input = tensorOf(group, dtype, [n * ROWS, WIDTH]);
    const output = Tensor.empty([ROWS, WIDTH], { dtype, device: group.device });
    group.reduceScatter(input, output);
    await group.synchronize();
    await checks.values(tensor, summed(group, dtype, ROWS * WIDTH), `allReduce ${dtype}`);
    await checks.values(output, summed(group, dtype, ROWS * WIDTH, group.rank * ROWS * WIDTH), `reduceScatter ${dtype} [${n * ROWS}, ${WIDTH}] → [${ROWS}, ${WIDTH}]`);
    for (const t of [tensor, input, output]) t.dispose();
  }
}

async function movements(group, checks) {
  const n = group.worldSize;
  for (const dtype of MOVED) {
    const input = tensorOf(group, dtype, [ROWS, WIDTH]);
    const output = Tensor.empty([n * ROWS, WIDTH], { dtype, device: group.device });
    group.allGather(input, output);
    await group.synchronize();
    await checks.values(output, gathered(group, dtype, ROWS * WIDTH), `allGather ${dtype} [${ROWS}, ${WIDTH}] → [${n * ROWS}, ${WIDTH}]`);
    for (const root of [...Array(n).keys()]) {
      const tensor = tensorOf(group, dtype, [ROWS, WIDTH]);
      group.broadcast(tensor, root);
      await group.synchronize();
      await checks.values(tensor, valuesOf(dtype, root, ROWS * WIDTH), `broadcast ${dtype} from rank ${root}`);
      tensor.dispose();
    }
    input.dispose();
    output.dispose();
  }
}

/** Each rank sends to the next and receives from the previous; even ranks send first, odd ones receive first, so each pair meets. */
async function ring(group, checks) {
  if (group.worldSize === 1) return;
  const next = (group.rank + 1) % group.worldSize;
  const previous = (group.rank + group.worldSize - 1) % group.worldSize;
  for (const dtype of ['float32', 'uint8']) {
    const mine = tensorOf(group, dtype, [ROWS, WIDTH]);
    const received = Tensor.empty([ROWS, WIDTH], { dtype, device: group.device });
    if (group.rank % 2 === 0) {
      group.send(mine, next);
      group.recv(received, previous);
    } else {
      group.recv(received, previous);
      group.send(mine, next);
    }
    await group.synchronize();
    await checks.values(received, valuesOf(dtype, previous, ROWS * WIDTH), `send/recv ring ${dtype}: rank ${group.rank} got rank ${previous}'s`);
    mine.dispose();
    received.dispose();
  }
}

/** All-to-all patterns, split(q, p, worldSize): rows from rank q to rank p. */
const SKEWED = (q, p) => (p === 0 ? 6 * (q + 1) : q === p ? 0 : q + 1);
const ALL_TO_ALL_CASES = [
  { name: 'equal splits (left out)', split: () => ROWS, given: false },
  { name: 'uneven: rank 0 receives far more, zero splits on the diagonal', split: SKEWED, given: true },
  { name: 'uneven: the last rank sends nothing', split: (q, p, n) => (q === n - 1 ? 0 : p + 1), given: true },
  { name: 'nothing at all', split: () => 0, given: true },
];

async function allToAlls(group, checks) {
  for (const { name, split: pattern, given } of ALL_TO_ALL_CASES) {
    const split = (q, p) => pattern(q, p, group.worldSize);
    const { sendSplits, recvSplits, inputRows, outputRows } = allToAllCase(group, split);
    for (const dtype of ['float32', 'bfloat16', 'uint8']) {
      const input = tensorOf(group, dtype, [inputRows, WIDTH]);
      const output = Tensor.empty([outputRows, WIDTH], { dtype, device: group.device });
      group.allToAll(input, output, given ? { sendSplits, recvSplits } : undefined);
      await group.synchronize();
      await checks.values(output, exchanged(group, dtype, split), `allToAll ${dtype}, ${name}: rank ${group.rank} sends [${sendSplits}], receives [${recvSplits}]`);
      input.dispose();
      output.dispose();
    }
  }
}

async function barrier(group, checks) {
  if (group.worldSize === 1) return;
  await group.barrier(); // every rank starts the clock together, give or take the barrier's exit
  const started = Date.now();
  await new Promise((resolve) => setTimeout(resolve, group.rank * BARRIER_STEP_MS));
  await group.barrier();
  const waited = Date.now() - started;
  const lastArrival = (group.worldSize - 1) * BARRIER_STEP_MS;
  checks.expect(waited >= 0.8 * lastArrival, `barrier held rank ${group.rank} ${waited} ms, until the last rank arrived (${lastArrival} ms)`);
}

/**
 * allGather, reduceScatter and an uneven allToAll recorded in one CUDA graph (through the addon's
 * capture, which layer.capture uses), then replayed twice on new inputs copied into the static ones.
 */
async function captured(group, checks) {
  const n = group.worldSize;
  const { sendSplits, recvSplits, inputRows, outputRows } = allToAllCase(group, SKEWED);
  const device = group.device;
  const inputs = {
    gather: Tensor.empty([ROWS, WIDTH], { dtype: 'bfloat16', device }),
    scatter: Tensor.empty([n * ROWS, WIDTH], { dtype: 'float32', device }),
    exchange: Tensor.empty([inputRows, WIDTH], { dtype: 'int32', device }),
  };
  const outputs = {
    gather: Tensor.empty([n * ROWS, WIDTH], { dtype: 'bfloat16', device }),
    scatter: Tensor.empty([ROWS, WIDTH], { dtype: 'float32', device }),
    exchange: Tensor.empty([outputRows, WIDTH], { dtype: 'int32', device }),
  };
  const native = addon();
  native.beginCapture(deviceIndex(device));
  let graph;
  try {
    group.allGather(inputs.gather, outputs.gather);
    group.reduceScatter(inputs.scatter, outputs.scatter);
    group.allToAll(inputs.exchange, outputs.exchange, { sendSplits, recvSplits });
  } finally {
    graph = native.endCapture(deviceIndex(device));
  }
  try {
    for (const round of [1, 2]) {
      const key = (rank) => rank + 7 * round;
      for (const input of Object.values(inputs)) {
        const fresh = tensorOf(group, input.dtype, input.shape, valuesOf(input.dtype, key(group.rank), numel(input.shape)));
        input.copyFrom(fresh);
        fresh.dispose();
      }
      graph.launch();
      await group.synchronize();
      await checks.values(outputs.gather, gathered(group, 'bfloat16', ROWS * WIDTH, key), `captured allGather bfloat16, replay ${round}`);
      await checks.values(outputs.scatter, summed(group, 'float32', ROWS * WIDTH, group.rank * ROWS * WIDTH, key), `captured reduceScatter float32, replay ${round}`);
      await checks.values(outputs.exchange, exchanged(group, 'int32', SKEWED, key), `captured uneven allToAll int32, replay ${round}`);
    }
  } finally {
    graph.release();
    for (const t of [...Object.values(inputs), ...Object.values(outputs)]) t.dispose();
  }
}

async function main() {
  const group = await ProcessGroup.init({ timeoutMs: 60_000 });
  const checks = makeChecks(group);
  try {
    for (const part of [sums, movements, ring, allToAlls, barrier, captured]) await part(group, checks);
  } finally {
    group.destroy();
  }
  if (checks.failures.length > 0) {
    console.error(`rank ${group.rank}: ${checks.failures.length} failed: ${checks.failures.join('; ')}`);
    process.exitCode = 1;
  } else if (group.rank === 0) {
    console.log('all passed');
  }
}

main().catch((error) => {
  console.error(`${error.code ?? ''} ${error.message}`);
  process.exitCode = 1;
});
