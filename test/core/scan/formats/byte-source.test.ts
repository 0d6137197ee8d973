import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { bufferSource, concatSource, fileSource, readExactly, sliceSource, sourceChunks } from '../../../../src/core/scan/formats/byte-source.js';
import { FormatError } from '../../../../src/core/scan/formats/types.js';
import { tempDir } from '../../../helpers/tmp.js';

async function all(chunks: AsyncIterable<Buffer>): Promise<string> {
  let text = '';
  for await (const chunk of chunks) text += `${chunk.toString()}|`;
  return text;
}

describe('byte sources', () => {
  it('reads a file by position, slices it and joins slices', async () => {
    const file = path.join(await tempDir(), 'bytes.bin');
    await writeFile(file, '0123456789abcdefghij');
    const source = await fileSource(file);
    try {
      expect(source.size).toBe(20);
      expect((await source.read(15, 100)).toString()).toBe('fghij');
      expect((await source.read(20, 5)).length).toBe(0);
      const joined = concatSource([sliceSource(source, 10, 3), bufferSource(Buffer.from('XY')), sliceSource(source, 0, 0), sliceSource(source, 0, 4)]);
      expect(joined.size).toBe(9);
      expect((await joined.read(0, 100)).toString()).toBe('abcXY0123');
      expect((await joined.read(2, 4)).toString()).toBe('cXY0');
      expect(await all(sourceChunks(joined, undefined, 4))).toBe('abcX|Y012|3|');
      expect(() => sliceSource(source, 18, 3)).toThrow(FormatError);
      await expect(readExactly(source, 19, 2, 'the record')).rejects.toThrow(/past the end/);
    } finally {
      await source.close();
    }
  });

  it('sizes a block device from the kernel (st_size is 0 for one) and reads its last bytes', async () => {
    const image = path.join(await tempDir(), 'disk.img');
    const size = 3 * 1024 * 1024 + 4096;
    await writeFile(image, Buffer.concat([Buffer.alloc(size - 10), Buffer.from('LAST-BYTES')]));
    const device = execFileSync('losetup', ['--find', '--show', image], { encoding: 'utf8' }).trim();
    try {
      const source = await fileSource(device);
      try {
        expect(source.size).toBe(size);
        expect((await source.read(size - 10, 100)).toString()).toBe('LAST-BYTES');
      } finally {
        await source.close();
      }
    } finally {
      execFileSync('losetup', ['-d', device]);
    }
  });

  it('stops streaming when the signal aborts', async () => {
    const controller = new AbortController();
    const chunks = sourceChunks(bufferSource(Buffer.alloc(10)), controller.signal, 2);
    await chunks.next();
    controller.abort(new Error('stop'));
    await expect(chunks.next()).rejects.toThrow('stop');
  });
});
