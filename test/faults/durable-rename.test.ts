/**
 * A file on the seed gets its final name only once its bytes are on the device: on a slow stick
 * (the fault device at 8 MB/s), the moment the final name appears the device has already taken
 * every byte of the file. Checked with O_DIRECT writes and with ordinary (page-cache) writes,
 * where a rename before the flush would show the name while most bytes still sit in memory.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BlockPool } from '../../src/core/copy-io.js';
import { CHUNK_SIZE, readFileChunks, writeSeedFile } from '../../src/core/seed-writer.js';
import { faultyExt4 } from '../helpers/fault-device.js';
import { tempDir } from '../helpers/tmp.js';

afterEach(() => {
  delete process.env.DUBNIUM_NO_DIRECT_IO;
});

describe('the rename of a seed file', () => {
  it.each([
    ['O_DIRECT writes', false],
    ['ordinary writes (DUBNIUM_NO_DIRECT_IO)', true],
  ] as const)('never precedes its bytes reaching the device: %s', async (_name, noDirect) => {
    if (noDirect) process.env.DUBNIUM_NO_DIRECT_IO = '1';
    const size = 3 * CHUNK_SIZE + 777;
    const source = path.join(await tempDir(), 'shard.safetensors');
    await writeFile(source, randomBytes(size));
    const { fault, root } = await faultyExt4({ sizeMiB: 64 });
    fault.setFaults({ writeBps: 8e6 });
    const before = fault.status().bytes_written;
    const destination = path.join(root, 'models', 'm', 'shard.safetensors');
    let seenAfter: number | undefined;
    const timer = setInterval(() => {
      if (seenAfter === undefined && existsSync(destination)) seenAfter = fault.status().bytes_written - before;
    }, 2);
    try {
      const pool = new BlockPool(CHUNK_SIZE, 8);
      const written = await writeSeedFile({ destination, displayPath: 'models/m/shard.safetensors', chunks: readFileChunks(source, { pool, direct: true }), pool, expectedSize: size });
      expect(existsSync(destination)).toBe(false);
      await written.commit();
    } finally {
      clearInterval(timer);
    }
    seenAfter ??= fault.status().bytes_written - before;
    expect(existsSync(destination)).toBe(true);
    expect(seenAfter).toBeGreaterThanOrEqual(size);
  });
});
