/**
 * Drive listing behind one seam. The real source lazy-loads drivelist (a native addon) inside
 * `list()`, so commands that never list drives (scan, verify) work where the addon does not load.
 * Tests use recorded drivelist results through the same `DriveSource` interface.
 */
import { readFile } from 'node:fs/promises';
import { UsageError } from '../errors.js';

/** A drive as dubnium-seed sees it: drivelist's fields, normalized; `raw` keeps the original object. */
export interface Drive {
  /** Whole-disk device path, e.g. `/dev/sdb`. */
  device: string;
  /** Vendor, model and partition labels as drivelist joins them; may be empty. */
  description: string;
  /** Bytes; null when the kernel reports no medium or size (empty card reader, unset zram). */
  size: number | null;
  isRemovable: boolean;
  /** drivelist's flag. On Linux (lsblk enumerator) it only means "not removable and not virtual". */
  isSystem: boolean;
  isVirtual: boolean;
  isReadOnly: boolean;
  isUSB: boolean | null;
  /** drivelist reports null on Linux; an `mmcblk` device is an SD/MMC card, so we say true there. */
  isCard: boolean | null;
  /** Upper-case transport as drivelist reports it (`USB`, `NVME`, `SATA`, `UNKNOWN`...). */
  busType: string;
  /** Mounted partitions: mount point and filesystem (or partition) label. `[SWAP]` for swap. */
  mountpoints: { path: string; label: string | null }[];
  partitionTableType: string | null;
  /** Which enumerator produced it (`lsblk:json`, `lsblk:pairs`, native on macOS/Windows). */
  enumerator: string;
  /** The unmodified drivelist object. */
  raw: unknown;
}

/** The adapter seam: real = drivelist; tests = recorded JSON. */
export interface DriveSource {
  list(): Promise<Drive[]>;
}

type RawDrive = Record<string, unknown>;

function text(value: unknown): string | null {
  return typeof value === 'string' && value.length > 0 ? value : null;
}

function flag(value: unknown): boolean | null {
  return typeof value === 'boolean' ? value : null;
}

/** Turns one drivelist object into a `Drive`, tolerating the nulls drivelist emits on Linux. */
export function normalizeDrive(raw: unknown): Drive {
  if (typeof raw !== 'object' || raw === null || typeof (raw as RawDrive).device !== 'string') {
    throw new UsageError(`Unexpected drive record from drivelist: ${JSON.stringify(raw)?.slice(0, 200)}`);
  }
  const record = raw as RawDrive;
  const device = record.device as string;
  const mountpoints = Array.isArray(record.mountpoints)
    ? record.mountpoints
        .filter((entry): entry is RawDrive => typeof entry === 'object' && entry !== null && typeof (entry as RawDrive).path === 'string')
        .map((entry) => ({ path: entry.path as string, label: text(entry.label) }))
    : [];
  const size = typeof record.size === 'number' && Number.isFinite(record.size) && record.size > 0 ? record.size : null;
  const isCard = flag(record.isCard) ?? (/^\/dev\/mmcblk\d+$/.test(device) ? true : null);
  return {
    device,
    description: text(record.description) ?? '',
    size,
    isRemovable: record.isRemovable === true,
    isSystem: record.isSystem === true,
    isVirtual: record.isVirtual === true,
    isReadOnly: record.isReadOnly === true,
    isUSB: flag(record.isUSB),
    isCard,
    busType: text(record.busType) ?? 'UNKNOWN',
    mountpoints,
    partitionTableType: text(record.partitionTableType),
    enumerator: text(record.enumerator) ?? 'unknown',
    raw,
  };
}

/** The real source: drivelist, imported only when drives are actually listed. */
export function drivelistSource(): DriveSource {
  return {
    async list() {
      let list: (() => Promise<unknown[]>) | undefined;
      try {
        const module = (await import('drivelist')) as { list?: () => Promise<unknown[]>; default?: { list?: () => Promise<unknown[]> } };
        list = module.list ?? module.default?.list;
      } catch (error) {
        throw new UsageError(
          `Drive listing is unavailable: the drivelist module did not load (${(error as Error).message.split('\n')[0]}). Name the target with --device PATH or --target DIR instead.`,
          [],
          { cause: error },
        );
      }
      if (!list) throw new UsageError('Drive listing is unavailable: the drivelist module has no list() function. Name the target with --device PATH or --target DIR instead.');
      let raw: unknown[];
      try {
        raw = await list();
      } catch (error) {
        throw new UsageError(`Listing drives failed: ${(error as Error).message}. Name the target with --device PATH or --target DIR instead.`, [], { cause: error });
      }
      return raw.map(normalizeDrive);
    },
  };
}

/** A source that replays a recorded drivelist result (a JSON array of drivelist objects). */
export function recordedSource(file: string): DriveSource {
  return {
    async list() {
      let parsed: unknown;
      try {
        parsed = JSON.parse(await readFile(file, 'utf8'));
      } catch (error) {
        throw new UsageError(`Cannot read recorded drive list ${file}: ${(error as Error).message}`, [], { cause: error });
      }
      if (!Array.isArray(parsed)) throw new UsageError(`Recorded drive list ${file} is not a JSON array of drivelist results.`);
      return parsed.map(normalizeDrive);
    },
  };
}

/** Decimal units, as drive vendors (and the 128 GB threshold) count. */
export function formatDriveSize(bytes: number | null): string {
  if (bytes === null) return 'no medium';
  const units = ['B', 'kB', 'MB', 'GB', 'TB'] as const;
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
}

/**
 * The real drive source, unless DUBNIUM_SEED_DRIVELIST_FILE names a recorded drivelist result:
 * the one seam through which tests stand in for physical USB sticks.
 */
export function driveSourceFromEnvironment(env: NodeJS.ProcessEnv = process.env): DriveSource {
  const recorded = env.DUBNIUM_SEED_DRIVELIST_FILE;
  return recorded ? recordedSource(recorded) : drivelistSource();
}
