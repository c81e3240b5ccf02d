/**
 * `moekit launch`: one process per GPU with torchrun's environment (lib/parallel/launcher.ts), or
 * with --explain the split `parallel: 'auto'` would take on those GPUs, in one line, launching nothing.
 */
import { findPreset } from '../bench/presets';
import { readMoEConfig } from '../checkpoint/load';
import { memoryInfo } from '../memory';
import type { MoEConfig } from '../model/config';
import { addon } from '../native';
import { autoPlan, GPU_LINKS, type GpuLink } from '../parallel/auto_plan';
import { launch } from '../parallel/launcher';
import { detectLink, type DetectedLink } from '../parallel/link';
import { dtypeOption, integerOption, parseCommandLine, UsageError, type CommandLine } from './args';

export const LAUNCH_USAGE = `usage: moekit launch --nproc N [--nnodes M --node-rank R --master-addr A --master-port P] script.js [args...]
       moekit launch --nproc N [--nnodes M] --explain <checkpoint-dir|preset> [--layer L] [--dtype D] [--gpu-memory-gb G] [--link L]

Starts N processes of script.js on this node with RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE,
MASTER_ADDR and MASTER_PORT set (torchrun's conventions), prefixes their output with their rank,
and stops every rank when one fails (the launcher then exits with that rank's code).

  --nproc         processes on this node (one per GPU)
  --nnodes        nodes in the group (default 1)
  --node-rank     this node's index (default 0)
  --master-addr   address of rank 0's node (default 127.0.0.1)
  --master-port   its rendezvous port (default 29500)

With --explain, prints in one line the moeTpSize × moeEpSize that parallel: 'auto' picks for a
checkpoint's layer (or a bench preset's) on N × M GPUs, and why; nothing is launched.

  --layer          the checkpoint's decoder layer (default 0)
  --dtype          the compute dtype the weights are held in (default float32, as MoELayer's)
  --gpu-memory-gb  free memory per GPU in GiB (default: the least free of cuda:0 … cuda:N-1 here)
  --link           nvlink, pcie or unknown (default: read from this node's GPUs; unknown across nodes)`;

const LAUNCH_OPTIONS = ['nproc', 'nnodes', 'node-rank', 'master-addr', 'master-port'] as const;
const EXPLAIN_OPTIONS = ['layer', 'dtype', 'gpu-memory-gb', 'link'] as const;
const OPTION_NAMES = [...LAUNCH_OPTIONS, ...EXPLAIN_OPTIONS] as const;
type OptionName = (typeof OPTION_NAMES)[number];

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
  const explaining = own.includes('--explain');
  // With --explain the model takes the script's place, and the options may follow it.
  const commandLine = parseCommandLine(explaining ? [...own, ...scriptArgs] : own, OPTION_NAMES, ['explain']);
  const { options, help, positionals } = commandLine;
  if (help) {
    console.log(LAUNCH_USAGE);
    return;
  }
  if (script === undefined) throw new UsageError(explaining ? 'missing argument <checkpoint-dir|preset>' : 'missing argument script.js');
  if (options.nproc === undefined) throw new UsageError('missing required option --nproc');
  const nnodes = integerOption(options.nnodes ?? '1', 'nnodes', 1);
  if (explaining) {
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])} after the model`);
    console.log(explanation(commandLine, script, integerOption(options.nproc, 'nproc', 1), nnodes));
    return;
  }
  const explainOnly = EXPLAIN_OPTIONS.find((name) => options[name] !== undefined);
  if (explainOnly !== undefined) throw new UsageError(`--${explainOnly} goes with --explain`);
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

/** The one line `--explain` prints: autoPlan's explanation for the model on nproc × nnodes GPUs. */
function explanation({ options }: CommandLine<OptionName, 'explain'>, model: string, nproc: number, nnodes: number): string {
  const config = modelConfig(model, integerOption(options.layer ?? '0', 'layer', 0));
  const given = options.link;
  const { link, source } = given !== undefined ? { link: linkOption(given), source: 'given' } : linkHere(nproc, nnodes);
  const bytesPerGpu = options['gpu-memory-gb'] !== undefined ? gibOption(options['gpu-memory-gb']) * 2 ** 30 : freeBytesHere(nproc);
  return autoPlan({ worldSize: nproc * nnodes, config, dtype: dtypeOption(options.dtype, 'float32'), bytesPerGpu, link, linkSource: source }).explanation;
}

/** A bench preset by name, else a checkpoint folder's layer. */
function modelConfig(model: string, layer: number): MoEConfig {
  return findPreset(model)?.config ?? readMoEConfig(model, layer);
}

function linkOption(value: string): GpuLink {
  const link = GPU_LINKS.find((name) => name === value);
  if (link === undefined) throw new UsageError(`--link must be one of ${GPU_LINKS.join(', ')}, got ${JSON.stringify(value)}`);
  return link;
}

function gibOption(value: string): number {
  const gib = Number(value);
  if (value.trim() === '' || !Number.isFinite(gib) || gib <= 0) throw new UsageError(`--gpu-memory-gb must be a positive number of GiB, got ${JSON.stringify(value)}`);
  return gib;
}

/** This node's GPUs' link; across nodes the network is not read. */
function linkHere(nproc: number, nnodes: number): DetectedLink {
  return nnodes > 1 ? { link: 'unknown', source: `the group spans ${nnodes} nodes` } : detectLink(nproc);
}

/** The least free memory of cuda:0 … cuda:nproc-1 on this machine. */
function freeBytesHere(nproc: number): number {
  const visible = addon().cudaDeviceCount();
  if (visible < nproc) throw new UsageError(`--explain needs --gpu-memory-gb here: --nproc ${nproc}, and ${visible} CUDA GPU${visible === 1 ? '' : 's'} visible to read free memory from`);
  return Math.min(...Array.from({ length: nproc }, (_, index) => memoryInfo(`cuda:${index}`).freeBytes));
}
