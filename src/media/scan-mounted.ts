/**
 * `scan` of a block device or disk image whose raw read met a filesystem it does not open (exFAT, see
 * core/scan/formats/filesystems.ts; ext4 is read in place): as root, each such partition is mounted read-only on
 * a private folder (an image file is first attached read-only as a loop device) and its files are
 * scanned like any folder, compressed ones unpacked. What that scan finds replaces the `unscanned`
 * finding of the partition, named under it (`stick.img › (partition 2 DUBNIUM-SEED) › source/….tar.gz › …`).
 * Without root, or for a filesystem that cannot be mounted, the `unscanned` finding stays: the scan
 * fails closed.
 */
import { readFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import type { ScanReport } from '../core/scan/index.js';
import type { Finding } from '../core/types.js';
import { mountPrivate, partitionNode, refreshPartitions } from './mount.js';
import { attachReadOnly, detach, probe } from './seed-access.js';

/** Part of the note of an `unscanned` finding for such a filesystem (formats/filesystems.ts). */
const UNOPENED = 'filesystem, whose files this scan does not open';
const MOUNTABLE = new Set(['exfat']);

function isUnopened(finding: Finding): boolean {
  return finding.rule === 'unscanned-unsupported' && (finding.note ?? '').includes(UNOPENED);
}

/** The partition number an unopened finding names (`(partition 2 …)`), null for the whole input, undefined when deeper inside. */
function partitionOf(finding: Finding): number | null | undefined {
  const chain = finding.chain ?? [];
  if (chain.length === 0) return null;
  const number = chain.length === 1 ? /^\(partition (\d+)\b/.exec(chain[0]!)?.[1] : undefined;
  return number === undefined ? undefined : Number(number);
}

function mountpointOf(node: string): string | undefined {
  for (const line of readFileSync('/proc/self/mounts', 'utf8').split('\n')) {
    const [source, target] = line.split(' ');
    if (source === node && target) return target.replace(/\\040/g, ' ');
  }
  return undefined;
}

/** `finding` of a scan of a mounted filesystem, named under `under` (the unopened finding it replaces). */
function nameUnder(finding: Finding, under: Finding): Finding {
  const chain = [...(under.chain ?? []), finding.path, ...(finding.chain ?? [])];
  return { ...finding, path: under.path, inner: chain.join('!'), chain };
}

/**
 * Replaces, in `report` of a scan of `roots`, each root's unopened exFAT filesystems by a scan of
 * their files (`scanFolder`), where this process may mount them.
 */
export async function scanUnopenedFilesystems(roots: string[], report: ScanReport, scanFolder: (folder: string) => Promise<ScanReport>): Promise<ScanReport> {
  if (process.getuid?.() !== 0 || !report.findings.some(isUnopened)) return report;
  for (const root of roots) {
    const name = path.basename(root);
    const unopened = report.findings.filter((finding) => finding.path === name && isUnopened(finding) && partitionOf(finding) !== undefined);
    if (unopened.length === 0) continue;
    const info = await stat(root).catch(() => undefined);
    if (!info || !(info.isBlockDevice() || info.isFile())) continue;
    let loop: string | undefined;
    try {
      const partitioned = unopened.some((finding) => partitionOf(finding) !== null);
      const device = info.isFile() ? (loop = await attachReadOnly(root, partitioned)) : root;
      const nodes = unopened.map((finding) => {
        const number = partitionOf(finding);
        return number === null || number === undefined ? device : partitionNode(device, number);
      });
      if (partitioned) await refreshPartitions(device, nodes.filter((node) => node !== device));
      for (const [index, finding] of unopened.entries()) {
        const node = nodes[index]!;
        const type = (await probe(node)).TYPE;
        if (!type || !MOUNTABLE.has(type)) continue;
        const existing = mountpointOf(node);
        const mount = existing ? undefined : await mountPrivate(node, 'exfat', { readOnly: true }).catch(() => undefined);
        const folder = existing ?? mount?.root;
        if (!folder) continue;
        try {
          const inside = await scanFolder(folder);
          report.findings.splice(report.findings.indexOf(finding), 1, ...inside.findings.map((found) => nameUnder(found, finding)));
          report.allowed.push(...inside.allowed.map((found) => nameUnder(found, finding)));
          report.problems.push(...inside.problems.map((problem) => ({ path: finding.path, inner: [...(finding.chain ?? []), problem.path, ...(problem.inner ? [problem.inner] : [])].join('!'), message: problem.message })));
          report.files += inside.files;
          report.bytes += inside.bytes;
        } finally {
          await mount?.release();
        }
      }
    } catch (error) {
      // Not attachable or not mountable: the unscanned findings stay, and fail the scan.
      report.problems.push({ path: name, message: `its exFAT filesystems could not be opened: ${(error as Error).message}` });
    } finally {
      if (loop) await detach(loop);
    }
  }
  return report;
}
