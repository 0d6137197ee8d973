/**
 * exFAT filesystems (a seed partition made with `--filesystem exfat`), read in place and without
 * mounting: the boot sector, the FAT, and the folders from the root down as entry sets (a File entry,
 * its Stream Extension, its File Name entries). A file's clusters are contiguous (NoFatChain) or
 * follow the FAT; bytes past its valid data length read as zeros, as exFAT defines them. Members are
 * named by their absolute path, as for every filesystem.
 */
import { concatSource, readExactly, sliceSource, sourceChunks, zeroSource } from './byte-source.js';
import { FormatError, type ByteSource, type FormatContext, type FormatHandler, type Member } from './types.js';

const ENTRY = 32;
const FILE = 0x85;
const STREAM = 0xc0;
const NAME = 0xc1;
const ATTR_DIRECTORY = 0x10;
const NO_FAT_CHAIN = 0x02;
const END_OF_CHAIN = 0xffffffff;
/** A folder larger than this is damaged (exFAT allows 256 MiB of entries). */
const MAX_FOLDER_BYTES = 256 * 1024 * 1024;

interface Geometry {
  sectorSize: number;
  clusterSize: number;
  fatOffset: number;
  heapOffset: number;
  clusterCount: number;
  rootCluster: number;
  volumeBytes: number;
}

/** The exFAT boot sector: its name and the fields a real one holds together. */
export function exfatGeometry(head: Buffer): Geometry | undefined {
  if (head.length < 512 || head.toString('latin1', 3, 11) !== 'EXFAT   ' || head.readUInt16LE(510) !== 0xaa55) return undefined;
  const sectorShift = head[108]!;
  const clusterShift = head[109]!;
  if (sectorShift < 9 || sectorShift > 12 || sectorShift + clusterShift > 25) return undefined;
  const sectorSize = 2 ** sectorShift;
  const clusterCount = head.readUInt32LE(92);
  const rootCluster = head.readUInt32LE(96);
  if (clusterCount === 0 || rootCluster < 2 || rootCluster > clusterCount + 1) return undefined;
  return {
    sectorSize,
    clusterSize: sectorSize * 2 ** clusterShift,
    fatOffset: head.readUInt32LE(80) * sectorSize,
    heapOffset: head.readUInt32LE(88) * sectorSize,
    clusterCount,
    rootCluster,
    volumeBytes: Number(head.readBigUInt64LE(72)) * sectorSize,
  };
}

interface Run {
  cluster: number;
  count: number;
}

/** The FAT is read in pieces this large, the last few kept: a long chain costs a read per piece, not per cluster. */
const FAT_PIECE = 64 * 1024;
const FAT_PIECES_KEPT = 16;

class ExfatReader {
  private readonly pieces = new Map<number, Buffer>();

  constructor(
    readonly image: ByteSource,
    readonly geometry: Geometry,
  ) {}

  /** The FAT's entry for `cluster`: the next cluster of its chain (END_OF_CHAIN at the end). */
  private async next(cluster: number, what: string): Promise<number> {
    const at = this.geometry.fatOffset + cluster * 4;
    const index = Math.floor(at / FAT_PIECE);
    let piece = this.pieces.get(index);
    if (!piece) {
      const start = index * FAT_PIECE;
      piece = await this.image.read(start, Math.min(FAT_PIECE, this.image.size - start));
      if (this.pieces.size >= FAT_PIECES_KEPT) this.pieces.delete(this.pieces.keys().next().value!);
      this.pieces.set(index, piece);
    }
    const offset = at - index * FAT_PIECE;
    if (offset + 4 > piece.length) throw new FormatError('truncated', `${what}: the FAT entry of cluster ${cluster} lies past the end of the image`);
    return piece.readUInt32LE(offset);
  }

  /** The clusters holding `length` bytes from `first`: contiguous, or along the FAT. */
  async runs(first: number, length: number, contiguous: boolean, what: string, signal?: AbortSignal): Promise<Run[]> {
    const { clusterSize, clusterCount } = this.geometry;
    const needed = Math.ceil(length / clusterSize);
    if (needed === 0) return [];
    const valid = (cluster: number) => cluster >= 2 && cluster <= clusterCount + 1;
    if (!valid(first)) throw new FormatError('corrupt', `${what}: first cluster ${first} is out of range`);
    if (contiguous) {
      if (first + needed - 1 > clusterCount + 1) throw new FormatError('corrupt', `${what}: runs past the last cluster`);
      return [{ cluster: first, count: needed }];
    }
    const runs: Run[] = [];
    let cluster = first;
    for (let index = 0; index < needed; index++) {
      if (index % 4096 === 0) signal?.throwIfAborted();
      if (!valid(cluster)) throw new FormatError('corrupt', `${what}: cluster chain ends after ${index} clusters, the file needs ${needed}`);
      const last = runs[runs.length - 1];
      if (last && last.cluster + last.count === cluster) last.count += 1;
      else runs.push({ cluster, count: 1 });
      if (index + 1 < needed) {
        cluster = await this.next(cluster, what);
        if (cluster === END_OF_CHAIN) throw new FormatError('corrupt', `${what}: cluster chain ends after ${index + 1} clusters, the file needs ${needed}`);
      }
    }
    return runs;
  }

  /** A FAT chain followed to its end (the root folder, which has no length of its own), at most `limit` clusters. */
  async chain(first: number, limit: number, what: string, signal?: AbortSignal): Promise<Run[]> {
    const { clusterCount } = this.geometry;
    const runs: Run[] = [];
    for (let cluster = first, index = 0; cluster !== END_OF_CHAIN; index++) {
      if (index % 4096 === 0) signal?.throwIfAborted();
      if (cluster < 2 || cluster > clusterCount + 1) throw new FormatError('corrupt', `${what}: cluster chain leads to cluster ${cluster}, out of range`);
      if (index >= limit) throw new FormatError('corrupt', `${what}: cluster chain longer than ${limit} clusters (a loop?)`);
      const last = runs[runs.length - 1];
      if (last && last.cluster + last.count === cluster) last.count += 1;
      else runs.push({ cluster, count: 1 });
      cluster = await this.next(cluster, what);
    }
    return runs;
  }

  /** `length` bytes over `runs`; past `valid` bytes, zeros. */
  source(runs: Run[], length: number, valid: number): ByteSource {
    const { clusterSize, heapOffset } = this.geometry;
    const parts: ByteSource[] = [];
    let left = Math.min(valid, length);
    for (const run of runs) {
      if (left <= 0) break;
      const bytes = Math.min(run.count * clusterSize, left);
      parts.push(sliceSource(this.image, heapOffset + (run.cluster - 2) * clusterSize, bytes));
      left -= bytes;
    }
    const written = Math.min(valid, length);
    if (written < length) parts.push(zeroSource(length - written));
    return concatSource(parts);
  }
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

/** The entry sets of a folder's bytes, in order; a damaged set is reported to `onDamaged` and skipped. */
async function* entrySets(listing: ByteSource, onDamaged: (at: number) => void, signal?: AbortSignal): AsyncGenerator<Entry> {
  let set: Buffer[] = [];
  let wanted = 0;
  let position = 0;
  for await (const chunk of sourceChunks(listing, signal, 64 * 1024)) {
    for (let offset = 0; offset + ENTRY <= chunk.length; offset += ENTRY, position += ENTRY) {
      const entry = chunk.subarray(offset, offset + ENTRY);
      const type = entry[0]!;
      if (type === 0x00) return; // end of the folder
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
  const reader = new ExfatReader(image, geometry);
  const visited = new Set<number>([geometry.rootCluster]);
  // The root folder has no length of its own: its whole FAT chain.
  const stack: { path: string; first: number; length: number | undefined; contiguous: boolean }[] = [{ path: '', first: geometry.rootCluster, length: undefined, contiguous: false }];
  while (stack.length > 0) {
    const folder = stack.pop()!;
    const where = folder.path === '' ? 'the root folder' : `folder ${folder.path}`;
    const subfolders: typeof stack = [];
    try {
      let listing: ByteSource;
      if (folder.length === undefined) {
        const runs = await reader.chain(folder.first, Math.ceil(MAX_FOLDER_BYTES / geometry.clusterSize), where, context.signal);
        const bytes = runs.reduce((sum, run) => sum + run.count, 0) * geometry.clusterSize;
        listing = reader.source(runs, bytes, bytes);
      } else {
        if (folder.length > MAX_FOLDER_BYTES) throw new FormatError('corrupt', `${where} claims ${folder.length} bytes`);
        listing = reader.source(await reader.runs(folder.first, folder.length, folder.contiguous, where, context.signal), folder.length, folder.length);
      }
      const damaged = (at: number) => context.problem(`${folder.path}/`, `a damaged entry set at byte ${at} of the folder was skipped`);
      for await (const entry of entrySets(listing, damaged, context.signal)) {
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
          source = entry.length === 0 ? zeroSource(0) : reader.source(await reader.runs(entry.first, entry.valid, entry.contiguous, path, context.signal), entry.length, entry.valid);
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
}
