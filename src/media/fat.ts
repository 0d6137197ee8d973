/**
 * FAT seed partitions through mtools, which reads and writes a FAT filesystem inside a device node
 * or image file without the kernel (this kernel may have no vfat driver, and image builds run
 * without root). Writes keep the seed's rule that the manifest lands last.
 */
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from '../errors.js';
import { run } from '../util/run.js';
import { CHECKSUMS_NAME, MANIFEST_NAME, SIGNATURE_NAME } from '../core/manifest.js';

/** mtools refuses "non-standard" geometries of partitions and image files without this. */
const env = { MTOOLS_SKIP_CHECK: '1', MTOOLS_NO_VFAT: '0' };
const LONG = 24 * 60 * 60 * 1000;

/** Formats `target` (a partition node, or with `createKiB` a new image file) as FAT labelled `label`. */
export async function formatFat(target: string, label: string, createKiB?: number): Promise<void> {
  const args = ['-n', label.toUpperCase(), ...(createKiB !== undefined ? ['-C', target, String(createKiB)] : [target])];
  await run('mkfs.vfat', args, { cwd: '/', timeout: 600_000 });
}

/** Top-level names in the FAT filesystem (for the foreign-files check before reuse). */
export async function fatRootEntries(target: string): Promise<string[]> {
  const result = await run('mdir', ['-b', '-i', target, '::/'], { cwd: '/', env, reject: false, timeout: 60_000 });
  if (result.exitCode !== 0) {
    if (/no files|file not found/i.test(result.stdout + result.stderr)) return [];
    throw new UsageError(`Cannot read the FAT filesystem on ${target}: ${result.stderr.trim().split('\n').pop() ?? 'mdir failed'}.`);
  }
  return result.stdout
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean)
    .map((line) => line.replace(/^::\//, '').replace(/\/$/, ''))
    .filter((name) => name && !name.includes('/'));
}

/**
 * Copies a finished seed folder into the FAT filesystem on `target`: the old manifest is deleted
 * first (so an interrupted copy leaves an incomplete seed, never a stale complete one), then the
 * payload, SHA256SUMS, and the manifest last.
 */
export async function copySeedIntoFat(staging: string, target: string): Promise<void> {
  const existing = await fatRootEntries(target);
  if (existing.includes(MANIFEST_NAME)) await run('mdel', ['-i', target, `::/${MANIFEST_NAME}`], { cwd: '/', env, timeout: 60_000 });
  for (const name of existing.filter((entry) => entry !== MANIFEST_NAME)) {
    await run('mdeltree', ['-i', target, `::/${name}`], { cwd: '/', env, reject: false, timeout: LONG });
    await run('mdel', ['-i', target, `::/${name}`], { cwd: '/', env, reject: false, timeout: 60_000 });
  }
  const entries = (await readdir(staging)).filter((name) => name !== MANIFEST_NAME && name !== CHECKSUMS_NAME && name !== SIGNATURE_NAME).sort();
  // The signature vouches for the manifest, so it lands after it (when the build signed at all).
  const signed = (await readdir(staging)).includes(SIGNATURE_NAME);
  const ordered = [...entries, CHECKSUMS_NAME, MANIFEST_NAME, ...(signed ? [SIGNATURE_NAME] : [])];
  for (const name of ordered) {
    await run('mcopy', ['-s', '-p', '-m', '-Q', '-o', '-i', target, path.join(staging, name), '::/'], { cwd: '/', env, timeout: LONG });
  }
  await run('sync', [], { cwd: '/', reject: false, timeout: LONG });
}

/** Copies everything in the FAT filesystem on `source` into the folder `destination` (read only). */
export async function copySeedOutOfFat(source: string, destination: string): Promise<void> {
  if ((await fatRootEntries(source)).length === 0) return;
  await run('mcopy', ['-s', '-p', '-m', '-n', '-Q', '-i', source, '::/*', `${destination}/`], { cwd: '/', env, timeout: LONG });
}
