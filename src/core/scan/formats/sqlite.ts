/**
 * An SQLite 3 database, read as the tables it holds. In the file a row's values sit glued to each
 * other (`...alice@example.orgghp_...`), so the token rules' word boundaries fail on the raw bytes;
 * here every table b-tree named in sqlite_master (page 1) is walked, overflow pages included, and
 * each table is one member, `(table NAME)`, whose bytes are its values as text, one per line. Text
 * is given as UTF-8 (UTF-16 databases converted), blobs as they are, numbers and NULLs left out.
 * Deleted rows and free pages are not members: the flat scan of the file itself still sees them.
 */
import { FormatError, type ByteSource, type FormatContext, type FormatHandler, type Member } from './types.js';

const MAGIC = Buffer.from('SQLite format 3\0', 'latin1');
/** Bytes of text a table member hands on at once. */
const PIECE = 1024 * 1024;
/** B-trees deeper than this are not an SQLite database's (a loop in a corrupt one). */
const MAX_DEPTH = 64;

interface Layout {
  source: ByteSource;
  pageSize: number;
  usable: number;
  pages: number;
  encoding: 1 | 2 | 3;
  signal: AbortSignal | undefined;
}

function corrupt(message: string): FormatError {
  return new FormatError('corrupt', `sqlite: ${message}`);
}

async function readPage(layout: Layout, page: number): Promise<Buffer> {
  if (!Number.isInteger(page) || page < 1 || page > layout.pages) throw corrupt(`page number ${page} out of range (1-${layout.pages})`);
  const bytes = await layout.source.read((page - 1) * layout.pageSize, layout.pageSize);
  if (bytes.length < layout.pageSize) throw new FormatError('truncated', `sqlite: page ${page} lies past the end of the file`);
  return bytes;
}

/** A varint at `offset`: its value and length (1-9 bytes, big-endian 7-bit groups, the ninth byte whole). */
function varint(bytes: Buffer, offset: number): [number, number] {
  let value = 0;
  for (let index = 0; index < 9; index++) {
    if (offset + index >= bytes.length) throw corrupt('a varint runs past its page');
    const byte = bytes[offset + index]!;
    if (index === 8) return [value * 256 + byte, 9];
    value = value * 128 + (byte & 0x7f);
    if (!(byte & 0x80)) return [value, index + 1];
  }
  throw corrupt('bad varint');
}

/** The bytes of one cell's payload, in order: the part on the page, then its overflow chain. */
class Payload {
  private pieces: Buffer[];
  private next: number;
  private left: number;
  private readonly seen = new Set<number>();

  constructor(
    private readonly layout: Layout,
    local: Buffer,
    overflow: number,
    total: number,
  ) {
    this.pieces = [local];
    this.next = overflow;
    this.left = total - local.length;
  }

  /** The next piece (up to one page), or undefined when the payload is read. */
  private async more(): Promise<boolean> {
    if (this.left <= 0) return false;
    if (this.next === 0) throw corrupt('an overflow chain ends before its payload');
    if (this.seen.has(this.next)) throw corrupt(`overflow page ${this.next} is in its chain twice`);
    this.seen.add(this.next);
    if (this.seen.size % 256 === 0) this.layout.signal?.throwIfAborted();
    const page = await readPage(this.layout, this.next);
    this.next = page.readUInt32BE(0);
    const piece = page.subarray(4, 4 + Math.min(this.left, this.layout.usable - 4));
    this.left -= piece.length;
    this.pieces.push(piece);
    return true;
  }

  /** Exactly `length` bytes (small: a record header, a number). */
  async take(length: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    let have = 0;
    while (have < length) {
      if (this.pieces.length === 0 && !(await this.more())) throw corrupt('a record is longer than its payload');
      const piece = this.pieces[0]!;
      const take = Math.min(piece.length, length - have);
      parts.push(piece.subarray(0, take));
      have += take;
      if (take === piece.length) this.pieces.shift();
      else this.pieces[0] = piece.subarray(take);
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, length);
  }

  /** `length` bytes as they come, a page at a time (a value of any size, never whole in memory). */
  async *pipe(length: number): AsyncGenerator<Buffer> {
    for (let left = length; left > 0; ) {
      if (this.pieces.length === 0 && !(await this.more())) throw corrupt('a value is longer than its payload');
      const piece = this.pieces[0]!;
      const take = Math.min(piece.length, left);
      yield piece.subarray(0, take);
      left -= take;
      if (take === piece.length) this.pieces.shift();
      else this.pieces[0] = piece.subarray(take);
    }
  }
}

/** Bytes a value of serial type `type` takes in a record. */
function serialSize(type: number): number {
  if (type < 12) {
    const sizes = [0, 1, 2, 3, 4, 6, 8, 8, 0, 0, -1, -1];
    const size = sizes[type]!;
    if (size < 0) throw corrupt(`reserved serial type ${type}`);
    return size;
  }
  return Math.floor((type - 12) / 2);
}

type Value = { kind: 'text' | 'blob'; bytes: AsyncIterable<Buffer> } | { kind: 'number'; value: number } | { kind: 'null' };

/** The values of one record, in column order; each value's bytes must be read before the next. */
async function* record(payload: Payload): AsyncGenerator<Value> {
  const first = await payload.take(1);
  // The header's size is a varint counting itself; records of sane tables keep it under a few KiB.
  let headerSize = first[0]!;
  let headerBytes: Buffer;
  if (headerSize & 0x80) {
    const more = await payload.take(8);
    const [size, length] = varint(Buffer.concat([first, more]), 0);
    headerSize = size;
    if (headerSize < 9 || headerSize > 1 << 20) throw corrupt(`record header of ${headerSize} bytes`);
    headerBytes = Buffer.concat([more.subarray(length - 1), await payload.take(headerSize - 9)]);
  } else {
    if (headerSize < 1) throw corrupt('empty record header');
    headerBytes = await payload.take(headerSize - 1);
  }
  const types: number[] = [];
  for (let offset = 0; offset < headerBytes.length; ) {
    const [type, length] = varint(headerBytes, offset);
    types.push(type);
    offset += length;
  }
  for (const type of types) {
    const size = serialSize(type);
    if (type >= 12) {
      yield { kind: type % 2 === 0 ? 'blob' : 'text', bytes: payload.pipe(size) };
    } else if (type === 0) {
      yield { kind: 'null' };
    } else if (type === 8 || type === 9) {
      yield { kind: 'number', value: type - 8 };
    } else {
      const bytes = await payload.take(size);
      yield { kind: 'number', value: type === 7 ? bytes.readDoubleBE(0) : Number(bytes.readIntBE(0, Math.min(size, 6))) };
    }
  }
}

/** One cell's payload: its size and where it is (local bytes, first overflow page). */
function cellPayload(layout: Layout, page: Buffer, offset: number, index: boolean): Payload {
  const [total, length] = varint(page, offset);
  let at = offset + length;
  if (!index) at += varint(page, at)[1]; // the rowid
  const usable = layout.usable;
  const maxLocal = index ? Math.floor(((usable - 12) * 64) / 255) - 23 : usable - 35;
  let local = total;
  if (total > maxLocal) {
    const minLocal = Math.floor(((usable - 12) * 32) / 255) - 23;
    const k = minLocal + ((total - minLocal) % (usable - 4));
    local = k <= maxLocal ? k : minLocal;
  }
  if (at + local + (local < total ? 4 : 0) > usable) throw corrupt('a cell runs past its page');
  const overflow = local < total ? page.readUInt32BE(at + local) : 0;
  return new Payload(layout, page.subarray(at, at + local), overflow, total);
}

/**
 * The payloads of a b-tree's cells in key order, depth first (table and index b-trees: a WITHOUT
 * ROWID table is stored as an index). Pages met twice mean a loop: corrupt.
 */
async function* walkTree(layout: Layout, root: number, seen: Set<number>, depth = 0): AsyncGenerator<Payload> {
  if (depth > MAX_DEPTH) throw corrupt(`b-tree deeper than ${MAX_DEPTH} levels`);
  if (seen.has(root)) throw corrupt(`page ${root} is in a b-tree twice`);
  seen.add(root);
  if (seen.size % 256 === 0) layout.signal?.throwIfAborted();
  const page = await readPage(layout, root);
  const base = root === 1 ? 100 : 0;
  const kind = page[base]!;
  if (kind !== 0x02 && kind !== 0x05 && kind !== 0x0a && kind !== 0x0d) throw corrupt(`page ${root} is not a b-tree page (type ${kind})`);
  const interior = kind === 0x02 || kind === 0x05;
  const index = kind === 0x02 || kind === 0x0a;
  const cells = page.readUInt16BE(base + 3);
  const pointers = base + (interior ? 12 : 8);
  if (pointers + cells * 2 > layout.usable) throw corrupt(`page ${root} claims ${cells} cells`);
  for (let cell = 0; cell < cells; cell++) {
    const offset = page.readUInt16BE(pointers + cell * 2);
    if (offset < pointers + cells * 2 || offset >= layout.usable) throw corrupt(`page ${root}: cell ${cell} points outside its page`);
    if (interior) {
      yield* walkTree(layout, page.readUInt32BE(offset), seen, depth + 1);
      if (index) yield cellPayload(layout, page, offset + 4, true);
    } else {
      yield cellPayload(layout, page, offset, index);
    }
  }
  if (interior) yield* walkTree(layout, page.readUInt32BE(base + 8), seen, depth + 1);
}

/** A text value as UTF-8 (a UTF-16 database's converted, small values only: large ones as they are). */
async function* textBytes(layout: Layout, bytes: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  if (layout.encoding === 1) {
    yield* bytes;
    return;
  }
  for await (const piece of bytes) {
    const even = Buffer.from(piece.subarray(0, piece.length & ~1));
    if (layout.encoding === 3) even.swap16();
    yield Buffer.from(even.toString('utf16le'), 'utf8');
  }
}

/** A table's values as lines of text, gathered into pieces of about PIECE bytes. */
async function* tableText(layout: Layout, root: number): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let length = 0;
  const newline = Buffer.from('\n');
  for await (const payload of walkTree(layout, root, new Set())) {
    for await (const value of record(payload)) {
      if (value.kind !== 'text' && value.kind !== 'blob') continue;
      const bytes = value.kind === 'text' ? textBytes(layout, value.bytes) : value.bytes;
      for await (const piece of bytes) {
        // Pieces are views of pages read for this cell: copied when held past it.
        parts.push(Buffer.from(piece));
        length += piece.length;
        if (length >= PIECE) {
          yield Buffer.concat(parts, length);
          parts = [];
          length = 0;
        }
      }
      parts.push(newline);
      length += 1;
    }
    // Rows are separated by a blank line.
    parts.push(newline);
    length += 1;
  }
  if (length > 0) yield Buffer.concat(parts, length);
}

async function valueText(layout: Layout, value: Value): Promise<string | number | undefined> {
  if (value.kind === 'number') return value.value;
  if (value.kind === 'null') return undefined;
  const parts: Buffer[] = [];
  let length = 0;
  for await (const piece of value.kind === 'text' ? textBytes(layout, value.bytes) : value.bytes) {
    length += piece.length;
    // Schema rows are short; a long one is read through but kept only up to 64 KiB.
    if (length <= 65536) parts.push(Buffer.from(piece));
  }
  return Buffer.concat(parts).toString('utf8');
}

export const sqlite: FormatHandler = {
  name: 'sqlite',
  access: 'random',
  detect(head) {
    return head.length >= 100 && head[0] === 0x53 && head.compare(MAGIC, 0, 16, 0, 16) === 0;
  },
  async *members(input: ByteSource | AsyncIterable<Buffer>, context: FormatContext): AsyncGenerator<Member> {
    const source = input as ByteSource;
    if (typeof source.read !== 'function') throw new FormatError('unsupported', 'sqlite: needs random access');
    const header = await source.read(0, 100);
    if (header.length < 100) throw new FormatError('truncated', 'sqlite: the 100-byte header is cut short');
    if (header.compare(MAGIC, 0, 16, 0, 16) !== 0) throw corrupt('no SQLite signature');
    const rawSize = header.readUInt16BE(16);
    const pageSize = rawSize === 1 ? 65536 : rawSize;
    if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) throw corrupt(`page size ${rawSize}`);
    const reserved = header[20]!;
    const encoding = header.readUInt32BE(56) || 1;
    if (encoding !== 1 && encoding !== 2 && encoding !== 3) throw corrupt(`text encoding ${encoding}`);
    // The header's page count is valid only when written by SQLite 3.7.0+ (its change counters agree); else the file's size says.
    const counted = header.readUInt32BE(28);
    const pages = counted > 0 && header.readUInt32BE(24) === header.readUInt32BE(92) ? counted : Math.floor(source.size / pageSize);
    if (pages * pageSize > source.size) throw new FormatError('truncated', `sqlite: ${pages} pages of ${pageSize} bytes, but the file has ${source.size} bytes`);
    const layout: Layout = { source, pageSize, usable: pageSize - reserved, pages, encoding, signal: context.signal };
    if (layout.usable < 480) throw corrupt(`usable page size ${layout.usable}`);

    const tables: { name: string; root: number }[] = [];
    for await (const payload of walkTree(layout, 1, new Set())) {
      const columns: (string | number | undefined)[] = [];
      for await (const value of record(payload)) columns.push(await valueText(layout, value));
      const [type, name, , root] = columns;
      if (type === 'table' && typeof name === 'string' && typeof root === 'number' && root > 0) tables.push({ name, root });
    }
    for (const table of tables) {
      context.signal?.throwIfAborted();
      yield { name: `(table ${table.name})`, stream: () => tableText(layout, table.root) };
    }
  },
};
