/** `moekit launch`: one process per GPU with torchrun's environment (lib/parallel/launcher.ts). */
import { launch } from '../parallel/launcher';
import { integerOption, parseCommandLine, UsageError } from './args';

export const LAUNCH_USAGE = `usage: moekit launch --nproc N [--nnodes M --node-rank R --master-addr A --master-port P] script.js [args...]

Starts N processes of script.js on this node with RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE,
MASTER_ADDR and MASTER_PORT set (torchrun's conventions), prefixes their output with their rank,
and stops every rank when one fails (the launcher then exits with that rank's code).

  --nproc         processes on this node (one per GPU)
  --nnodes        nodes in the group (default 1)
  --node-rank     this node's index (default 0)
  --master-addr   address of rank 0's node (default 127.0.0.1)
  --master-port   its rendezvous port (default 29500)`;

const OPTION_NAMES = ['nproc', 'nnodes', 'node-rank', 'master-addr', 'master-port'] as const;

/** Splits the launcher's own options from the script and its arguments (which may look like options). */
function splitAtScript(args: readonly string[]): { own: string[]; script?: string; scriptArgs: string[] } {
  let i = 0;
  while (i < args.length) {
    const arg = args[i]!;
    if (!arg.startsWith('-')) break;
    const takesValue = OPTION_NAMES.some((name) => arg === `--${name}`);
    i += takesValue ? 2 : 1;
  }
  return { own: args.slice(0, i), script: args[i], scriptArgs: args.slice(i + 1) };
}

export async function launchCommand(args: readonly string[]): Promise<void> {
  const { own, script, scriptArgs } = splitAtScript(args);
  const { options, help } = parseCommandLine(own, OPTION_NAMES);
  if (help) {
    console.log(LAUNCH_USAGE);
    return;
  }
  if (script === undefined) throw new UsageError('missing argument script.js');
  if (options.nproc === undefined) throw new UsageError('missing required option --nproc');
  const nnodes = integerOption(options.nnodes ?? '1', 'nnodes', 1);
  const nodeRank = integerOption(options['node-rank'] ?? '0', 'node-rank', 0);
  if (nodeRank >= nnodes) throw new UsageError(`--node-rank ${nodeRank} must be less than --nnodes ${nnodes}`);
  const code = await launch({
    nproc: integerOption(options.nproc, 'nproc', 1),
    nnodes,
    nodeRank,
    masterAddr: options['master-addr'] ?? '127.0.0.1',
    masterPort: integerOption(options['master-port'] ?? '29500', 'master-port', 1),
    script,
    args: scriptArgs,
  });
  process.exitCode = code;
}
