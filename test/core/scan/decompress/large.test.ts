/**
 * Offsets past 2 GiB and 4 GiB: a key after gigabytes of zeros, compressed by the real tools, comes out
 * at the right offset (no int32 arithmetic anywhere), with memory flat. Slow: generous timeouts.
 */
import { execFileSync } from 'node:child_process';
import { createReadStream, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { decompressStream, type Compression } from '../../../../src/core/scan/decompress/index.js';
import { ageKeyFile } from '../../../helpers/credentials.js';
import { tempDir } from '../../../helpers/tmp.js';

const GiB = 1024 ** 3;

/** Decompresses `file`, returning where `marker` starts in the output and the output length. */
async function find(kind: Compression, file: string, marker: Buffer): Promise<{ at: number; length: number; consumed: number; peakRss: number }> {
  const stream = decompressStream(kind, createReadStream(file, { highWaterMark: 1 << 20 }));
  let offset = 0;
  let at = -1;
  let tail = Buffer.alloc(0);
  let peakRss = 0;
  let count = 0;
  for await (const chunk of stream) {
    // Zeros need no search; only the few chunks that are not all zero are looked at.
    const joined = tail.length > 0 ? Buffer.concat([tail, chunk]) : chunk;
    const hit = joined.indexOf(marker);
    if (hit >= 0 && at < 0) at = offset - tail.length + hit;
    tail = Buffer.from(joined.subarray(Math.max(0, joined.length - marker.length + 1)));
    offset += chunk.length;
    if (++count % 256 === 0) peakRss = Math.max(peakRss, process.memoryUsage.rss());
  }
  return { at, length: offset, consumed: stream.consumed, peakRss };
}

describe.each([
  { kind: 'gzip' as const, tool: 'gzip -1', zeros: 4.5 * GiB },
  { kind: 'zstd' as const, tool: 'zstd -q -1', zeros: 4.5 * GiB },
  { kind: 'xz' as const, tool: 'xz -0 -T1', zeros: 2.25 * GiB },
])('$kind, a key after $zeros bytes of zeros', ({ kind, tool, zeros }) => {
  it(
    'comes out at its offset',
    async () => {
      const dir = await tempDir();
      const file = path.join(dir, 'big');
      const { identity } = ageKeyFile();
      const marker = Buffer.from(identity);
      // The key goes after `zeros` bytes of zeros, then 1 MiB more zeros.
      execFileSync('sh', ['-c', `{ head -c ${zeros} /dev/zero; cat; head -c 1048576 /dev/zero; } | ${tool} -c > ${file}`], { input: marker });
      const result = await find(kind, file, marker);
      expect(result.at).toBe(zeros);
      expect(result.length).toBe(zeros + marker.length + 1048576);
      expect(result.consumed).toBe(statSync(file).size);
      // Flat memory: far below the gigabytes that went through.
      expect(result.peakRss).toBeLessThan(600 * 1024 * 1024);
    },
    1_800_000,
  );
});
