// Run under `moekit launch --nproc N` (N = 1 works on one GPU): every rank counts its own forwards
// of a small layer in a LayerStats (rank r runs r + 1 forwards of 4 (r + 1) tokens each), then all
// ranks call gatherLayerStats together; each must receive every rank's snapshot, in rank order,
// equal to what that rank read. A rank whose layer counts a different number of experts must make
// every rank reject, not hang. Rank 0 prints one line per check; exits 1 on any failure.
const { gatherLayerStats, LayerStats, MoELayer, ProcessGroup, Tensor } = require('../../../dist/index');

const { findPreset } = require('../../../dist/bench/presets');

const { config } = findPreset('mixtral-8x7b-mini');

async function countedSnapshot(group, numExperts) {
  const layer = MoELayer.random({ ...config, numExperts }, { device: group.device, dtype: 'float32', seed: 1 });
  const stats = new LayerStats(layer);
  try {
    const forwards = group.rank + 1;
    for (let i = 0; i < forwards; i++) {
      const tokens = 4 * (group.rank + 1);
      const x = Tensor.random([tokens, config.hiddenSize], { device: group.device, seed: 10 * group.rank + i });
      const result = layer.forward(x);
      stats.record(result.expertCounts, tokens);
      x.dispose();
      result.dispose();
    }
    return await stats.read();
  } finally {
    stats.dispose();
    layer.dispose();
  }
}

async function main() {
  const group = await ProcessGroup.init();
  const failures = [];
  const check = (ok, what) => {
    if (!ok) failures.push(what);
    if (group.rank === 0) console.log(`${ok ? 'PASS' : 'FAIL'} ${what}`);
  };
  try {
    const mine = await countedSnapshot(group, config.numExperts);
    const all = await gatherLayerStats(group, mine);
    check(all.length === group.worldSize, `gather returns ${group.worldSize} snapshots`);
    const own = JSON.stringify(all[group.rank]) === JSON.stringify(mine);
    check(own, `rank ${group.rank}'s entry is its own snapshot`);
    all.forEach((snapshot, rank) => {
      const tokens = (rank + 1) * 4 * (rank + 1);
      const routed = snapshot.total.expertPairs.reduce((a, b) => a + b, 0);
      check(snapshot.total.forwards === rank + 1 && snapshot.total.tokens === tokens && routed === tokens * config.routing.topK,
        `rank ${rank}: ${snapshot.total.forwards} forwards, ${snapshot.total.tokens} tokens, ${routed} routed pairs`);
    });
    if (group.worldSize > 1) {
      const experts = group.rank === group.worldSize - 1 ? config.numExperts / 2 : config.numExperts;
      const odd = await countedSnapshot(group, experts);
      const outcome = await gatherLayerStats(group, odd).then(() => 'resolved', (error) => error.code);
      check(outcome === 'E_INVALID_ARGUMENT', `mismatched expert counts reject on rank ${group.rank} (${outcome})`);
    }
  } finally {
    group.destroy();
  }
  if (failures.length > 0) {
    console.error(`rank ${group.rank}: ${failures.length} failed: ${failures.join('; ')}`);
    process.exitCode = 1;
  } else if (group.rank === 0) {
    console.log('all passed');
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
