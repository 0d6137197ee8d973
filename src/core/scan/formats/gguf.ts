/**
 * A GGUF model file (llama.cpp; versions 2 and 3): magic `GGUF`, version, tensor count, key/value
 * count, the key/values (strings, numbers, arrays), the tensor infos, then the tensor data at the
 * next multiple of `general.alignment` (32 by default). Two members: `(metadata)`, every string
 * value and string-array element as a `key = value` line (a token in `general.source.url` or a chat
 * template stands alone there, not glued to a length field), and `(tensor data)`, the data region
 * read in place.
 */
import { sliceSource, sourceChunks } from './byte-source.js';
import { SourceCursor } from './source-cursor.js';
import { FormatError, type ByteSource, type FormatContext, type FormatHandler, type Member } from './types.js';

const STRING = 8;
const ARRAY = 9;
/** Bytes of each fixed-size value type (by GGUF type id); -1 for string and array. */
const FIXED = [1, 1, 2, 2, 4, 4, 4, 1, -1, -1, 8, 8, 8];
/** A key longer than this is not a GGUF key; a string value longer than this is not metadata. */
const MAX_KEY = 65536;
const MAX_STRING = 256 * 1024 * 1024;
const PIECE = 1024 * 1024;

async function string(cursor: SourceCursor, max: number): Promise<Buffer> {
  const at = cursor.position;
  const length = await cursor.u64();
  if (length > max) throw new FormatError('corrupt', `gguf: a ${length}-byte string at offset ${at}`);
  return cursor.bytes(length);
}

/** The size of a fixed type, or a FormatError for a type GGUF does not have. */
function fixedSize(type: number, at: number): number {
  const size = FIXED[type];
  if (size === undefined) throw new FormatError('corrupt', `gguf: unknown value type ${type} at offset ${at}`);
  return size;
}

/** A number value (for general.alignment); other fixed values are skipped. */
async function number(cursor: SourceCursor, type: number): Promise<number> {
  const size = fixedSize(type, cursor.position);
  const bytes = await cursor.bytes(size);
  if (type === 4) return bytes.readUInt32LE(0);
  if (type === 10) return Number(bytes.readBigUInt64LE(0));
  return Number.NaN;
}

interface Parsed {
  alignment: number;
  tensorCount: number;
}

/**
 * The key/values from the cursor, as `key = value` lines gathered into pieces; `parsed` gets the
 * alignment. Tensor infos are the caller's.
 */
async function* metadata(cursor: SourceCursor, count: number, parsed: Parsed, signal: AbortSignal | undefined): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let length = 0;
  const push = (key: Buffer, value: Buffer) => {
    parts.push(Buffer.from(key), Buffer.from(' = '), Buffer.from(value), Buffer.from('\n'));
    length += key.length + value.length + 4;
  };
  for (let index = 0; index < count; index++) {
    if (index % 1024 === 0) signal?.throwIfAborted();
    const key = Buffer.from(await string(cursor, MAX_KEY));
    const type = await cursor.u32();
    if (type === STRING) {
      push(key, await string(cursor, MAX_STRING));
    } else if (type === ARRAY) {
      const elementType = await cursor.u32();
      const elements = await cursor.u64();
      if (elementType === STRING) {
        for (let element = 0; element < elements; element++) {
          if (element % 65536 === 0) signal?.throwIfAborted();
          push(key, await string(cursor, MAX_STRING));
          if (length >= PIECE) {
            yield Buffer.concat(parts, length);
            parts = [];
            length = 0;
          }
        }
      } else if (elementType === ARRAY) {
        throw new FormatError('unsupported', `gguf: nested arrays (key ${key.toString('utf8').slice(0, 80)})`);
      } else {
        const size = fixedSize(elementType, cursor.position);
        cursor.skip(size * elements);
        if (cursor.position > cursor.source.size) throw new FormatError('truncated', `gguf: an array of ${elements} values runs past the end`);
      }
    } else {
      const value = await number(cursor, type);
      if (key.toString('latin1') === 'general.alignment') {
        if (!Number.isInteger(value) || value < 1 || value > 1 << 20 || (value & (value - 1)) !== 0) throw new FormatError('corrupt', `gguf: general.alignment ${value}`);
        parsed.alignment = value;
      }
    }
    if (length >= PIECE) {
      yield Buffer.concat(parts, length);
      parts = [];
      length = 0;
    }
  }
  if (length > 0) yield Buffer.concat(parts, length);
}

export const gguf: FormatHandler = {
  name: 'gguf',
  access: 'random',
  inPlaceOnly: true,
  detect(head) {
    return head.length >= 24 && head[0] === 0x47 && head.toString('latin1', 0, 4) === 'GGUF' && (head.readUInt32LE(4) === 2 || head.readUInt32LE(4) === 3);
  },
  async *members(input: ByteSource | AsyncIterable<Buffer>, context: FormatContext): AsyncGenerator<Member> {
    const source = input as ByteSource;
    if (typeof source.read !== 'function') throw new FormatError('unsupported', 'gguf: needs random access');
    const cursor = new SourceCursor(source, 'gguf', context.signal);
    if ((await cursor.bytes(4)).toString('latin1') !== 'GGUF') throw new FormatError('corrupt', 'gguf: no GGUF signature');
    const version = await cursor.u32();
    if (version !== 2 && version !== 3) throw new FormatError('unsupported', `gguf: version ${version}`);
    const parsed: Parsed = { alignment: 32, tensorCount: await cursor.u64() };
    const count = await cursor.u64();
    const lines = metadata(cursor, count, parsed, context.signal);
    yield { name: '(metadata)', stream: () => lines };
    // Read through whatever the walker did not: the tensor infos follow the key/values.
    for await (const _ of lines) void _;
    for (let index = 0; index < parsed.tensorCount; index++) {
      if (index % 4096 === 0) context.signal?.throwIfAborted();
      await string(cursor, MAX_KEY);
      const dimensions = await cursor.u32();
      if (dimensions > 64) throw new FormatError('corrupt', `gguf: tensor ${index} has ${dimensions} dimensions`);
      cursor.skip(8 * dimensions + 4 + 8); // dims, type, offset
      if (cursor.position > source.size) throw new FormatError('truncated', 'gguf: tensor infos run past the end');
    }
    const start = Math.ceil(cursor.position / parsed.alignment) * parsed.alignment;
    if (start >= source.size) {
      if (parsed.tensorCount > 0) throw new FormatError('truncated', `gguf: ${parsed.tensorCount} tensors but no tensor data`);
      return;
    }
    const data = sliceSource(source, start, source.size - start);
    yield { name: '(tensor data)', size: data.size, source: data, stream: () => sourceChunks(data, context.signal) };
  },
};
