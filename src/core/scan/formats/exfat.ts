/**
 * exFAT filesystems (a seed partition made with `--filesystem exfat`), read in place and without
 * mounting: the boot sector, the FAT, and the folders from the root down as entry sets (a File entry,
 * its Stream Extension, its File Name entries). A file's clusters are contiguous (NoFatChain) or
 * follow the FAT (read with fat.ts's cached table and chain walk); bytes past its valid data length
 * read as zeros, as exFAT defines them. Members are named by their absolute path, as for every filesystem;
 * the clusters the allocation bitmap calls free (where deleted files' bytes stay) are one raw
 * `(free space)` member (see free-space.ts).
 */
import { concatSource, readExactly, sliceSource, sourceChunks, zeroSource } from './byte-source.js';
import { chainRuns, FatTable, runsSource, type ChainGeometry, type Run } from './fat.js';
import { FREE_SPACE, FreeRuns } from './free-space.js';
import { FormatError, type ByteSource, type FormatContext, type FormatHandler, type Member } from './types.js';

const ENTRY = 32;
const FILE = 0x85;
const STREAM = 0xc0;
const NAME = 0xc1;
const BITMAP = 0x81;
const ATTR_DIRECTORY = 0x10;
const NO_FAT_CHAIN = 0x02;
/** A folder larger than this is damaged (exFAT allows 256 MiB of entries). */
const MAX_FOLDER_BYTES = 256 * 1024 * 1024;

/** The chain geometry fat.ts follows, with exFAT's root folder and volume length. */
export type ExfatGeometry = ChainGeometry & { rootCluster: number; volumeBytes: number };

/** The exFAT boot sector: its name and the fields a real one holds together. */
export function exfatGeometry(head: Buffer): ExfatGeometry | undefined {
  if (head.length < 512 || head.toString('latin1', 3, 11) !== 'EXFAT   ' || head.readUInt16LE(510) !== 0xaa55) return undefined;
  const sectorShift = head[108]!;
  const clusterShift = head[109]!;
  if (sectorShift < 9 || sectorShift > 12 || sectorShift + clusterShift > 25) return undefined;
  const sectorSize = 2 ** sectorShift;
  const clusterCount = head.readUInt32LE(92);
  const rootCluster = head.readUInt32LE(96);
  if (clusterCount === 0 || rootCluster < 2 || rootCluster > clusterCount + 1) return undefined;
  return {
    bits: 32,
    exfat: true,
    clusterBytes: sectorSize * 2 ** clusterShift,
    fatOffset: head.readUInt32LE(80) * sectorSize,
    fatBytes: head.readUInt32LE(84) * sectorSize,
    dataOffset: head.readUInt32LE(88) * sectorSize,
    clusterCount,
    rootCluster,
    volumeBytes: Number(head.readBigUInt64LE(72)) * sectorSize,
  };
}

/**
 * The clusters holding the first `valid` bytes from `first`: contiguous (NoFatChain), or along the
 * FAT, whose chain may not be longer than `length` (its allocation) needs.
 */
async function clusterRuns(table: FatTable, geometry: ExfatGeometry, first: number, length: number, valid: number, contiguous: boolean, what: string, signal?: AbortSignal): Promise<Run[]> {
  const needed = Math.ceil(valid / geometry.clusterBytes);
  if (needed === 0) return [];
  if (contiguous) {
    if (first < 2 || first + needed - 1 > geometry.clusterCount + 1) throw new FormatError('corrupt', `${what}: clusters ${first}-${first + needed - 1} lie outside the volume`);
    return [{ cluster: first, count: needed }];
  }
  const runs = await chainRuns(table, geometry, first, Math.ceil(length / geometry.clusterBytes), what, signal);
  const clusters = runs.reduce((sum, run) => sum + run.count, 0);
  if (clusters < needed) throw new FormatError('corrupt', `${what}: cluster chain ends after ${clusters} clusters, the file needs ${needed}`);
  return runs;
}

/** `length` bytes over `runs`: the first `valid` on the volume, zeros after them. */
function contentSource(image: ByteSource, geometry: ExfatGeometry, runs: Run[], length: number, valid: number): ByteSource {
  return concatSource([runsSource(image, geometry, runs, valid), zeroSource(length - valid)]);
}

interface Entry {
  name: string;
  directory: boolean;
  first: number;
  contiguous: boolean;
  valid: number;
  length: number;
}

/** An entry set (File, then Stream Extension and File Name entries) as a folder entry; undefined when it is damaged. */
function entryOf(set: Buffer[]): Entry | undefined {
  const [file, stream, ...names] = set;
  if (!file || !stream || stream[0] !== STREAM) return undefined;
  const nameLength = stream[3]!;
  const units = Buffer.concat(names.filter((entry) => entry[0] === NAME).map((entry) => entry.subarray(2, 32)));
  if (units.length < nameLength * 2) return undefined;
  return {
    name: units.toString('utf16le', 0, nameLength * 2).replace(/\//g, '_'),
    directory: (file.readUInt16LE(4) & ATTR_DIRECTORY) !== 0,
    first: stream.readUInt32LE(20),
    contiguous: (stream[1]! & NO_FAT_CHAIN) !== 0,
    valid: Number(stream.readBigUInt64LE(8)),
    length: Number(stream.readBigUInt64LE(24)),
  };
}

/**
 * The entry sets of a folder's bytes, in order; a damaged set is reported to `onDamaged` and skipped.
 * The allocation bitmap's entry (the root folder's) goes to `onBitmap`.
 */
async function* entrySets(listing: ByteSource, onDamaged: (at: number) => void, signal?: AbortSignal, onBitmap?: (entry: Buffer) => void): AsyncGenerator<Entry> {
  let set: Buffer[] = [];
  let wanted = 0;
  let position = 0;
  for await (const chunk of sourceChunks(listing, signal, 64 * 1024)) {
    for (let offset = 0; offset + ENTRY <= chunk.length; offset += ENTRY, position += ENTRY) {
      const entry = chunk.subarray(offset, offset + ENTRY);
      const type = entry[0]!;
      if (type === 0x00) return; // end of the folder
      if (type === BITMAP) onBitmap?.(Buffer.from(entry));
      if (type === FILE) {
        set = [Buffer.from(entry)];
        wanted = 1 + entry[1]!;
        continue;
      }
      if (set.length === 0) continue; // bitmap, up-case table, label, or unused entries
      if ((type & 0xc0) !== 0xc0) {
        // Not an in-use secondary entry (a primary one, or one not in use) inside a set: cut short.
        onDamaged(position);
        set = [];
        continue;
      }
      set.push(Buffer.from(entry));
      if (set.length < wanted) continue;
      const parsed = entryOf(set);
      set = [];
      if (parsed) yield parsed;
      else onDamaged(position);
    }
  }
}

export const exfat: FormatHandler = {
  name: 'exfat',
  access: 'random',
  detect: (head) => exfatGeometry(head) !== undefined,
  members: exfatMembers,
};

async function* exfatMembers(input: ByteSource | AsyncIterable<Buffer>, context: FormatContext): AsyncGenerator<Member> {
  if (typeof (input as ByteSource).read !== 'function') throw new FormatError('unsupported', 'exFAT needs random access to the image');
  const disk = input as ByteSource;
  const geometry = exfatGeometry(await readExactly(disk, 0, 512, 'the boot sector'));
  if (!geometry) throw new FormatError('corrupt', 'not an exFAT boot sector');
  const image = sliceSource(disk, 0, Math.min(disk.size, geometry.volumeBytes || disk.size));
  const table = new FatTable(image, geometry);
  const visited = new Set<number>([geometry.rootCluster]);
  /** The allocation bitmap's entry in the root folder (the first, when a TexFAT volume has two). */
  let bitmap: Buffer | undefined;
  // The root folder has no length of its own: its whole FAT chain.
  const stack: { path: string; first: number; length: number | undefined; contiguous: boolean }[] = [{ path: '', first: geometry.rootCluster, length: undefined, contiguous: false }];
  while (stack.length > 0) {
    const folder = stack.pop()!;
    const where = folder.path === '' ? 'the root folder' : `folder ${folder.path}`;
    const subfolders: typeof stack = [];
    try {
      let listing: ByteSource;
      if (folder.length === undefined) {
        const runs = await chainRuns(table, geometry, folder.first, Math.ceil(MAX_FOLDER_BYTES / geometry.clusterBytes), where, context.signal);
        listing = runsSource(image, geometry, runs, runs.reduce((sum, run) => sum + run.count, 0) * geometry.clusterBytes);
      } else {
        if (folder.length > MAX_FOLDER_BYTES) throw new FormatError('corrupt', `${where} claims ${folder.length} bytes`);
        listing = runsSource(image, geometry, await clusterRuns(table, geometry, folder.first, folder.length, folder.length, folder.contiguous, where, context.signal), folder.length);
      }
      const damaged = (at: number) => context.problem(`${folder.path}/`, `a damaged entry set at byte ${at} of the folder was skipped`);
      const onBitmap = folder.path === '' ? (entry: Buffer) => (bitmap ??= entry) : undefined;
      for await (const entry of entrySets(listing, damaged, context.signal, onBitmap)) {
        const path = `${folder.path}/${entry.name}`;
        if (entry.directory) {
          if (entry.length === 0) continue;
          if (visited.has(entry.first)) {
            context.problem(path, 'folder appears twice in the tree (a loop); read once');
            continue;
          }
          visited.add(entry.first);
          subfolders.push({ path, first: entry.first, length: entry.length, contiguous: entry.contiguous });
          continue;
        }
        let source: ByteSource;
        try {
          if (entry.valid > entry.length) throw new FormatError('corrupt', `${path}: valid data length ${entry.valid} exceeds its length ${entry.length}`);
          const runs = await clusterRuns(table, geometry, entry.first, entry.length, entry.valid, entry.contiguous, path, context.signal);
          source = contentSource(image, geometry, runs, entry.length, entry.valid);
        } catch (error) {
          if (!(error instanceof FormatError)) throw error;
          context.unreadable(path, error.reason, error.message);
          continue;
        }
        const bytes = source;
        yield { name: path, size: bytes.size, source: bytes, stream: () => sourceChunks(bytes, context.signal) };
      }
    } catch (error) {
      // Without its root folder the volume has nothing to show: that is the container failing.
      if (!(error instanceof FormatError) || folder.path === '') throw error;
      context.unreadable(`${folder.path}/`, error.reason, error.message);
    }
    for (let index = subfolders.length - 1; index >= 0; index--) stack.push(subfolders[index]!);
  }
  let free: Member | undefined;
  try {
    if (!bitmap) throw new FormatError('corrupt', 'the root folder has no allocation bitmap');
    free = await freeClusters(image, table, geometry, bitmap, context);
  } catch (error) {
    if (!(error instanceof FormatError)) throw error;
    context.unreadable(FREE_SPACE, error.reason, `the free space was not read: ${error.message}`);
  }
  if (free) yield free;
}

/** The clusters the allocation bitmap calls free (bit i is cluster i + 2). */
async function freeClusters(image: ByteSource, table: FatTable, geometry: ExfatGeometry, entry: Buffer, context: FormatContext): Promise<Member | undefined> {
  const first = entry.readUInt32LE(20);
  const length = Number(entry.readBigUInt64LE(24));
  const bits = geometry.clusterCount;
  if (length < Math.ceil(bits / 8)) throw new FormatError('corrupt', `the allocation bitmap has ${length} bytes, the volume's ${bits} clusters need ${Math.ceil(bits / 8)}`);
  const runs = await chainRuns(table, geometry, first, Math.ceil(length / geometry.clusterBytes), 'the allocation bitmap', context.signal);
  const free = new FreeRuns();
  let bit = 0;
  for await (const chunk of sourceChunks(runsSource(image, geometry, runs, Math.ceil(bits / 8)), context.signal)) {
    free.addZeroBits(chunk, bit, Math.min(chunk.length * 8, bits - bit));
    bit += chunk.length * 8;
  }
  if (bit < bits) throw new FormatError('truncated', 'the allocation bitmap ends early');
  return free.member(image, geometry.dataOffset, geometry.clusterBytes, context);
}
