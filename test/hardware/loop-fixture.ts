/**
 * Real loop devices for hardware tests: an image file with an MBR table (sfdisk) and an ext4
 * partition, attached with `losetup -P`. Everything attached or mounted is released after each test.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach } from 'vitest';
import { tempDir } from '../helpers/tmp.js';

const attached: string[] = [];
const mounted: string[] = [];

function sh(command: string, args: string[], input?: string): string {
  return execFileSync(command, args, { encoding: 'utf8', stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], input });
}

afterEach(() => {
  while (mounted.length > 0) {
    const target = mounted.pop()!;
    try {
      sh('umount', [target]);
    } catch {
      // already unmounted by the test
    }
  }
  while (attached.length > 0) {
    const device = attached.pop()!;
    try {
      sh('losetup', ['-d', device]);
    } catch {
      // already detached by the test
    }
  }
});

function requireLoopSupport(): void {
  if (!existsSync('/dev/loop-control')) {
    throw new Error('Loop devices are unavailable (no /dev/loop-control). These tests need root and loop devices; run them where losetup works (CI allows it).');
  }
}

function attach(image: string, readOnly: boolean): string {
  requireLoopSupport();
  try {
    const device = sh('losetup', ['-f', '--show', '-P', ...(readOnly ? ['-r'] : []), image]).trim();
    attached.push(device);
    return device;
  } catch (error) {
    throw new Error(`losetup could not attach ${image}: ${(error as Error).message}. These tests need root and loop devices (CI allows them).`);
  }
}

/** Waits for the partition nodes; where devtmpfs has not created them, asks the kernel again with partx. */
async function partitionNodes(device: string, count: number): Promise<string[]> {
  const nodes = Array.from({ length: count }, (_unused, index) => `${device}p${index + 1}`);
  for (let attempt = 0; attempt < 50; attempt += 1) {
    if (nodes.every((node) => existsSync(node))) return nodes;
    if (attempt === 2 || attempt === 20) sh('partx', ['-u', device]);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`Partition nodes ${nodes.join(', ')} did not appear after losetup -P and partx -u.`);
}

export interface LoopDisk {
  device: string;
  image: string;
  partitions: string[];
}

/**
 * A 64 MiB image with two MBR partitions (32 MiB ext4 labelled SEEDTEST, then the rest, empty),
 * attached as a loop device. `readOnly` re-attaches it with `losetup -r` after formatting.
 */
export async function partitionedLoop(options: { readOnly?: boolean; sizeMiB?: number } = {}): Promise<LoopDisk> {
  requireLoopSupport();
  const dir = await tempDir('dubnium-seed-loop-');
  const image = path.join(dir, 'disk.img');
  await writeFile(image, '');
  await truncate(image, (options.sizeMiB ?? 64) * 1024 * 1024);
  sh('sfdisk', ['-q', image], 'label: dos\n,32MiB,L\n,,L\n');
  let device = attach(image, false);
  const partitions = await partitionNodes(device, 2);
  sh('mkfs.ext4', ['-q', '-F', '-L', 'SEEDTEST', partitions[0]!]);
  if (options.readOnly) {
    sh('losetup', ['-d', device]);
    attached.splice(attached.indexOf(device), 1);
    device = attach(image, true);
    return { device, image, partitions: await partitionNodes(device, 2) };
  }
  return { device, image, partitions };
}

/** Mounts `device` on a fresh temp folder (unmounted after the test) and returns the folder. */
export async function mountTemp(device: string): Promise<string> {
  const target = path.join(await tempDir('dubnium-seed-mnt-'), 'mnt');
  await mkdir(target);
  sh('mount', [device, target]);
  mounted.push(target);
  return target;
}

/** Unmounts now (tests that need the device free again before the end). */
export function unmount(target: string): void {
  sh('umount', [target]);
  mounted.splice(mounted.indexOf(target), 1);
}
