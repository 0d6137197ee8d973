#!/usr/bin/env node
/**
 * Entry point: parses flags, decides interactivity once, and holds the one catch that maps typed
 * errors to the exit codes of CONTRACT.md.
 */
import { Command, CommanderError, Option } from 'commander';
import { ExitCode, isSeedError, CancelledError } from './errors.js';
import { TOOL_VERSION } from './version.js';
import { createOutput, type Output } from './ui/output.js';
import type { CommandContext } from './commands/context.js';

/**
 * The options the user actually passed. Commander gives `--no-x` options a default of true; we
 * want "not given" to stay undefined so the profile, then our defaults, decide (flags carry no
 * parser defaults).
 */
function explicitFlags<T extends object>(command: Command): T {
  const options = command.opts() as Record<string, unknown>;
  return Object.fromEntries(Object.entries(options).filter(([key]) => command.getOptionValueSource(key) !== 'default')) as T;
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/**
 * Terminals on stdin and stdout, no CI, no --yes, no --json. The flags are looked at first: opening
 * process.stdin costs a scripted run a few milliseconds of start-up for nothing.
 */
export function isInteractive(flags: { json?: boolean; yes?: boolean }, env = process.env): boolean {
  return !flags.json && !flags.yes && !env.CI && Boolean(process.stdin.isTTY && process.stdout.isTTY);
}

function makeContext(flags: { json?: boolean; yes?: boolean }, signal: AbortSignal): CommandContext {
  return { interactive: isInteractive(flags), output: createOutput(Boolean(flags.json)), signal, cwd: process.cwd() };
}

async function main(argv: string[]): Promise<number> {
  const controller = new AbortController();
  let interrupts = 0;
  // The first Ctrl-C or SIGTERM cancels (work stops, temp files go); a second one during that
  // clean-up exits at once (spool folders are still removed by their exit hook).
  const interrupt = () => {
    interrupts += 1;
    if (interrupts > 1) process.exit(ExitCode.cancelled);
    controller.abort(new CancelledError());
  };
  process.on('SIGINT', interrupt);
  process.on('SIGTERM', interrupt);

  let exitCode: number = ExitCode.ok;
  let jsonMode = argv.includes('--json');
  const program = new Command('dubnium-seed')
    .description('Prepare the USB seed partition for a Dubnium NixOS installer: source archive, model bundles, checksums, and no credentials.')
    .version(TOOL_VERSION)
    .exitOverride()
    .configureOutput({ writeOut: (text) => process.stdout.write(text), writeErr: (text) => process.stderr.write(text) })
    .showSuggestionAfterError();

  program.action(async () => {
    const context = makeContext({}, controller.signal);
    if (!context.interactive) {
      process.stderr.write(program.helpInformation());
      process.stderr.write('\nNo terminal: nothing to ask. Run a subcommand, for example `dubnium-seed build --profile NAME`.\n');
      exitCode = ExitCode.usage;
      return;
    }
    const { runWizard } = await import('./commands/wizard.js');
    exitCode = await runWizard(context);
  });

  program
    .command('build')
    .description('build a seed without prompts, from flags and/or a profile')
    .option('--profile <name|file>', 'profile name (profiles/NAME.yaml) or YAML file')
    .option('--repo <path>', 'NixOS configuration repository (a git work tree, or a folder inside one)')
    .option('--model <path>', 'model bundle folder or Hugging Face cache folder (models--org--name); repeatable', collect)
    .option('--revision <rev>', 'snapshot of the Hugging Face cache models given with --model (ref or commit)')
    .option('--target <dir>', 'seed folder: the mounted seed partition or any folder')
    .option('--device <path>', 'whole disk to put the seed partition on (needs --yes when scripted)')
    .option('--iso <file>', 'with --device: write this installer image first (verified by reading it back)')
    .option('--image <file>', 'write a seed partition image file')
    .option('--size <size>', 'size of the image file (e.g. 8G)')
    .option('--label <label>', 'filesystem label (default DUBNIUM-SEED)')
    .addOption(new Option('--filesystem <type>', 'filesystem for a new seed partition').choices(['ext4', 'exfat', 'fat']))
    .option('--model-store <path>', 'where the installed host keeps models (default /var/lib/dubnium/models)')
    .option('--include-untracked', 'also archive untracked files that are not ignored')
    .option('--plain-folder', 'archive a folder that is not a git work tree as it is')
    .option('--carry-input <name>', 'flake input to carry on the seed whatever its URL (node name or a/b path, or all); repeatable', collect)
    .option('--nix-store <dir>', 'where to find carried flake inputs: / (this machine) or a chroot store folder (nix --store DIR)')
    .option('--flake-host <name>', 'nixosConfigurations name for the nixos-install line seed-install.sh prints')
    .addOption(new Option('--submodules <mode>', 'include submodule working trees, or refuse').choices(['include', 'refuse']))
    .option('--no-verify', 'skip reading the seed back after writing')
    .option('--sign <key>', 'sign the manifest with this SSH key: a private key file, or a .pub whose private half is in ssh-agent')
    .option('--no-sign', "do not sign, whatever the profile's sign.key says")
    .option('--no-operator-secrets', "do not load the operator's own keys and tokens to match exactly")
    .option('--allow-fixed-disk', 'accept a fixed, non-removable disk as --device')
    .option('--allow-large', 'accept a --device larger than 128 GB')
    .option('--json', 'print one JSON document on stdout')
    .option('-y, --yes', 'do not ask; required for --device in scripted mode')
    .action(async (_options, command: Command) => {
      const flags = explicitFlags<import('./options.js').BuildFlags>(command);
      jsonMode = Boolean(flags.json);
      const { runBuild } = await import('./commands/build.js');
      exitCode = await runBuild(flags, makeContext(flags, controller.signal));
    });

  program
    .command('verify')
    .description('verify a seed: a mounted folder, a block device or partition, or an image file')
    .argument('<path>')
    .option('--profile <name|file>', 'profile whose leak-scan allowlist applies')
    .option('--no-scan', 'skip the leak scan')
    .option('--signer <fingerprint|pubkey>', 'require a valid signature by this SSH key (SHA256:... fingerprint or .pub file)')
    .option('--iso <file>', 'whole stick: also compare the installer image at its start with this image file')
    .option('--no-operator-secrets', "do not load the operator's own keys and tokens to match exactly")
    .option('--json', 'print one JSON document on stdout')
    .action(async (target: string, _options, command: Command) => {
      const flags = explicitFlags<import('./commands/verify.js').VerifyFlags>(command);
      jsonMode = Boolean(flags.json);
      const { runVerify } = await import('./commands/verify.js');
      exitCode = await runVerify(target, flags, makeContext(flags, controller.signal));
    });

  program
    .command('scan')
    .description('leak-scan folders, files and archives for credentials')
    .argument('<paths...>')
    .option('--profile <name|file>', 'profile whose allowlist applies')
    .option('--no-operator-secrets', "do not load the operator's own keys and tokens to match exactly")
    .option('--json', 'print one JSON document on stdout')
    .option('--sarif', 'print a SARIF 2.1.0 log on stdout')
    .action(async (paths: string[], _options, command: Command) => {
      const flags = explicitFlags<import('./commands/scan.js').ScanFlags>(command);
      jsonMode = Boolean(flags.json || flags.sarif);
      const { runScan } = await import('./commands/scan.js');
      exitCode = await runScan(paths, flags, makeContext(flags, controller.signal));
    });

  program
    .command('drives')
    .description('list candidate drives for the seed, and why others are excluded')
    .option('--profile <name|file>', "profile whose repository and models are protected: the drives holding them are excluded")
    .option('--json', 'print one JSON document on stdout')
    .action(async (_options, command: Command) => {
      const flags = explicitFlags<{ json?: boolean; profile?: string }>(command);
      jsonMode = Boolean(flags.json);
      const { runDrives } = await import('./commands/drives.js');
      exitCode = await runDrives(flags, makeContext(flags, controller.signal));
    });

  try {
    await program.parseAsync(argv, { from: 'user' });
    return exitCode;
  } catch (error) {
    return report(error, createOutput(jsonMode));
  }
}

/** The one catch: typed errors become their exit code and a one-line message; anything else is a bug. */
function report(error: unknown, output: Output): number {
  if (error instanceof CommanderError) {
    if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.code === 'commander.help') return ExitCode.ok;
    if (jsonMode(output)) process.stdout.write(`${JSON.stringify({ ok: false, exitCode: ExitCode.usage, error: { type: 'UsageError', message: error.message } })}\n`);
    return ExitCode.usage;
  }
  if (isSeedError(error)) {
    if (output.json) {
      const findings = (error as { findings?: unknown }).findings;
      process.stdout.write(`${JSON.stringify({ ok: false, exitCode: error.exitCode, error: { type: error.name, message: error.message, details: error.details }, ...(findings ? { findings } : {}) }, null, 2)}\n`);
    }
    process.stderr.write(`dubnium-seed: ${error.message}\n`);
    for (const line of error.details) process.stderr.write(`  ${line}\n`);
    if (error.exitCode === ExitCode.internal && process.env.DUBNIUM_SEED_DEBUG) process.stderr.write(`${error.stack}\n`);
    return error.exitCode;
  }
  const err = error as Error;
  if (output.json) process.stdout.write(`${JSON.stringify({ ok: false, exitCode: ExitCode.internal, error: { type: 'InternalError', message: err?.message ?? String(error) } })}\n`);
  process.stderr.write(`dubnium-seed: internal error (a bug; please report it with this output):\n${err?.stack ?? String(error)}\n`);
  return ExitCode.internal;
}

function jsonMode(output: Output): boolean {
  return output.json;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // Cancelled: exit now, without waiting for streams or threads that are still winding down.
    if (code === ExitCode.cancelled) process.exit(code);
  },
  (error: unknown) => {
    process.stderr.write(`dubnium-seed: internal error: ${(error as Error)?.stack ?? String(error)}\n`);
    process.exitCode = ExitCode.internal;
  },
);
