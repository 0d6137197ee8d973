/**
 * The seed writer: one pass that hashes, scans and writes, with temporary names until commit, and
 * a one-chunk lag so that a chunk the leak gate flags (or the chunk before it, when a secret
 * straddles the boundary) is never written to the media.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createLeakGate } from '../../src/core/scan/index.js';
import { ScannerBlocked, writeSeedFile } from '../../src/core/seed-writer.js';
import { ageKeyFile } from '../helpers/credentials.js';
import { tempDir } from '../helpers/tmp.js';

const MiB = 1024 * 1024;

async function* chunksOf(...chunks: Buffer[]): AsyncGenerator<Buffer> {
  for (const chunk of chunks) yield chunk;
}

/** Random bytes without anything printable long enough to look like a token. */
function noise(size: number): Buffer {
  const bytes = randomBytes(size);
  for (let index = 0; index < size; index += 16) bytes[index] = 0;
  return bytes;
}

describe('writeSeedFile', () => {
  it('writes under a temporary name and renames on commit; the digest is of every byte', async () => {
    const dir = await tempDir();
    const destination = path.join(dir, 'models', 'm', 'shard.safetensors');
    const parts = [noise(4 * MiB), noise(4 * MiB), noise(123)];
    let reported = 0;
    const written = await writeSeedFile({ destination, displayPath: 'models/m/shard.safetensors', chunks: chunksOf(...parts), onBytes: (bytes) => (reported += bytes) });
    expect(existsSync(destination)).toBe(false);
    expect(await readdir(path.dirname(destination))).toEqual(['.shard.safetensors.dubnium-partial']);
    await written.commit();
    const whole = Buffer.concat(parts);
    // Buffer.equals: vitest's deep equality walks 8 MiB element by element (minutes on a loaded machine).
    expect((await readFile(destination)).equals(whole)).toBe(true);
    expect(written.sha256).toBe(createHash('sha256').update(whole).digest('hex'));
    expect(reported).toBe(whole.length);
    expect(await readdir(path.dirname(destination))).toEqual(['shard.safetensors']);
  });

  it('stops before writing a chunk the leak gate flags, even when the secret straddles two chunks', async () => {
    const gate = await createLeakGate({ operatorSecrets: false });
    const identity = Buffer.from(ageKeyFile().identity);
    const first = noise(4 * MiB);
    const second = noise(4 * MiB);
    // Half of the identity ends the first chunk, the other half starts the second.
    const half = Math.floor(identity.length / 2);
    identity.copy(first, first.length - half, 0, half);
    identity.copy(second, 0, half);
    // Line breaks around it, as in a key file: the rules need a boundary on either side.
    first[first.length - half - 1] = 0x0a;
    second[identity.length - half] = 0x0a;
    const dir = await tempDir();
    const destination = path.join(dir, 'shard.safetensors');
    let reported = 0;
    const scanner = gate.open({ path: 'shard.safetensors', size: 12 * MiB });
    await expect(
      writeSeedFile({ destination, displayPath: 'shard.safetensors', chunks: chunksOf(noise(4 * MiB), first, second, noise(MiB)), scanner, onBytes: (bytes) => (reported += bytes) }),
    ).rejects.toBeInstanceOf(ScannerBlocked);
    // Only the clean first chunk may have reached the file; nothing of the identity did.
    expect(reported).toBeLessThanOrEqual(4 * MiB);
    expect(await readdir(dir)).toEqual([]);
    const findings = await scanner.finish();
    expect(findings.map((finding) => finding.kind)).toEqual(['age-identity']);
  });
});
