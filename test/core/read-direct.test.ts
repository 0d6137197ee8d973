/**
 * Reading a file back behind its writer (the build's read-back while it copies): chunks are read
 * as the writer reports them on the device, the rest once the file is flushed and renamed, and
 * the bytes and digest are those of the whole file whatever the timing.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BlockPool, DIRECT_ALIGN } from '../../src/core/copy-io.js';
import { FollowState } from '../../src/core/hash-pool.js';
import { readFollowing, VERIFY_CHUNK } from '../../src/core/read-direct.js';
import { CHUNK_SIZE, partialPathFor, readFileChunks, writeSeedFile } from '../../src/core/seed-writer.js';
import { mountedExt4 } from '../helpers/loop-fs.js';
import { tempDir } from '../helpers/tmp.js';

const shmDirs: string[] = [];
afterEach(async () => {
  while (shmDirs.length > 0) await rm(shmDirs.pop()!, { recursive: true, force: true });
});

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/** Resolves once `check()` holds (polled), or rejects after `ms`. */
async function until(check: () => boolean, ms = 10_000): Promise<void> {
  const started = Date.now();
  while (!check()) {
    if (Date.now() - started > ms) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** A source file of `size` random bytes on the local disk. */
async function source(size: number): Promise<{ file: string; bytes: Buffer }> {
  const file = path.join(await tempDir(), 'shard.safetensors');
  const bytes = randomBytes(size);
  await writeFile(file, bytes);
  return { file, bytes };
}

describe('readFollowing', () => {
  // Five full chunks and an unaligned tail, which the writer writes the ordinary way.
  const size = 5 * CHUNK_SIZE + 12_345;

  it('on ext4 (O_DIRECT writes) reads each chunk once it is on the device, the tail once the file is final', async () => {
    const { file, bytes } = await source(size);
    const dir = await mountedExt4(96);
    const destination = path.join(dir, 'models', 'm', 'shard.safetensors');
    const follow = new FollowState();
    const reported: number[] = [];
    const pool = new BlockPool(CHUNK_SIZE, 6);
    const hash = createHash('sha256');
    let read = 0;
    const reading = readFollowing(follow, true, (chunk) => {
      hash.update(chunk);
      read += chunk.length;
    });
    const written = await writeSeedFile({
      destination,
      displayPath: 'models/m/shard.safetensors',
      chunks: readFileChunks(file, { pool, direct: true }),
      pool,
      expectedSize: size,
      onDevice: (partial, bytesOnDevice) => {
        expect(partial).toBe(partialPathFor(destination));
        reported.push(bytesOnDevice);
        follow.update({ path: partial, written: bytesOnDevice });
      },
    });
    // Before the last chunk is even written (it waits for the scanner's verdict), the reader has
    // read back everything reported on the device: the read-back runs beside the copy.
    const before = reported.at(-1)!;
    expect(before).toBeGreaterThanOrEqual(3 * CHUNK_SIZE);
    await until(() => read >= before - (before % VERIFY_CHUNK));
    await written.commit();
    // The watermark only grows, stays on the block grid, and never covers the ordinary-write tail.
    expect(reported).toEqual([...reported].sort((a, b) => a - b));
    for (const bytesOnDevice of reported) expect(bytesOnDevice % DIRECT_ALIGN).toBe(0);
    expect(reported.at(-1)!).toBeLessThan(size);
    expect(read).toBeLessThan(size);
    follow.update({ path: destination, finalSize: size });
    const result = await reading;
    expect(result).toEqual({ size, bypass: 'direct' });
    expect(hash.digest('hex')).toBe(sha256(bytes));
  });

  it('on tmpfs (ordinary writes) nothing is reported on the device: the whole file is read once final', async () => {
    const { file, bytes } = await source(size);
    const dir = await mkdtemp('/dev/shm/dubnium-seed-test-');
    shmDirs.push(dir);
    const destination = path.join(dir, 'shard.safetensors');
    const follow = new FollowState();
    const pool = new BlockPool(CHUNK_SIZE, 6);
    let reports = 0;
    const hash = createHash('sha256');
    const reading = readFollowing(follow, true, (chunk) => hash.update(chunk));
    const written = await writeSeedFile({ destination, displayPath: 'shard.safetensors', chunks: readFileChunks(file, { pool }), pool, onDevice: () => (reports += 1) });
    await written.commit();
    expect(reports).toBe(0);
    follow.update({ path: destination, finalSize: size });
    expect((await reading).size).toBe(size);
    expect(hash.digest('hex')).toBe(sha256(bytes));
  });

  it('opens the final name when the temporary one is gone (renamed before the reader got to it)', async () => {
    const { file, bytes } = await source(size);
    const dir = await mountedExt4(96);
    const destination = path.join(dir, 'shard.safetensors');
    const pool = new BlockPool(CHUNK_SIZE, 6);
    const follow = new FollowState();
    const written = await writeSeedFile({ destination, displayPath: 'shard.safetensors', chunks: readFileChunks(file, { pool, direct: true }), pool, onDevice: (partial, bytesOnDevice) => follow.update({ path: partial, written: bytesOnDevice }) });
    await written.commit();
    // The reader starts only now: the temporary name it was told about no longer exists.
    const hash = createHash('sha256');
    const reading = readFollowing(follow, true, (chunk) => hash.update(chunk));
    await new Promise((resolve) => setTimeout(resolve, 50));
    follow.update({ path: destination, finalSize: size });
    expect((await reading).size).toBe(size);
    expect(hash.digest('hex')).toBe(sha256(bytes));
  });

  it('stops with an error when the writer gives up on the file', async () => {
    const follow = new FollowState();
    const reading = readFollowing(follow, true, () => undefined);
    follow.update({ aborted: 'the copy stopped' });
    await expect(reading).rejects.toThrow('the copy stopped');
  });
});
