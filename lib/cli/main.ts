#!/usr/bin/env node
/**
 * The moekit command line. Exit codes: 0 success, 1 bad input (a file, tensor or checkpoint),
 * 2 bad usage (unknown command or option). Failures print one line on stderr, no stack trace.
 */
import { MoekitError } from '../errors';
import { UsageError } from './args';
import { BENCH_USAGE, benchCommand } from './bench_command';
import { INFO_USAGE, infoCommand } from './info_command';
import { RUN_USAGE, runCommand } from './run_command';

const COMMANDS: Readonly<Record<string, (args: string[]) => Promise<void>>> = {
  run: runCommand,
  bench: benchCommand,
  info: infoCommand,
};

const USAGE = `usage: moekit <command> [options]

commands:
  run     run one layer's MoE block of a Hugging Face checkpoint on an input tensor
  bench   time MoE layer forwards (the main job)
  info    version, addon variant, CUDA devices, NCCL

${RUN_USAGE}

${BENCH_USAGE}

${INFO_USAGE}`;

const EXIT_BAD_INPUT = 1;
const EXIT_BAD_USAGE = 2;

async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    console.log(USAGE);
    return command === undefined ? EXIT_BAD_USAGE : 0;
  }
  const run = COMMANDS[command];
  if (!run) throw new UsageError(`unknown command ${JSON.stringify(command)} (commands: ${Object.keys(COMMANDS).join(', ')})`);
  await run(args);
  return 0;
}

function report(error: unknown): number {
  if (error instanceof UsageError) {
    console.error(`moekit: ${error.message} (see moekit --help)`);
    return EXIT_BAD_USAGE;
  }
  const message = error instanceof Error ? error.message : String(error);
  console.error(`moekit: ${message.split('\n')[0]}`);
  if (!(error instanceof MoekitError) && process.env.MOEKIT_DEBUG) console.error(error);
  return EXIT_BAD_INPUT;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.exitCode = report(error);
  },
);
