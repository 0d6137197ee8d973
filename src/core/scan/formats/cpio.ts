/**
 * cpio archives as the Linux kernel unpacks an initramfs (init/initramfs.c): a sequence of archives,
 * each raw or compressed, back to back with zero padding between them, each ending at `TRAILER!!!`.
 * A NixOS or Debian initrd is typically an uncompressed early cpio (CPU microcode) followed by a zstd
 * or xz compressed main cpio; custom images leak keys into the latter (`boot.initrd.secrets`,
 * `boot.initrd.network.ssh.hostKeys`). Members are the regular files, named absolute
 * (`/etc/ssh/ssh_host_ed25519_key`); directories, symlinks and devices are not members.
 *
 * Formats: newc (`070701`) and crc (`070702`), which the kernel reads, and odc (`070707`, old portable
 * ASCII), which it refuses but `cpio -H odc` writes: reading more than the kernel does can only show
 * more bytes. Compressed segments are decompressed with `single: true` and reading goes on where each
 * ended (`consumed`), as the kernel does. Inside a compressed segment, more archives and zero padding
 * may follow one another; anything else there is junk (FormatError 'corrupt').
 *
 * newc hard links: the kernel writes a file's bytes only with the last of its names (the others have
 * size 0 and nlink > 1). The bytes are yielded under that name and, when small enough to hold, again
 * under every earlier name, so rules that go by file name see each of them.
 */
import { detectCompression, decompressStream, type Compression } from '../decompress/index.js';
import { sliceSource, sourceChunks } from './byte-source.js';
import { FormatError, type ByteSource, type FormatContext, type FormatHandler, type Member } from './types.js';

const NEWC_HEADER = 110;
const ODC_HEADER = 76;
const MAX_NAME = 64 * 1024;
/** Hard-linked files up to this size are held in memory to be yielded under each of their names. */
const MAX_LINK_COPY = 16 * 1024 * 1024;
const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const ZERO = 0x00;
const DIGIT_ZERO = 0x30;

function truncated(message: string): FormatError {
  return new FormatError('truncated', `cpio: ${message}`);
}

function corrupt(message: string): FormatError {
  return new FormatError('corrupt', `cpio: ${message}`);
}

/** Pull-based reading of a byte stream with a position, for headers, names and member bytes. */
class ByteReader {
  private readonly chunks: Buffer[] = [];
  private buffered = 0;
  private ended = false;
  /** Bytes taken (or skipped) so far. */
  position = 0;

  constructor(private readonly iterator: AsyncIterator<Buffer>) {}

  private async more(): Promise<boolean> {
    if (this.ended) return false;
    for (;;) {
      const next = await this.iterator.next();
      if (next.done) {
        this.ended = true;
        return false;
      }
      if (next.value.length === 0) continue;
      this.chunks.push(next.value);
      this.buffered += next.value.length;
      return true;
    }
  }

  /** True when at least `length` bytes are buffered (false at the end of the stream). */
  async ensure(length: number): Promise<boolean> {
    while (this.buffered < length) if (!(await this.more())) return false;
    return true;
  }

  /** The next byte without taking it; undefined at the end. */
  async peek(): Promise<number | undefined> {
    return (await this.ensure(1)) ? this.chunks[0]![0] : undefined;
  }

  /** Exactly `length` bytes, or FormatError('truncated') naming `what`. */
  async take(length: number, what: string): Promise<Buffer> {
    if (!(await this.ensure(length))) throw truncated(`${what} is cut short at byte ${this.position + this.buffered}`);
    const first = this.chunks[0]!;
    let out: Buffer;
    if (first.length >= length) {
      out = first.subarray(0, length);
      this.drop(length);
    } else {
      out = Buffer.allocUnsafe(length);
      let filled = 0;
      while (filled < length) {
        const chunk = this.chunks[0]!;
        const count = Math.min(chunk.length, length - filled);
        chunk.copy(out, filled, 0, count);
        filled += count;
        this.drop(count);
      }
    }
    return out;
  }

  /** `length` bytes in the pieces they arrive in. */
  async *stream(length: number, what: string, signal: AbortSignal | undefined): AsyncGenerator<Buffer> {
    let left = length;
    while (left > 0) {
      signal?.throwIfAborted();
      if (!(await this.ensure(1))) throw truncated(`${what} is cut short at byte ${this.position}`);
      const chunk = this.chunks[0]!;
      const count = Math.min(chunk.length, left);
      const out = chunk.subarray(0, count);
      this.drop(count);
      left -= count;
      yield out;
    }
  }

  async skip(length: number, what: string): Promise<void> {
    let left = length;
    while (left > 0) {
      if (!(await this.ensure(1))) throw truncated(`${what} is cut short at byte ${this.position}`);
      const count = Math.min(this.chunks[0]!.length, left);
      this.drop(count);
      left -= count;
    }
  }

  /** Skips zero bytes (the padding between archives); false when the stream ends. */
  async skipZeros(): Promise<boolean> {
    for (;;) {
      if (!(await this.ensure(1))) return false;
      const chunk = this.chunks[0]!;
      let index = 0;
      while (index < chunk.length && chunk[index] === ZERO) index++;
      if (index < chunk.length) {
        this.drop(index);
        return true;
      }
      this.drop(chunk.length);
    }
  }

  private drop(count: number): void {
    const first = this.chunks[0]!;
    if (count === first.length) this.chunks.shift();
    else this.chunks[0] = first.subarray(count);
    this.buffered -= count;
    this.position += count;
  }
}

interface Entry {
  format: 'newc' | 'odc';
  mode: number;
  nlink: number;
  size: number;
  /** Identifies an inode for hard links: device and inode number. */
  link: string;
  name: string;
}

const HEX = /^[0-9a-fA-F]{8}$/;
const OCTAL = /^[0-7]+$/;

function hexField(header: Buffer, index: number): number {
  const text = header.toString('latin1', 6 + index * 8, 14 + index * 8);
  if (!HEX.test(text)) throw corrupt(`a newc header has a field that is not hex (${JSON.stringify(text)})`);
  return Number.parseInt(text, 16);
}

function octalField(header: Buffer, start: number, length: number): number {
  const text = header.toString('latin1', start, start + length);
  if (!OCTAL.test(text)) throw corrupt(`an odc header has a field that is not octal (${JSON.stringify(text)})`);
  return Number.parseInt(text, 8);
}

/** Reads one header and name; the reader is left at the entry's data. */
async function readEntry(reader: ByteReader, start: number): Promise<Entry> {
  const magic = (await reader.take(6, 'a cpio header')).toString('latin1');
  if (magic === '070701' || magic === '070702') {
    const rest = await reader.take(NEWC_HEADER - 6, 'a cpio header');
    const header = Buffer.concat([Buffer.from(magic, 'latin1'), rest]);
    const nameSize = hexField(header, 11);
    if (nameSize === 0 || nameSize > MAX_NAME) throw corrupt(`a name of ${nameSize} bytes`);
    const name = await reader.take(nameSize, 'a cpio name');
    // Header and name are padded to a multiple of 4 from the start of the entry.
    await reader.skip((4 - ((reader.position - start) % 4)) % 4, 'cpio padding');
    return {
      format: 'newc',
      mode: hexField(header, 1),
      nlink: hexField(header, 4),
      size: hexField(header, 6),
      link: `${hexField(header, 7)}:${hexField(header, 8)}:${hexField(header, 0)}`,
      name: cString(name),
    };
  }
  if (magic === '070707') {
    const rest = await reader.take(ODC_HEADER - 6, 'a cpio header');
    const header = Buffer.concat([Buffer.from(magic, 'latin1'), rest]);
    const nameSize = octalField(header, 59, 6);
    if (nameSize === 0 || nameSize > MAX_NAME) throw corrupt(`a name of ${nameSize} bytes`);
    const name = await reader.take(nameSize, 'a cpio name');
    return {
      format: 'odc',
      mode: octalField(header, 18, 6),
      nlink: octalField(header, 42, 6),
      size: octalField(header, 65, 11),
      link: `${octalField(header, 6, 6)}:${octalField(header, 12, 6)}`,
      name: cString(name),
    };
  }
  throw corrupt(`no cpio magic at byte ${start} (${JSON.stringify(magic)})`);
}

function cString(bytes: Buffer): string {
  const end = bytes.indexOf(0);
  return bytes.toString('utf8', 0, end < 0 ? bytes.length : end);
}

/** `./etc/x`, `/etc/x` and `etc/x` all become `/etc/x`; undefined for the root itself. */
function absolute(name: string): string | undefined {
  const parts = name.split('/').filter((part) => part !== '' && part !== '.');
  return parts.length === 0 ? undefined : `/${parts.join('/')}`;
}

function bufferMember(name: string, bytes: Buffer): Member {
  return {
    name,
    size: bytes.length,
    stream: async function* stream() {
      if (bytes.length > 0) yield bytes;
    },
  };
}

/**
 * Every regular file of the archives that follow one another in `reader`, up to the first byte that
 * is neither zero padding nor a cpio header (returned as 'other') or the end of the stream ('end').
 */
async function* archives(reader: ByteReader, context: FormatContext, outcome: { end: 'end' | 'other' }, raw?: { input: ByteSource; base: number }): AsyncGenerator<Member> {
  // Names waiting for the bytes of their inode (newc hard links), per archive as in the kernel.
  let links = new Map<string, string[]>();
  const flushLinks = function* flush(): Generator<Member> {
    // Names whose bytes never came: the kernel leaves them empty files.
    for (const names of links.values()) for (const name of names) yield bufferMember(name, Buffer.alloc(0));
    links = new Map();
  };
  for (;;) {
    context.signal?.throwIfAborted();
    if (!(await reader.skipZeros())) {
      yield* flushLinks();
      outcome.end = 'end';
      return;
    }
    if ((await reader.peek()) !== DIGIT_ZERO) {
      yield* flushLinks();
      outcome.end = 'other';
      return;
    }
    const start = reader.position;
    const entry = await readEntry(reader, start);
    const padding = entry.format === 'newc' ? (4 - (entry.size % 4)) % 4 : 0;
    if (entry.name === 'TRAILER!!!') {
      await reader.skip(entry.size + padding, 'the cpio trailer');
      yield* flushLinks();
      continue;
    }
    const name = absolute(entry.name);
    const regular = (entry.mode & S_IFMT) === S_IFREG;
    if (!regular || name === undefined) {
      await reader.skip(entry.size + padding, `the data of ${entry.name}`);
      continue;
    }
    if (entry.nlink > 1 && entry.size === 0) {
      const names = links.get(entry.link) ?? [];
      names.push(name);
      links.set(entry.link, names);
      continue;
    }
    const aliases = entry.nlink > 1 ? links.get(entry.link) : undefined;
    if (aliases !== undefined) links.delete(entry.link);
    if (aliases !== undefined && entry.size <= MAX_LINK_COPY) {
      // Held once, yielded under every name of the inode.
      const bytes = await reader.take(entry.size, `the data of ${name}`);
      await reader.skip(padding, 'cpio padding');
      const copy = Buffer.from(bytes);
      for (const alias of [...aliases, name]) yield bufferMember(alias, copy);
      continue;
    }
    for (const alias of aliases ?? []) context.problem(alias, `hard link to ${name}: its bytes are scanned under that name`);
    let remaining = entry.size;
    let streamed = false;
    yield {
      name,
      size: entry.size,
      // Bytes stored uncompressed are addressable: a nested image is then read in place.
      ...(raw !== undefined ? { source: sliceSource(raw.input, raw.base + reader.position, entry.size) } : {}),
      stream: () => {
        if (streamed) throw new Error(`cpio: ${name} was already streamed`);
        streamed = true;
        return (async function* stream() {
          for await (const chunk of reader.stream(remaining, `the data of ${name}`, context.signal)) {
            remaining -= chunk.length;
            yield chunk;
          }
        })();
      },
    };
    // Whatever of the member the consumer did not read.
    await reader.skip(remaining + padding, `the data of ${name}`);
    remaining = 0;
  }
}

/** The compressions the kernel's decompress_method() knows (and lz4 frames, which it does not need). */
function segmentCompression(head: Buffer): Compression | undefined {
  const kind = detectCompression(head);
  if (kind !== undefined && kind !== 'zlib') return kind;
  if (head.length >= 3 && head[0] === 0x5d && head[1] === 0x00 && head[2] === 0x00) return 'lzma';
  return undefined;
}

function isSource(input: ByteSource | AsyncIterable<Buffer>): input is ByteSource {
  return typeof (input as ByteSource).read === 'function';
}

async function* cpioMembers(input: ByteSource | AsyncIterable<Buffer>, context: FormatContext): AsyncGenerator<Member> {
  if (!isSource(input)) throw new FormatError('unsupported', 'cpio: needs random access');
  const outcome: { end: 'end' | 'other' } = { end: 'end' };
  for (let offset = 0; offset < input.size; ) {
    const raw = new ByteReader(sourceChunks(sliceSource(input, offset, input.size - offset), context.signal)[Symbol.asyncIterator]());
    yield* archives(raw, context, outcome, { input, base: offset });
    offset += raw.position;
    if (outcome.end === 'end') return;
    const head = await input.read(offset, 16);
    const kind = segmentCompression(head);
    if (kind === undefined) throw corrupt(`byte ${offset} starts neither a cpio archive nor a compressed one`);
    const segment = decompressStream(kind, sourceChunks(sliceSource(input, offset, input.size - offset), context.signal), {
      single: true,
      ...(context.signal ? { signal: context.signal } : {}),
    });
    const inner = new ByteReader(segment[Symbol.asyncIterator]());
    yield* archives(inner, context, outcome);
    if (outcome.end === 'other') throw corrupt(`junk inside the ${kind} segment at byte ${offset} (after ${inner.position} decompressed bytes)`);
    if (segment.consumed <= 0) throw corrupt(`the ${kind} segment at byte ${offset} is empty`);
    offset += segment.consumed;
  }
}

/**
 * An initramfs: cpio archives (newc, crc, odc), raw or compressed, concatenated with zero padding, as
 * the kernel reads them. Detected by a cpio magic at byte 0; a file that starts compressed is first
 * decompressed by the walker and then detected here.
 */
export const cpio: FormatHandler = {
  name: 'cpio',
  access: 'random',
  detect(head: Buffer): boolean {
    if (head.length < 6) return false;
    const magic = head.toString('latin1', 0, 6);
    return magic === '070701' || magic === '070702' || magic === '070707';
  },
  members: cpioMembers,
};
