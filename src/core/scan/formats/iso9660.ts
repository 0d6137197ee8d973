/**
 * ISO 9660 images (a NixOS installer ISO, hybrid or not): every regular file as a member whose
 * `source` is its extent(s) in place, so the walker reads a nested `nix-store.squashfs` or `efi.img`
 * without copying it. Names come from Rock Ridge (NM, with PX modes telling files from symlinks,
 * devices and fifos, and CL/RE undoing deep-directory relocation), else from Joliet (UCS-2), else
 * from the plain ISO 9660 names. Files over 4 GiB (ISO level 3) are several directory records with the
 * multi-extent flag; they are one member over the concatenated extents. El Torito boot images that are
 * not also a file in the tree (xorriso can hide them) are members named `(el-torito)/efi.img`-style.
 *
 * The image is `volume space size × logical block size` long (from the primary volume descriptor): a
 * hybrid image written to a stick is followed by other partitions, which are not the ISO's to read
 * (see partitions.ts). Memory stays bounded by one directory block piece and the directory stack.
 */
import { bufferSource, concatSource, readExactly, sliceSource, sourceChunks } from './byte-source.js';
import { hasPartitionsBeyondIso } from './partitions.js';
import { zisofsChunks } from './zisofs.js';
import { FormatError, type ByteSource, type FormatContext, type FormatHandler, type Member } from './types.js';

const SECTOR = 2048;
const DESCRIPTORS_START = 16 * SECTOR;
/** Volume descriptors before the terminator: real images have 3-6; more means garbage. */
const MAX_DESCRIPTORS = 64;
/** Continuation areas (SUSP CE) followed for one record before it is called a loop. */
const MAX_CONTINUATIONS = 32;
/** Directory bytes read at a time (whole sectors: records never cross a sector boundary). */
const DIRECTORY_PIECE = 32 * SECTOR;

const FLAG_HIDDEN_ASSOCIATED = 0x04;
const FLAG_DIRECTORY = 0x02;
const FLAG_MULTI_EXTENT = 0x80;

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;

/** True when `head` holds an ISO 9660 volume descriptor at sector 16 (also for hybrid images, whose MBR/GPT sit in the unused first 32 KiB). */
export function isIso9660(head: Buffer): boolean {
  return head.length >= DESCRIPTORS_START + 7 && head.toString('latin1', DESCRIPTORS_START + 1, DESCRIPTORS_START + 6) === 'CD001';
}

/**
 * The ISO's own length in bytes from its primary volume descriptor (volume space size × logical block
 * size), or undefined when `head` has no ISO or no primary descriptor within it.
 */
export function isoVolumeBytes(head: Buffer): number | undefined {
  if (!isIso9660(head)) return undefined;
  for (let offset = DESCRIPTORS_START; offset + SECTOR <= head.length; offset += SECTOR) {
    const type = head[offset];
    if (head.toString('latin1', offset + 1, offset + 6) !== 'CD001' || type === 255) return undefined;
    if (type === 1) return head.readUInt32LE(offset + 80) * head.readUInt16LE(offset + 128);
  }
  return undefined;
}

interface Extent {
  block: number;
  length: number;
}

interface Volume {
  blockSize: number;
  volumeBytes: number;
  /** The root directory record of the tree we read (primary or Joliet). */
  root: Extent;
  jolietRoot?: Extent;
  bootCatalog?: number;
}

type Naming = { kind: 'rock-ridge'; skip: number } | { kind: 'joliet' } | { kind: 'plain' };

interface DirectoryRecord {
  extent: Extent;
  flags: number;
  interleaved: boolean;
  rawName: Buffer;
  systemUse: Buffer;
}

interface RockRidge {
  name?: string;
  mode?: number;
  symlink: boolean;
  /** CL: this file record stands for a directory relocated to this block. */
  childLink?: number;
  /** RE: this directory is a relocated one, listed again where CL points from. */
  relocated: boolean;
  /** ZF or Z2: the file's bytes are zisofs-compressed (zisofs.ts); its uncompressed size. */
  zisofs?: { size: number };
}

interface PendingDirectory {
  path: string;
  extent: Extent;
}

export const iso9660: FormatHandler = {
  name: 'iso9660',
  access: 'random',
  // A stick (the ISO then more partitions) is the partitions handler's, which hands the ISO region back as a member.
  detect: (head, size) => isIso9660(head) && !hasPartitionsBeyondIso(head, size),
  members: (input, context) => isoMembers(input, context),
};

function isByteSource(input: ByteSource | AsyncIterable<Buffer>): input is ByteSource {
  return typeof (input as ByteSource).read === 'function';
}

async function readVolume(image: ByteSource): Promise<Volume> {
  let primary: Buffer | undefined;
  let joliet: Buffer | undefined;
  let bootCatalog: number | undefined;
  for (let index = 0; ; index++) {
    if (index >= MAX_DESCRIPTORS) throw new FormatError('corrupt', `no volume descriptor set terminator within ${MAX_DESCRIPTORS} descriptors`);
    const descriptor = await readExactly(image, DESCRIPTORS_START + index * SECTOR, SECTOR, 'a volume descriptor');
    if (descriptor.toString('latin1', 1, 6) !== 'CD001') throw new FormatError('corrupt', `volume descriptor ${index} lacks the CD001 identifier`);
    const type = descriptor[0];
    if (type === 255) break;
    if (type === 1 && primary === undefined) primary = descriptor;
    if (type === 2 && joliet === undefined && descriptor[88] === 0x25 && descriptor[89] === 0x2f && [0x40, 0x43, 0x45].includes(descriptor[90]!)) {
      joliet = descriptor;
    }
    if (type === 0 && descriptor.toString('latin1', 7, 30) === 'EL TORITO SPECIFICATION') bootCatalog = descriptor.readUInt32LE(71);
  }
  if (primary === undefined) throw new FormatError('corrupt', 'no primary volume descriptor');
  const blockSize = primary.readUInt16LE(128);
  if (![512, 1024, 2048].includes(blockSize)) throw new FormatError('unsupported', `logical block size ${blockSize}`);
  const volumeBytes = primary.readUInt32LE(80) * blockSize;
  // Joliet is only used when the primary tree has no Rock Ridge; decided by the caller after the root is read.
  const rootOf = (descriptor: Buffer) => ({ block: descriptor.readUInt32LE(156 + 2), length: descriptor.readUInt32LE(156 + 10) });
  return {
    blockSize,
    volumeBytes,
    root: rootOf(primary),
    ...(bootCatalog !== undefined ? { bootCatalog } : {}),
    ...(joliet !== undefined ? { jolietRoot: rootOf(joliet) } : {}),
  };
}

async function* isoMembers(source: ByteSource | AsyncIterable<Buffer>, context: FormatContext): AsyncGenerator<Member> {
  if (!isByteSource(source)) throw new FormatError('unsupported', 'ISO 9660 needs random access to the image');
  const input = source;
  const volume = await readVolume(input);
  // A stick holds more than the ISO: read only the ISO's own bytes (a truncated image keeps its size, and members past its end are reported).
  const image = input.size > volume.volumeBytes ? sliceSource(input, 0, volume.volumeBytes) : input;
  const naming = await chooseNaming(image, volume);
  const root = naming.kind === 'joliet' ? volume.jolietRoot! : volume.root;

  // Start blocks of El Torito images, to learn whether the tree already holds them (then they are read once, under the tree's name).
  const boot = volume.bootCatalog !== undefined ? await readBootCatalog(image, volume, context) : [];
  const bootStarts = new Map<number, { name: string; size: number }>();
  const bootBlocks = new Set(boot.map((entry) => entry.block));

  const visited = new Set<number>([root.block]);
  const stack: PendingDirectory[] = [{ path: '', extent: root }];
  while (stack.length > 0) {
    const directory = stack.pop()!;
    const subdirectories: PendingDirectory[] = [];
    // A file over 4 GiB is several records in a row with the multi-extent flag on all but the last.
    let pendingExtents: Extent[] = [];
    // A directory that cannot be read is reported; the rest of the tree is still read.
    try {
      for await (const record of directoryRecords(image, volume, directory, context)) {
        if (record.flags & FLAG_HIDDEN_ASSOCIATED) continue; // associated files are Apple resource forks and such, not in the namespace
        const rr = naming.kind === 'rock-ridge' ? await rockRidge(image, volume, record.systemUse, naming.skip) : undefined;
        const name = recordName(record, naming, rr);
        if (name === '.' || name === '..') continue;
        const path = `${directory.path}/${name}`;
        if (record.flags & FLAG_MULTI_EXTENT) {
          pendingExtents.push(record.extent);
          continue;
        }
        const extents = [...pendingExtents, record.extent];
        pendingExtents = [];
        if (rr?.relocated) continue; // listed again (as a CL placeholder) where it belongs
        const directoryBlock = rr?.childLink ?? (record.flags & FLAG_DIRECTORY ? record.extent.block : undefined);
        if (directoryBlock !== undefined) {
          const extent = rr?.childLink !== undefined ? await relocatedExtent(image, volume, rr.childLink, path) : record.extent;
          if (visited.has(extent.block)) {
            context.problem(path, 'directory appears twice in the tree (a loop or a hard-linked directory); read once');
            continue;
          }
          visited.add(extent.block);
          subdirectories.push({ path, extent });
          continue;
        }
        if (rr?.symlink) continue;
        if (rr?.mode !== undefined && (rr.mode & S_IFMT) !== S_IFREG && (rr.mode & S_IFMT) !== 0) continue; // device, fifo, socket: no bytes
        if (record.interleaved) {
          context.unreadable(path, 'unsupported', 'interleaved ISO 9660 file (file unit size set)');
          continue;
        }
        const size = extents.reduce((total, extent) => total + extent.length, 0);
        if (bootBlocks.has(extents[0]!.block) && !bootStarts.has(extents[0]!.block)) bootStarts.set(extents[0]!.block, { name: path, size });
        context.signal?.throwIfAborted();
        const member = fileMember(image, volume, path, extents, context);
        if (member === undefined) continue;
        if (rr?.zisofs) {
          // Compressed by zisofs: what the kernel shows (and a key would be) is the decoded bytes.
          const stored = member.source!;
          yield { name: path, size: rr.zisofs.size, stream: () => zisofsChunks(stored, context.signal) };
        } else {
          yield member;
        }
      }
    } catch (error) {
      // Without its root folder the volume has nothing to show: that is the container failing.
      if (!(error instanceof FormatError) || directory.path === '') throw error;
      context.unreadable(`${directory.path}/`, error.reason, error.message);
    }
    if (pendingExtents.length > 0) {
      context.unreadable(`${directory.path || ''}/`, 'corrupt', 'directory ends inside a multi-extent file');
    }
    // Reverse, so the first subdirectory is read next (the tree comes out in directory order). Paths are absolute (`/boot/efi.img`), as for every filesystem.
    for (let index = subdirectories.length - 1; index >= 0; index--) stack.push(subdirectories[index]!);
  }

  yield* bootMembers(image, volume, boot, bootStarts, context);
}

function fileMember(image: ByteSource, volume: Volume, name: string, extents: Extent[], context: FormatContext): Member | undefined {
  let source: ByteSource;
  try {
    source = concatSource(extents.map((extent) => (extent.length === 0 ? bufferSource(Buffer.alloc(0)) : sliceSource(image, extent.block * volume.blockSize, extent.length))));
  } catch (error) {
    if (!(error instanceof FormatError)) throw error;
    context.unreadable(name, error.reason, `file extent lies outside the image: ${error.message}`);
    return undefined;
  }
  return { name, size: source.size, source, stream: () => sourceChunks(source, context.signal) };
}

/** Rock Ridge when the root's `.` record carries the SUSP SP entry, else Joliet when there is a Joliet tree, else plain names. */
async function chooseNaming(image: ByteSource, volume: Volume): Promise<Naming> {
  for await (const record of directoryRecords(image, volume, { path: '', extent: volume.root }, undefined)) {
    const use = record.systemUse;
    if (use.length >= 7 && use.toString('latin1', 0, 2) === 'SP' && use[4] === 0xbe && use[5] === 0xef) return { kind: 'rock-ridge', skip: use[6]! };
    break; // only the first record (`.`) may carry SP
  }
  return volume.jolietRoot !== undefined ? { kind: 'joliet' } : { kind: 'plain' };
}

async function* directoryRecords(image: ByteSource, volume: Volume, directory: PendingDirectory, context: FormatContext | undefined): AsyncGenerator<DirectoryRecord> {
  const start = directory.extent.block * volume.blockSize;
  const length = directory.extent.length;
  if (start + length > image.size) throw new FormatError('truncated', `directory ${directory.path || '/'} lies past the end of the image`);
  for (let piece = 0; piece < length; piece += DIRECTORY_PIECE) {
    context?.signal?.throwIfAborted();
    const bytes = await readExactly(image, start + piece, Math.min(DIRECTORY_PIECE, length - piece), `directory ${directory.path || '/'}`);
    for (let offset = 0; offset < bytes.length; ) {
      const recordLength = bytes[offset]!;
      if (recordLength === 0) {
        // Padding up to the next sector: records never straddle one.
        offset = (Math.floor(offset / SECTOR) + 1) * SECTOR;
        continue;
      }
      if (recordLength < 34 || offset + recordLength > bytes.length) {
        throw new FormatError('corrupt', `bad directory record in ${directory.path || '/'} at byte ${piece + offset}`);
      }
      const record = bytes.subarray(offset, offset + recordLength);
      const nameLength = record[32]!;
      if (33 + nameLength > recordLength) throw new FormatError('corrupt', `directory record name overruns its record in ${directory.path || '/'}`);
      const systemUseStart = 33 + nameLength + (nameLength % 2 === 0 ? 1 : 0);
      yield {
        extent: { block: record.readUInt32LE(2) + record[1]!, length: record.readUInt32LE(10) },
        flags: record[25]!,
        interleaved: record[26] !== 0,
        rawName: record.subarray(33, 33 + nameLength),
        systemUse: record.subarray(Math.min(systemUseStart, recordLength)),
      };
      offset += recordLength;
    }
  }
}

function recordName(record: DirectoryRecord, naming: Naming, rr: RockRidge | undefined): string {
  const raw = record.rawName;
  if (raw.length === 1 && raw[0] === 0) return '.';
  if (raw.length === 1 && raw[0] === 1) return '..';
  if (rr?.name !== undefined) return rr.name;
  let name: string;
  if (naming.kind === 'joliet') {
    // UCS-2 big-endian; swap to little-endian for Node's decoder.
    const swapped = Buffer.from(raw.subarray(0, raw.length - (raw.length % 2)));
    swapped.swap16();
    name = swapped.toString('utf16le');
  } else {
    name = raw.toString('latin1');
  }
  name = name.replace(/;\d*$/, '');
  if (!(record.flags & FLAG_DIRECTORY)) name = name.replace(/\.$/, '');
  return name.replace(/\//g, '_');
}

/** Parses the Rock Ridge entries of a record's system use area, following CE continuations. */
async function rockRidge(image: ByteSource, volume: Volume, systemUse: Buffer, skip: number): Promise<RockRidge> {
  const result: RockRidge = { symlink: false, relocated: false };
  const nameParts: Buffer[] = [];
  let area = systemUse.subarray(Math.min(skip, systemUse.length));
  for (let continuation = 0; ; continuation++) {
    let next: { block: number; offset: number; length: number } | undefined;
    for (let offset = 0; offset + 4 <= area.length; ) {
      const signature = area.toString('latin1', offset, offset + 2);
      const length = area[offset + 2]!;
      if (length < 4 || offset + length > area.length) break;
      const entry = area.subarray(offset, offset + length);
      switch (signature) {
        case 'NM':
          if (length > 5 && !(entry[4]! & 0x06)) nameParts.push(entry.subarray(5)); // 0x02 `.`, 0x04 `..`: not names
          break;
        case 'PX':
          if (length >= 12) result.mode = entry.readUInt32LE(4);
          break;
        case 'SL':
          result.symlink = true;
          break;
        case 'CL':
          if (length >= 12) result.childLink = entry.readUInt32LE(4);
          break;
        case 'RE':
          result.relocated = true;
          break;
        case 'ZF':
        case 'Z2':
          // Version 1: "pz" and a both-endian 32-bit size; version 2: an algorithm and a 64-bit size.
          if (length >= 16) result.zisofs = { size: entry[3] === 2 ? Number(entry.readBigUInt64LE(8)) : entry.readUInt32LE(8) };
          break;
        case 'CE':
          if (length >= 28) next = { block: entry.readUInt32LE(4), offset: entry.readUInt32LE(12), length: entry.readUInt32LE(20) };
          break;
      }
      if (signature === 'ST') break;
      offset += length;
    }
    if (next === undefined) break;
    if (continuation >= MAX_CONTINUATIONS) throw new FormatError('corrupt', 'Rock Ridge continuation areas loop');
    area = await readExactly(image, next.block * volume.blockSize + next.offset, next.length, 'a Rock Ridge continuation area');
  }
  if (nameParts.length > 0) result.name = Buffer.concat(nameParts).toString('utf8').replace(/\//g, '_');
  if (result.mode !== undefined && (result.mode & S_IFMT) === 0o120000) result.symlink = true;
  return result;
}

/** The extent of a relocated directory: the length is in its own `.` record. */
async function relocatedExtent(image: ByteSource, volume: Volume, block: number, path: string): Promise<Extent> {
  const first = await readExactly(image, block * volume.blockSize, 34, `relocated directory ${path}`);
  if (first[0]! < 34) throw new FormatError('corrupt', `relocated directory ${path} has no "." record`);
  return { block, length: first.readUInt32LE(10) };
}

interface BootImage {
  block: number;
  /** Bytes the catalog says it loads (virtual 512-byte sectors), or the emulated floppy's size. */
  catalogBytes: number;
  media: number;
  platform: number;
}

const PLATFORM_NAMES: Record<number, string> = { 0x00: 'bios', 0x01: 'ppc', 0x02: 'mac', 0xef: 'efi' };
const FLOPPY_BYTES: Record<number, number> = { 1: 1_228_800, 2: 1_474_560, 3: 2_949_120 };

/** The boot images listed in the El Torito catalog: the default entry and every section entry. */
async function readBootCatalog(image: ByteSource, volume: Volume, context: FormatContext): Promise<BootImage[]> {
  const start = (volume.bootCatalog ?? 0) * volume.blockSize;
  if (start + 64 > image.size) {
    context.unreadable('(el-torito)', 'truncated', 'the El Torito boot catalog lies past the end of the image');
    return [];
  }
  // One sector holds 64 entries; NixOS has 2-3. Read a little more in case a catalog spans sectors.
  const catalog = await image.read(start, 4 * SECTOR);
  if (catalog[0] !== 0x01 || catalog[30] !== 0x55 || catalog[31] !== 0xaa) {
    context.unreadable('(el-torito)', 'corrupt', 'the El Torito boot catalog has no validation entry');
    return [];
  }
  const images: BootImage[] = [];
  const entry = (offset: number, platform: number) => {
    const media = catalog[offset + 1]! & 0x0f;
    const sectors = catalog.readUInt16LE(offset + 6);
    images.push({ block: catalog.readUInt32LE(offset + 8), catalogBytes: FLOPPY_BYTES[media] ?? sectors * 512, media, platform });
  };
  let platform = catalog[1]!;
  if (catalog[32] === 0x88 || catalog[32] === 0x00) entry(32, platform);
  for (let offset = 64; offset + 32 <= catalog.length; ) {
    const header = catalog[offset];
    if (header !== 0x90 && header !== 0x91) break;
    platform = catalog[offset + 1]!;
    const count = catalog.readUInt16LE(offset + 2);
    offset += 32;
    for (let index = 0; index < count && offset + 32 <= catalog.length; index++, offset += 32) {
      if (catalog[offset] === 0x44) {
        index--; // an extension entry belongs to the entry before it
        continue;
      }
      if (catalog[offset] === 0x88 || catalog[offset] === 0x00) entry(offset, platform);
    }
    if (header === 0x91) break;
  }
  return images.filter((bootImage) => bootImage.block !== 0);
}

/**
 * Boot images not also found as files in the tree. Their length: a FAT boot sector at their start
 * says how big the filesystem is (the EFI image, whose catalog count is often 1 or capped at 65535
 * sectors); a hard-disk emulation image's MBR says where its partition ends; else the catalog count.
 */
async function* bootMembers(image: ByteSource, volume: Volume, boot: BootImage[], inTree: Map<number, { name: string; size: number }>, context: FormatContext): AsyncGenerator<Member> {
  const counts = new Map<string, number>();
  for (const bootImage of boot) {
    const offset = bootImage.block * volume.blockSize;
    const tree = inTree.get(bootImage.block);
    let size = bootImage.catalogBytes;
    const head = offset < image.size ? await image.read(offset, 512) : Buffer.alloc(0);
    size = Math.max(size, fatFilesystemBytes(head) ?? 0, bootImage.media === 4 ? (mbrEndBytes(head) ?? 0) : 0);
    size = Math.min(size, Math.max(0, image.size - offset));
    if (tree !== undefined && tree.size >= size) continue; // read as that file already
    const platform = PLATFORM_NAMES[bootImage.platform] ?? `platform-${bootImage.platform.toString(16)}`;
    const seen = (counts.get(platform) ?? 0) + 1;
    counts.set(platform, seen);
    const name = `(el-torito)/${platform}${seen > 1 ? `-${seen}` : ''}.img`;
    if (offset >= image.size) {
      context.unreadable(name, 'truncated', 'the boot image lies past the end of the image');
      continue;
    }
    context.signal?.throwIfAborted();
    const source = sliceSource(image, offset, size);
    yield { name, size, source, stream: () => sourceChunks(source, context.signal) };
  }
}

/** Total bytes of a FAT filesystem whose boot sector is `head`, or undefined when it is not one. */
function fatFilesystemBytes(head: Buffer): number | undefined {
  if (head.length < 512 || head[510] !== 0x55 || head[511] !== 0xaa) return undefined;
  const bytesPerSector = head.readUInt16LE(11);
  if (![512, 1024, 2048, 4096].includes(bytesPerSector) || head[13] === 0 || head[16] === 0) return undefined;
  const sectors = head.readUInt16LE(19) || head.readUInt32LE(32);
  return sectors > 0 ? sectors * bytesPerSector : undefined;
}

function mbrEndBytes(head: Buffer): number | undefined {
  if (head.length < 512 || head[510] !== 0x55 || head[511] !== 0xaa) return undefined;
  let end = 0;
  for (let slot = 0; slot < 4; slot++) {
    const entry = 446 + slot * 16;
    if (head[entry + 4] !== 0) end = Math.max(end, (head.readUInt32LE(entry + 8) + head.readUInt32LE(entry + 12)) * 512);
  }
  return end > 0 ? end : undefined;
}
