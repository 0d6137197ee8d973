/**
 * Whole-stick verify: the installer image at the start of a whole disk (or a whole-disk image file)
 * checked against the manifest's record (sha256 over its `length` bytes, MBR entries 3 and 4 read as
 * zeros) and leak-scanned inside out (ISO, El Torito EFI image, squashfs store, initrds) through a
 * read-only loop device limited to the region, so the seed partition beside it is not scanned twice.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import type { ManifestInstaller } from '../core/manifest.js';
import type { Finding } from '../core/types.js';
import type { AllowEntry } from '../core/scan/index.js';
import { run } from '../util/run.js';
import { hashDeviceHead, installerRegionSha256, readInstallerVolume } from './iso-write.js';

export interface InstallerSection {
  /** The disk (or image file) the region was read from. */
  disk: string;
  volumeId: string;
  length: number;
  /** Expected (the manifest's record; null when the seed has none) and actual digests of the region. */
  sha256: { expected: string | null; actual: string };
  /** False when the manifest records the image and the region differs, or when a credential was found in it. */
  ok: boolean;
  /** The manifest recorded the installer image (older seeds and seeds built without one do not). */
  recorded: boolean;
  /** `verify --iso FILE`: the region compared with an image file. */
  file?: { path: string; sha256: string; ok: boolean };
  /** Leak-gate findings inside the image (paths name the chain under `installer image`); empty when not scanned. */
  findings: Finding[];
  scanned: boolean;
}

export interface InstallerVerifyOptions {
  record: ManifestInstaller | undefined;
  /** `--iso FILE`. */
  iso?: string;
  scan: false | { allowlist: AllowEntry[]; operatorSecrets: boolean };
  signal?: AbortSignal;
}

/**
 * The installer section of a whole-stick verify, or undefined when `disk` does not start with an
 * ISO 9660 image (a partition, a seed image file).
 */
export async function verifyInstaller(disk: string, options: InstallerVerifyOptions): Promise<InstallerSection | undefined> {
  const volume = await readInstallerVolume(disk);
  if (!volume) return undefined;
  const length = options.record?.length ?? volume.length;
  const actual = await installerRegionSha256(disk, length);
  const expected = options.record?.sha256 ?? null;
  let file: InstallerSection['file'];
  if (options.iso) {
    const size = (await stat(options.iso)).size;
    const fileSha = await hashDeviceHead(options.iso, size, Buffer.alloc(512));
    file = { path: options.iso, sha256: fileSha, ok: size === length && fileSha === actual };
  }
  const findings = options.scan ? await scanRegion(disk, length, options.scan, options.signal) : [];
  return {
    disk,
    volumeId: options.record?.volumeId ?? volume.volumeId,
    length,
    sha256: { expected, actual },
    ok: (expected === null || expected === actual) && (file?.ok ?? true) && findings.length === 0,
    recorded: options.record !== undefined,
    ...(file ? { file } : {}),
    findings,
    scanned: options.scan !== false,
  };
}

/** Leak-scans the first `length` bytes of `disk` through a read-only loop device limited to them; always detached. */
async function scanRegion(disk: string, length: number, scan: { allowlist: AllowEntry[]; operatorSecrets: boolean }, signal?: AbortSignal): Promise<Finding[]> {
  const { scanPaths } = await import('../core/scan/index.js');
  const loop = (await run('losetup', ['--find', '--show', '--read-only', '--sizelimit', String(length), disk], { cwd: '/', timeout: 60_000 })).stdout.trim();
  try {
    const report = await scanPaths([loop], { allowlist: scan.allowlist, operatorSecrets: scan.operatorSecrets, ...(signal ? { signal } : {}) });
    const name = path.basename(loop);
    return report.findings.map((finding) => ({ ...finding, path: finding.path === name ? 'installer image' : finding.path }));
  } finally {
    await run('losetup', ['-d', loop], { cwd: '/', reject: false, timeout: 60_000 });
  }
}
