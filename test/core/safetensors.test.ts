import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.js';
import { parseSafetensorsHeader, readSafetensorsHeader, SAFETENSORS_DTYPE_BITS } from '../../src/core/safetensors.js';
import { brokenSafetensors, makeSafetensors, rawSafetensors, writeSafetensors, type BrokenSafetensorsKind } from '../helpers/bundles.js';
import { tempDir } from '../helpers/tmp.js';

async function writeTemp(name: string, content: Buffer): Promise<string> {
  const file = path.join(await tempDir(), name);
  await writeFile(file, content);
  return file;
}

async function rejection(promise: Promise<unknown>): Promise<UsageError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(UsageError);
  return error as UsageError;
}

describe('readSafetensorsHeader', () => {
  it('reads a valid file: tensors, offsets, metadata and lengths', async () => {
    const content = makeSafetensors(
      [
        { name: 'b.weight', dtype: 'F32', shape: [2, 3] },
        { name: 'a.bias', dtype: 'BF16', shape: [5] },
      ],
      { metadata: { format: 'pt' } },
    );
    const file = await writeTemp('model.safetensors', content);
    const header = await readSafetensorsHeader(file);
    expect(header.metadata).toEqual({ format: 'pt' });
    expect(header.tensors['b.weight']).toEqual({ dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] });
    expect(header.tensors['a.bias']).toEqual({ dtype: 'BF16', shape: [5], data_offsets: [24, 34] });
    expect(header.dataLength).toBe(34);
    expect(header.headerLength % 8).toBe(0);
    expect(8 + header.headerLength + header.dataLength).toBe(content.length);
    expect(Number(content.readBigUInt64LE(0))).toBe(header.headerLength);
  });

  it('accepts every dtype of the reference implementation, sized by bits per element', async () => {
    // Bits per element, written out independently of the implementation's table.
    const expectedBits: Record<string, number> = {
      BOOL: 8, F4: 4, F6_E2M3: 6, F6_E3M2: 6, U8: 8, I8: 8, F8_E5M2: 8, F8_E4M3: 8, F8_E8M0: 8,
      I16: 16, U16: 16, F16: 16, BF16: 16, I32: 32, U32: 32, F32: 32, C64: 64, F64: 64, I64: 64, U64: 64,
    };
    expect(Object.keys(SAFETENSORS_DTYPE_BITS).sort()).toEqual(Object.keys(expectedBits).sort());
    const tensors = Object.keys(expectedBits).map((dtype) => ({ name: `t.${dtype}`, dtype, shape: [4, 2] }));
    const file = await writeTemp('all.safetensors', makeSafetensors(tensors));
    const header = await readSafetensorsHeader(file);
    for (const [dtype, bits] of Object.entries(expectedBits)) {
      const [begin, end] = header.tensors[`t.${dtype}`]!.data_offsets;
      expect(end - begin, dtype).toBe((8 * bits) / 8);
    }
  });

  it('accepts scalars, empty tensors and a file with no tensors', async () => {
    const scalar = '{"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"e":{"dtype":"F32","shape":[0,7],"data_offsets":[4,4]}}';
    const header = await readSafetensorsHeader(await writeTemp('s.safetensors', rawSafetensors(scalar, 4)));
    expect(header.dataLength).toBe(4);
    const empty = await readSafetensorsHeader(await writeTemp('e.safetensors', rawSafetensors('{}      ', 0)));
    expect(empty).toEqual({ headerLength: 8, dataLength: 0, tensors: {} });
  });

  it('accepts tensors listed out of offset order', async () => {
    const json = '{"late":{"dtype":"U8","shape":[3],"data_offsets":[2,5]},"early":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}';
    const header = await readSafetensorsHeader(await writeTemp('o.safetensors', rawSafetensors(json, 5)));
    expect(Object.keys(header.tensors).sort()).toEqual(['early', 'late']);
  });

  const expectations: Record<BrokenSafetensorsKind, RegExp> = {
    'too-short': /too short/,
    'header-length-past-end': /header length field says 4096 bytes but the file is only/,
    'header-length-over-limit': /above the 100000000-byte limit/,
    'non-json-header': /not valid JSON/,
    'non-utf8-header': /not valid UTF-8/,
    'header-not-object': /not a JSON object/,
    'unknown-dtype': /unknown dtype "F12"/,
    'bad-shape': /invalid shape \[-2\]/,
    'bad-offsets': /invalid data_offsets \[0\]/,
    'bad-metadata': /__metadata__ must be an object of string values/,
    'offset-gap': /gap in tensor data: bytes 4\.\.8 before tensor "b"/,
    'offset-overlap': /tensor "b" overlaps/,
    'size-mismatch': /needs 8 bytes but data_offsets \[0, 6\] span 6/,
    'misaligned-subbyte': /does not fill a whole number of bytes/,
    truncated: /truncated/,
    'trailing-bytes': /5 unexpected trailing bytes/,
  };

  it.each(Object.keys(brokenSafetensors) as BrokenSafetensorsKind[])('rejects %s with a UsageError naming the file', async (kind) => {
    const file = await writeTemp(`${kind}.safetensors`, brokenSafetensors[kind]());
    const error = await rejection(readSafetensorsHeader(file, `models/x/${kind}.safetensors`));
    expect(error.message).toContain(`models/x/${kind}.safetensors`);
    expect(error.message).toMatch(expectations[kind]);
    expect(error.exitCode).toBe(2);
  });

  it('names the real path when no display path is given, and reports missing files', async () => {
    const file = await writeTemp('gap.safetensors', brokenSafetensors['offset-gap']());
    expect((await rejection(readSafetensorsHeader(file))).message).toContain(file);
    const missing = path.join(path.dirname(file), 'missing.safetensors');
    expect((await rejection(readSafetensorsHeader(missing))).message).toMatch(/Cannot read safetensors file .*missing\.safetensors: ENOENT/);
  });

  it('reads only the header of a large file streamed in chunks', async () => {
    const file = path.join(await tempDir(), 'big.safetensors');
    const size = await writeSafetensors(file, [
      { name: 'big', dtype: 'U8', shape: [40 * 1024 * 1024 + 3] },
      { name: 'small', dtype: 'F16', shape: [8] },
    ]);
    const header = await readSafetensorsHeader(file);
    expect(8 + header.headerLength + header.dataLength).toBe(size);
    expect(header.tensors.small!.data_offsets).toEqual([40 * 1024 * 1024 + 3, 40 * 1024 * 1024 + 19]);
  });
});

describe('parseSafetensorsHeader', () => {
  const header = (json: string) => Buffer.from(json, 'utf8');

  it('validates a header buffer against a file size without touching the disk', () => {
    const json = '{"a":{"dtype":"F4","shape":[4],"data_offsets":[0,2]},"b":{"dtype":"F6_E3M2","shape":[4],"data_offsets":[2,5]}}';
    const parsed = parseSafetensorsHeader(header(json), 8 + json.length + 5, 'x.safetensors');
    expect(parsed.dataLength).toBe(5);
    expect(() => parseSafetensorsHeader(header(json), 8 + json.length + 4, 'x.safetensors')).toThrow(/x\.safetensors: the file is truncated/);
  });

  it('rejects a header longer than the file', () => {
    expect(() => parseSafetensorsHeader(header('{}'), 9, 'short.safetensors')).toThrow(UsageError);
  });

  it('does not overflow on absurd shapes', () => {
    const json = '{"a":{"dtype":"F64","shape":[9007199254740991,9007199254740991],"data_offsets":[0,8]}}';
    expect(() => parseSafetensorsHeader(header(json), 8 + json.length + 8, 'huge.safetensors')).toThrow(/needs \d{30,} bytes/);
  });

  it('rejects non-integer and unsafe numbers in shapes and offsets', () => {
    const fractional = '{"a":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}}';
    expect(() => parseSafetensorsHeader(header(fractional), 100, 'f.safetensors')).toThrow(/invalid shape/);
    const reversed = '{"a":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}}';
    expect(() => parseSafetensorsHeader(header(reversed), 100, 'r.safetensors')).toThrow(/ends before it begins/);
    const missingDtype = '{"a":{"shape":[1],"data_offsets":[0,1]}}';
    expect(() => parseSafetensorsHeader(header(missingDtype), 100, 'd.safetensors')).toThrow(/unknown dtype undefined/);
    const notObject = '{"a":[1,2]}';
    expect(() => parseSafetensorsHeader(header(notObject), 100, 'n.safetensors')).toThrow(/tensor "a" is not an object/);
  });

  it('never throws anything but UsageError on mutated headers', () => {
    const valid = makeSafetensors([
      { name: 'x', dtype: 'F32', shape: [3, 3] },
      { name: 'y', dtype: 'I64', shape: [2] },
    ]);
    const length = Number(valid.readBigUInt64LE(0));
    for (let position = 0; position < length; position += 3) {
      const mutated = Buffer.from(valid.subarray(8, 8 + length));
      mutated[position] = (mutated[position]! + 7) % 256;
      try {
        parseSafetensorsHeader(mutated, valid.length, 'fuzz.safetensors');
      } catch (error) {
        expect(error).toBeInstanceOf(UsageError);
        expect((error as Error).message).toContain('fuzz.safetensors');
      }
    }
  });
});
