/**
 * SquashFS 4.0, read as a container: a NixOS installer ISO carries the whole Nix store as
 * `nix-store.squashfs`, and a custom image can leak a host key into it (`environment.etc."…".source =
 * ./key`). Members are the regular files under absolute paths (`/nix/store/…-etc/etc/ssh/…`); symlinks,
 * devices, fifos and sockets are not members; xattrs, ids and the export table are not needed.
 *
 * Layout (squashfs-tools' squashfs_fs.h): a 96-byte superblock; metadata blocks (8 KiB uncompressed,
 * each behind a 2-byte header whose top bit says "stored uncompressed") hold the inode and directory
 * tables and the fragment entries; file data are blocks of `block_size` whose 32-bit size word has
 * bit 24 as "stored uncompressed" and 0 as a sparse block; a file's tail may sit in a shared fragment.
 *
 * Speed: data blocks are decompressed on every core through the decompress block pool, with a bounded
 * read-ahead across member boundaries (so a run of small files keeps the cores busy too); decompressed
 * metadata blocks and fragments live in small LRU caches. Memory stays flat: at most a bounded number
 * of blocks is in flight, block lists are read in pieces, directories are walked with one cursor per level.
 */
import { availableParallelism } from 'node:os';
import { createBlockPool, decompressBlock } from '../decompress/index.js';
import { FormatError, type BlockDecoder, type ByteSource, type FormatContext, type FormatHandler, type JobPart, type Member, type MemberJob } from './types.js';

type BlockKind = 'zlib' | 'lzma' | 'lzo' | 'xz' | 'lz4-block' | 'zstd';

const COMPRESSORS: Record<number, BlockKind> = { 1: 'zlib', 2: 'lzma', 3: 'lzo', 4: 'xz', 5: 'lz4-block', 6: 'zstd' };

const SUPERBLOCK_SIZE = 96;
const METADATA_SIZE = 8192;
const NO_FRAGMENT = 0xffffffff;
const DATA_UNCOMPRESSED = 1 << 24;
const DATA_SIZE_MASK = DATA_UNCOMPRESSED - 1;
const METADATA_CACHE_BLOCKS = 512; // 4 MiB of decompressed tables
const FRAGMENT_CACHE = 8;
const MAX_DEPTH = 1024;
const READAHEAD_FILES = 2048;
const READAHEAD_BYTES = 24 * 1024 * 1024;
const READ_WINDOW = 1024 * 1024;

const enum InodeType {
  Dir = 1,
  File = 2,
  ExtDir = 8,
  ExtFile = 9,
}

interface Superblock {
  inodeCount: number;
  blockSize: number;
  fragmentCount: number;
  kind: BlockKind;
  rootInode: bigint;
  bytesUsed: number;
  inodeTable: number;
  directoryTable: number;
  fragmentTable: number;
}

function corrupt(message: string): FormatError {
  return new FormatError('corrupt', `squashfs: ${message}`);
}

function safeNumber(value: bigint, what: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt(`${what} is out of range`);
  return Number(value);
}

/** Parses and checks the superblock; throws FormatError for anything that cannot be a readable image. */
function parseSuperblock(head: Buffer, sourceSize: number): Superblock {
  if (head.length < SUPERBLOCK_SIZE) throw new FormatError('truncated', 'squashfs: the superblock is cut short');
  if (head.readUInt32LE(0) !== 0x73717368) throw corrupt('no hsqs magic');
  const major = head.readUInt16LE(28);
  const minor = head.readUInt16LE(30);
  if (major !== 4 || minor !== 0) throw new FormatError('unsupported', `squashfs: version ${major}.${minor} is not supported (only 4.0)`);
  const compressor = head.readUInt16LE(20);
  const kind = COMPRESSORS[compressor];
  if (kind === undefined) throw new FormatError('unknown-compression', `squashfs: unknown compression id ${compressor}`);
  const blockSize = head.readUInt32LE(12);
  const blockLog = head.readUInt16LE(22);
  if (blockSize < 4096 || blockSize > 1 << 20 || blockSize !== 2 ** blockLog) throw corrupt(`block size ${blockSize} (log ${blockLog}) is invalid`);
  const bytesUsed = safeNumber(head.readBigUInt64LE(40), 'bytes_used');
  if (bytesUsed > sourceSize) throw new FormatError('truncated', `squashfs: the image says ${bytesUsed} bytes but only ${sourceSize} are there`);
  const table = (offset: number, what: string) => {
    const value = head.readBigUInt64LE(offset);
    if (value === 0xffffffffffffffffn) return -1;
    const at = safeNumber(value, what);
    if (at > bytesUsed) throw corrupt(`the ${what} starts past the end of the image`);
    return at;
  };
  const superblock: Superblock = {
    inodeCount: head.readUInt32LE(4),
    blockSize,
    fragmentCount: head.readUInt32LE(16),
    kind,
    rootInode: head.readBigUInt64LE(32),
    bytesUsed,
    inodeTable: table(64, 'inode table'),
    directoryTable: table(72, 'directory table'),
    fragmentTable: table(80, 'fragment table'),
  };
  if (superblock.inodeTable < SUPERBLOCK_SIZE || superblock.directoryTable < superblock.inodeTable) throw corrupt('the inode and directory tables are out of order');
  if (superblock.fragmentCount > 0 && superblock.fragmentTable < 0) throw corrupt('fragments without a fragment table');
  return superblock;
}

interface MetadataBlock {
  data: Buffer;
  next: number;
}

/** Decompressed metadata blocks by disk position, in a bounded LRU (a Map keeps insertion order). */
class Metadata {
  private readonly cache = new Map<number, Promise<MetadataBlock>>();

  constructor(
    private readonly source: ByteSource,
    private readonly superblock: Superblock,
  ) {}

  block(position: number): Promise<MetadataBlock> {
    const cached = this.cache.get(position);
    if (cached !== undefined) {
      this.cache.delete(position);
      this.cache.set(position, cached);
      return cached;
    }
    const loading = this.load(position);
    this.cache.set(position, loading);
    loading.catch(() => this.cache.delete(position));
    if (this.cache.size > METADATA_CACHE_BLOCKS) this.cache.delete(this.cache.keys().next().value!);
    return loading;
  }

  private async load(position: number): Promise<MetadataBlock> {
    if (position < 0 || position + 2 > this.superblock.bytesUsed) throw corrupt(`a metadata block at ${position} lies outside the image`);
    const raw = await this.source.read(position, 2 + METADATA_SIZE);
    if (raw.length < 2) throw new FormatError('truncated', 'squashfs: a metadata block is cut short');
    const header = raw.readUInt16LE(0);
    const size = header & 0x7fff;
    if (size === 0 || size > METADATA_SIZE) throw corrupt(`a metadata block at ${position} has size ${size}`);
    if (raw.length < 2 + size || position + 2 + size > this.superblock.bytesUsed) throw new FormatError('truncated', 'squashfs: a metadata block is cut short');
    const body = raw.subarray(2, 2 + size);
    let data: Buffer;
    if (header & 0x8000) data = Buffer.from(body);
    else {
      try {
        data = await decompressBlock(this.superblock.kind, body, METADATA_SIZE);
      } catch (error) {
        if (error instanceof FormatError && error.reason !== 'corrupt') throw error;
        throw corrupt(`a metadata block at ${position} does not decompress: ${(error as Error).message}`);
      }
    }
    if (data.length === 0 || data.length > METADATA_SIZE) throw corrupt(`a metadata block at ${position} decompresses to ${data.length} bytes`);
    return { data, next: position + 2 + size };
  }
}

/** Sequential reading of a metadata stream (a table) from a block and an offset inside it. */
class MetaCursor {
  private data: Buffer | undefined;
  private next = 0;

  constructor(
    private readonly metadata: Metadata,
    private position: number,
    private offset: number,
  ) {}

  /** Exactly `length` bytes (a view when they sit in one block). */
  async read(length: number): Promise<Buffer> {
    if (this.data === undefined) await this.load();
    if (this.offset + length <= this.data!.length) {
      const out = this.data!.subarray(this.offset, this.offset + length);
      this.offset += length;
      return out;
    }
    const out = Buffer.allocUnsafe(length);
    let filled = 0;
    while (filled < length) {
      if (this.offset >= this.data!.length) {
        this.position = this.next;
        this.offset = 0;
        await this.load();
      }
      const take = Math.min(length - filled, this.data!.length - this.offset);
      this.data!.copy(out, filled, this.offset, this.offset + take);
      this.offset += take;
      filled += take;
    }
    return out;
  }

  private async load(): Promise<void> {
    const block = await this.metadata.block(this.position);
    if (this.offset > block.data.length) throw corrupt('a metadata reference points past the end of its block');
    this.data = block.data;
    this.next = block.next;
  }
}

interface FileInode {
  size: number;
  blocksStart: number;
  blockCount: number;
  fragment: number;
  fragmentOffset: number;
  /** Where the block size words start, right after the fixed part of the inode. */
  list: MetaCursor;
}

type Inode = { type: 'dir'; start: number; offset: number; listing: number; id: string } | ({ type: 'file' } & FileInode) | { type: 'other' };

class Image {
  readonly metadata: Metadata;
  private fragmentLookup: Promise<Buffer> | undefined;

  constructor(
    readonly source: ByteSource,
    readonly superblock: Superblock,
  ) {
    this.metadata = new Metadata(source, superblock);
  }

  /** Reads the inode at (block relative to the inode table, offset in it). */
  async inode(block: number, offset: number): Promise<Inode> {
    const { superblock } = this;
    const cursor = new MetaCursor(this.metadata, superblock.inodeTable + block, offset);
    const header = await cursor.read(16);
    const type = header.readUInt16LE(0);
    switch (type) {
      case InodeType.Dir: {
        const body = await cursor.read(16);
        const start = body.readUInt32LE(0);
        const size = body.readUInt16LE(8);
        return { type: 'dir', start, offset: body.readUInt16LE(10), listing: size, id: `${block}:${offset}` };
      }
      case InodeType.ExtDir: {
        // The directory index after the fixed part only speeds up lookups by name; a full walk reads the listing.
        const body = await cursor.read(24);
        return { type: 'dir', start: body.readUInt32LE(8), offset: body.readUInt16LE(18), listing: body.readUInt32LE(4), id: `${block}:${offset}` };
      }
      case InodeType.File: {
        const body = await cursor.read(16);
        return this.file(body.readUInt32LE(0), body.readUInt32LE(12), body.readUInt32LE(4), body.readUInt32LE(8), cursor);
      }
      case InodeType.ExtFile: {
        const body = await cursor.read(40);
        const start = safeNumber(body.readBigUInt64LE(0), 'a block start');
        const size = safeNumber(body.readBigUInt64LE(8), 'a file size');
        return this.file(start, size, body.readUInt32LE(28), body.readUInt32LE(32), cursor);
      }
      case 3:
      case 4:
      case 5:
      case 6:
      case 7:
      case 10:
      case 11:
      case 12:
      case 13:
      case 14:
        return { type: 'other' };
      default:
        throw corrupt(`inode type ${type} is unknown`);
    }
  }

  private file(blocksStart: number, size: number, fragment: number, fragmentOffset: number, list: MetaCursor): Inode {
    const { blockSize, bytesUsed, fragmentCount } = this.superblock;
    const hasFragment = fragment !== NO_FRAGMENT;
    if (hasFragment && fragment >= fragmentCount) throw corrupt(`a file points at fragment ${fragment} of ${fragmentCount}`);
    if (hasFragment && fragmentOffset >= blockSize) throw corrupt('a fragment offset lies outside its block');
    const blockCount = hasFragment ? Math.floor(size / blockSize) : Math.ceil(size / blockSize);
    if (blocksStart > bytesUsed) throw corrupt('a file starts past the end of the image');
    return { type: 'file', size, blocksStart, blockCount, fragment: hasFragment ? fragment : -1, fragmentOffset, list };
  }

  /** The fragment entry `index`: where its block is and its size word. */
  async fragmentEntry(index: number): Promise<{ start: number; word: number }> {
    this.fragmentLookup ??= (async () => {
      const length = Math.ceil(this.superblock.fragmentCount / 512) * 8;
      if (this.superblock.fragmentTable + length > this.superblock.bytesUsed) throw corrupt('the fragment table runs past the end of the image');
      const lookup = await this.source.read(this.superblock.fragmentTable, length);
      if (lookup.length < length) throw new FormatError('truncated', 'squashfs: the fragment table is cut short');
      return lookup;
    })();
    const lookup = await this.fragmentLookup;
    const block = safeNumber(lookup.readBigUInt64LE(Math.floor(index / 512) * 8), 'a fragment table block');
    const entry = await new MetaCursor(this.metadata, block, (index % 512) * 16).read(16);
    return { start: safeNumber(entry.readBigUInt64LE(0), 'a fragment start'), word: entry.readUInt32LE(8) };
  }
}

interface FileEntry {
  name: string;
  inode: FileInode;
}

interface Frame {
  path: string;
  cursor: MetaCursor;
  remaining: number;
  count: number;
  inodeBlock: number;
}

/** Every regular file, depth first in directory order (the order mksquashfs lays their data out). */
function walkFiles(image: Image, signal: AbortSignal | undefined): AsyncGenerator<FileEntry> {
  return walkTree(image, signal, true) as AsyncGenerator<FileEntry>;
}

const SOPS_CONFIG_NAME = /\/\.sops\.ya?ml$/;

/**
 * Which members' content fingerprints may be needed, from the names in the image (the directories
 * are read, no file's inode): every member's when a file is named `.sops.yaml` or `.sops.yml` (the
 * rules of a `.sops.yaml` among a container's members), those beside and below a `.gitattributes`
 * or in the work tree of a `.git/info/attributes` (which may give them to git-crypt), none
 * otherwise; the walker is told so. A directory table that cannot be read answers all: the walk
 * itself then reports what it cannot read.
 */
async function governance(image: Image, signal: AbortSignal | undefined): Promise<(name: string) => boolean> {
  const attributeDirs: string[] = [];
  try {
    for await (const entry of walkTree(image, signal, false)) {
      if (SOPS_CONFIG_NAME.test(entry.name)) return () => true;
      if (entry.name.endsWith('/.gitattributes')) attributeDirs.push(entry.name.slice(0, -'.gitattributes'.length));
      // A work tree's `.git/info/attributes` governs the whole tree `.git` lies in.
      else if (entry.name.endsWith('/.git/info/attributes')) attributeDirs.push(entry.name.slice(0, -'.git/info/attributes'.length));
    }
  } catch (error) {
    if (signal?.aborted) throw signal.reason;
    return () => true;
  }
  // A `.gitattributes` may give the files beside and below it to git-crypt: their content is
  // fingerprinted, for the walk that checks they are ciphertext.
  if (attributeDirs.length === 0) return () => false;
  return (name) => attributeDirs.some((dir) => name.startsWith(dir));
}

/** The tree walk under walkFiles; with `withInodes` false, files are named without their inodes. */
async function* walkTree(image: Image, signal: AbortSignal | undefined, withInodes: boolean): AsyncGenerator<{ name: string; inode?: FileInode }> {
  const root = image.superblock.rootInode;
  const rootInode = await image.inode(safeNumber(root >> 16n, 'the root inode'), Number(root & 0xffffn));
  if (rootInode.type !== 'dir') throw corrupt('the root inode is not a directory');
  const seen = new Set<string>([rootInode.id]);
  const stack: Frame[] = [];
  const enter = (path: string, dir: Extract<Inode, { type: 'dir' }>) => {
    if (stack.length >= MAX_DEPTH) throw corrupt('directories nest too deep');
    // The stored size counts 3 bytes more than the listing (for the . and .. entries a kernel makes up).
    const remaining = Math.max(0, dir.listing - 3);
    stack.push({ path, cursor: new MetaCursor(image.metadata, image.superblock.directoryTable + dir.start, dir.offset), remaining, count: 0, inodeBlock: 0 });
  };
  enter('', rootInode);
  while (stack.length > 0) {
    if (signal?.aborted) throw signal.reason;
    const frame = stack[stack.length - 1]!;
    if (frame.count === 0) {
      if (frame.remaining === 0) {
        stack.pop();
        continue;
      }
      if (frame.remaining < 12) throw corrupt(`the listing of ${frame.path || '/'} is cut short`);
      const header = await frame.cursor.read(12);
      frame.remaining -= 12;
      frame.count = header.readUInt32LE(0) + 1;
      frame.inodeBlock = header.readUInt32LE(4);
      if (frame.count > 256) throw corrupt(`a directory header of ${frame.path || '/'} claims ${frame.count} entries`);
      continue;
    }
    if (frame.remaining < 8) throw corrupt(`the listing of ${frame.path || '/'} is cut short`);
    const entry = await frame.cursor.read(8);
    const nameLength = entry.readUInt16LE(6) + 1;
    if (frame.remaining < 8 + nameLength) throw corrupt(`the listing of ${frame.path || '/'} is cut short`);
    const name = (await frame.cursor.read(nameLength)).toString('utf8');
    frame.remaining -= 8 + nameLength;
    frame.count -= 1;
    if (name.includes('/') || name === '.' || name === '..' || name.includes('\0')) throw corrupt(`a directory entry is named ${JSON.stringify(name)}`);
    const type = entry.readUInt16LE(4);
    if (type !== InodeType.Dir && type !== InodeType.File && type !== InodeType.ExtDir && type !== InodeType.ExtFile) continue; // symlinks, devices, fifos, sockets
    const path = `${frame.path}/${name}`;
    if (!withInodes && (type === InodeType.File || type === InodeType.ExtFile)) {
      yield { name: path };
      continue;
    }
    const inode = await image.inode(frame.inodeBlock, entry.readUInt16LE(0));
    if (inode.type === 'dir') {
      // Directories cannot be hard-linked: meeting one twice means a loop or a forged image.
      if (seen.has(inode.id)) throw corrupt(`${path} is a directory met twice`);
      seen.add(inode.id);
      enter(path, inode);
    } else if (inode.type === 'file') yield { name: path, inode };
  }
}

/** One piece of a file, in order: a data block, a run of zeros, or the tail in a fragment. */
type Piece = { kind: 'block'; position: number; word: number; length: number } | { kind: 'sparse'; length: number } | { kind: 'fragment'; index: number; offset: number; length: number };

async function* pieces(image: Image, inode: FileInode): AsyncGenerator<Piece> {
  const { blockSize, bytesUsed } = image.superblock;
  let position = inode.blocksStart;
  for (let index = 0; index < inode.blockCount; ) {
    const batch = Math.min(1024, inode.blockCount - index);
    const words = await inode.list.read(batch * 4);
    for (let at = 0; at < batch; at++, index++) {
      const word = words.readUInt32LE(at * 4);
      const length = Math.min(blockSize, inode.size - index * blockSize);
      if (word === 0) {
        yield { kind: 'sparse', length };
        continue;
      }
      const stored = word & DATA_SIZE_MASK;
      if (stored > blockSize || (word & ~(DATA_UNCOMPRESSED | DATA_SIZE_MASK)) !== 0 || position + stored > bytesUsed) throw corrupt(`a data block of size word ${word.toString(16)} is invalid`);
      yield { kind: 'block', position, word, length };
      position += stored;
    }
  }
  if (inode.fragment >= 0) {
    const length = inode.size - inode.blockCount * blockSize;
    if (length > 0) yield { kind: 'fragment', index: inode.fragment, offset: inode.fragmentOffset, length };
  }
}

/** The block decompressor: the walker's member pool, or the decompress module's own worker pool. */
type BlockPool = BlockDecoder;

interface Job {
  data: Promise<Buffer>;
  cost: number;
}

interface Pending {
  entry: FileEntry;
  pieces: AsyncGenerator<Piece> | undefined;
  jobs: Job[];
  done: boolean;
  dropped: boolean;
}

/**
 * Starts block reads and decompressions ahead of the consumer, in file order and across files, and
 * keeps at most `maxJobs` of them (and `READAHEAD_BYTES`) waiting to be consumed.
 */
class ReadAhead {
  private readonly queue: Pending[] = [];
  /** Index in `queue` of the first file whose pieces are not all started. */
  private scheduling = 0;
  private walkDone = false;
  private fatal: unknown;
  private inFlight = 0;
  private bytes = 0;
  private pumping: Promise<void> = Promise.resolve();
  private readonly fragments = new Map<number, Promise<Buffer>>();
  private window: { start: number; end: number; bytes: Promise<Buffer> } | undefined;

  constructor(
    private readonly image: Image,
    private readonly pool: BlockPool,
    private readonly walk: AsyncGenerator<FileEntry>,
    private readonly maxJobs: number,
    private readonly signal: AbortSignal | undefined,
    /** Files up to this size go out as jobs (see squashfsMembers): nothing is decoded for them here. */
    private readonly jobsUpTo = -1,
  ) {}

  /** Runs one more round of scheduling after any running one. */
  kick(): Promise<void> {
    this.pumping = this.pumping.then(() => this.pump()).catch((error) => {
      this.fatal ??= error;
    });
    return this.pumping;
  }

  /** The next file, or undefined after the last. */
  async nextFile(): Promise<Pending | undefined> {
    for (;;) {
      const head = this.queue[0];
      if (head !== undefined) return head;
      if (this.fatal !== undefined) throw this.fatal;
      if (this.walkDone) return undefined;
      this.signal?.throwIfAborted();
      await this.kick();
    }
  }

  /** Drops the front file with whatever of it is still queued. */
  release(file: Pending): void {
    if (this.queue[0] === file) {
      this.queue.shift();
      this.scheduling = Math.max(0, this.scheduling - 1);
    }
    file.dropped = true;
    for (const job of file.jobs) this.settle(job);
    file.jobs.length = 0;
    void file.pieces?.return(undefined);
  }

  /** The next job of the front file, or undefined when the file has no more pieces. */
  async take(file: Pending): Promise<Job | undefined> {
    for (;;) {
      const job = file.jobs.shift();
      if (job !== undefined) {
        void this.kick();
        return job;
      }
      if (file.done) return undefined;
      if (this.fatal !== undefined) throw this.fatal;
      // The pump starts nothing once aborted or for a dropped file: waiting on it would spin.
      this.signal?.throwIfAborted();
      if (file.dropped) throw new Error(`squashfs: ${file.entry.name} was streamed after the next member was asked for`);
      await this.kick();
    }
  }

  /** A consumed (or dropped) job no longer counts against the read-ahead. */
  settle(job: Job): void {
    this.inFlight -= job.cost > 0 ? 1 : 0;
    this.bytes -= job.cost;
  }

  private async pump(): Promise<void> {
    for (;;) {
      if (this.signal?.aborted) return;
      if (this.inFlight >= this.maxJobs || this.bytes >= READAHEAD_BYTES) return;
      while (this.scheduling < this.queue.length && this.queue[this.scheduling]!.done) this.scheduling += 1;
      let file = this.queue[this.scheduling];
      if (file === undefined) {
        if (this.walkDone || this.queue.length >= READAHEAD_FILES) return;
        const next = await this.walk.next();
        if (next.done) {
          this.walkDone = true;
          return;
        }
        file = { entry: next.value, pieces: undefined, jobs: [], done: next.value.inode.size <= this.jobsUpTo, dropped: false };
        this.queue.push(file);
        // A job's blocks are read by squashfsMembers, not here: its block list is read once, there.
        if (file.done) continue;
      }
      file.pieces ??= pieces(this.image, file.entry.inode);
      let piece: IteratorResult<Piece>;
      let job: Job;
      try {
        piece = await file.pieces.next();
        if (file.dropped) continue;
        if (piece.done) {
          file.done = true;
          continue;
        }
        job = this.start(piece.value);
      } catch (error) {
        // A broken block list spoils this file only: its stream reports it unreadable.
        file.done = true;
        if (file.dropped) continue;
        job = { data: Promise.reject(error), cost: 0 };
      }
      job.data.catch(() => undefined); // a dropped job's failure is nobody's business
      this.inFlight += job.cost > 0 ? 1 : 0;
      this.bytes += job.cost;
      file.jobs.push(job);
    }
  }

  private start(piece: Piece): Job {
    const { image } = this;
    const { blockSize, kind } = image.superblock;
    if (piece.kind === 'sparse') return { data: Promise.resolve(Buffer.alloc(piece.length)), cost: piece.length };
    if (piece.kind === 'block') {
      const stored = piece.word & DATA_SIZE_MASK;
      const compressed = (piece.word & DATA_UNCOMPRESSED) === 0;
      const data = this.readData(piece.position, stored).then(async (raw) => {
        let out = raw;
        if (compressed) {
          try {
            out = await this.pool.decompress(kind, raw, blockSize);
          } catch (error) {
            throw new FormatError(error instanceof FormatError ? error.reason : 'corrupt', `squashfs: the data block at ${piece.position} does not decompress: ${(error as Error).message}`);
          }
        }
        if (out.length !== piece.length) throw corrupt(`the data block at ${piece.position} holds ${out.length} bytes where ${piece.length} belong`);
        return out;
      });
      return { data, cost: blockSize };
    }
    let cost = 0;
    let block = this.fragments.get(piece.index);
    if (block === undefined) {
      block = this.fragment(piece.index);
      block.catch(() => undefined);
      this.fragments.set(piece.index, block);
      if (this.fragments.size > FRAGMENT_CACHE) this.fragments.delete(this.fragments.keys().next().value!);
      cost = blockSize;
    } else {
      this.fragments.delete(piece.index);
      this.fragments.set(piece.index, block);
    }
    const data = block.then((fragment) => {
      if (piece.offset + piece.length > fragment.length) throw corrupt(`a file's tail lies outside fragment ${piece.index}`);
      return fragment.subarray(piece.offset, piece.offset + piece.length);
    });
    return { data, cost };
  }

  /**
   * Stored bytes of a data block. Blocks of consecutive files lie back to back, so they are read in
   * windows of up to READ_WINDOW bytes: one positioned read serves many blocks.
   */
  readData(position: number, length: number): Promise<Buffer> {
    const window = this.window;
    if (window !== undefined && position >= window.start && position + length <= window.end) {
      return window.bytes.then((bytes) => {
        const at = position - window.start;
        if (bytes.length < at + length) throw new FormatError('truncated', 'squashfs: a data block is cut short');
        return bytes.subarray(at, at + length);
      });
    }
    const end = Math.min(this.image.superblock.bytesUsed, position + Math.max(length, READ_WINDOW));
    const bytes = this.image.source.read(position, end - position);
    bytes.catch(() => undefined);
    this.window = { start: position, end, bytes };
    return this.readData(position, length);
  }

  private async fragment(index: number): Promise<Buffer> {
    const { stored: raw, compressed } = await storedFragment(this.image, index);
    if (!compressed) return raw;
    try {
      return await this.pool.decompress(this.image.superblock.kind, raw, this.image.superblock.blockSize);
    } catch (error) {
      throw new FormatError(error instanceof FormatError ? error.reason : 'corrupt', `squashfs: fragment ${index} does not decompress: ${(error as Error).message}`);
    }
  }
}

let images = 0;

/** Fragment block `index` as stored, checked against the image. */
async function storedFragment(image: Image, index: number): Promise<{ stored: Buffer; compressed: boolean }> {
  const { start, word } = await image.fragmentEntry(index);
  const stored = word & DATA_SIZE_MASK;
  if (stored === 0 || stored > image.superblock.blockSize || start + stored > image.superblock.bytesUsed) throw corrupt(`fragment ${index} is invalid`);
  return { stored: await readStored(image.source, start, stored), compressed: (word & DATA_UNCOMPRESSED) === 0 };
}

/**
 * A file's compressed parts as a job another thread decodes on its own (see MemberJob): data blocks
 * read as stored, its tail's fragment block as stored (named so a thread decodes it once for the
 * many small files whose tails share it).
 */
async function memberJob(image: Image, ahead: ReadAhead, inode: FileInode, fragments: Map<number, Promise<{ stored: Buffer; compressed: boolean }>>, key: string): Promise<MemberJob> {
  const { blockSize, kind } = image.superblock;
  const parts: JobPart[] = [];
  for await (const piece of pieces(image, inode)) {
    if (piece.kind === 'sparse') parts.push({ type: 'sparse', length: piece.length });
    else if (piece.kind === 'block') {
      const stored = await ahead.readData(piece.position, piece.word & DATA_SIZE_MASK);
      parts.push({ type: 'block', stored, compressed: (piece.word & DATA_UNCOMPRESSED) === 0, length: piece.length });
    } else {
      let block = fragments.get(piece.index);
      if (block === undefined) {
        block = storedFragment(image, piece.index);
        block.catch(() => undefined);
        fragments.set(piece.index, block);
        if (fragments.size > FRAGMENT_CACHE) fragments.delete(fragments.keys().next().value!);
      }
      const { stored, compressed } = await block;
      parts.push({ type: 'fragment', key: `${key}:${piece.index}`, stored, compressed, offset: piece.offset, length: piece.length });
    }
  }
  return { compression: kind, maxBlock: blockSize, parts };
}

async function readStored(source: ByteSource, position: number, length: number): Promise<Buffer> {
  const raw = await source.read(position, length);
  if (raw.length < length) throw new FormatError('truncated', 'squashfs: a data block is cut short');
  return raw;
}

function isSource(input: ByteSource | AsyncIterable<Buffer>): input is ByteSource {
  return typeof (input as ByteSource).read === 'function';
}

async function* squashfsMembers(input: ByteSource | AsyncIterable<Buffer>, context: FormatContext): AsyncGenerator<Member> {
  if (!isSource(input)) throw new FormatError('unsupported', 'squashfs: needs random access');
  const superblock = parseSuperblock(await input.read(0, SUPERBLOCK_SIZE), input.size);
  const image = new Image(input, superblock);
  const threads = Math.max(1, availableParallelism());
  const own = context.decoder ? undefined : createBlockPool(threads);
  const pool: BlockPool = context.decoder ?? own!;
  const governed = await governance(image, context.signal);
  const walk = walkFiles(image, context.signal);
  const jobsUpTo = context.jobsUpTo ?? -1;
  const ahead = new ReadAhead(image, pool, walk, Math.max(8, threads * 6), context.signal, jobsUpTo);
  const storedFragments = new Map<number, Promise<{ stored: Buffer; compressed: boolean }>>();
  const key = `squashfs${++images}`;
  try {
    for (;;) {
      if (context.signal?.aborted) throw context.signal.reason;
      const file = await ahead.nextFile();
      if (file === undefined) return;
      const { name, inode } = file.entry;
      let streamed = false;
      if (inode.size <= jobsUpTo) {
        // Small enough to hold: offered as a job, decoded and scanned on one of the walker's threads.
        let job: MemberJob | undefined;
        let failure: unknown;
        try {
          job = await memberJob(image, ahead, inode, storedFragments, key);
        } catch (error) {
          if (context.signal?.aborted) throw context.signal.reason;
          failure = error;
        }
        yield {
          name,
          size: inode.size,
          ...(governed(name) ? {} : { sopsGoverned: false as const }),
          ...(job ? { job } : {}),
          stream: () => {
            // A walker that asks for jobs scans every job it is offered (see FormatContext.jobsUpTo).
            if (job) throw new Error(`squashfs: ${name} was offered as a job, not as a stream`);
            return (async function* unreadable() {
              context.unreadable(name, failure instanceof FormatError ? failure.reason : 'corrupt', (failure as Error).message);
            })();
          },
        };
        ahead.release(file);
        continue;
      }
      yield {
        name,
        size: inode.size,
        ...(governed(name) ? {} : { sopsGoverned: false as const }),
        stream: () => {
          if (streamed) throw new Error(`squashfs: ${name} was already streamed`);
          streamed = true;
          return (async function* stream() {
            for (;;) {
              if (context.signal?.aborted) throw context.signal.reason;
              const job = await ahead.take(file);
              if (job === undefined) return;
              let data: Buffer;
              try {
                data = await job.data;
              } catch (error) {
                if (context.signal?.aborted) throw context.signal.reason;
                // One unreadable file does not hide the rest of the image; the walker reports it.
                const reason = error instanceof FormatError ? error.reason : 'corrupt';
                context.unreadable(name, reason, (error as Error).message);
                return;
              } finally {
                ahead.settle(job);
              }
              yield data;
            }
          })();
        },
      };
      ahead.release(file);
    }
  } finally {
    await walk.return(undefined).catch(() => undefined);
    await own?.close();
  }
}

/** SquashFS 4.0 (any compression squashfs-tools writes), members streamed block by block. */
export const squashfs: FormatHandler = {
  name: 'squashfs',
  access: 'random',
  detect(head: Buffer): boolean {
    return head.length >= SUPERBLOCK_SIZE && head.readUInt32LE(0) === 0x73717368 && head.readUInt16LE(28) === 4 && head.readUInt16LE(30) === 0;
  },
  members: squashfsMembers,
  offersJobs: true,
};
