/**
 * A safetensors file (Hugging Face): a little-endian u64 header length, the JSON header (tensor
 * names, dtypes, shapes, data_offsets, and `__metadata__`), then the tensor data. Members:
 * `(header)`, the JSON text, and one member per tensor named by the tensor's name, a slice of the
 * data read in place, so a finding names the tensor it lies in. The header is checked as the bundle
 * validation checks it (src/core/safetensors.ts): a file it rejects is unscanned, not passed.
 */
import { MAX_SAFETENSORS_HEADER_BYTES, parseSafetensorsHeader } from '../../safetensors.js';
import { sliceSource, sourceChunks } from './byte-source.js';
import { FormatError, type ByteSource, type FormatContext, type FormatHandler, type Member } from './types.js';

/** Where the header says the tensor data ends (0 when it cannot tell: the full check then reports why). */
function dataEnd(json: Buffer): number {
  let end = 0;
  try {
    const parsed = JSON.parse(json.toString('utf8')) as Record<string, { data_offsets?: unknown }>;
    for (const [name, value] of Object.entries(parsed)) {
      const offsets = name === '__metadata__' ? undefined : value?.data_offsets;
      if (Array.isArray(offsets) && Number.isSafeInteger(offsets[1])) end = Math.max(end, offsets[1] as number);
    }
  } catch {
    // Not JSON: parseSafetensorsHeader says so.
  }
  return end;
}

export const safetensors: FormatHandler = {
  name: 'safetensors',
  access: 'random',
  inPlaceOnly: true,
  detect(head, size) {
    if (head.length < 10 || head[8] !== 0x7b) return false; // '{'
    const length = head.readUInt32LE(0);
    // The high half of the length is zero: a header is under 100 MB. Text never has NUL bytes there.
    if (head.readUInt32LE(4) !== 0 || length < 2 || length > MAX_SAFETENSORS_HEADER_BYTES) return false;
    if (size !== undefined && 8 + length > size) return false;
    const next = head[9]!;
    if (next !== 0x22 && next !== 0x7d && next !== 0x20 && next !== 0x0a) return false; // '"', '}', space, newline
    // When the whole header is in view, it must end as a JSON object does (writers pad it with spaces).
    if (8 + length <= head.length) {
      let end = 8 + length - 1;
      while (end > 8 && head[end] === 0x20) end--;
      return head[end] === 0x7d;
    }
    return true;
  },
  async *members(input: ByteSource | AsyncIterable<Buffer>, context: FormatContext): AsyncGenerator<Member> {
    const source = input as ByteSource;
    if (typeof source.read !== 'function') throw new FormatError('unsupported', 'safetensors: needs random access');
    const top = await source.read(0, 8);
    if (top.length < 8) throw new FormatError('truncated', 'safetensors: the header length is cut short');
    const length = Number(top.readBigUInt64LE(0));
    if (length > MAX_SAFETENSORS_HEADER_BYTES) throw new FormatError('corrupt', `safetensors: a header of ${length} bytes`);
    const json = await source.read(8, length);
    if (json.length < length) throw new FormatError('truncated', `safetensors: the ${length}-byte header is cut short`);
    yield { name: '(header)', size: json.length, stream: () => (async function* one() { yield json; })() };
    // Bytes after the last tensor (an appended file, a writer's bug) make the header invalid for
    // loading, not unreadable: the tensors are read as the header says, the rest as one more member.
    const described = 8 + length + dataEnd(json);
    const tensorsEnd = described < source.size ? described : source.size;
    let header;
    try {
      header = parseSafetensorsHeader(json, tensorsEnd, context.name ?? 'safetensors');
    } catch (error) {
      const message = (error as Error).message.replace(/ The file is corrupt or incomplete;.*$/, '');
      throw new FormatError(/truncated/.test(message) ? 'truncated' : 'corrupt', `safetensors: ${message}`);
    }
    const data = 8 + header.headerLength;
    const tensors = Object.entries(header.tensors).sort(([, left], [, right]) => left.data_offsets[0] - right.data_offsets[0]);
    for (const [name, info] of tensors) {
      context.signal?.throwIfAborted();
      const [begin, end] = info.data_offsets;
      if (end === begin) continue;
      const slice = sliceSource(source, data + begin, end - begin);
      yield { name, size: slice.size, source: slice, stream: () => sourceChunks(slice, context.signal) };
    }
    if (tensorsEnd < source.size) {
      const rest = sliceSource(source, tensorsEnd, source.size - tensorsEnd);
      yield { name: '(after the tensors)', size: rest.size, source: rest, stream: () => sourceChunks(rest, context.signal) };
    }
  },
};
