// A rank that dies and a rank that stalls must surface as errors in the other ranks, never a hang.
// Run with plain `node` on a machine with 2 GPUs: this script starts its own two ranks (torchrun's
// environment, no launcher, so that a rank can leave without the launcher stopping the others) for
// each scenario, and checks what every rank reports. A scenario is a failure and the collective
// each round runs (a sharded forward, which ends in an all-reduce; a recv; an all-to-all):
//   dies    rank 1 exits right after the group is up; rank 0's round has no peer. Either the call
//           itself throws E_NCCL (NCCL saw the peer's socket close), or rank 0 awaits the round's
//           output without calling synchronize(): then the group's own watchdog must abort the
//           communicator, the await must return, and the next call on the group must throw E_NCCL.
//   stalls  rank 1 sleeps past the timeout before its round; rank 0's synchronize() must reject
//           with E_NCCL; rank 1, arriving late to a group whose peer gave up, must reject too. Its
//           first round may still complete (seen on 2 H200s with the forward: rank 0 had already
//           delivered its half before it gave up, so rank 1 had all it needed), so the late rank
//           runs up to LATE_ROUNDS rounds: with its peer gone, the next one stalls and the
//           watchdog must turn it into E_NCCL.
// Exits 1 if any expectation fails or a rank is still running after DEADLINE_MS.
const { spawn } = require('node:child_process');
const net = require('node:net');
const path = require('node:path');

const TIMEOUT_MS = 5_000; // the group's collective timeout in the ranks
const DEADLINE_MS = 90_000; // a rank still running after this has hung
const LATE_ROUNDS = 2; // rounds the late rank runs before it must have seen E_NCCL
const FIXTURE = path.resolve(__dirname, '../../../../shared/fixtures/hf-moe/mixtral');

const SCENARIOS = [
  { name: 'rank-dies', failure: 'dies', collective: 'forward' },
  { name: 'rank-stalls', failure: 'stalls', collective: 'forward' },
  { name: 'recv-rank-dies', failure: 'dies', collective: 'recv' },
  { name: 'alltoall-rank-stalls', failure: 'stalls', collective: 'allToAll' },
];

// What a round runs, set up before the failure is staged: each returns a function that enqueues
// one round and returns the tensor it writes (to await) and how to free what the round made.
const ROUNDS = {
  async forward(group, { MoELayer, Tensor }) {
    const layer = await MoELayer.fromPretrained(FIXTURE, { layer: 0, group, dtype: 'float32' });
    const x = Tensor.random([4, layer.config.hiddenSize], { device: group.device, seed: 7 });
    return () => {
      const result = layer.forward(x);
      return { output: result.output, dispose: () => result.dispose() };
    };
  },
  // Rank 1 sends, rank 0 receives.
  async recv(group, { Tensor }) {
    const message = Tensor.random([1024], { device: group.device, seed: 7 });
    return () => {
      if (group.rank === 0) group.recv(message, 1);
      else group.send(message, 0);
      return { output: message, dispose: () => {} };
    };
  },
  async allToAll(group, { Tensor }) {
    const input = Tensor.random([64, 256], { device: group.device, seed: 7 });
    const output = Tensor.empty([64, 256], { device: group.device });
    return () => {
      group.allToAll(input, output);
      return { output, dispose: () => {} };
    };
  },
};

async function rank() {
  const moekit = require('../../../dist/index');
  const scenario = SCENARIOS.find((candidate) => candidate.name === process.env.SCENARIO);
  const group = await moekit.ProcessGroup.init({ timeoutMs: TIMEOUT_MS });
  const say = (line) => console.log(`rank ${group.rank}: ${line}`);
  const runRound = await ROUNDS[scenario.collective](group, moekit);
  await group.synchronize(); // both ranks are up and agree before the failure is staged

  if (group.rank === 1 && scenario.failure === 'dies') {
    say('exiting without taking part');
    process.exit(0);
  }
  if (group.rank === 1 && scenario.failure === 'stalls') {
    say(`sleeping ${3 * TIMEOUT_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 3 * TIMEOUT_MS));
  }
  const rounds = group.rank === 1 && scenario.failure === 'stalls' ? LATE_ROUNDS : 1;
  for (let round = 1; round <= rounds; round++) await oneRound(scenario, runRound, group, say, round === rounds);
  process.exit(0);
}

// One round and a synchronize(); prints what happened and exits the process on an error (or,
// when `last`, the caller exits after it).
async function oneRound(scenario, runRound, group, say, last) {
  const started = Date.now();
  let result;
  try {
    result = runRound();
  } catch (error) {
    say(`REJECTED ${error.code} from the ${scenario.collective} call after ${Date.now() - started} ms: ${error.message}`);
    process.exit(0);
  }
  if (scenario.failure === 'dies') {
    // No synchronize(): only the watchdog that the collective started can release this await.
    try {
      await result.output.toArray();
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
  for (const { name, failure, collective } of SCENARIOS) {
    const ranks = await runScenario(name);
    process.stdout.write(ranks.map((r) => r.output).join(''));
    expect(ranks.every((r) => r.finished), `${name}: every rank finished (no hang)`);
    expect(/rank 0: REJECTED E_NCCL/.test(ranks[0].output), `${name}: rank 0 rejected with E_NCCL`);
    if (failure === 'dies') {
      const thrownByCall = /rank 0: REJECTED E_NCCL from the/.test(ranks[0].output);
      expect(thrownByCall || /rank 0: output await (returned|rejected)/.test(ranks[0].output), `${name}: rank 0's ${collective} threw, or its output await came back without synchronize()`);
    } else {
      expect(/rank 1: REJECTED E_NCCL/.test(ranks[1].output), `${name}: the late rank 1 rejected with E_NCCL`);
    }
  }
  console.log(failures === 0 ? 'collective failures: all passed' : `collective failures: ${failures} failed`);
  process.exit(failures === 0 ? 0 : 1);
}

const main = process.env.RANK === undefined ? parent : rank;
main().catch((error) => {
  console.error(`${error.code ?? ''} ${error.message}`);
  process.exit(1);
});
