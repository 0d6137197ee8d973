/**
 * EROFS images (the read-only filesystem NixOS builds for `system.etc.overlay` as
 * `etc-metadata.erofs`, and some store and appliance images use), read in place and without
 * mounting: the superblock, then the directories from the root inode down, as the kernel's
 * fs/erofs reads them (Documentation/filesystems/erofs.rst, erofs_fs.h). A file's bytes are read
 * for the uncompressed layouts: FLAT_PLAIN (contiguous blocks), FLAT_INLINE (blocks, then a tail
 * kept right after the inode) and CHUNK_BASED (a table of chunk addresses; a null one is a hole,
 * and a file of nothing but holes, as composefs writes every file whose bytes live elsewhere, has
 * no bytes to read). A compressed file (the LZ4 and LZMA layouts
 * `mkfs.erofs -z…` writes) is not decoded here: it is reported `unscanned-unsupported` by name and
 * the rest of the image is still read. Data on extra devices (`--blobdev`) is unsupported too.
 */
import { concatSource, readExactly, sliceSource, sourceChunks, zeroSource } from './byte-source.js';
import { FormatError, type ByteSource, type FormatContext, type FormatHandler, type Member } from './types.js';

const SUPER_OFFSET = 1024;
const MAGIC = 0xe0f5e1e2;
const FLAT_PLAIN = 0;
const COMPRESSED_FULL = 1;
const FLAT_INLINE = 2;
const COMPRESSED_COMPACT = 3;
const CHUNK_BASED = 4;
const CHUNK_FORMAT_INDEXES = 0x20;
const NULL_ADDR = 0xffffffff;
const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const DIRENT = 12;
/** A directory larger than this is damaged. */
const MAX_DIRECTORY_BYTES = 64 * 1024 * 1024;

interface Superblock {
  blockBits: number;
  rootNid: number;
  metaOffset: number;
}

interface Inode {
  nid: number;
  layout: number;
  mode: number;
  size: number;
  /** raw_blkaddr, or the chunk format of a CHUNK_BASED inode. */
  union: number;
  /** Where the inode's header, xattrs included, ends: a FLAT_INLINE tail or a chunk table follows. */
  end: number;
}

/** The superblock at 1024: its magic and a block size of 512 B to 64 KiB. */
function superblock(head: Buffer): Superblock | undefined {
  if (head.length < SUPER_OFFSET + 128 || head.readUInt32LE(SUPER_OFFSET) !== MAGIC) return undefined;
  const blockBits = head[SUPER_OFFSET + 12]!;
  if (blockBits < 9 || blockBits > 16) return undefined;
  return { blockBits, rootNid: head.readUInt16LE(SUPER_OFFSET + 14), metaOffset: head.readUInt32LE(SUPER_OFFSET + 40) * 2 ** blockBits };
}

async function readInode(image: ByteSource, sb: Superblock, nid: number): Promise<Inode> {
  const at = sb.metaOffset + nid * 32;
  if (!Number.isSafeInteger(at) || at + 32 > image.size) throw new FormatError('corrupt', `inode ${nid} lies past the end of the image`);
  const head = await readExactly(image, at, Math.min(64, image.size - at), `inode ${nid}`);
  const format = head.readUInt16LE(0);
  const extended = (format & 1) === 1;
  if (extended && head.length < 64) throw new FormatError('truncated', `inode ${nid} lies past the end of the image`);
  const xattrCount = head.readUInt16LE(2);
  const size = extended ? Number(head.readBigUInt64LE(8)) : head.readUInt32LE(8);
  if (!Number.isSafeInteger(size)) throw new FormatError('corrupt', `inode ${nid} claims ${size} bytes`);
  return {
    nid,
    layout: (format >> 1) & 0x7,
    mode: head.readUInt16LE(4),
    size,
    union: head.readUInt32LE(16),
    end: at + (extended ? 64 : 32) + (xattrCount === 0 ? 0 : 12 + (xattrCount - 1) * 4),
  };
}

/** The bytes of an inode's data, for the uncompressed layouts; FormatError('unsupported') for the compressed ones. */
async function dataSource(image: ByteSource, sb: Superblock, inode: Inode, what: string): Promise<ByteSource> {
  const block = 2 ** sb.blockBits;
  if (inode.size === 0) return zeroSource(0);
  switch (inode.layout) {
    case FLAT_PLAIN:
      return sliceSource(image, inode.union * block, inode.size);
    case FLAT_INLINE: {
      // Every block but the last at raw_blkaddr; the last, partial one right after the inode.
      const head = (Math.ceil(inode.size / block) - 1) * block;
      const tail = sliceSource(image, inode.end, inode.size - head);
      return head === 0 ? tail : concatSource([sliceSource(image, inode.union * block, head), tail]);
    }
    case CHUNK_BASED: {
      const chunkFormat = inode.union & 0xffff;
      const chunkBytes = 2 ** (sb.blockBits + (chunkFormat & 0x1f));
      const indexes = (chunkFormat & CHUNK_FORMAT_INDEXES) !== 0;
      const unit = indexes ? 8 : 4;
      const count = Math.ceil(inode.size / chunkBytes);
      const tableAt = Math.ceil(inode.end / unit) * unit;
      if (count > 16 * 1024 * 1024) throw new FormatError('corrupt', `${what}: ${count} chunks`);
      const table = await readExactly(image, tableAt, count * unit, `${what}: its chunk table`);
      const parts: ByteSource[] = [];
      let holes = 0;
      for (let index = 0; index < count; index++) {
        const length = Math.min(chunkBytes, inode.size - index * chunkBytes);
        const address = indexes ? table.readUInt32LE(index * 8 + 4) : table.readUInt32LE(index * 4);
        if (indexes && table.readUInt16LE(index * 8 + 2) !== 0 && address !== NULL_ADDR) throw new FormatError('unsupported', `${what}: its data lies on an extra device`);
        if (address === NULL_ADDR) holes++;
        parts.push(address === NULL_ADDR ? zeroSource(length) : sliceSource(image, address * block, length));
      }
      // Nothing but holes: a composefs metadata file (its bytes live in the store path its xattrs
      // name), however large its size says; there are no bytes to read.
      return holes === count ? zeroSource(0) : concatSource(parts);
    }
    case COMPRESSED_FULL:
    case COMPRESSED_COMPACT:
      throw new FormatError('unsupported', `${what}: an EROFS compressed file, which this scan does not decode. Mount the image read-only (mount -o ro,loop) and scan the folder`);
    default:
      throw new FormatError('corrupt', `${what}: unknown data layout ${inode.layout}`);
  }
}

/** A directory's entries (name and nid, without `.` and `..`), block by block. */
async function* directoryEntries(listing: ByteSource, block: number, what: string, signal?: AbortSignal): AsyncGenerator<{ name: string; nid: number }> {
  if (listing.size > MAX_DIRECTORY_BYTES) throw new FormatError('corrupt', `${what} claims ${listing.size} bytes`);
  let offset = 0;
  for await (const chunk of sourceChunks(listing, signal, block)) {
    if (chunk.length < DIRENT) throw new FormatError('corrupt', `${what}: a damaged block at byte ${offset}`);
    const first = chunk.readUInt16LE(8);
    if (first % DIRENT !== 0 || first === 0 || first > chunk.length) throw new FormatError('corrupt', `${what}: a damaged block at byte ${offset}`);
    const count = first / DIRENT;
    for (let index = 0; index < count; index++) {
      const nameStart = chunk.readUInt16LE(index * DIRENT + 8);
      let nameEnd = index + 1 < count ? chunk.readUInt16LE((index + 1) * DIRENT + 8) : chunk.length;
      if (nameStart < first || nameEnd > chunk.length || nameEnd < nameStart) throw new FormatError('corrupt', `${what}: a damaged entry at byte ${offset + index * DIRENT}`);
      // The last name of a block runs to its end, padded with zeros.
      if (index + 1 === count) while (nameEnd > nameStart && chunk[nameEnd - 1] === 0) nameEnd--;
      const name = chunk.toString('utf8', nameStart, nameEnd);
      if (name === '.' || name === '..') continue;
      yield { name: name.replace(/\//g, '_'), nid: Number(chunk.readBigUInt64LE(index * DIRENT)) };
    }
    offset += chunk.length;
  }
}

async function* erofsMembers(input: ByteSource | AsyncIterable<Buffer>, context: FormatContext): AsyncGenerator<Member> {
  if (typeof (input as ByteSource).read !== 'function') throw new FormatError('unsupported', 'EROFS needs random access to the image');
  const image = input as ByteSource;
  const head = await readExactly(image, 0, SUPER_OFFSET + 128, 'the superblock');
  const sb = superblock(head);
  if (!sb) throw new FormatError('corrupt', 'not an EROFS superblock');
  if (head.readUInt16LE(SUPER_OFFSET + 86) !== 0) throw new FormatError('unsupported', 'an EROFS image whose data lies on extra devices (blob devices), which this scan cannot reach');
  const block = 2 ** sb.blockBits;
  const visited = new Set<number>([sb.rootNid]);
  const stack: { path: string; nid: number }[] = [{ path: '', nid: sb.rootNid }];
  while (stack.length > 0) {
    const folder = stack.pop()!;
    const where = folder.path === '' ? 'the root directory' : `directory ${folder.path}`;
    const subfolders: typeof stack = [];
    try {
      const inode = await readInode(image, sb, folder.nid);
      if ((inode.mode & S_IFMT) !== S_IFDIR) throw new FormatError('corrupt', `${where}: inode ${folder.nid} is not a directory`);
      for await (const entry of directoryEntries(await dataSource(image, sb, inode, where), block, where, context.signal)) {
        const path = `${folder.path}/${entry.name}`;
        let child: Inode;
        try {
          child = await readInode(image, sb, entry.nid);
        } catch (error) {
          if (!(error instanceof FormatError)) throw error;
          context.unreadable(path, error.reason, error.message);
          continue;
        }
        const type = child.mode & S_IFMT;
        if (type === S_IFDIR) {
          if (visited.has(entry.nid)) {
            context.problem(path, 'directory appears twice in the tree (a loop); read once');
            continue;
          }
          visited.add(entry.nid);
          subfolders.push({ path, nid: entry.nid });
          continue;
        }
        // Symlinks, devices, fifos and sockets are not members.
        if (type !== S_IFREG) continue;
        let source: ByteSource;
        try {
          source = await dataSource(image, sb, child, path);
        } catch (error) {
          if (!(error instanceof FormatError)) throw error;
          context.unreadable(path, error.reason, error.message);
          continue;
        }
        const bytes = source;
        yield { name: path, size: bytes.size, source: bytes, stream: () => sourceChunks(bytes, context.signal) };
      }
    } catch (error) {
      // Without its root directory the image has nothing to show: that is the container failing.
      if (!(error instanceof FormatError) || folder.path === '') throw error;
      context.unreadable(`${folder.path}/`, error.reason, error.message);
    }
    for (let index = subfolders.length - 1; index >= 0; index--) stack.push(subfolders[index]!);
  }
}

export const erofs: FormatHandler = {
  name: 'erofs',
  access: 'random',
  detect: (head) => superblock(head) !== undefined,
  members: erofsMembers,
};
