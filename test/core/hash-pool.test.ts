/**
 * The build's worker thread: hashing the copy's chunks where they lie (shared pool blocks) and
 * reading a file back behind its copy. Worker threads run compiled modules only, so these tests
 * use the build (npm run build), as the CLI tests do.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readlinkSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { githubToken } from '../helpers/credentials.js';
import { mountedExt4 } from '../helpers/loop-fs.js';
import { tempDir } from '../helpers/tmp.js';

type HashPoolModule = typeof import('../../src/core/hash-pool.js');
type SeedWriterModule = typeof import('../../src/core/seed-writer.js');
type CopyIoModule = typeof import('../../src/core/copy-io.js');

const dist = path.join(fileURLToPath(new URL('../..', import.meta.url)), 'dist/core');
const built = async () => ({
  ...((await import(path.join(dist, 'hash-pool.js'))) as HashPoolModule),
  ...((await import(path.join(dist, 'seed-writer.js'))) as SeedWriterModule),
  ...((await import(path.join(dist, 'copy-io.js'))) as CopyIoModule),
});

const pools: { close(): Promise<void> }[] = [];
afterEach(async () => {
  while (pools.length > 0) await pools.pop()!.close();
});

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

async function ready(pool: { ready: boolean }): Promise<void> {
  for (let tries = 0; !pool.ready; tries += 1) {
    if (tries > 600) throw new Error('the worker never became ready');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

// Four full chunks and an unaligned tail.
const SIZE = 4 * 4 * 1024 * 1024 + 12_345;

describe('HashPool.hasher', () => {
  it('hashes a copy on the worker, in shared pool blocks, and every block comes back', async () => {
    const { HashPool, BlockPool, CHUNK_SIZE, readFileChunks, writeSeedFile, isShared } = await built();
    const pool = new HashPool(undefined, 1);
    pools.push(pool);
    await ready(pool);
    const source = path.join(await tempDir(), 'shard.safetensors');
    const bytes = randomBytes(SIZE);
    await writeFile(source, bytes);
    const blocks = new BlockPool(CHUNK_SIZE, 6);
    expect(isShared(await blocks.take().then((block) => (blocks.give(block), block)))).toBe(true);
    const destination = path.join(await mountedExt4(64), 'shard.safetensors');
    const written = await writeSeedFile({ destination, displayPath: 'shard.safetensors', chunks: readFileChunks(source, { pool: blocks, direct: true }), pool: blocks, hasher: pool.hasher()! });
    await written.commit();
    expect(written.sha256).toBe(sha256(bytes));
    const all = await Promise.race([Promise.all(Array.from({ length: 6 }, () => blocks.take())).then(() => true), new Promise((resolve) => setTimeout(() => resolve(false), 2000))]);
    expect(all).toBe(true);
  });

  it('hashes chunks outside shared memory too (copied in), in order', async () => {
    const { HashPool } = await built();
    const pool = new HashPool(undefined, 1);
    pools.push(pool);
    const hasher = pool.hasher()!;
    const parts = [randomBytes(1000), randomBytes(1), randomBytes(70_000)];
    await Promise.all(parts.map((part) => hasher.update(part)));
    expect(await hasher.digest()).toBe(sha256(Buffer.concat(parts)));
  });
});

describe('HashPool.follow', () => {
  it('reads a file back behind its copy: the digest and leak scan of the bytes on the device', async () => {
    const { HashPool, BlockPool, CHUNK_SIZE, readFileChunks, writeSeedFile } = await built();
    const pool = new HashPool({ operatorSecrets: false }, 1);
    pools.push(pool);
    const token = githubToken();
    const bytes = randomBytes(SIZE);
    // The copy is not scanned here: what the read-back reports, it found in the bytes it read.
    bytes.write(`\n${token}\n`, 9 * 1024 * 1024, 'latin1');
    const source = path.join(await tempDir(), 'shard.bin');
    await writeFile(source, bytes);
    const destination = path.join(await mountedExt4(64), 'shard.bin');
    let progress = 0;
    const follower = pool.follow({ relPath: 'shard.bin', bypassCache: true, scan: true, size: SIZE }, (count) => (progress += count))!;
    const blocks = new BlockPool(CHUNK_SIZE, 6);
    const written = await writeSeedFile({
      destination,
      displayPath: 'shard.bin',
      chunks: readFileChunks(source, { pool: blocks, direct: true }),
      pool: blocks,
      onDevice: (partial, onDevice) => follower.written(partial, onDevice),
    });
    await written.commit();
    follower.final(destination, written.size);
    const outcome = await follower.result;
    expect(outcome.size).toBe(SIZE);
    expect(outcome.sha256).toBe(sha256(bytes));
    expect(outcome.bypass).toBe('direct');
    expect(outcome.findings).toContainEqual(expect.objectContaining({ path: 'shard.bin', kind: 'github-token', offset: 9 * 1024 * 1024 + 1 }));
    expect(progress).toBe(SIZE);
  });

  it('rejects when the writer gives up on the file', async () => {
    const { HashPool } = await built();
    const pool = new HashPool(undefined, 1);
    pools.push(pool);
    const follower = pool.follow({ relPath: 'gone.bin', bypassCache: true, scan: false })!;
    follower.abort('the copy stopped');
    await expect(follower.result).rejects.toThrow('the copy stopped');
  });

  it('closing the pool stops a read-back that waits for more bytes, and its file is closed first', async () => {
    const { HashPool } = await built();
    const pool = new HashPool(undefined, 1);
    const dir = await mountedExt4(32);
    // A file its writer has put 4 MiB of on the device, and then stopped writing (a failed build).
    const partial = path.join(dir, '.shard.bin.dubnium-partial');
    await writeFile(partial, randomBytes(4 * 1024 * 1024));
    const follower = pool.follow({ relPath: 'shard.bin', bypassCache: true, scan: false, size: 8 * 1024 * 1024 })!;
    follower.written(partial, 4 * 1024 * 1024);
    const outcome = follower.result.then(
      () => 'resolved',
      (error: Error) => error.message,
    );
    // Wait until the worker has the file open (it then reads the 4 MiB and waits for more).
    for (let tries = 0; openFilesUnder(dir).length === 0; tries += 1) {
      if (tries > 500) throw new Error('the read-back never opened the file');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const started = Date.now();
    await pool.close();
    expect(Date.now() - started).toBeLessThan(1500);
    expect(await outcome).toBe('the build stopped');
    expect(openFilesUnder(dir)).toEqual([]);
  });

  it.each([
    ['a worker is reading (a build read-back)', false],
    ['the calling thread reads while a worker hashes it (a split)', true],
  ])('closing the pool stops a file %s, and the file is closed before the workers go', async (_, callerHashes) => {
    const { HashPool } = await built();
    const pool = new HashPool({}, 1);
    pools.push(pool);
    pool.setCallerHashes(callerHashes);
    const dir = await tempDir();
    // Large enough that the scan is still reading when the pool is closed.
    const file = path.join(dir, 'tokenizer.json');
    await writeFile(file, Buffer.alloc(256 * 1024 * 1024, 'a'));
    const outcome = pool.run({ file, relPath: 'tokenizer.json', bypassCache: true, scan: true, size: 256 * 1024 * 1024 }).then(
      () => 'resolved',
      (error: Error) => error.message,
    );
    for (let tries = 0; openFilesUnder(dir).length === 0; tries += 1) {
      if (tries > 1000) throw new Error('the file was never opened');
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await pool.close();
    // A worker terminated mid-read would keep the file open (and its filesystem busy) for good.
    expect(openFilesUnder(dir)).toEqual([]);
    expect(pool.split).toBe(callerHashes ? 1 : 0);
    // Settled (never left waiting on a terminated worker), and not as a finished file.
    expect(await outcome).toMatch(/^(the build stopped|Cancelled\.)$/);
  });
});

/** Files under `dir` this process has open. */
function openFilesUnder(dir: string): string[] {
  const open: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      if (target.startsWith(`${dir}/`)) open.push(target);
    } catch {
      // closed meanwhile
    }
  }
  return open;
}

describe('HashPool: a large file with little else to do', () => {
  // Past the 64 MiB split threshold, with a token near the end and an unaligned tail.
  const BIG = 80 * 1024 * 1024 + 4321;

  it('is read and scanned by the calling thread and hashed by a worker: same digest, same findings', async () => {
    const { HashPool } = await built();
    const pool = new HashPool({ operatorSecrets: false }, 1);
    pools.push(pool);
    const dir = await tempDir();
    const token = githubToken();
    const bytes = randomBytes(BIG);
    bytes.write(`\ntoken=${token}\n`, BIG - 10_000, 'latin1');
    await writeFile(path.join(dir, 'model.gguf'), bytes);
    await writeFile(path.join(dir, 'config.json'), '{"model_type":"llama"}');
    const [big, small] = await Promise.all([
      pool.run({ file: path.join(dir, 'model.gguf'), relPath: 'model.gguf', bypassCache: true, scan: true, size: BIG }),
      pool.run({ file: path.join(dir, 'config.json'), relPath: 'config.json', bypassCache: true, scan: true, size: 22 }),
    ]);
    expect(pool.split).toBe(1);
    expect(big.size).toBe(BIG);
    expect(big.sha256).toBe(sha256(bytes));
    expect(big.findings.map((finding) => finding.rule)).toContain('github-token');
    expect(small.findings).toEqual([]);
  });

  it('is not split while other large files keep the threads busy', async () => {
    const { HashPool } = await built();
    const pool = new HashPool(undefined, 1);
    pools.push(pool);
    const dir = await tempDir();
    const parts = [randomBytes(BIG), randomBytes(BIG)];
    const outcomes = await Promise.all(
      parts.map(async (bytes, index) => {
        const file = path.join(dir, `shard-${index}.safetensors`);
        await writeFile(file, bytes);
        return file;
      }),
    ).then((files) => Promise.all(files.map((file, index) => pool.run({ file, relPath: path.basename(file), bypassCache: true, scan: false, size: parts[index]!.length }))));
    expect(pool.split).toBe(0);
    expect(outcomes.map((outcome) => outcome.sha256)).toEqual(parts.map(sha256));
  });

  it('fails the file, not the pool, when the hashing worker dies mid-file', async () => {
    const { HashPool } = await built();
    const pool = new HashPool(undefined, 1);
    pools.push(pool);
    await ready(pool);
    const file = path.join(await tempDir(), 'model.gguf');
    await writeFile(file, randomBytes(BIG));
    const running = pool.run({ file, relPath: 'model.gguf', bypassCache: true, scan: false, size: BIG });
    await new Promise((resolve) => setImmediate(resolve));
    // The pool's only worker, found the way the pool sees it.
    const worker = (pool as unknown as { workers: import('node:worker_threads').Worker[] }).workers[0]!;
    worker.emit('error', new Error('the worker died'));
    await expect(running).rejects.toThrow(/the worker died/);
    expect(pool.split).toBe(1);
    // The calling thread goes on alone, and the dead worker gets no more work.
    const again = await pool.run({ file, relPath: 'model.gguf', bypassCache: true, scan: false, size: BIG });
    expect(again.size).toBe(BIG);
    expect(pool.split).toBe(1);
  });
});
