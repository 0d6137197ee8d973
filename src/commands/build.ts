/** `dubnium-seed build`: a seed from flags and/or a profile, without prompts. */
import path from 'node:path';
import { buildSeed, planBuild, type BuildResult, type BuildSignature } from '../core/build-seed.js';
import { UsageError } from '../errors.js';
import { FLAG_FOR, resolveBuild, type BuildFlags } from '../options.js';
import { plainProgress } from '../ui/plain-progress.js';
import { formatBytes, formatDuration } from '../util/format.js';
import type { CommandContext } from './context.js';
import { formatVerifyReport, verifyJson } from './verify.js';

export async function runBuild(flags: BuildFlags, context: CommandContext): Promise<number> {
  const profile = flags.profile !== undefined ? await (await import('../profile.js')).loadProfile(flags.profile, context.cwd) : undefined;
  const resolved = resolveBuild(flags, profile, context.cwd);
  if (resolved.missing.length > 0) {
    throw new UsageError(`Missing ${resolved.missing.map((item) => FLAG_FOR[item]).join(' and ')}.`, ['Run `dubnium-seed` in a terminal for the interactive wizard, or see `dubnium-seed build --help`.']);
  }
  const target = resolved.target!;
  const progress = context.output.json ? undefined : plainProgress(context.output.log);
  const hooks = { signal: context.signal, ...(progress ? { onProgress: progress.onProgress, onStep: progress.onStep } : {}) };

  if (target.kind === 'device') {
    if (!flags.yes && context.interactive) {
      // In a terminal (never scripted: CONTRACT.md asks --yes there) the device plan is shown and
      // confirmed once, nothing else is asked, and the device task list runs (the installer
      // image's scan a task of its own).
      const { runWizard } = await import('./wizard.js');
      return runWizard(context, flags, { confirmOnly: true });
    }
    if (!flags.yes) throw new UsageError(`Writing ${target.path} changes its partition table and formats a partition: pass --yes to confirm (or run \`dubnium-seed\` in a terminal for the guided wizard).`);
    const { buildOnDevice } = await import('../media/device-build.js');
    const result = await buildOnDevice({
      device: target.path,
      ...(flags.iso ? { iso: path.resolve(context.cwd, flags.iso) } : {}),
      label: resolved.label,
      filesystem: resolved.filesystem,
      allowFixedDisk: Boolean(flags.allowFixedDisk),
      allowLarge: Boolean(flags.allowLarge),
      build: resolved.options,
      onWarning: (message) => context.output.log(`warning: ${message}`),
      ...hooks,
    });
    context.output.result({ ...buildJson(result), device: result.device, partition: result.partition, created: result.created, filesystem: result.filesystem, ...(result.installer ? { installer: result.installer } : {}) }, () =>
      [`Seed partition ${result.partition} (${result.filesystem}, label ${resolved.label}) on ${result.device}${result.created ? ', created now' : ', reused'}.`, formatBuildResult(result)].join('\n'),
    );
    return exitFor(result);
  }
  if (flags.iso) throw new UsageError('--iso writes an installer image onto a whole disk; it goes with --device.');
  if (target.kind === 'image') {
    const { buildImage } = await import('../media/image-build.js');
    const result = await buildImage({ image: target.path, ...(resolved.size ? { size: resolved.size } : {}), label: resolved.label, filesystem: resolved.filesystem, build: resolved.options, ...hooks });
    context.output.result({ ...buildJson(result), image: result.image, imageBytes: result.size }, () =>
      [`Partition image ${result.image} (${resolved.filesystem}, label ${resolved.label}, ${formatBytes(result.size)}); write it into a partition with dd.`, formatBuildResult(result)].join('\n'),
    );
    return exitFor(result);
  }

  const options = { ...resolved.options, target: target.path };
  let result: BuildResult;
  if (context.interactive && process.stderr.isTTY) {
    // A terminal gets listr2's live task list; its plan is validated before anything runs.
    const plan = await planBuild(options);
    const { runBuildTasks } = await import('../ui/tasks.js');
    result = await runBuildTasks(options, plan, { renderer: 'default', signal: context.signal });
  } else {
    result = await buildSeed({ ...options, ...hooks });
  }
  context.output.result(buildJson(result), () => formatBuildResult(result));
  return exitFor(result);
}

function exitFor(result: BuildResult): number {
  return result.verify && !result.verify.ok ? (result.verify.findings.length > 0 ? 4 : 3) : 0;
}

export function buildJson(result: BuildResult) {
  const { manifest } = result;
  return {
    ok: !result.verify || result.verify.ok,
    command: 'build',
    target: result.target,
    source: manifest.source,
    bundles: manifest.bundles,
    ...(manifest.flake ? { flake: manifest.flake } : {}),
    totals: manifest.totals,
    written: result.written,
    reused: result.reused,
    removed: result.removed,
    bytesWritten: result.bytesWritten,
    durationMs: result.durationMs,
    allowedFindings: result.findingsAllowed,
    operatorSecretsLoaded: result.operatorSecretsLoaded,
    signature: result.signature ?? null,
    ...(result.verify ? { verify: verifyJson(result.verify) } : {}),
  };
}

/** The signer's fingerprint, to write down: it is what the installer checks the seed against. */
export function formatSignatureLines(signature: BuildSignature): string[] {
  return [
    `  signed  ${signature.file} by ${signature.fingerprint} (${signature.keyType}${signature.comment ? ` ${signature.comment}` : ''}, ${signature.via === 'ssh-agent' ? 'through ssh-agent' : 'key file'})`,
    `          write this fingerprint down: seed-install.sh --signer and verify --signer check the seed against it`,
  ];
}

export function formatBuildResult(result: BuildResult): string {
  const { manifest } = result;
  const lines = [
    `Seed written to ${result.target}: ${manifest.totals.files} files, ${formatBytes(manifest.totals.bytes)} (${result.written.length} written, ${result.reused.length} kept from an earlier run) in ${formatDuration(result.durationMs)}.`,
    `  source  ${manifest.source.file}  ${manifest.source.commit ? `commit ${manifest.source.commit.slice(0, 12)}` : 'plain folder'}${manifest.source.dirty ? `, dirty (${manifest.source.changedPaths.length} paths differ from the commit)` : ''}`,
    ...manifest.bundles.map((bundle) => `  model   ${bundle.dir}  ${bundle.files} files, ${formatBytes(bundle.bytes)}, ${bundle.shards} shards${bundle.revision ? `, revision ${bundle.revision.slice(0, 12)}` : ''}`),
  ];
  for (const input of manifest.flake?.inputs ?? []) {
    lines.push(input.class === 'carried' ? `  input   ${input.file}  flake input ${input.name}, ${input.storePath} (${input.reason})` : `  input   ${input.name}  ${input.reason}`);
  }
  if (result.operatorSecretsLoaded.length > 0) lines.push(`  leak gate matched your own secrets too: ${result.operatorSecretsLoaded.join(', ')}`);
  for (const finding of result.findingsAllowed) lines.push(`  allowed ${finding.kind} in ${finding.path}${finding.inner ? ` (${finding.inner})` : ''}: ${finding.allowed?.reason ?? ''}`);
  if (result.signature) lines.push(...formatSignatureLines(result.signature));
  if (result.verify) lines.push('', formatVerifyReport(result.verify));
  lines.push('', `On the live installer: sh <seed>/seed-install.sh --root /mnt${result.signature ? ` --signer ${result.signature.fingerprint}` : ''}`);
  return lines.join('\n');
}
