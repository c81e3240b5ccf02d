/**
 * autocannon's `setupClient` for bench/serve_load.js: stops each connection keeping response bodies.
 *
 * autocannon 9 appends every response chunk to a string (`req.body += data` in
 * lib/pipelinedRequestsQueue.js, called from lib/httpClient.js for each body chunk) whatever the
 * options, for `verifyBody`, `expectBody` and `onResponse`; it has no option to skip it. The
 * answers here are 70–140 KB of binary safetensors, and decoding them as UTF-8 took 81% of the
 * load generator's CPU time. serve_load.js uses none of those three, so this hook, which
 * autocannon calls with each Client right after creating its queue, replaces that one queue's
 * `addBody` with a no-op. Byte counts, status codes and latencies are recorded elsewhere
 * (`addByteCount`, the parser's headers, `terminateRequest`) and are unchanged. If a later
 * autocannon has no such queue, the hook does nothing. serve_load.js --keep-bodies leaves it out.
 */
'use strict';

module.exports = function setupClient(client) {
  const queue = client.pipelinedRequests;
  if (queue && typeof queue.addBody === 'function') queue.addBody = () => {};
};
