/**
 * The copy's I/O: a bounded pool of aligned blocks, O_DIRECT reads and writes where the filesystem
 * takes them (ext4 here: the temp folder and a loop-mounted stick) and ordinary I/O where it does
 * not (tmpfs, or DUBNIUM_NO_DIRECT_IO), with the same bytes on the media either way and every
 * block given back.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BlockPool, directWritesIn } from '../../src/core/copy-io.js';
import { CHUNK_SIZE, readFileChunks, writeSeedFile } from '../../src/core/seed-writer.js';
import { mountedExt4 } from '../helpers/loop-fs.js';
import { tempDir } from '../helpers/tmp.js';

/** Resolves true when all `count` blocks can be taken at once (none was kept), false if stuck. */
async function allBack(pool: BlockPool, count: number): Promise<boolean> {
  const taken = Promise.all(Array.from({ length: count }, () => pool.take()));
  const result = await Promise.race([taken.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 2000))]);
  if (result) for (const block of await taken) pool.give(block);
  return result;
}

const shmDirs: string[] = [];
afterEach(async () => {
  delete process.env.DUBNIUM_NO_DIRECT_IO;
  while (shmDirs.length > 0) await rm(shmDirs.pop()!, { recursive: true, force: true });
});

/** A folder on tmpfs (memory), where the seed writer does not use O_DIRECT. */
async function shmDir(): Promise<string> {
  const dir = await mkdtemp('/dev/shm/dubnium-seed-test-');
  shmDirs.push(dir);
  return dir;
}

describe('BlockPool', () => {
  it('hands out at most its blocks, waits for one to come back, and ignores buffers not its own', async () => {
    const pool = new BlockPool(64 * 1024, 2);
    const first = await pool.take();
    const second = await pool.take();
    expect(first.length).toBe(64 * 1024);
    expect(pool.owns(first.subarray(0, 10))).toBe(true);
    let third: Buffer | undefined;
    const waiting = pool.take().then((block) => (third = block));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(third).toBeUndefined();
    pool.give(Buffer.alloc(64 * 1024)); // a stranger's buffer: no block comes free
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(third).toBeUndefined();
    pool.give(second.subarray(0, 100)); // a chunk cut from a block gives the whole block back
    await waiting;
    expect(third!.length).toBe(64 * 1024);
    expect(pool.owns(third!)).toBe(true);
    expect(pool.owns(first)).toBe(true);
  });
});

describe('copy with pooled blocks and O_DIRECT', () => {
  // Two full chunks and an unaligned tail: the tail takes the ordinary path.
  const size = 2 * CHUNK_SIZE + 12_345;

  it.each([
    ['ext4 (O_DIRECT reads and writes)', 'ext4', false],
    ['ext4 with DUBNIUM_NO_DIRECT_IO (ordinary writes)', 'ext4', true],
    ['tmpfs (ordinary writes)', 'tmpfs', false],
  ] as const)('%s: the same bytes and digest, every block given back', async (_name, where, noDirect) => {
    if (noDirect) process.env.DUBNIUM_NO_DIRECT_IO = '1';
    const source = path.join(await tempDir(), 'shard.safetensors');
    const bytes = randomBytes(size);
    await writeFile(source, bytes);
    const dir = where === 'ext4' ? await mountedExt4(64) : await shmDir();
    expect(await directWritesIn(dir)).toBe(where === 'ext4' && !noDirect);
    const destination = path.join(dir, 'models', 'm', 'shard.safetensors');
    const pool = new BlockPool(CHUNK_SIZE, 8);
    let reported = 0;
    const written = await writeSeedFile({
      destination,
      displayPath: 'models/m/shard.safetensors',
      chunks: readFileChunks(source, { pool, direct: true }),
      pool,
      expectedSize: size,
      onBytes: (count) => (reported += count),
    });
    await written.commit();
    expect((await readFile(destination)).equals(bytes)).toBe(true);
    expect(written.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
    expect(reported).toBe(size);
    expect(await allBack(pool, 8)).toBe(true);
  });

  it('reads a file to the last byte with O_DIRECT, whatever its size, and gives the blocks back when stopped early', async () => {
    const dir = await tempDir();
    const pool = new BlockPool(CHUNK_SIZE, 4);
    for (const length of [0, 1, 4095, 4096, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE - 7]) {
      const file = path.join(dir, `f${length}`);
      const bytes = randomBytes(length);
      await writeFile(file, bytes);
      const parts: Buffer[] = [];
      for await (const chunk of readFileChunks(file, { pool, direct: true, readAhead: 2 })) {
        parts.push(Buffer.from(chunk));
        pool.give(chunk);
      }
      expect(Buffer.concat(parts).equals(bytes)).toBe(true);
    }
    // A consumer that stops after the first chunk: the reads queued ahead hand their blocks back.
    const big = path.join(dir, `f${3 * CHUNK_SIZE - 7}`);
    for await (const chunk of readFileChunks(big, { pool, direct: true, readAhead: 3 })) {
      pool.give(chunk);
      break;
    }
    expect(await allBack(pool, 4)).toBe(true);
  });

  it('a leak found after the last byte discards the file and gives every block back', async () => {
    const source = path.join(await tempDir(), 'shard.bin');
    await writeFile(source, randomBytes(CHUNK_SIZE + 5000));
    const dir = await tempDir();
    const destination = path.join(dir, 'shard.bin');
    const pool = new BlockPool(CHUNK_SIZE, 8);
    const written = await writeSeedFile({ destination, displayPath: 'shard.bin', chunks: readFileChunks(source, { pool, direct: true }), pool });
    await written.discard();
    expect(existsSync(destination)).toBe(false);
    expect(await allBack(pool, 8)).toBe(true);
  });
});
