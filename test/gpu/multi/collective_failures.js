// A rank that dies and a rank that stalls must surface as errors in the other ranks, never a hang.
// Run with plain `node` on a machine with 2 GPUs: this script starts its own two ranks (torchrun's
// environment, no launcher, so that a rank can leave without the launcher stopping the others) for
// each scenario, and checks what every rank reports:
//   rank-dies    rank 1 exits right after the communicator is made; rank 0's forward all-reduce
//                has no peer. Either the forward itself throws E_NCCL (NCCL saw the peer's socket
//                close), or rank 0 awaits its output without calling synchronize(): then the
//                group's own watchdog must abort the communicator, the await must return, and the
//                next call on the group must throw E_NCCL.
//   rank-stalls  rank 1 sleeps past the timeout before its forward; rank 0's synchronize() must
//                reject with E_NCCL; rank 1, arriving late to a group whose peer gave up, must
//                reject too. Its first all-reduce may still complete (seen on 2 H200s: rank 0 had
//                already delivered its half before it gave up, so rank 1 had all it needed), so
//                the late rank runs up to LATE_ROUNDS forwards: with its peer gone, the next one
//                stalls and the watchdog must turn it into E_NCCL.
// Exits 1 if any expectation fails or a rank is still running after DEADLINE_MS.
const { spawn } = require('node:child_process');
const net = require('node:net');
const path = require('node:path');

const TIMEOUT_MS = 5_000; // the group's collective timeout in the ranks
const DEADLINE_MS = 90_000; // a rank still running after this has hung
const LATE_ROUNDS = 2; // forwards the late rank runs before it must have seen E_NCCL
const FIXTURE = path.resolve(__dirname, '../../../../shared/fixtures/hf-moe/mixtral');

async function rank() {
  const { MoELayer, ProcessGroup, Tensor } = require('../../../dist/index');
  const scenario = process.env.SCENARIO;
  const group = await ProcessGroup.init({ timeoutMs: TIMEOUT_MS });
  const say = (line) => console.log(`rank ${group.rank}: ${line}`);
  const layer = await MoELayer.fromPretrained(FIXTURE, { layer: 0, group, dtype: 'float32' });
  const x = Tensor.random([4, layer.config.hiddenSize], { device: group.device, seed: 7 });
  await group.synchronize(); // both ranks are up and agree before the failure is staged

  if (group.rank === 1 && scenario === 'rank-dies') {
    say('exiting without taking part');
    process.exit(0);
  }
  if (group.rank === 1 && scenario === 'rank-stalls') {
    say(`sleeping ${3 * TIMEOUT_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 3 * TIMEOUT_MS));
  }
  const rounds = group.rank === 1 && scenario === 'rank-stalls' ? LATE_ROUNDS : 1;
  for (let round = 1; round <= rounds; round++) await forwardRound(scenario, layer, x, group, say, round === rounds);
  process.exit(0);
}

// One forward and a synchronize(); prints what happened and exits the process on an error (or,
// when `last`, the caller exits after it).
async function forwardRound(scenario, layer, x, group, say, last) {
  const started = Date.now();
  let result;
  try {
    result = layer.forward(x);
  } catch (error) {
    say(`REJECTED ${error.code} from forward after ${Date.now() - started} ms: ${error.message}`);
    process.exit(0);
  }
  if (scenario === 'rank-dies') {
    // No synchronize(): only the watchdog that allReduce started can release this await.
    try {
      await result.output.toFloat32Array();
      say(`output await returned after ${Date.now() - started} ms`);
    } catch (error) {
      say(`output await rejected with ${error.code} after ${Date.now() - started} ms`);
    }
  }
  try {
    await group.synchronize();
    say(`${last ? 'NO ERROR' : 'completed'} after ${Date.now() - started} ms`);
  } catch (error) {
    say(`REJECTED ${error.code} after ${Date.now() - started} ms: ${error.message}`);
    process.exit(0);
  }
  result.dispose();
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

/** Runs both ranks of one scenario; resolves with each rank's output and whether it finished. */
async function runScenario(scenario) {
  const port = await freePort();
  const ranks = [0, 1].map((rankIndex) => {
    const env = {
      ...process.env, SCENARIO: scenario, RANK: String(rankIndex), LOCAL_RANK: String(rankIndex), WORLD_SIZE: '2',
      LOCAL_WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), NCCL_NVLS_ENABLE: '0',
    };
    const child = spawn(process.execPath, [__filename], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    const finished = new Promise((resolve) => child.on('exit', () => resolve(true)));
    return { child, finished, output: () => output };
  });
  const deadline = new Promise((resolve) => setTimeout(() => resolve(false), DEADLINE_MS));
  const results = [];
  for (const r of ranks) {
    const finished = await Promise.race([r.finished, deadline]);
    if (!finished) r.child.kill('SIGKILL');
    results.push({ finished, output: r.output() });
  }
  return results;
}

async function parent() {
  let failures = 0;
  const expect = (condition, what) => {
    console.log(`${condition ? 'PASS' : 'FAIL'} ${what}`);
    if (!condition) failures += 1;
  };
  const dies = await runScenario('rank-dies');
  process.stdout.write(dies.map((r) => r.output).join(''));
  expect(dies.every((r) => r.finished), 'rank-dies: every rank finished (no hang)');
  const thrownByForward = /rank 0: REJECTED E_NCCL from forward/.test(dies[0].output);
  expect(thrownByForward || /rank 0: output await (returned|rejected)/.test(dies[0].output), 'rank-dies: rank 0\'s forward threw, or its output await came back without synchronize()');
  expect(/rank 0: REJECTED E_NCCL/.test(dies[0].output), 'rank-dies: rank 0 got E_NCCL');

  const stalls = await runScenario('rank-stalls');
  process.stdout.write(stalls.map((r) => r.output).join(''));
  expect(stalls.every((r) => r.finished), 'rank-stalls: every rank finished (no hang)');
  expect(/rank 0: REJECTED E_NCCL/.test(stalls[0].output), 'rank-stalls: rank 0 rejected with E_NCCL');
  expect(/rank 1: REJECTED E_NCCL/.test(stalls[1].output), 'rank-stalls: the late rank 1 rejected with E_NCCL');
  console.log(failures === 0 ? 'collective failures: all passed' : `collective failures: ${failures} failed`);
  process.exit(failures === 0 ? 0 : 1);
}

const main = process.env.RANK === undefined ? parent : rank;
main().catch((error) => {
  console.error(`${error.code ?? ''} ${error.message}`);
  process.exit(1);
});
