/** `dubnium-seed verify PATH`: checksums, completeness and a leak scan of an existing seed. */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { verifySeed, type VerifyReport } from '../core/verify-seed.js';
import { resolveExpectedSigner } from '../core/sign.js';
import { UsageError } from '../errors.js';
import { loadProfile } from '../profile.js';
import { plainProgress } from '../ui/plain-progress.js';
import { formatBytes, formatDuration, formatRate } from '../util/format.js';
import type { CommandContext } from './context.js';

export interface VerifyFlags {
  json?: boolean;
  profile?: string;
  scan?: boolean;
  operatorSecrets?: boolean;
  /** Required signer: `SHA256:` fingerprint or a public key file. */
  signer?: string;
}

export async function runVerify(target: string, flags: VerifyFlags, context: CommandContext): Promise<number> {
  const profile = flags.profile !== undefined ? await loadProfile(flags.profile, context.cwd) : undefined;
  const full = path.resolve(context.cwd, target);
  const info = await stat(full).catch(() => undefined);
  if (!info) throw new UsageError(`${full} does not exist; pass the seed partition's mount point, a device such as /dev/sdb3, or an image file.`);
  const signer = flags.signer !== undefined ? await resolveExpectedSigner(flags.signer, context.cwd) : undefined;
  const progress = context.output.json ? undefined : plainProgress(context.output.log);
  const run = (root: string) =>
    verifySeed({
      root,
      ...(signer ? { signer } : {}),
      scan: flags.scan === false ? false : { allowlist: profile?.data.scan?.allow ?? [], operatorSecrets: flags.operatorSecrets ?? profile?.data.scan?.operatorSecrets ?? true },
      ...(progress ? { onProgress: progress.onProgress } : {}),
      signal: context.signal,
    });
  let report: VerifyReport & { media?: { path: string; partition: string; filesystem: string; label: string | null; access: string } };
  if (info.isDirectory()) {
    report = await run(full);
  } else {
    // A block device, partition or image file: mounted read-only in a private folder, always released.
    const { withSeedFolder } = await import('../media/seed-access.js');
    report = await withSeedFolder(full, async (root, media) => {
      const inner = await run(root);
      return { ...inner, root: full, media: { path: full, partition: media.partition, filesystem: media.filesystem, label: media.label, access: media.access } };
    });
  }
  context.output.result(verifyJson(report), () => formatVerifyReport(report));
  return verifyExitCode(report);
}

export function verifyExitCode(report: VerifyReport): number {
  if (report.findings.length > 0) return 4;
  return report.problems.length > 0 ? 3 : 0;
}

export function verifyJson(report: VerifyReport) {
  return { command: 'verify', ...report };
}

/** One line: signed or not, by which key, and whether that key was the one required. */
export function formatSignatureStatus(signature: NonNullable<VerifyReport['signature']>): string {
  const by = signature.fingerprint ? ` by ${signature.fingerprint}${signature.keyType ? ` (${signature.keyType})` : ''}` : '';
  const state = signature.state === 'valid' ? `signed${by}` : signature.state === 'bad' ? `BAD signature${by}` : 'unsigned';
  const signer =
    signature.expected === undefined ? 'signer not checked (pass --signer SHA256:... to require it)' : signature.signerMatches ? 'the required signer' : `required signer ${signature.expected}: NOT matched`;
  return `  signature  ${state}; ${signer}`;
}

export function formatVerifyReport(report: VerifyReport): string {
  const lines: string[] = [];
  const media = (report as { media?: { partition: string; filesystem: string; label: string | null; access: string } }).media;
  if (media) lines.push(`Seed partition ${media.partition} (${media.filesystem}${media.label ? `, label ${media.label}` : ''}), ${media.access === 'mount' ? 'mounted read-only' : 'copied out read-only (the cache note below is about that copy)'}.`);
  const cache = { all: 'page cache bypassed', some: 'page cache bypassed for some files only', none: 'page cache NOT bypassed (data may come from memory)' }[report.cacheBypass];
  lines.push(`Checked ${report.root}: ${report.files} files, ${formatBytes(report.bytes)} in ${formatDuration(report.durationMs)} (${formatRate(report.bytes, report.durationMs)}); ${cache}.`);
  if (report.manifest) {
    const source = report.manifest.source;
    lines.push(`  source  ${source.file}  ${source.commit ? `commit ${source.commit.slice(0, 12)}` : 'plain folder'}${source.dirty ? ', built from a dirty tree' : ''}`);
    for (const bundle of report.manifest.bundles) lines.push(`  model   ${bundle.dir}  ${bundle.files} files, ${formatBytes(bundle.bytes)}`);
  }
  if (report.signature) lines.push(formatSignatureStatus(report.signature));
  for (const item of report.checked ?? []) lines.push(`  checked ${item}`);
  for (const finding of report.findings) {
    lines.push(`  SECRET  ${finding.path}${finding.inner ? ` (${finding.inner})` : ''}${finding.line ? `:${finding.line}` : ''}: ${finding.kind} [${finding.rule}] fingerprint ${finding.fingerprint}`);
  }
  for (const finding of report.allowed) lines.push(`  allowed ${finding.path}${finding.inner ? ` (${finding.inner})` : ''}: ${finding.kind}: ${finding.allowed?.reason ?? ''}`);
  for (const problem of report.problems) {
    lines.push(`  ${problem.kind.toUpperCase().padEnd(11)} ${problem.message}`);
    lines.push(`              -> ${problem.action}`);
    if (problem.expected !== undefined) lines.push(`              expected ${problem.expected}, found ${problem.actual}`);
  }
  if (report.ok) lines.push('OK: the seed is complete, every byte matches its checksum, and no credentials were found.');
  else if (report.findings.length > 0) lines.push(`FAILED: ${report.findings.length} credential(s) on the media${report.problems.length ? ` and ${report.problems.length} other problem(s)` : ''}. Do not use this stick; rebuild it from a clean source.`);
  else lines.push(`FAILED: ${report.problems.length} problem(s); see above.`);
  return lines.join('\n');
}
