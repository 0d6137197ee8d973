/** `dubnium-seed build`: a seed from flags and/or a profile, without prompts. */
import { buildSeed, type BuildResult } from '../core/build-seed.js';
import { UsageError } from '../errors.js';
import { loadProfile } from '../profile.js';
import { FLAG_FOR, resolveBuild, type BuildFlags } from '../options.js';
import { plainProgress } from '../ui/plain-progress.js';
import { formatBytes, formatDuration } from '../util/format.js';
import type { CommandContext } from './context.js';
import { formatVerifyReport, verifyJson } from './verify.js';

export async function runBuild(flags: BuildFlags, context: CommandContext): Promise<number> {
  const profile = flags.profile !== undefined ? await loadProfile(flags.profile, context.cwd) : undefined;
  const resolved = resolveBuild(flags, profile, context.cwd);
  if (resolved.missing.length > 0) {
    throw new UsageError(`Missing ${resolved.missing.map((item) => FLAG_FOR[item]).join(' and ')}.`, ['Run `dubnium-seed` in a terminal for the interactive wizard, or see `dubnium-seed build --help`.']);
  }
  const target = resolved.target!;
  if (target.kind !== 'folder') {
    throw new UsageError(`--${target.kind} is not available in this version; build into the mounted seed partition with --target DIR.`);
  }
  const progress = context.output.json ? undefined : plainProgress(context.output.log);
  const result = await buildSeed({
    ...resolved.options,
    target: target.path,
    signal: context.signal,
    ...(progress ? { onProgress: progress.onProgress, onStep: progress.onStep } : {}),
  });
  context.output.result(buildJson(result), () => formatBuildResult(result));
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
    totals: manifest.totals,
    written: result.written,
    reused: result.reused,
    removed: result.removed,
    bytesWritten: result.bytesWritten,
    durationMs: result.durationMs,
    allowedFindings: result.findingsAllowed,
    operatorSecretsLoaded: result.operatorSecretsLoaded,
    ...(result.verify ? { verify: verifyJson(result.verify) } : {}),
  };
}

export function formatBuildResult(result: BuildResult): string {
  const { manifest } = result;
  const lines = [
    `Seed written to ${result.target}: ${manifest.totals.files} files, ${formatBytes(manifest.totals.bytes)} (${result.written.length} written, ${result.reused.length} kept from an earlier run) in ${formatDuration(result.durationMs)}.`,
    `  source  ${manifest.source.file}  ${manifest.source.commit ? `commit ${manifest.source.commit.slice(0, 12)}` : 'plain folder'}${manifest.source.dirty ? `, dirty (${manifest.source.changedPaths.length} paths differ from the commit)` : ''}`,
    ...manifest.bundles.map((bundle) => `  model   ${bundle.dir}  ${bundle.files} files, ${formatBytes(bundle.bytes)}, ${bundle.shards} shards${bundle.revision ? `, revision ${bundle.revision.slice(0, 12)}` : ''}`),
  ];
  if (result.operatorSecretsLoaded.length > 0) lines.push(`  leak gate matched your own secrets too: ${result.operatorSecretsLoaded.join(', ')}`);
  for (const finding of result.findingsAllowed) lines.push(`  allowed ${finding.kind} in ${finding.path}${finding.inner ? ` (${finding.inner})` : ''}: ${finding.allowed?.reason ?? ''}`);
  if (result.verify) lines.push('', formatVerifyReport(result.verify));
  lines.push('', `On the live installer: sh <seed>/seed-install.sh --root /mnt`);
  return lines.join('\n');
}
