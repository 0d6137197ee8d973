/**
 * Tools for damaging a seed on purpose: rewrite its digests so only deeper checks can catch a
 * change, and craft tarballs with hostile entries (names taken verbatim).
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import tarStream from 'tar-stream';
import { renderChecksums, renderManifest, type Manifest } from '../../src/core/manifest.js';

export const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

export const readManifest = async (seed: string) => JSON.parse(await readFile(path.join(seed, 'dubnium-seed.json'), 'utf8')) as Manifest;

/**
 * Rewrites sizes and digests in the manifest, SHA256SUMS, checksums.sha256 and selfSha256 to match
 * what is on disk now (after `edit`), so only the deeper checks can catch the change.
 */
export async function reseal(seed: string, edit: (manifest: Manifest) => void = () => {}): Promise<void> {
  const manifest = await readManifest(seed);
  edit(manifest);
  for (const file of manifest.files) {
    const full = path.join(seed, file.path);
    const info = await stat(full).catch(() => undefined);
    if (!info?.isFile()) continue;
    const bytes = await readFile(full);
    file.size = bytes.length;
    file.sha256 = sha256(bytes);
  }
  const sums = renderChecksums(manifest.files);
  await writeFile(path.join(seed, 'SHA256SUMS'), sums);
  manifest.checksums.sha256 = sha256(sums);
  const { selfSha256: _drop, ...rest } = manifest;
  await writeFile(path.join(seed, 'dubnium-seed.json'), renderManifest(rest));
}

export interface CraftedEntry {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link' | 'character-device' | 'block-device' | 'fifo';
  content?: string;
  linkname?: string;
}

/** Writes a .tar.gz with exactly these entries, hostile ones included. */
export async function craftArchive(file: string, entries: CraftedEntry[]): Promise<void> {
  const pack = tarStream.pack();
  const done = pipeline(pack, createGzip(), createWriteStream(file));
  for (const entry of entries) {
    const type = entry.type ?? 'file';
    if (type === 'file') pack.entry({ name: entry.name, mode: 0o644 }, entry.content ?? 'x\n');
    else pack.entry({ name: entry.name, type, linkname: entry.linkname, mode: type === 'directory' ? 0o755 : 0o777, devmajor: 1, devminor: 3 });
  }
  pack.finalize();
  await done;
}
