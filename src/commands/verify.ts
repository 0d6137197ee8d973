/** `dubnium-seed verify PATH`: checksums, completeness and a leak scan of an existing seed. */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { nixpkgsCopyHint } from '../core/scan/public-sources.js';
import { verifySeed, type VerifyReport } from '../core/verify-seed.js';
import type { InstallerSection } from '../media/installer-verify.js';
import { resolveExpectedSigner } from '../core/sign.js';
import { UsageError } from '../errors.js';
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
  /** Whole-stick verify: compare the installer region with this image file too. */
  iso?: string;
}

export async function runVerify(target: string, flags: VerifyFlags, context: CommandContext): Promise<number> {
  const profile = flags.profile !== undefined ? await (await import('../profile.js')).loadProfile(flags.profile, context.cwd) : undefined;
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
  let report: VerifyReport & { media?: { path: string; partition: string; filesystem: string; label: string | null; access: string }; installer?: InstallerSection };
  if (flags.iso !== undefined && info.isDirectory()) throw new UsageError('--iso compares the installer image at the start of a whole stick; pass the stick (/dev/sdX) or a whole-disk image file.');
  if (info.isDirectory()) {
    report = await run(full);
  } else {
    // A block device, partition or image file: mounted read-only in a private folder, always released.
    const { withSeedFolder } = await import('../media/seed-access.js');
    report = await withSeedFolder(full, async (root, media) => {
      const inner = await run(root);
      return { ...inner, root: full, media: { path: full, partition: media.partition, filesystem: media.filesystem, label: media.label, access: media.access } };
    });
    // A whole stick (or a whole-disk image): the installer image at its start is checked too.
    const iso = flags.iso !== undefined ? path.resolve(context.cwd, flags.iso) : undefined;
    if (iso !== undefined && !(await stat(iso).catch(() => undefined))?.isFile()) throw new UsageError(`--iso ${iso} is not a file; pass the installer image the stick was written from.`);
    const { verifyInstaller } = await import('../media/installer-verify.js');
    const installer = await verifyInstaller(full, {
      record: report.manifest?.installer,
      ...(iso ? { iso } : {}),
      scan: flags.scan === false ? false : { allowlist: profile?.data.scan?.allow ?? [], operatorSecrets: flags.operatorSecrets ?? profile?.data.scan?.operatorSecrets ?? true },
      signal: context.signal,
    });
    if (installer) report = withInstaller(report, installer);
    else if (iso !== undefined) throw new UsageError(`${full} does not start with an installer image, so --iso has nothing to compare; pass the whole stick (/dev/sdX), not a partition.`);
  }
  context.output.result(verifyJson(report), () => formatVerifyReport(report));
  return verifyExitCode(report);
}

/** The report with the installer section folded in: its findings count as the seed's, a changed region is a problem (exit 3). */
function withInstaller<T extends VerifyReport>(report: T, installer: InstallerSection): T & { installer: InstallerSection } {
  const problems = [...report.problems];
  const checked = [...report.checked];
  const { expected, actual } = installer.sha256;
  if (expected === null) checked.push(`installer image ${installer.volumeId}: the manifest has no record of it (built before records or without a stick), digest not compared`);
  else if (expected === actual) checked.push(`installer image ${installer.volumeId}: ${installer.length} bytes match the manifest's sha256`);
  else {
    problems.push({
      path: 'installer image',
      kind: 'installer',
      message: `the installer image ${installer.volumeId} (the first ${installer.length} bytes of ${installer.disk}) differs from the one the manifest records`,
      action: 'rewrite the installer image (build --device ... --iso FILE) or use another stick',
      expected,
      actual,
    });
  }
  if (installer.file) {
    if (installer.file.ok) checked.push(`installer image matches ${installer.file.path}`);
    else {
      problems.push({
        path: 'installer image',
        kind: 'installer',
        message: `the installer image on ${installer.disk} differs from ${installer.file.path}`,
        action: 'write that image again (build --device ... --iso FILE), or pass the image the stick was written from',
        expected: installer.file.sha256,
        actual,
      });
    }
  }
  if (installer.scanned) checked.push(`installer image ${installer.volumeId}: leak-scanned inside out (ISO, EFI image, squashfs, initrds)`);
  const findings = [...report.findings, ...installer.findings];
  return { ...report, problems, checked, findings, ok: report.ok && problems.length === 0 && findings.length === 0, installer } as T & { installer: InstallerSection };
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
  const installer = (report as { installer?: InstallerSection }).installer;
  if (installer) {
    const state = installer.sha256.expected === null ? 'no record in the manifest' : installer.sha256.expected === installer.sha256.actual ? 'matches the manifest' : 'DIFFERS from the manifest';
    lines.push(`  installer ${installer.volumeId}, ${formatBytes(installer.length)} at the start of ${installer.disk}: ${state}${installer.scanned ? `, ${installer.findings.length} credential finding(s) inside` : ''}`);
  }
  if (report.signature) lines.push(formatSignatureStatus(report.signature));
  for (const item of report.checked ?? []) lines.push(`  checked ${item}`);
  for (const finding of report.findings) {
    lines.push(`  SECRET  ${finding.path}${finding.inner ? ` (${finding.inner})` : ''}${finding.line ? `:${finding.line}` : ''}: ${finding.kind} [${finding.rule}] fingerprint ${finding.fingerprint}`);
  }
  const hint = nixpkgsCopyHint(report.findings);
  if (hint) lines.push(`  NOTE    ${hint}`);
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
