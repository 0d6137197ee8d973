/**
 * Safetensors header validation. Only the header is read (8 + N bytes); the tensor data is
 * checked for size, not content, so validating a 10 GiB shard costs one small read.
 *
 * The rules follow the reference implementation (huggingface/safetensors, `Metadata::validate`
 * and `read_metadata`): a little-endian u64 header length of at most 100 000 000 bytes, a UTF-8
 * JSON object, tensors whose `data_offsets` sorted by begin tile the data area from 0 with no
 * gap or overlap, each tensor's byte length equal to elements x bits(dtype) / 8, and a file that
 * ends exactly where the last tensor does.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { UsageError } from '../errors.js';

/** The reference implementation's bound (MAX_HEADER_SIZE); anything larger is corrupt. */
export const MAX_SAFETENSORS_HEADER_BYTES = 100_000_000;

/**
 * Bits per element of every dtype the reference implementation knows (`Dtype::bitsize`).
 * Sub-byte dtypes (F4, F6_*) are packed; a tensor whose total bit count is not a whole number
 * of bytes is rejected, as the reference implementation does (`MisalignedSlice`), rather than
 * rounded up.
 */
export const SAFETENSORS_DTYPE_BITS = {
  BOOL: 8,
  F4: 4,
  F6_E2M3: 6,
  F6_E3M2: 6,
  U8: 8,
  I8: 8,
  F8_E5M2: 8,
  F8_E4M3: 8,
  F8_E8M0: 8,
  I16: 16,
  U16: 16,
  F16: 16,
  BF16: 16,
  I32: 32,
  U32: 32,
  F32: 32,
  C64: 64,
  F64: 64,
  I64: 64,
  U64: 64,
} as const;
export type SafetensorsDtype = keyof typeof SAFETENSORS_DTYPE_BITS;

/** One tensor's entry in a safetensors header. */
export interface SafetensorsTensorInfo {
  dtype: string;
  shape: number[];
  /** [begin, end) relative to the start of the data area (after the 8 + N header bytes). */
  data_offsets: [number, number];
}

/** A validated safetensors header. */
export interface SafetensorsHeader {
  /** N: the JSON header's length in bytes (the file starts with 8 + N header bytes). */
  headerLength: number;
  /** Bytes of tensor data after the header: the last tensor's end offset. */
  dataLength: number;
  tensors: Record<string, SafetensorsTensorInfo>;
  /** The optional `__metadata__` string map (e.g. `{ format: 'pt' }`). */
  metadata?: Record<string, string>;
}

function invalid(displayPath: string, problem: string): UsageError {
  return new UsageError(
    `Invalid safetensors file ${displayPath}: ${problem}. The file is corrupt or incomplete; download or export it again.`,
  );
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isNonNegativeInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/** Bytes a tensor of `dtype` and `shape` occupies, or a reason it cannot be stored. */
export function tensorByteLength(dtype: SafetensorsDtype, shape: readonly number[]): bigint | 'misaligned' {
  // BigInt: a hostile shape can overflow doubles long before it overflows the check.
  let elements = 1n;
  for (const dimension of shape) elements *= BigInt(dimension);
  const bits = elements * BigInt(SAFETENSORS_DTYPE_BITS[dtype]);
  if (bits % 8n !== 0n) return 'misaligned';
  return bits / 8n;
}

/**
 * Validates a header buffer (the N bytes after the 8-byte length) against the whole file's size.
 * Pure: used for files on disk, for media verification and for fuzzing.
 * @param headerJson the N header bytes (UTF-8 JSON, possibly space-padded)
 * @param fileSize the size of the whole file in bytes
 * @param displayPath the path to name in error messages
 * @throws UsageError naming `displayPath` and the first problem found
 */
export function parseSafetensorsHeader(headerJson: Buffer, fileSize: number, displayPath: string): SafetensorsHeader {
  const headerLength = headerJson.length;
  if (headerLength + 8 > fileSize) {
    throw invalid(displayPath, `the header is ${headerLength} bytes but the file is only ${fileSize} bytes`);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(headerJson);
  } catch {
    throw invalid(displayPath, 'the header is not valid UTF-8');
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw invalid(displayPath, `the header is not valid JSON (${(error as Error).message})`);
  }
  if (!isPlainObject(parsed)) throw invalid(displayPath, 'the header is not a JSON object');

  const tensors: Record<string, SafetensorsTensorInfo> = {};
  let metadata: Record<string, string> | undefined;
  const spans: { name: string; begin: number; end: number }[] = [];

  for (const [name, value] of Object.entries(parsed)) {
    if (name === '__metadata__') {
      if (!isPlainObject(value) || !Object.values(value).every((entry) => typeof entry === 'string')) {
        throw invalid(displayPath, '__metadata__ must be an object of string values');
      }
      metadata = value as Record<string, string>;
      continue;
    }
    if (!isPlainObject(value)) throw invalid(displayPath, `tensor "${name}" is not an object`);
    const { dtype, shape, data_offsets: offsets } = value;
    if (typeof dtype !== 'string' || !Object.hasOwn(SAFETENSORS_DTYPE_BITS, dtype)) {
      throw invalid(displayPath, `tensor "${name}" has unknown dtype ${JSON.stringify(dtype)}`);
    }
    if (!Array.isArray(shape) || !shape.every(isNonNegativeInteger)) {
      throw invalid(displayPath, `tensor "${name}" has an invalid shape ${JSON.stringify(shape)} (expected non-negative integers)`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegativeInteger)) {
      throw invalid(displayPath, `tensor "${name}" has invalid data_offsets ${JSON.stringify(offsets)} (expected [begin, end])`);
    }
    const [begin, end] = offsets as [number, number];
    if (end < begin) throw invalid(displayPath, `tensor "${name}" ends before it begins (data_offsets [${begin}, ${end}])`);
    const expected = tensorByteLength(dtype as SafetensorsDtype, shape as number[]);
    if (expected === 'misaligned') {
      throw invalid(displayPath, `tensor "${name}" (${dtype} ${JSON.stringify(shape)}) does not fill a whole number of bytes`);
    }
    if (BigInt(end - begin) !== expected) {
      throw invalid(
        displayPath,
        `tensor "${name}" (${dtype} ${JSON.stringify(shape)}) needs ${expected} bytes but data_offsets [${begin}, ${end}] span ${end - begin}`,
      );
    }
    tensors[name] = { dtype, shape: shape as number[], data_offsets: [begin, end] };
    spans.push({ name, begin, end });
  }

  spans.sort((left, right) => left.begin - right.begin || left.end - right.end);
  let cursor = 0;
  for (const span of spans) {
    if (span.begin > cursor) {
      throw invalid(displayPath, `gap in tensor data: bytes ${cursor}..${span.begin} before tensor "${span.name}" belong to no tensor`);
    }
    if (span.begin < cursor) {
      throw invalid(displayPath, `tensor "${span.name}" overlaps the previous tensor (begins at ${span.begin}, previous ends at ${cursor})`);
    }
    cursor = span.end;
  }
  const dataLength = cursor;
  const expectedSize = 8 + headerLength + dataLength;
  if (fileSize !== expectedSize) {
    throw invalid(
      displayPath,
      fileSize < expectedSize
        ? `the file is truncated: ${fileSize} bytes, but its header describes ${expectedSize}`
        : `the file has ${fileSize - expectedSize} unexpected trailing bytes: ${fileSize} bytes, but its header describes ${expectedSize}`,
    );
  }
  return metadata === undefined ? { headerLength, dataLength, tensors } : { headerLength, dataLength, tensors, metadata };
}

/**
 * Reads only the header of a safetensors file (8 + N bytes) and validates it against the file size.
 * @param file the file to read
 * @param displayPath the path to name in error messages (default: `file`)
 * @throws UsageError naming the file and the problem
 */
export async function readSafetensorsHeader(file: string, displayPath: string = file): Promise<SafetensorsHeader> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch (error) {
    throw new UsageError(`Cannot read safetensors file ${displayPath}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}.`, [], {
      cause: error,
    });
  }
  try {
    const { size } = await handle.stat();
    if (size < 8) throw invalid(displayPath, `the file is ${size} bytes, too short to hold the 8-byte header length`);
    const lengthBytes = Buffer.alloc(8);
    await readFully(handle, lengthBytes, 0, displayPath);
    const declared = lengthBytes.readBigUInt64LE(0);
    if (declared > BigInt(MAX_SAFETENSORS_HEADER_BYTES)) {
      throw invalid(displayPath, `the header length field says ${declared} bytes, above the ${MAX_SAFETENSORS_HEADER_BYTES}-byte limit`);
    }
    const headerLength = Number(declared);
    if (headerLength + 8 > size) {
      throw invalid(displayPath, `the header length field says ${headerLength} bytes but the file is only ${size} bytes`);
    }
    const header = Buffer.alloc(headerLength);
    await readFully(handle, header, 8, displayPath);
    return parseSafetensorsHeader(header, size, displayPath);
  } finally {
    await handle.close();
  }
}

async function readFully(handle: FileHandle, buffer: Buffer, position: number, displayPath: string): Promise<void> {
  let done = 0;
  while (done < buffer.length) {
    const { bytesRead } = await handle.read(buffer, done, buffer.length - done, position + done);
    if (bytesRead === 0) throw invalid(displayPath, `the file ended early, at byte ${position + done}, while reading the header`);
    done += bytesRead;
  }
}
