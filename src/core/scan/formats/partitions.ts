/**
 * Whole disks (a stick image, a block device): the MBR and GPT partition tables, each partition a
 * member whose `source` is its slice of the disk. Names are `(partition N NAME)` with the GPT name, or
 * for an MBR partition the label of the filesystem in it (FAT, ext4) or its type byte.
 *
 * A hybrid installer ISO (isohybrid) carries an MBR and a GPT whose partitions lie inside the ISO
 * itself (the whole image, the EFI image). So:
 *
 *  - An ISO at offset 0 whose partitions all lie inside its volume is the ISO's: `detect` says no,
 *    and the iso9660 handler reads it (its files are the content of those partitions).
 *  - A disk with an ISO at 0, longer than the ISO's volume, with a partition reaching past that volume
 *    (a stick: the installer then the seed partition) is ours: the members are the ISO region as `(installer image)` plus
 *    every partition not wholly inside it. `iso9660.detect` says no for such a disk, so the two never
 *    both claim one input and the registry order between them does not matter. The `(installer
 *    image)` member still starts with the stick's MBR, but is only the volume long: it reads as ISO.
 *  - Bytes of a disk that no partition covers (past an ISO dd'ed to a bigger stick) are not members.
 *
 * Registry order (for the walker): iso9660, partitions, fat. A FAT volume boot sector also ends in
 * 0x55AA; `detect` rejects one (no GPT and a valid FAT BPB), so fat may come after.
 */
import { readExactly, sliceSource, sourceChunks } from './byte-source.js';
import { fatGeometry } from './fat.js';
import { isoVolumeBytes } from './iso9660.js';
import { FormatError, HEAD_BYTES, type ByteSource, type FormatContext, type FormatHandler, type Member } from './types.js';

const MBR_SECTOR = 512;
const EXTENDED_TYPES = new Set([0x05, 0x0f, 0x85]);
const PROTECTIVE = 0xee;
/** Logical partitions followed in an extended partition before the chain is called a loop. */
const MAX_LOGICAL = 128;

export interface Partition {
  /** MBR slot (1-4, logical 5+) or GPT entry number (from 1). */
  number: number;
  scheme: 'mbr' | 'gpt';
  /** Byte offset and length on the disk. */
  offset: number;
  size: number;
  /** MBR type byte as two hex digits, or the GPT type GUID. */
  type: string;
  /** GPT partition name, when the table has one. */
  name?: string;
  /** An MBR extended partition: a container of logical partitions, not a member itself. */
  extended?: boolean;
  /** A GPT entry a hybrid MBR does not list: numbered by the GPT, so named `(gpt partition N ...)`. */
  gptOnly?: boolean;
}

interface MbrSlot {
  number: number;
  status: number;
  type: number;
  offset: number;
  size: number;
}

function mbrSlots(sector: Buffer): MbrSlot[] | undefined {
  if (sector.length < 512 || sector[510] !== 0x55 || sector[511] !== 0xaa) return undefined;
  const slots: MbrSlot[] = [];
  for (let slot = 0; slot < 4; slot++) {
    const entry = 446 + slot * 16;
    const status = sector[entry]!;
    if (status !== 0x00 && status !== 0x80) return undefined; // boot code, not a table (a FAT boot sector, say)
    const sectors = sector.readUInt32LE(entry + 12);
    // isohybrid's first partition covers the whole ISO from sector 0 with type 0: count any sized slot.
    if (sectors === 0) continue;
    slots.push({ number: slot + 1, status, type: sector[entry + 4]!, offset: sector.readUInt32LE(entry + 8) * MBR_SECTOR, size: sectors * MBR_SECTOR });
  }
  return slots;
}

interface GptHeader {
  sectorSize: number;
  entriesOffset: number;
  count: number;
  entrySize: number;
}

function gptHeader(head: Buffer): GptHeader | undefined {
  for (const sectorSize of [512, 4096]) {
    if (head.length < sectorSize + 92 || head.toString('latin1', sectorSize, sectorSize + 8) !== 'EFI PART') continue;
    const entriesLba = Number(head.readBigUInt64LE(sectorSize + 72));
    const count = head.readUInt32LE(sectorSize + 80);
    const entrySize = head.readUInt32LE(sectorSize + 84);
    if (entrySize < 128 || entrySize % 8 !== 0 || count > 1024 || !Number.isSafeInteger(entriesLba * sectorSize)) continue;
    return { sectorSize, entriesOffset: entriesLba * sectorSize, count, entrySize };
  }
  return undefined;
}

function gptPartitions(header: GptHeader, entries: Buffer): Partition[] {
  const partitions: Partition[] = [];
  for (let index = 0; index < header.count; index++) {
    const entry = entries.subarray(index * header.entrySize, (index + 1) * header.entrySize);
    if (entry.length < 128 || entry.subarray(0, 16).every((byte) => byte === 0)) continue;
    const first = Number(entry.readBigUInt64LE(32));
    const last = Number(entry.readBigUInt64LE(40));
    if (last < first) continue;
    const name = entry.toString('utf16le', 56, 128).replace(/\0.*$/s, '').trim();
    partitions.push({
      number: index + 1,
      scheme: 'gpt',
      offset: first * header.sectorSize,
      size: (last - first + 1) * header.sectorSize,
      type: guid(entry.subarray(0, 16)),
      ...(name ? { name } : {}),
    });
  }
  return partitions;
}

function guid(bytes: Buffer): string {
  const hex = (from: number, to: number, reverse: boolean) => {
    const part = Buffer.from(bytes.subarray(from, to));
    return (reverse ? part.reverse() : part).toString('hex');
  };
  return `${hex(0, 4, true)}-${hex(4, 6, true)}-${hex(6, 8, true)}-${hex(8, 10, false)}-${hex(10, 16, false)}`;
}

/**
 * The partitions the primary table in `head` lists (MBR primaries, or GPT entries when within
 * `head`), merged as described in the file comment; undefined when `head` holds no table. Logical
 * partitions need reads beyond the first sector: `members` adds them.
 */
export function partitionsInHead(head: Buffer, entries?: Buffer): Partition[] | undefined {
  const slots = mbrSlots(head);
  if (slots === undefined) return undefined;
  const header = gptHeader(head);
  const gpt = header ? gptPartitions(header, entries ?? head.subarray(header.entriesOffset, header.entriesOffset + header.count * header.entrySize)) : [];
  const onlyProtective = slots.every((slot) => slot.type === PROTECTIVE);
  if (header === undefined && (slots.length === 0 || fatGeometry(head) !== undefined)) return undefined;
  if (header !== undefined && onlyProtective) return gpt;
  const partitions: Partition[] = [];
  for (const slot of slots) {
    if (slot.type === PROTECTIVE) continue;
    const twin = gpt.find((entry) => entry.offset === slot.offset && entry.size === slot.size);
    partitions.push({
      number: slot.number,
      scheme: 'mbr',
      offset: slot.offset,
      size: slot.size,
      type: slot.type.toString(16).padStart(2, '0'),
      ...(twin?.name ? { name: twin.name } : {}),
      ...(EXTENDED_TYPES.has(slot.type) ? { extended: true } : {}),
    });
  }
  // A hybrid MBR lists some GPT partitions; the others are still on the disk.
  for (const entry of gpt) {
    if (!partitions.some((partition) => partition.offset === entry.offset && partition.size === entry.size)) partitions.push({ ...entry, gptOnly: true });
  }
  return partitions;
}

/** True when `partition` lies wholly inside the first `bytes` of the disk. */
function inside(partition: Partition, bytes: number): boolean {
  return partition.offset + partition.size <= bytes;
}

/**
 * True when `head` is a disk with an ISO 9660 volume at 0 and a partition reaching past the end of
 * that volume (an installer stick with a seed partition): the partitions handler reads it, not iso9660.
 * Only when the input is longer than the volume (or its size is unknown): the `(installer image)`
 * member still carries the stick's MBR listing the seed partition, but holds no bytes of it, and must
 * read as the ISO (else the two handlers would hand it back and forth).
 */
export function hasPartitionsBeyondIso(head: Buffer, size: number | undefined): boolean {
  const volume = isoVolumeBytes(head);
  if (volume === undefined || (size !== undefined && size <= volume)) return false;
  const table = partitionsInHead(head);
  return table !== undefined && table.some((partition) => !inside(partition, volume));
}

export const partitions: FormatHandler = {
  name: 'partitions',
  access: 'random',
  detect(head, size) {
    if (isoVolumeBytes(head) !== undefined) return hasPartitionsBeyondIso(head, size);
    const table = partitionsInHead(head);
    return table !== undefined && table.length > 0;
  },
  members: (input, context) => partitionMembers(input, context),
};

async function* partitionMembers(input: ByteSource | AsyncIterable<Buffer>, context: FormatContext): AsyncGenerator<Member> {
  if (typeof (input as ByteSource).read !== 'function') throw new FormatError('unsupported', 'a partition table needs random access to the disk');
  const disk = input as ByteSource;
  const head = await disk.read(0, Math.min(disk.size, HEAD_BYTES));
  const header = gptHeader(head);
  const entries = header ? await readExactly(disk, header.entriesOffset, header.count * header.entrySize, 'the GPT partition entries') : undefined;
  const table = partitionsInHead(head, entries);
  if (table === undefined) throw new FormatError('corrupt', 'no MBR or GPT partition table');
  const volume = isoVolumeBytes(head);
  if (volume !== undefined) {
    const name = '(installer image)';
    if (volume > disk.size) context.unreadable(name, 'truncated', `the installer image is ${volume} bytes but the disk ends at ${disk.size}`);
    else yield member(name, sliceSource(disk, 0, volume), context);
  }
  for (const partition of table) {
    if (volume !== undefined && inside(partition, volume)) continue;
    if (partition.extended) {
      yield* logicalMembers(disk, partition, context);
      continue;
    }
    context.signal?.throwIfAborted();
    const named = await namedMember(disk, partition, context);
    if (named !== undefined) yield named;
  }
}

/** Follows the EBR chain of an extended partition: each EBR's first slot is a logical partition, its second points to the next EBR. */
async function* logicalMembers(disk: ByteSource, extended: Partition, context: FormatContext): AsyncGenerator<Member> {
  let ebrOffset = extended.offset;
  for (let number = 5; number < 5 + MAX_LOGICAL; number++) {
    context.signal?.throwIfAborted();
    const slots = mbrSlots(await readExactly(disk, ebrOffset, MBR_SECTOR, `the extended boot record of logical partition ${number}`));
    if (slots === undefined) throw new FormatError('corrupt', `extended boot record at byte ${ebrOffset} is not valid`);
    const logical = slots.find((slot) => slot.number === 1);
    if (logical !== undefined) {
      const named = await namedMember(disk, { number, scheme: 'mbr', offset: ebrOffset + logical.offset, size: logical.size, type: logical.type.toString(16).padStart(2, '0') }, context);
      if (named !== undefined) yield named;
    }
    const link = slots.find((slot) => slot.number === 2);
    if (link === undefined) return;
    ebrOffset = extended.offset + link.offset;
  }
  throw new FormatError('corrupt', `more than ${MAX_LOGICAL} logical partitions (a loop in the extended boot records?)`);
}

async function namedMember(disk: ByteSource, partition: Partition, context: FormatContext): Promise<Member | undefined> {
  const prefix = partition.gptOnly ? 'gpt partition' : 'partition';
  let name = `(${prefix} ${partition.number})`;
  let source: ByteSource;
  try {
    source = sliceSource(disk, partition.offset, partition.size);
  } catch (error) {
    if (!(error instanceof FormatError)) throw error;
    context.unreadable(name, error.reason, `partition ${partition.number} runs past the end of the disk`);
    return undefined;
  }
  const label = partition.name ?? (await filesystemLabel(source));
  name = `(${prefix} ${partition.number} ${label ?? `type ${partition.type}`})`;
  return member(name, source, context);
}

function member(name: string, source: ByteSource, context: FormatContext): Member {
  return { name, size: source.size, source, stream: () => sourceChunks(source, context.signal) };
}

/** The label of a FAT or ext2/3/4 filesystem at the start of `source`, if any. */
async function filesystemLabel(source: ByteSource): Promise<string | undefined> {
  const head = await source.read(0, 2048);
  const fat = fatGeometry(head);
  if (fat !== undefined) {
    const label = head.toString('latin1', fat.bits === 32 ? 71 : 43, fat.bits === 32 ? 82 : 54).trim();
    return label && label !== 'NO NAME' ? label : undefined;
  }
  if (head.length >= 1024 + 136 && head.readUInt16LE(1024 + 56) === 0xef53) {
    const label = head.toString('utf8', 1024 + 120, 1024 + 136).replace(/\0.*$/s, '').trim();
    return label || undefined;
  }
  return undefined;
}
