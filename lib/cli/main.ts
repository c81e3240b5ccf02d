#!/usr/bin/env node
/**
 * The moekit command line. Exit codes: 0 success, 1 bad input (a file, tensor, checkpoint or
 * device), 2 bad usage (unknown command or option, missing or malformed option). A failure prints
 * one line on stderr, `moekit: <message>`, without a stack trace unless MOEKIT_DEBUG is set.
 */
import { UsageError } from './args';
import { benchCommand } from './bench_command';
import { infoCommand } from './info_command';
import { launchCommand } from './launch_command';
import { runCommand } from './run_command';
import { serveCommand } from './serve_command';

interface Command {
  summary: string;
  /** Runs the command; `--help` among its arguments prints the command's own usage. */
  run(args: readonly string[]): Promise<void>;
}

const COMMANDS: ReadonlyMap<string, Command> = new Map([
  ['run', { summary: "run one layer's MoE block of a Hugging Face checkpoint on an input tensor", run: runCommand }],
  ['bench', { summary: "time MoE layer forwards with random weights in real models' shapes or your own", run: benchCommand }],
  ['info', { summary: 'version, native addon, CUDA devices and NCCL', run: infoCommand }],
  ['launch', { summary: 'start one process per GPU with torchrun-style rank variables', run: launchCommand }],
  ['serve', { summary: "serve one layer's MoE block over HTTP, merging concurrent requests", run: serveCommand }],
]);

const USAGE = `usage: moekit <command> [options]

commands:
${[...COMMANDS].map(([name, command]) => `  ${name.padEnd(7)}${command.summary}`).join('\n')}

'moekit <command> --help' describes a command's options. MOEKIT_DEBUG=1 prints stack traces.`;

const EXIT_BAD_INPUT = 1;
const EXIT_BAD_USAGE = 2;

async function dispatch(name: string | undefined, args: readonly string[]): Promise<void> {
  if (name === '--help' || name === '-h' || name === 'help') {
    console.log(USAGE);
    return;
  }
  const commands = [...COMMANDS.keys()].join(', ');
  if (name === undefined) throw new UsageError(`missing command (commands: ${commands})`);
  const command = COMMANDS.get(name);
  if (command === undefined) throw new UsageError(`unknown command ${JSON.stringify(name)} (commands: ${commands})`);
  await command.run(args);
}

/** Prints the failure as one line and returns the exit code. */
function reportFailure(error: unknown, name: string | undefined): number {
  const message = (error instanceof Error ? error.message : String(error)).replace(/\s*\n\s*/g, ' ');
  if (process.env.MOEKIT_DEBUG) console.error(error);
  if (error instanceof UsageError) {
    const help = name !== undefined && COMMANDS.has(name) ? `moekit ${name} --help` : 'moekit --help';
    console.error(`moekit: ${message} (see '${help}')`);
    return EXIT_BAD_USAGE;
  }
  console.error(`moekit: ${message}`);
  return EXIT_BAD_INPUT;
}

const [name, ...args] = process.argv.slice(2);
dispatch(name, args).catch((error: unknown) => {
  process.exitCode = reportFailure(error, name);
});
