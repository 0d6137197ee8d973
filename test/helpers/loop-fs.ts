/** A real ext4 filesystem on a loop device, mounted in a temp folder; unmounted after each test. */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { afterEach } from 'vitest';
import { tempDir } from './tmp.js';

const mounts: string[] = [];

afterEach(() => {
  while (mounts.length > 0) {
    const target = mounts.pop()!;
    try {
      execFileSync('umount', [target], { stdio: 'ignore' });
    } catch {
      execFileSync('umount', ['-l', target], { stdio: 'ignore' });
    }
  }
});

/** Makes an image of `sizeMiB`, formats it ext4 and mounts it with `mount -o loop`; returns the mount point. */
export async function mountedExt4(sizeMiB: number, label = 'DUBNIUM-SEED'): Promise<string> {
  if (!existsSync('/dev/loop-control')) throw new Error('loop devices are not available on this machine (/dev/loop-control missing); these tests need root and loop support');
  const dir = await tempDir('dubnium-seed-ext4-');
  const image = path.join(dir, 'seed.img');
  execFileSync('truncate', ['-s', `${sizeMiB}M`, image]);
  execFileSync('mkfs.ext4', ['-q', '-F', '-L', label, '-m', '0', image], { stdio: 'ignore' });
  const target = path.join(dir, 'mnt');
  await mkdir(target);
  execFileSync('mount', ['-o', 'loop', image, target]);
  mounts.push(target);
  return target;
}
