import { describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.js';
import { GiB, MiB, estimateSeed, filesystemOverhead, parseSize, partitionBytesFor } from '../../src/media/sizes.js';
import { seedInputs } from './media-fixture.js';

describe('parseSize', () => {
  it('reads sizes as truncate does: binary suffixes, decimal with B, bare bytes', () => {
    expect(parseSize('512M')).toBe(512 * MiB);
    expect(parseSize('2G')).toBe(2 * GiB);
    expect(parseSize('2GiB')).toBe(2 * GiB);
    expect(parseSize('2GB')).toBe(2_000_000_000);
    expect(parseSize('1.5g')).toBe(1.5 * GiB);
    expect(parseSize('4096')).toBe(4096);
  });

  it('refuses what is not a size, naming the flag', () => {
    for (const bad of ['', 'big', '12 parsecs', '-1M', '0']) {
      expect(() => parseSize(bad)).toThrow(UsageError);
    }
    expect(() => parseSize('x', '--size')).toThrow(/--size "x" is not a size/);
  });
});

describe('partition sizing', () => {
  it('leaves room for the filesystem: the partition minus its overhead holds the content', () => {
    for (const filesystem of ['ext4', 'exfat', 'fat'] as const) {
      for (const content of [1, 10 * MiB, 3 * GiB, 40 * GiB]) {
        const size = partitionBytesFor(content, filesystem);
        expect(size - filesystemOverhead(size, filesystem)).toBeGreaterThanOrEqual(content);
        expect(size % MiB).toBe(0);
        expect(size).toBeLessThan(content * 1.2 + 300 * MiB);
      }
    }
  });

  it('estimates a seed from its inputs before anything is built', async () => {
    const estimate = await estimateSeed(await seedInputs({ shards: 2, shardBytes: 3 * MiB }));
    expect(estimate.files.map((file) => file.path)).toEqual(expect.arrayContaining(['seed-install.sh', 'models/tiny-demo/config.json', 'models/tiny-demo/model-00001-of-00002.safetensors']));
    expect(estimate.contentBytes).toBeGreaterThan(6 * MiB);
    expect(estimate.contentBytes).toBeLessThan(12 * MiB);
  });
});
