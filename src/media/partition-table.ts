/**
 * The partition table of a seed stick, read and extended with sfdisk. Only MBR (dos) tables are
 * ever written: a hybrid installer image carries an MBR plus a GPT that covers only the image, and
 * rewriting or "repairing" that GPT would move its backup header and can break booting. So the seed
 * partition goes into a free MBR slot after the last partition, and everything else stays as it was
 * (checked with `sfdisk --dump` before and after).
 */
import { CommandError, UsageError } from '../errors.js';
import { formatBytes } from '../util/format.js';
import { run } from '../util/run.js';
import { MiB, roundUp } from './sizes.js';

export interface TableEntry {
  node: string;
  number: number;
  /** Sectors. */
  start: number;
  /** Sectors. */
  size: number;
  /** `83`, `ef`, `0` for dos; a GUID for gpt. */
  type: string;
}

export interface PartitionTable {
  label: string;
  sectorSize: number;
  entries: TableEntry[];
}

interface SfdiskJson {
  partitiontable?: {
    label?: string;
    sectorsize?: number;
    partitions?: { node: string; start: number; size: number; type: string }[];
  };
}

/** The table on `disk`, or null when there is none. */
export async function readTable(disk: string): Promise<PartitionTable | null> {
  const result = await run('sfdisk', ['--json', disk], { cwd: '/', reject: false, timeout: 30_000 });
  if (result.exitCode !== 0) {
    if (/does not contain a recognized partition table/i.test(result.stderr)) return null;
    throw new CommandError(`sfdisk --json ${disk}`, result.exitCode, result.stderr.trim());
  }
  const table = (JSON.parse(result.stdout) as SfdiskJson).partitiontable;
  if (!table) return null;
  return {
    label: table.label ?? 'unknown',
    sectorSize: table.sectorsize ?? 512,
    entries: (table.partitions ?? []).map((entry) => ({
      node: entry.node,
      number: Number(/(\d+)$/.exec(entry.node)?.[1] ?? 0),
      start: entry.start,
      size: entry.size,
      type: String(entry.type).toLowerCase(),
    })),
  };
}

/** `sfdisk --dump` text, for comparing a table before and after a change. */
export async function dumpTable(disk: string): Promise<string> {
  return (await run('sfdisk', ['--dump', disk], { cwd: '/', timeout: 30_000 })).stdout;
}

const EXTENDED_TYPES = new Set(['5', 'f', '85']);
/** MBR partitions align to 1 MiB, as fdisk and sfdisk do by default. */
const ALIGN_BYTES = MiB;

/** Where a new seed partition would go: the free space after the last partition's end. */
export interface AppendPlan {
  number: number;
  /** Sectors. */
  start: number;
  /** Sectors. */
  size: number;
  bytes: number;
}

/**
 * Plans a new primary partition after every existing one, refusing (UsageError) layouts this tool
 * does not understand: GPT or other non-MBR tables, extended partitions, four primaries in use, and
 * free space smaller than `neededBytes`.
 */
export function planAppend(disk: string, table: PartitionTable, diskBytes: number, neededBytes: number): AppendPlan {
  if (table.label !== 'dos') {
    throw new UsageError(
      `Refusing ${disk}: it has a ${table.label} partition table without a partition labelled for the seed. This tool only adds partitions to MBR (dos) tables, as found on a stick holding a hybrid installer image. Create the seed partition yourself, or wipe the stick (wipefs -a ${disk}) to start blank.`,
    );
  }
  const extended = table.entries.find((entry) => EXTENDED_TYPES.has(entry.type));
  if (extended) {
    throw new UsageError(`Refusing ${disk}: it has an extended partition (${extended.node}); this tool does not change logical-partition layouts. Create the seed partition yourself or use another stick.`);
  }
  const used = new Set(table.entries.map((entry) => entry.number));
  const number = [1, 2, 3, 4].find((candidate) => !used.has(candidate));
  if (number === undefined) {
    throw new UsageError(`Refusing ${disk}: all four MBR partition slots are in use, so there is no room for a seed partition. Use another stick, or write the installer image again (--iso FILE).`);
  }
  const sectorsPerAlign = ALIGN_BYTES / table.sectorSize;
  const lastEnd = table.entries.reduce((end, entry) => Math.max(end, entry.start + entry.size), 1);
  const start = roundUp(Math.max(lastEnd, sectorsPerAlign), sectorsPerAlign);
  const diskSectors = Math.floor(diskBytes / table.sectorSize);
  const size = Math.floor((diskSectors - start) / sectorsPerAlign) * sectorsPerAlign;
  const bytes = Math.max(0, size) * table.sectorSize;
  if (bytes < neededBytes) {
    throw new UsageError(
      `Refusing ${disk}: too small, the seed partition needs ${formatBytes(neededBytes)}, has ${formatBytes(bytes)} free after the last partition (${formatBytes(diskBytes)} disk). Use a larger stick or fewer model bundles.`,
    );
  }
  return { number, start, size, bytes };
}

/** Appends the planned partition with `sfdisk --append`, then checks that no existing entry changed. */
export async function appendPartition(disk: string, plan: AppendPlan, type: '83' | '7' | 'c'): Promise<void> {
  const before = await dumpTable(disk);
  // --wipe never: the disk carries the installer's iso9660 and GPT signatures, which must stay.
  // --no-reread: the caller re-reads with partx, which also works while other partitions are busy.
  await run('sfdisk', ['--append', '--no-reread', '--no-tell-kernel', '--wipe', 'never', '--wipe-partitions', 'always', '-q', disk], {
    cwd: '/',
    input: `start=${plan.start}, size=${plan.size}, type=${type}\n`,
    timeout: 60_000,
  });
  const after = await dumpTable(disk);
  const added = new RegExp(`^${disk.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}p?${plan.number}\\s`);
  const kept = (text: string) => text.split('\n').filter((line) => !added.test(line));
  if (kept(before).join('\n') !== kept(after).join('\n')) {
    throw new CommandError(`sfdisk --append ${disk}`, 0, '', `sfdisk changed existing entries of ${disk}'s partition table; compare \`sfdisk --dump ${disk}\` with the layout before:\n${before}`);
  }
}

/** Writes a fresh MBR table holding only the seed partition (a blank stick). */
export async function createSeedTable(disk: string, type: '83' | '7' | 'c'): Promise<void> {
  await run('sfdisk', ['--no-reread', '--no-tell-kernel', '--wipe', 'always', '--wipe-partitions', 'always', '-q', disk], {
    cwd: '/',
    input: `label: dos\nstart=1MiB, type=${type}\n`,
    timeout: 60_000,
  });
}
