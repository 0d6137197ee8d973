/**
 * Private mounts of seed partitions: a fresh mkdtemp folder (mode 0700) per mount, ext4 through the
 * kernel and exFAT through exfat-fuse, read-only where asked (ext4 with `noload`, so not even a
 * journal replay writes). `release` always unmounts and removes the folder, retrying while busy.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CommandError, UsageError } from '../errors.js';
import { hasCommand, run } from '../util/run.js';

/** Filesystems a seed partition may carry, as blkid names them. */
export type SeedFilesystemType = 'ext4' | 'exfat' | 'vfat';

export interface PrivateMount {
  root: string;
  device: string;
  readOnly: boolean;
  /**
   * Flushes (read-write mounts), unmounts and removes the folder; safe to call twice. With
   * `lazyIfBusy` (after a build that failed: the stick may be gone), a mount still busy after the
   * retries is detached lazily (`umount -l`), and the call resolves to true.
   */
  release: (options?: { lazyIfBusy?: boolean }) => Promise<boolean>;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Mounts `device` (ext4 or exFAT) on a private temp folder. FAT needs mtools instead (see fat.ts). */
export async function mountPrivate(device: string, fstype: 'ext4' | 'exfat', options: { readOnly: boolean }): Promise<PrivateMount> {
  const root = await mkdtemp(path.join(tmpdir(), 'dubnium-seed-mnt-'));
  const fuse = fstype === 'exfat';
  try {
    if (fuse) {
      if (!(await hasCommand('mount.exfat-fuse'))) {
        throw new UsageError(`Cannot mount the exFAT partition ${device}: mount.exfat-fuse is missing. Install exfat-fuse (Debian: apt-get install exfat-fuse).`);
      }
      await run('mount.exfat-fuse', ['-o', [options.readOnly ? 'ro' : 'rw', 'nodev', 'nosuid', 'noexec'].join(','), device, root], { cwd: '/', timeout: 60_000 });
    } else {
      const flags = options.readOnly ? ['ro', 'noload', 'nodev', 'nosuid', 'noexec'] : ['nodev', 'nosuid', 'noexec'];
      await run('mount', ['-t', 'ext4', '-o', flags.join(','), device, root], { cwd: '/', timeout: 60_000 });
    }
  } catch (error) {
    await rmdir(root).catch(() => undefined);
    throw error;
  }
  let released = false;
  return {
    root,
    device,
    readOnly: options.readOnly,
    release: async (how = {}) => {
      if (released) return false;
      if (!options.readOnly) await run('sync', ['-f', root], { cwd: '/', reject: false, timeout: 600_000 });
      let lazily = false;
      try {
        await unmount(root, fuse);
      } catch (error) {
        if (!how.lazyIfBusy || !(error instanceof CommandError) || !/busy/i.test(error.stderrTail)) throw error;
        await unmount(root, fuse, true);
        lazily = true;
      }
      released = true;
      await rmdir(root).catch(() => undefined);
      return lazily;
    },
  };
}

async function unmount(root: string, fuse: boolean, lazy = false): Promise<void> {
  let last: { stderr: string; exitCode: number } | undefined;
  for (let attempt = 0; attempt < (lazy ? 1 : 25); attempt += 1) {
    const result = fuse
      ? await run(existsSync('/usr/bin/fusermount3') || (await hasCommand('fusermount3')) ? 'fusermount3' : 'fusermount', [lazy ? '-uz' : '-u', root], { cwd: '/', reject: false, timeout: 600_000 })
      : await run('umount', [...(lazy ? ['-l'] : []), root], { cwd: '/', reject: false, timeout: 600_000 });
    if (result.exitCode === 0) return;
    last = result;
    if (!/busy/i.test(result.stderr)) break;
    await sleep(200);
  }
  throw new CommandError(`umount ${root}`, last?.exitCode ?? null, last?.stderr.trim() ?? '', `Could not unmount ${root}: ${last?.stderr.trim() || 'unknown error'}. Close programs using it, then run: umount ${root}`);
}

/** The partition node of partition `number` on `disk` (`/dev/sdb` → `/dev/sdb3`, `/dev/loop0` → `/dev/loop0p3`). */
export function partitionNode(disk: string, number: number): string {
  return /\d$/.test(disk) ? `${disk}p${number}` : `${disk}${number}`;
}

/**
 * Makes the kernel see the current table of `disk`: partx -u (update, add, remove), BLKRRPART as
 * a fallback, udevadm settle where udev runs. Then waits up to ~10 s for `expect` nodes.
 */
export async function refreshPartitions(disk: string, expect: string[] = []): Promise<void> {
  const settle = async () => {
    if (await hasCommand('udevadm')) await run('udevadm', ['settle', '--timeout=10'], { cwd: '/', reject: false, timeout: 20_000 });
  };
  await run('partx', ['-u', disk], { cwd: '/', reject: false, timeout: 30_000 });
  await settle();
  for (let attempt = 0; attempt < 100; attempt += 1) {
    if (expect.every((node) => existsSync(node))) return;
    if (attempt === 10) await run('blockdev', ['--rereadpt', disk], { cwd: '/', reject: false, timeout: 30_000 });
    if (attempt === 20) {
      // Where the table re-read did not add a node (loop devices without partscan): add it explicitly.
      for (const node of expect.filter((entry) => !existsSync(entry))) {
        const number = /(\d+)$/.exec(node.slice(disk.length))?.[1];
        if (number) await run('partx', ['-a', '--nr', number, disk], { cwd: '/', reject: false, timeout: 30_000 });
      }
      await settle();
    }
    await sleep(100);
  }
  const missing = expect.filter((node) => !existsSync(node));
  if (missing.length > 0) {
    throw new UsageError(`The kernel did not create ${missing.join(', ')} after re-reading the partition table of ${disk}. Unplug and replug the stick, then run the same build again (the partition is reused).`);
  }
}
