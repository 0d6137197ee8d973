/**
 * FAT12/16/32 filesystems (the EFI boot image of an installer ISO, a FAT seed partition): every file
 * as a member whose `source` follows its cluster chain in place. Long file names (VFAT LFN) are used
 * when their checksum matches the short entry, else the 8.3 name (with the NT lowercase flags).
 * Deleted entries, volume labels and `.`/`..` are not members; the clusters the FAT calls free (where
 * deleted files' bytes stay) are, as one raw `(free space)` member. The FAT is read in small cached pieces,
 * not whole, so a 32 GiB FAT32 partition costs the same memory as a 4 MiB EFI image.
 *
 * A chain that loops or runs longer than its file's size, or points outside the data area, is
 * FormatError('corrupt') for that file (reported through `unreadable`, the rest is still read); a
 * directory whose chain is bad ends the walk, since what it lists cannot be known.
 */
import { concatSource, readExactly, sliceSource, sourceChunks } from './byte-source.js';
import { FREE_SPACE, FreeRuns } from './free-space.js';
import { FormatError, type ByteSource, type FormatContext, type FormatHandler, type Member } from './types.js';

const ENTRY = 32;
const ATTR_VOLUME = 0x08;
const ATTR_DIRECTORY = 0x10;
const ATTR_LFN = 0x0f;
/** Bytes of FAT read and cached at a time, and how many such pieces are kept. */
const FAT_PIECE = 64 * 1024;
const FAT_PIECES_KEPT = 16;
/** A folder holds at most 65536 entries of 32 bytes: a longer chain is a loop. */
const MAX_FOLDER_CLUSTERS = (geometry: FatGeometry) => Math.min(geometry.clusterCount, Math.ceil((65536 * ENTRY) / geometry.clusterBytes));

export interface FatGeometry {
  bits: 12 | 16 | 32;
  bytesPerSector: number;
  clusterBytes: number;
  /** Byte offset of the first FAT. */
  fatOffset: number;
  /** Bytes in one FAT. */
  fatBytes: number;
  /** FAT12/16: the fixed root directory region. */
  rootOffset: number;
  rootBytes: number;
  /** FAT32: the root directory's first cluster. */
  rootCluster: number;
  dataOffset: number;
  /** Clusters 2 .. clusterCount + 1 exist. */
  clusterCount: number;
  totalBytes: number;
}

/**
 * The geometry from a FAT boot sector, or undefined when `head` is not one. Checked as the Microsoft
 * specification defines it (jump, BPB ranges, 0x55AA), the type by the cluster count, and a type
 * string or FAT32's fields present so an MBR or random bytes do not pass.
 */
export function fatGeometry(head: Buffer): FatGeometry | undefined {
  if (head.length < 512 || head[510] !== 0x55 || head[511] !== 0xaa) return undefined;
  if (head[0] !== 0xeb && head[0] !== 0xe9) return undefined;
  const bytesPerSector = head.readUInt16LE(11);
  const sectorsPerCluster = head[13]!;
  const reserved = head.readUInt16LE(14);
  const fats = head[16]!;
  const rootEntries = head.readUInt16LE(17);
  const media = head[21]!;
  if (![512, 1024, 2048, 4096].includes(bytesPerSector)) return undefined;
  if (sectorsPerCluster === 0 || (sectorsPerCluster & (sectorsPerCluster - 1)) !== 0) return undefined;
  if (reserved === 0 || fats === 0 || fats > 4 || (media !== 0xf0 && media < 0xf8)) return undefined;
  const fatSectors = head.readUInt16LE(22) || head.readUInt32LE(36);
  const totalSectors = head.readUInt16LE(19) || head.readUInt32LE(32);
  if (fatSectors === 0 || totalSectors === 0) return undefined;
  const fat32Fields = head.readUInt16LE(22) === 0 && rootEntries === 0;
  const typeString = head.toString('latin1', 54, 57) === 'FAT' || head.toString('latin1', 82, 87) === 'FAT32';
  if (!typeString && !fat32Fields) return undefined;
  const rootSectors = Math.ceil((rootEntries * ENTRY) / bytesPerSector);
  const dataSector = reserved + fats * fatSectors + rootSectors;
  if (dataSector >= totalSectors) return undefined;
  const clusterCount = Math.floor((totalSectors - dataSector) / sectorsPerCluster);
  const bits = clusterCount < 4085 ? 12 : clusterCount < 65525 ? 16 : 32;
  if ((bits === 32) !== fat32Fields) return undefined; // a FAT32 count with a FAT16 layout (or the reverse) is not a volume any driver mounts
  return {
    bits,
    bytesPerSector,
    clusterBytes: bytesPerSector * sectorsPerCluster,
    fatOffset: reserved * bytesPerSector,
    fatBytes: fatSectors * bytesPerSector,
    rootOffset: (reserved + fats * fatSectors) * bytesPerSector,
    rootBytes: rootSectors * bytesPerSector,
    rootCluster: bits === 32 ? head.readUInt32LE(44) : 0,
    dataOffset: dataSector * bytesPerSector,
    clusterCount,
    totalBytes: totalSectors * bytesPerSector,
  };
}

export const fat: FormatHandler = {
  name: 'fat',
  access: 'random',
  detect: (head) => fatGeometry(head) !== undefined,
  members: (input, context) => fatMembers(input, context),
};

/**
 * What following cluster chains needs of a volume: FAT12/16/32's geometry, or exFAT's (`exfat`: its
 * entries are 32 bits whole, not 28, and a chain ends at 0xFFFFFFF7 and above).
 */
export type ChainGeometry = Pick<FatGeometry, 'bits' | 'fatOffset' | 'fatBytes' | 'clusterCount' | 'clusterBytes' | 'dataOffset'> & { exfat?: true };

/** Reads FAT entries through a small cache of FAT pieces. */
export class FatTable {
  private readonly pieces = new Map<number, Buffer>();
  constructor(
    private readonly image: ByteSource,
    private readonly geometry: ChainGeometry,
  ) {}

  private async bytes(offset: number, length: number): Promise<Buffer> {
    const index = Math.floor(offset / FAT_PIECE);
    const within = offset - index * FAT_PIECE;
    if (within + length > FAT_PIECE) {
      // A FAT12 entry straddling two pieces.
      return Buffer.concat([await this.bytes(offset, FAT_PIECE - within), await this.bytes((index + 1) * FAT_PIECE, length - (FAT_PIECE - within))]);
    }
    let piece = this.pieces.get(index);
    if (piece === undefined) {
      const start = this.geometry.fatOffset + index * FAT_PIECE;
      piece = await readExactly(this.image, start, Math.min(FAT_PIECE, this.geometry.fatBytes - index * FAT_PIECE), 'the FAT');
      if (this.pieces.size >= FAT_PIECES_KEPT) this.pieces.delete(this.pieces.keys().next().value!);
      this.pieces.set(index, piece);
    }
    if (within + length > piece.length) throw new FormatError('corrupt', 'cluster number beyond the FAT');
    return piece.subarray(within, within + length);
  }

  /** The entry for `cluster`: the next cluster, or a value >= the end-of-chain mark. */
  async next(cluster: number): Promise<number> {
    switch (this.geometry.bits) {
      case 12: {
        const offset = cluster + (cluster >> 1);
        const pair = (await this.bytes(offset, 2)).readUInt16LE(0);
        return cluster & 1 ? pair >> 4 : pair & 0xfff;
      }
      case 16:
        return (await this.bytes(cluster * 2, 2)).readUInt16LE(0);
      case 32: {
        const entry = (await this.bytes(cluster * 4, 4)).readUInt32LE(0);
        return this.geometry.exfat ? entry : entry & 0x0fffffff;
      }
    }
  }

  endOfChain(value: number): boolean {
    if (this.geometry.exfat) return value >= 0xfffffff7;
    return value >= (this.geometry.bits === 12 ? 0xff8 : this.geometry.bits === 16 ? 0xfff8 : 0x0ffffff8);
  }
}

export interface Run {
  cluster: number;
  count: number;
}

/**
 * The runs of contiguous clusters of a chain from `first`. `limit` is the most clusters the chain may
 * have (the file size rounded up, or the whole volume for a directory): more means a loop.
 */
export async function chainRuns(table: FatTable, geometry: ChainGeometry, first: number, limit: number, what: string, signal?: AbortSignal): Promise<Run[]> {
  const runs: Run[] = [];
  let cluster = first;
  for (let count = 0; ; count++) {
    if (cluster < 2 || cluster > geometry.clusterCount + 1) throw new FormatError('corrupt', `${what}: cluster ${cluster} is outside the volume`);
    if (count >= limit) throw new FormatError('corrupt', `${what}: cluster chain is longer than ${limit} clusters (a loop in the FAT?)`);
    if (count % 65536 === 65535) signal?.throwIfAborted();
    const last = runs[runs.length - 1];
    if (last !== undefined && last.cluster + last.count === cluster) last.count++;
    else runs.push({ cluster, count: 1 });
    const next = await table.next(cluster);
    if (table.endOfChain(next)) return runs;
    cluster = next;
  }
}

export function runsSource(image: ByteSource, geometry: ChainGeometry, runs: Run[], length: number): ByteSource {
  const parts: ByteSource[] = [];
  let remaining = length;
  for (const run of runs) {
    if (remaining <= 0) break;
    const bytes = Math.min(remaining, run.count * geometry.clusterBytes);
    parts.push(sliceSource(image, geometry.dataOffset + (run.cluster - 2) * geometry.clusterBytes, bytes));
    remaining -= bytes;
  }
  return concatSource(parts);
}

interface PendingDirectory {
  path: string;
  /** FAT32 root and subfolders: first cluster; 0 for the FAT12/16 fixed root. */
  cluster: number;
}

async function* fatMembers(input: ByteSource | AsyncIterable<Buffer>, context: FormatContext): AsyncGenerator<Member> {
  if (typeof (input as ByteSource).read !== 'function') throw new FormatError('unsupported', 'FAT needs random access to the image');
  const disk = input as ByteSource;
  const geometry = fatGeometry(await readExactly(disk, 0, 512, 'the boot sector'));
  if (geometry === undefined) throw new FormatError('corrupt', 'not a FAT boot sector');
  // A partition may be larger than its filesystem: read only the filesystem's own bytes.
  if (geometry.totalBytes > disk.size) throw new FormatError('truncated', `the FAT volume is ${geometry.totalBytes} bytes but the image only ${disk.size}`);
  const image = sliceSource(disk, 0, geometry.totalBytes);
  const table = new FatTable(image, geometry);
  const visited = new Set<number>();
  const stack: PendingDirectory[] = [{ path: '', cluster: geometry.bits === 32 ? geometry.rootCluster : 0 }];
  while (stack.length > 0) {
    const directory = stack.pop()!;
    const subdirectories: PendingDirectory[] = [];
    const where = directory.path === '' ? 'the root folder' : `folder ${directory.path}`;
    // A folder that cannot be read (its chain loops, it lies past the end) is reported; the rest is still read.
    try {
      let listing: ByteSource;
      if (directory.cluster === 0) listing = sliceSource(image, geometry.rootOffset, geometry.rootBytes);
      else {
        const runs = await chainRuns(table, geometry, directory.cluster, MAX_FOLDER_CLUSTERS(geometry), where, context.signal);
        listing = runsSource(image, geometry, runs, runs.reduce((total, run) => total + run.count, 0) * geometry.clusterBytes);
      }
      for await (const entry of directoryEntries(listing, context.signal)) {
        // FAT12/16 keep other data (OS/2 extended attributes) in the high cluster word.
        if (geometry.bits !== 32) entry.cluster &= 0xffff;
        const path = `${directory.path}/${entry.name}`; // absolute, as for every filesystem
        if (entry.directory) {
          if (entry.cluster === 0) continue; // `..` of a first-level folder, or an empty record
          if (visited.has(entry.cluster)) {
            context.problem(path, 'folder appears twice in the tree (a loop); read once');
            continue;
          }
          visited.add(entry.cluster);
          subdirectories.push({ path, cluster: entry.cluster });
          continue;
        }
        context.signal?.throwIfAborted();
        let source: ByteSource;
        try {
          if (entry.size === 0) source = sliceSource(image, 0, 0);
          else {
            const limit = Math.ceil(entry.size / geometry.clusterBytes);
            const runs = await chainRuns(table, geometry, entry.cluster, limit, path, context.signal);
            const clusters = runs.reduce((total, run) => total + run.count, 0);
            if (clusters < limit) throw new FormatError('corrupt', `${path}: cluster chain ends after ${clusters} clusters, the file needs ${limit}`);
            source = runsSource(image, geometry, runs, entry.size);
          }
        } catch (error) {
          if (!(error instanceof FormatError)) throw error;
          context.unreadable(path, error.reason, error.message);
          continue;
        }
        const bytes = source;
        yield { name: path, size: entry.size, source: bytes, stream: () => sourceChunks(bytes, context.signal) };
      }
    } catch (error) {
      // Without its root folder the volume has nothing to show: that is the container failing.
      if (!(error instanceof FormatError) || directory.path === '') throw error;
      context.unreadable(`${directory.path}/`, error.reason, error.message);
    }
    for (let index = subdirectories.length - 1; index >= 0; index--) stack.push(subdirectories[index]!);
  }
  let free: Member | undefined;
  try {
    free = await freeClusters(image, geometry, context);
  } catch (error) {
    if (!(error instanceof FormatError)) throw error;
    context.unreadable(FREE_SPACE, error.reason, `the free space was not read: ${error.message}`);
  }
  if (free) yield free;
}

/** The clusters whose FAT entry is 0 (free), read from the FAT in pieces of whole entries. */
async function freeClusters(image: ByteSource, geometry: FatGeometry, context: FormatContext): Promise<Member | undefined> {
  const free = new FreeRuns();
  const last = geometry.clusterCount + 1;
  if (geometry.bits === 12) {
    // At most 4084 clusters: the whole FAT at once (entries straddle bytes).
    const needed = last + (last >> 1) + 2;
    if (geometry.fatBytes < needed) throw new FormatError('corrupt', `the FAT has ${geometry.fatBytes} bytes, its ${geometry.clusterCount} clusters need ${needed}`);
    const fat = await readExactly(image, geometry.fatOffset, needed, 'the FAT');
    for (let cluster = 2; cluster <= last; cluster++) {
      const pair = fat.readUInt16LE(cluster + (cluster >> 1));
      if ((cluster & 1 ? pair >> 4 : pair & 0xfff) === 0) free.add(cluster - 2, 1);
    }
  } else {
    const width = geometry.bits / 8;
    const perPiece = Math.floor((1024 * 1024) / width);
    for (let start = 2; start <= last; start += perPiece) {
      context.signal?.throwIfAborted();
      const count = Math.min(perPiece, last + 1 - start);
      const piece = await readExactly(image, geometry.fatOffset + start * width, count * width, 'the FAT');
      for (let index = 0; index < count; index++) {
        const entry = width === 2 ? piece.readUInt16LE(index * 2) : piece.readUInt32LE(index * 4) & 0x0fffffff;
        if (entry === 0) free.add(start + index - 2, 1);
      }
    }
  }
  return free.member(image, geometry.dataOffset, geometry.clusterBytes, context);
}

interface Entry {
  name: string;
  directory: boolean;
  cluster: number;
  size: number;
}

async function* directoryEntries(listing: ByteSource, signal?: AbortSignal): AsyncGenerator<Entry> {
  // Long-name pieces gathered so far (in on-disk order: last piece first), and the checksum they carry.
  let longParts: string[] = [];
  let longChecksum = -1;
  let expected = 0;
  for await (const chunk of sourceChunks(listing, signal, 64 * 1024)) {
    for (let offset = 0; offset + ENTRY <= chunk.length; offset += ENTRY) {
      const entry = chunk.subarray(offset, offset + ENTRY);
      const first = entry[0]!;
      if (first === 0x00) return; // end of the folder
      const attributes = entry[11]!;
      if (first === 0xe5) {
        longParts = [];
        continue;
      }
      if ((attributes & 0x3f) === ATTR_LFN) {
        const order = first & 0x1f;
        if (first & 0x40) {
          longParts = [];
          longChecksum = entry[13]!;
          expected = order;
        }
        if (order !== expected || entry[13] !== longChecksum || order === 0) {
          longParts = [];
          expected = -1;
          continue;
        }
        longParts.push(lfnPiece(entry));
        expected--;
        continue;
      }
      const shortName = entry.subarray(0, 11);
      const long = longParts.length > 0 && expected === 0 && shortChecksum(shortName) === longChecksum ? longParts.reverse().join('') : undefined;
      longParts = [];
      if (attributes & ATTR_VOLUME) continue;
      const name = long ?? shortNameOf(entry);
      if (name === '.' || name === '..') continue;
      yield {
        name: name.replace(/\//g, '_'),
        directory: (attributes & ATTR_DIRECTORY) !== 0,
        cluster: entry.readUInt16LE(20) * 0x10000 + entry.readUInt16LE(26),
        size: entry.readUInt32LE(28),
      };
    }
  }
}

function lfnPiece(entry: Buffer): string {
  const units = Buffer.concat([entry.subarray(1, 11), entry.subarray(14, 26), entry.subarray(28, 32)]);
  let text = units.toString('utf16le');
  const end = text.indexOf('\0');
  if (end >= 0) text = text.slice(0, end);
  return text;
}

function shortChecksum(name: Buffer): number {
  let sum = 0;
  for (const byte of name) sum = (((sum & 1) << 7) + (sum >> 1) + byte) & 0xff;
  return sum;
}

function shortNameOf(entry: Buffer): string {
  const raw = Buffer.from(entry.subarray(0, 11));
  if (raw[0] === 0x05) raw[0] = 0xe5; // 0x05 stands for a real leading 0xE5 (a Kanji lead byte)
  let base = raw.toString('latin1', 0, 8).trimEnd();
  let extension = raw.toString('latin1', 8, 11).trimEnd();
  const caseFlags = entry[12]!;
  if (caseFlags & 0x08) base = base.toLowerCase();
  if (caseFlags & 0x10) extension = extension.toLowerCase();
  return extension === '' ? base : `${base}.${extension}`;
}
