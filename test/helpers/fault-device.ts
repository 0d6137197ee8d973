/**
 * A block device that fails on demand, for tests of what a failing stick or disk does to a build:
 * a loop device (`losetup --direct-io=off`) on the one file of a fault-injecting FUSE filesystem
 * (test/helpers/fault-fs/fault_fs.py, on Debian's python3-fusepy), whose faults change at run time:
 * EIO on writes from an offset, EIO on reads of a range, everything failing ("unplugged"), and a
 * bandwidth limit for reads and writes (a 40 MB/s USB stick: `{ readBps: 40e6, writeBps: 40e6 }`).
 *
 * Everything started here is stopped after each test, even when the test failed: filesystems
 * mounted from the device are unmounted, the loop device detached, the FUSE mount unmounted and
 * its process ended.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, writeFileSync } from 'node:fs';
import { mkdir, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach } from 'vitest';
import { tempDir } from './tmp.js';

const FAULT_FS = fileURLToPath(new URL('./fault-fs/fault_fs.py', import.meta.url));
/** Debian's interpreter: a pyenv python3 earlier on PATH has no python3-fusepy. */
const PYTHON = '/usr/bin/python3';

export interface FaultSettings {
  /** Every write reaching this byte offset of the device or beyond fails with EIO; null lifts it. */
  writeEioFrom?: number | null;
  /** Every read touching bytes [start, end) of the device fails with EIO; null lifts it. */
  readEio?: readonly [number, number] | null;
  /** Every read, write and flush fails with EIO, as on a stick pulled out. */
  unplugged?: boolean;
  /** Bandwidth limits in bytes per second; 0 is unlimited. */
  readBps?: number;
  writeBps?: number;
}

export interface FaultStatus {
  write_eio_from: number | null;
  read_eio: [number, number] | null;
  unplugged: boolean;
  read_bps: number;
  write_bps: number;
  bytes_read: number;
  bytes_written: number;
  max_write_end: number;
  /** Where the latest successful write ended: the frontier of a file being flushed. */
  last_write_end: number;
  failed_reads: number;
  failed_writes: number;
}

export interface FaultDevice {
  /** The loop device, e.g. /dev/loop3 (attached with -P: partitions appear as /dev/loop3p1...). */
  device: string;
  /** The backing image file on the local disk (read it to see what reached the "stick"). */
  backing: string;
  /** The fault-fs process. */
  pid: number;
  /** Changes the faults; keys left out keep their value. */
  setFaults(settings: FaultSettings): void;
  /** Lifts every fault and limit (the stick is back, healthy). */
  clearFaults(): void;
  /** The faults in force and the I/O counters. */
  status(): FaultStatus;
  /** Mounts `node` (the device or one of its partitions) on a temp folder; unmounted by `stop`. */
  mount(node: string, fstype?: string): string;
  /** Unmounts a folder `mount` made (a test replugging the stick). */
  unmount(target: string): void;
  /** Unmounts, detaches and stops everything; called after each test anyway, safe to call twice. */
  stop(): Promise<void>;
}

const running: FaultDevice[] = [];

afterEach(async () => {
  const errors: unknown[] = [];
  while (running.length > 0) await running.pop()!.stop().catch((error: unknown) => errors.push(error));
  if (errors.length > 0) throw new Error(`fault device cleanup failed: ${errors.map((error) => (error as Error).message).join('; ')}`);
});

function sh(command: string, args: string[]): string {
  return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function controlLine(settings: FaultSettings): string {
  const words: string[] = [];
  if (settings.writeEioFrom !== undefined) words.push(`write_eio_from=${settings.writeEioFrom ?? 'off'}`);
  if (settings.readEio !== undefined) words.push(`read_eio=${settings.readEio ? `${settings.readEio[0]}-${settings.readEio[1]}` : 'off'}`);
  if (settings.unplugged !== undefined) words.push(`unplugged=${settings.unplugged ? 1 : 0}`);
  if (settings.readBps !== undefined) words.push(`read_bps=${Math.round(settings.readBps)}`);
  if (settings.writeBps !== undefined) words.push(`write_bps=${Math.round(settings.writeBps)}`);
  return `${words.join(' ')}\n`;
}

function mountedAt(target: string): boolean {
  return readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .some((line) => line.split(' ')[1] === target);
}

/** Mount points of `device` and its partitions. */
function mountsOfDevice(device: string): string[] {
  return readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((line) => line.split(' '))
    .filter((fields) => fields[0] === device || fields[0]?.startsWith(`${device}p`))
    .map((fields) => fields[1]!);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((resolve) => child.once('exit', () => resolve()));
}

/**
 * Starts a fault device of `sizeMiB` (a sparse, zeroed backing file) with `faults` in force from
 * the start.
 */
export async function startFaultDevice(options: { sizeMiB: number; faults?: FaultSettings; partitions?: boolean }): Promise<FaultDevice> {
  if (!existsSync('/dev/fuse')) throw new Error('No /dev/fuse: the fault device needs FUSE (fuse3, python3-fusepy; root).');
  const dir = await tempDir('dubnium-seed-fault-');
  const backing = path.join(dir, 'backing.img');
  const mountPoint = path.join(dir, 'fuse');
  const control = path.join(mountPoint, 'control');
  await writeFile(backing, '');
  await truncate(backing, options.sizeMiB * 1024 * 1024);
  await mkdir(mountPoint);

  const log: string[] = [];
  const child = spawn(PYTHON, [FAULT_FS, backing, mountPoint, ...(options.faults ? controlLine(options.faults).trim().split(' ') : [])], { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr!.on('data', (chunk: Buffer) => log.push(chunk.toString('utf8')));
  const mounts: string[] = [];
  let device: string | undefined;
  let stopped = false;

  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    running.splice(running.indexOf(handle), 1);
    const errors: string[] = [];
    const attempt = (what: string, action: () => void) => {
      try {
        action();
      } catch (error) {
        errors.push(`${what}: ${(error as Error).message.split('\n')[0]}`);
      }
    };
    // A healthy device first, so that unmounting can flush what it still holds.
    if (mountedAt(mountPoint)) attempt('clear faults', () => writeFileSync(control, 'clear\n'));
    if (device) {
      for (const target of [...new Set([...mounts, ...mountsOfDevice(device)])]) {
        if (mountedAt(target)) attempt(`umount ${target}`, () => sh('umount', ['-l', target]));
      }
      attempt(`losetup -d ${device}`, () => sh('losetup', ['-d', device!]));
    }
    // The loop device lets go of the FUSE file asynchronously; umount retries while it is busy.
    for (let tries = 0; mountedAt(mountPoint) && tries < 50; tries += 1) {
      try {
        sh('umount', [mountPoint]);
      } catch {
        await sleep(100);
      }
    }
    if (mountedAt(mountPoint)) attempt(`umount -l ${mountPoint}`, () => sh('umount', ['-l', mountPoint]));
    const ended = await Promise.race([exited(child).then(() => true), sleep(5000).then(() => false)]);
    if (!ended) {
      child.kill('SIGKILL');
      errors.push(`fault-fs did not exit after unmount: ${log.join('').slice(-500)}`);
    }
    if (errors.length > 0) throw new Error(errors.join('; '));
  };

  const handle: FaultDevice = {
    get device() {
      return device!;
    },
    backing,
    pid: child.pid!,
    setFaults: (settings) => writeFileSync(control, controlLine(settings)),
    clearFaults: () => writeFileSync(control, 'clear\n'),
    status: () => readStatus(control),
    mount: (node, fstype = 'ext4') => {
      const target = path.join(dir, `mnt-${mounts.length}`);
      mkdirSync(target, { recursive: true });
      sh('mount', ['-t', fstype, node, target]);
      mounts.push(target);
      return target;
    },
    unmount: (target) => {
      sh('umount', [target]);
      mounts.splice(mounts.indexOf(target), 1);
    },
    stop,
  };
  running.push(handle);

  try {
    for (let tries = 0; !mountedAt(mountPoint); tries += 1) {
      if (child.exitCode !== null || tries > 100) throw new Error(`fault-fs did not mount ${mountPoint}: ${log.join('').trim() || `exit code ${child.exitCode}`}`);
      await sleep(50);
    }
    device = sh('losetup', ['-f', '--show', '--direct-io=off', ...(options.partitions === false ? [] : ['-P']), path.join(mountPoint, 'disk.img')]).trim();
  } catch (error) {
    await stop().catch(() => undefined);
    throw error;
  }
  return handle;
}

/** A fault device holding one ext4 filesystem (no partition table), mounted; returns the device and the folder. */
export async function faultyExt4(options: { sizeMiB: number; label?: string }): Promise<{ fault: FaultDevice; root: string }> {
  const fault = await startFaultDevice({ sizeMiB: options.sizeMiB, partitions: false });
  sh('mkfs.ext4', ['-q', '-F', '-m', '0', '-L', options.label ?? 'FAULTY', fault.device]);
  return { fault, root: fault.mount(fault.device) };
}

/**
 * One snapshot of the device's counters. The control file is made afresh on every read call, so a
 * read in several calls (readFileSync) could join the head of one snapshot to the tail of a later
 * one: read it with a single call at offset 0.
 */
function readStatus(control: string): FaultStatus {
  const fd = openSync(control, 'r');
  try {
    const buffer = Buffer.alloc(64 * 1024);
    const length = readSync(fd, buffer, 0, buffer.length, 0);
    return JSON.parse(buffer.toString('utf8', 0, length)) as FaultStatus;
  } finally {
    closeSync(fd);
  }
}
