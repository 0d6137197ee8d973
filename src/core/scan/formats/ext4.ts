/**
 * ext2, ext3 and ext4 filesystems, read in place and without mounting (the seed partition of a stick,
 * the root partition of a NixOS SD-card image, a partition image): the superblock and group
 * descriptors, then the folders from the root inode down, each regular file a member whose `source`
 * maps its logical bytes onto the image through its extent tree (ext4) or block map (ext2/3). Holes
 * and unwritten extents read as zeros; symlinks, devices and sockets are not members.
 *
 * Not read, and reported `unscanned`: the META_BG descriptor layout, files kept in the journal only
 * (a filesystem that needs recovery is read as it is on disk, with a problem noted), encrypted
 * (fscrypt) files and folders. Deleted files are not members (their blocks belong to no inode): the
 * blocks the block bitmaps call free are, as one raw `(free space)` member (see free-space.ts).
 */
import { concatSource, readExactly, sliceSource, sourceChunks, zeroSource } from './byte-source.js';
import { FREE_SPACE, FreeRuns } from './free-space.js';
import { FormatError, type ByteSource, type FormatContext, type FormatHandler, type Member } from './types.js';

const SUPERBLOCK = 1024;
const ROOT_INODE = 2;
const INCOMPAT_FILETYPE = 0x2;
const INCOMPAT_RECOVER = 0x4;
const INCOMPAT_META_BG = 0x10;
const INCOMPAT_64BIT = 0x80;
const RO_COMPAT_GDT_CSUM = 0x10;
const RO_COMPAT_METADATA_CSUM = 0x400;
const BG_BLOCK_UNINIT = 0x2;
const EXTENTS_FL = 0x80000;
const INLINE_DATA_FL = 0x10000000;
const ENCRYPT_FL = 0x800;
const EXTENT_MAGIC = 0xf30a;
const S_IFMT = 0xf000;
const S_IFREG = 0x8000;
const S_IFDIR = 0x4000;
/** A folder larger than this is not read (a real one is far smaller): a damaged size must not allocate gigabytes. */
const MAX_FOLDER_BYTES = 256 * 1024 * 1024;
/** Extent tree depth ext4 allows (5), with margin: a deeper one is damaged (or a loop). */
const MAX_EXTENT_DEPTH = 8;

/** The ext2/3/4 superblock at 1024, by its magic and fields that only a real one holds together. */
export function isExtSuperblock(head: Buffer): boolean {
  const at = SUPERBLOCK;
  if (head.length < at + 100 || head.readUInt16LE(at + 56) !== 0xef53) return false;
  const inodes = head.readUInt32LE(at);
  const blocks = head.readUInt32LE(at + 4);
  const firstDataBlock = head.readUInt32LE(at + 20);
  const logBlockSize = head.readUInt32LE(at + 24);
  const blocksPerGroup = head.readUInt32LE(at + 32);
  const state = head.readUInt16LE(at + 58);
  const creatorOs = head.readUInt32LE(at + 72);
  const revision = head.readUInt32LE(at + 76);
  return inodes > 0 && blocks > 0 && firstDataBlock <= 1 && logBlockSize <= 6 && blocksPerGroup > 0 && state >= 1 && state <= 7 && creatorOs <= 4 && revision <= 1;
}

interface Geometry {
  blockSize: number;
  inodeSize: number;
  inodesPerGroup: number;
  inodeCount: number;
  descSize: number;
  descTable: number;
  fileType: boolean;
  blocksCount: number;
  blocksPerGroup: number;
  firstDataBlock: number;
  /** Group descriptors' checksums are kept (GDT_CSUM or METADATA_CSUM): their BLOCK_UNINIT flag can be trusted. */
  checksummed: boolean;
}

interface Inode {
  mode: number;
  flags: number;
  size: number;
  /** The 60 bytes of i_block: extent tree root, block map or inline data. */
  block: Buffer;
  /** Inline data past i_block: the `system.data` attribute in the inode's extra space. */
  inlineRest?: Buffer;
}

/** The value of the in-inode extended attribute `system.data` (index 7, name `data`), if any. */
function inlineXattr(raw: Buffer): Buffer | undefined {
  if (raw.length <= 130) return undefined;
  const start = 128 + raw.readUInt16LE(128);
  if (start + 4 > raw.length || raw.readUInt32LE(start) !== 0xea020000) return undefined;
  const first = start + 4;
  for (let offset = first; offset + 16 <= raw.length && raw.readUInt32LE(offset) !== 0; ) {
    const nameLength = raw[offset]!;
    const index = raw[offset + 1]!;
    const valueOffset = raw.readUInt16LE(offset + 2);
    const valueSize = raw.readUInt32LE(offset + 8);
    const name = raw.toString('latin1', offset + 16, offset + 16 + nameLength);
    if (index === 7 && name === 'data') return first + valueOffset + valueSize <= raw.length ? raw.subarray(first + valueOffset, first + valueOffset + valueSize) : undefined;
    offset += (16 + nameLength + 3) & ~3;
  }
  return undefined;
}

/** 64-bit block numbers from a lo/hi pair (hi is 16 bits in extents). */
const join = (lo: number, hi: number) => hi * 0x1_0000_0000 + lo;

class Ext4Reader {
  private readonly tables = new Map<number, number>();

  constructor(
    readonly image: ByteSource,
    readonly geometry: Geometry,
  ) {}

  private async inodeTable(group: number): Promise<number> {
    let table = this.tables.get(group);
    if (table === undefined) {
      const { descSize, descTable, blockSize } = this.geometry;
      const descriptor = await readExactly(this.image, descTable + group * descSize, descSize, `group descriptor ${group}`);
      table = join(descriptor.readUInt32LE(8), descSize >= 64 ? descriptor.readUInt32LE(0x28) : 0) * blockSize;
      this.tables.set(group, table);
    }
    return table;
  }

  async inode(number: number): Promise<Inode> {
    const { inodesPerGroup, inodeSize, inodeCount } = this.geometry;
    if (number < 1 || number > inodeCount) throw new FormatError('corrupt', `inode ${number} is out of range (1-${inodeCount})`);
    const group = Math.floor((number - 1) / inodesPerGroup);
    const offset = (await this.inodeTable(group)) + ((number - 1) % inodesPerGroup) * inodeSize;
    const raw = await readExactly(this.image, offset, inodeSize, `inode ${number}`);
    const flags = raw.readUInt32LE(32);
    const inode: Inode = { mode: raw.readUInt16LE(0), flags, size: join(raw.readUInt32LE(4), raw.readUInt32LE(108)), block: Buffer.from(raw.subarray(40, 100)) };
    if (flags & INLINE_DATA_FL) inode.inlineRest = inlineXattr(raw);
    return inode;
  }

  /** The inode's bytes as a source: its extents or mapped blocks on the image, zeros for holes. */
  async content(inode: Inode, what: string): Promise<ByteSource> {
    if (inode.flags & ENCRYPT_FL) throw new FormatError('encrypted', `${what} is encrypted (fscrypt)`);
    if (inode.flags & INLINE_DATA_FL) {
      // The first 60 bytes in i_block, the rest in the inode's `system.data` attribute.
      const whole = Buffer.concat([inode.block, inode.inlineRest ?? Buffer.alloc(0)]);
      if (inode.size > whole.length) throw new FormatError('corrupt', `${what} claims ${inode.size} bytes of inline data, the inode holds ${whole.length}`);
      const inline = whole.subarray(0, inode.size);
      return { size: inline.length, read: async (position, length) => inline.subarray(position, position + length) };
    }
    const { blockSize } = this.geometry;
    const blocks = Math.ceil(inode.size / blockSize);
    const runs: Run[] = [];
    if (inode.flags & EXTENTS_FL) await this.extents(inode.block, 0, runs, what);
    else await this.blockMap(inode.block, blocks, runs, what);
    return this.assemble(runs, inode.size, what);
  }

  private async extents(node: Buffer, depth: number, runs: Run[], what: string): Promise<void> {
    if (node.readUInt16LE(0) !== EXTENT_MAGIC) throw new FormatError('corrupt', `${what}: bad extent header`);
    const entries = node.readUInt16LE(2);
    const level = node.readUInt16LE(6);
    if (depth > MAX_EXTENT_DEPTH || 12 + entries * 12 > node.length) throw new FormatError('corrupt', `${what}: damaged extent tree`);
    for (let index = 0; index < entries; index++) {
      const entry = node.subarray(12 + index * 12, 24 + index * 12);
      if (level === 0) {
        const length = entry.readUInt16LE(4);
        const unwritten = length > 32768;
        runs.push({ logical: entry.readUInt32LE(0), count: unwritten ? length - 32768 : length, physical: unwritten ? null : join(entry.readUInt32LE(8), entry.readUInt16LE(6)) });
      } else {
        const child = join(entry.readUInt32LE(4), entry.readUInt16LE(8));
        await this.extents(await readExactly(this.image, child * this.geometry.blockSize, this.geometry.blockSize, `${what}: extent block`), depth + 1, runs, what);
      }
    }
  }

  /** ext2/3: 12 direct blocks, then single, double and triple indirect ones. */
  private async blockMap(block: Buffer, blocks: number, runs: Run[], what: string): Promise<void> {
    const perBlock = this.geometry.blockSize / 4;
    let logical = 0;
    const add = (physical: number) => {
      const last = runs[runs.length - 1];
      const hole = physical === 0;
      if (last && (last.physical === null) === hole && last.logical + last.count === logical && (hole || last.physical! + last.count === physical)) last.count += 1;
      else runs.push({ logical, count: 1, physical: hole ? null : physical });
      logical += 1;
    };
    const walk = async (pointer: number, level: number): Promise<void> => {
      const span = perBlock ** level;
      if (pointer === 0) {
        const skip = Math.min(span, blocks - logical);
        if (skip > 0) runs.push({ logical, count: skip, physical: null });
        logical += skip;
        return;
      }
      const table = await readExactly(this.image, pointer * this.geometry.blockSize, this.geometry.blockSize, `${what}: indirect block`);
      for (let index = 0; index < perBlock && logical < blocks; index++) {
        const next = table.readUInt32LE(index * 4);
        if (level === 1) add(next);
        else await walk(next, level - 1);
      }
    };
    for (let index = 0; index < 12 && logical < blocks; index++) add(block.readUInt32LE(index * 4));
    for (let level = 1; level <= 3 && logical < blocks; level++) await walk(block.readUInt32LE((11 + level) * 4), level);
  }

  private assemble(runs: Run[], size: number, what: string): ByteSource {
    const { blockSize } = this.geometry;
    runs.sort((a, b) => a.logical - b.logical);
    const parts: ByteSource[] = [];
    let at = 0;
    for (const run of runs) {
      const start = run.logical * blockSize;
      if (start >= size) break;
      if (start < at) throw new FormatError('corrupt', `${what}: extents overlap`);
      if (start > at) parts.push(zeroSource(start - at));
      const length = Math.min(run.count * blockSize, size - start);
      parts.push(run.physical === null ? zeroSource(length) : sliceSource(this.image, run.physical * blockSize, length));
      at = start + length;
    }
    if (at < size) parts.push(zeroSource(size - at));
    return concatSource(parts);
  }

  /**
   * A folder's entries (not `.` and `..`): linear blocks, which htree folders are too. An inline
   * folder keeps its parent's number in i_block's first 4 bytes, then entries, then more in `system.data`.
   */
  async *entries(folder: Inode, listing: ByteSource, what: string): AsyncGenerator<{ inode: number; name: string }> {
    if (folder.flags & INLINE_DATA_FL) {
      yield* this.parse(folder.block.subarray(4), what, 0);
      if (folder.inlineRest) yield* this.parse(folder.inlineRest, what, folder.block.length);
      return;
    }
    const { blockSize } = this.geometry;
    for (let start = 0; start < listing.size; start += blockSize) {
      yield* this.parse(await readExactly(listing, start, Math.min(blockSize, listing.size - start), what), what, start);
    }
  }

  private *parse(block: Buffer, what: string, start: number): Generator<{ inode: number; name: string }> {
    const { fileType } = this.geometry;
    for (let offset = 0; offset + 8 <= block.length; ) {
      const inode = block.readUInt32LE(offset);
      const recordLength = block.readUInt16LE(offset + 4);
      const nameLength = fileType ? block[offset + 6]! : block.readUInt16LE(offset + 6);
      if (recordLength < 8 || offset + recordLength > block.length || 8 + nameLength > recordLength) throw new FormatError('corrupt', `${what}: damaged folder entry at ${start + offset}`);
      if (inode !== 0) {
        const name = block.toString('utf8', offset + 8, offset + 8 + nameLength);
        if (name !== '.' && name !== '..') yield { inode, name: name.replace(/\//g, '_') };
      }
      offset += recordLength;
    }
  }
}

interface Run {
  logical: number;
  count: number;
  /** null: a hole or an unwritten extent, which reads as zeros. */
  physical: number | null;
}

async function geometryOf(image: ByteSource, context: FormatContext): Promise<Geometry> {
  const head = await readExactly(image, 0, SUPERBLOCK + 1024, 'the superblock');
  if (!isExtSuperblock(head)) throw new FormatError('corrupt', 'not an ext2/3/4 superblock');
  const superblock = head.subarray(SUPERBLOCK);
  const incompat = superblock.readUInt32LE(96);
  if (incompat & INCOMPAT_META_BG) throw new FormatError('unsupported', 'the filesystem uses the META_BG descriptor layout');
  if (incompat & INCOMPAT_RECOVER) context.problem('/', 'the journal needs recovery: files are read as they are on disk, without what the journal still holds');
  const blockSize = 1024 << superblock.readUInt32LE(24);
  const revision = superblock.readUInt32LE(76);
  const inodeSize = revision >= 1 ? superblock.readUInt16LE(88) : 128;
  const descSize = incompat & INCOMPAT_64BIT ? Math.max(32, superblock.readUInt16LE(254)) : 32;
  const firstDataBlock = superblock.readUInt32LE(20);
  const inodesPerGroup = superblock.readUInt32LE(40);
  if (inodeSize < 128 || inodeSize > blockSize || inodesPerGroup === 0) throw new FormatError('corrupt', 'damaged superblock (inode size or inodes per group)');
  const blocksPerGroup = superblock.readUInt32LE(32);
  const roCompat = superblock.readUInt32LE(100);
  return {
    blockSize,
    inodeSize,
    inodesPerGroup,
    inodeCount: superblock.readUInt32LE(0),
    descSize,
    descTable: (firstDataBlock + 1) * blockSize,
    fileType: (incompat & INCOMPAT_FILETYPE) !== 0,
    blocksCount: join(superblock.readUInt32LE(4), incompat & INCOMPAT_64BIT ? superblock.readUInt32LE(0x150) : 0),
    blocksPerGroup,
    firstDataBlock,
    checksummed: (roCompat & (RO_COMPAT_GDT_CSUM | RO_COMPAT_METADATA_CSUM)) !== 0,
  };
}

/**
 * The blocks the block bitmaps call free. A group whose bitmap was never written (BLOCK_UNINIT, on a
 * filesystem that checksums its descriptors) is free whole: mkfs did not touch it, so whatever the
 * stick held before is still there.
 */
async function freeBlocks(image: ByteSource, geometry: Geometry, context: FormatContext): Promise<Member | undefined> {
  const { blockSize, blocksPerGroup, firstDataBlock, blocksCount, descSize } = geometry;
  if (blocksCount <= firstDataBlock) return undefined;
  const groups = Math.ceil((blocksCount - firstDataBlock) / blocksPerGroup);
  const table = await readExactly(image, geometry.descTable, groups * descSize, 'the group descriptors');
  const free = new FreeRuns();
  for (let group = 0; group < groups; group++) {
    context.signal?.throwIfAborted();
    const first = firstDataBlock + group * blocksPerGroup;
    const blocks = Math.min(blocksPerGroup, blocksCount - first);
    const desc = table.subarray(group * descSize, (group + 1) * descSize);
    if (geometry.checksummed && desc.readUInt16LE(0x12) & BG_BLOCK_UNINIT) {
      free.add(first, blocks);
      continue;
    }
    const bitmap = join(desc.readUInt32LE(0), descSize >= 64 ? desc.readUInt32LE(0x20) : 0);
    free.addZeroBits(await readExactly(image, bitmap * blockSize, Math.min(blockSize, Math.ceil(blocks / 8)), `the block bitmap of group ${group}`), first, blocks);
  }
  return free.member(image, 0, blockSize, context);
}

async function* ext4Members(input: ByteSource | AsyncIterable<Buffer>, context: FormatContext): AsyncGenerator<Member> {
  if (typeof (input as ByteSource).read !== 'function') throw new FormatError('unsupported', 'ext4 needs random access to the image');
  const image = input as ByteSource;
  const geometry = await geometryOf(image, context);
  const reader = new Ext4Reader(image, geometry);
  const visited = new Set<number>([ROOT_INODE]);
  const stack: { path: string; inode: number }[] = [{ path: '', inode: ROOT_INODE }];
  while (stack.length > 0) {
    const folder = stack.pop()!;
    const where = folder.path === '' ? 'the root folder' : `folder ${folder.path}`;
    const subfolders: { path: string; inode: number }[] = [];
    try {
      const inode = await reader.inode(folder.inode);
      if ((inode.mode & S_IFMT) !== S_IFDIR) throw new FormatError('corrupt', `${where} is not a folder`);
      if (inode.size > MAX_FOLDER_BYTES) throw new FormatError('corrupt', `${where} claims ${inode.size} bytes`);
      const listing = await reader.content(inode, where);
      for await (const entry of reader.entries(inode, listing, where)) {
        context.signal?.throwIfAborted();
        const path = `${folder.path}/${entry.name}`; // absolute, as for every filesystem
        let member: Inode;
        let source: ByteSource;
        try {
          member = await reader.inode(entry.inode);
          const type = member.mode & S_IFMT;
          if (type === S_IFDIR) {
            if (visited.has(entry.inode)) {
              context.problem(path, 'folder appears twice in the tree (a loop); read once');
              continue;
            }
            visited.add(entry.inode);
            subfolders.push({ path, inode: entry.inode });
            continue;
          }
          if (type !== S_IFREG) continue; // symlinks, devices, fifos, sockets: no bytes of their own
          source = await reader.content(member, path);
        } catch (error) {
          if (!(error instanceof FormatError)) throw error;
          context.unreadable(path, error.reason, error.message);
          continue;
        }
        const bytes = source;
        yield { name: path, size: bytes.size, source: bytes, stream: () => sourceChunks(bytes, context.signal) };
      }
    } catch (error) {
      // Without its root folder the filesystem has nothing to show: that is the container failing.
      if (!(error instanceof FormatError) || folder.path === '') throw error;
      context.unreadable(`${folder.path}/`, error.reason, error.message);
    }
    for (let index = subfolders.length - 1; index >= 0; index--) stack.push(subfolders[index]!);
  }
  let free: Member | undefined;
  try {
    free = await freeBlocks(image, geometry, context);
  } catch (error) {
    if (!(error instanceof FormatError)) throw error;
    context.unreadable(FREE_SPACE, error.reason, `the free space was not read: ${error.message}`);
  }
  if (free) yield free;
}

export const ext4: FormatHandler = {
  name: 'ext4',
  access: 'random',
  detect: (head) => isExtSuperblock(head),
  members: ext4Members,
};
