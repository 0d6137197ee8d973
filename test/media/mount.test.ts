/** Private mounts of a seed partition (src/media/mount.ts) on a real ext4 image. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { open, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { mountPrivate } from '../../src/media/mount.js';
import { tempDir } from '../helpers/tmp.js';

const mounted = (root: string) => readFileSync('/proc/self/mounts', 'utf8').split('\n').some((line) => line.split(' ')[1] === root);

async function ext4Image(): Promise<string> {
  const image = path.join(await tempDir('dubnium-seed-mount-'), 'seed.img');
  execFileSync('truncate', ['-s', '32M', image]);
  execFileSync('mkfs.ext4', ['-q', '-F', '-L', 'DUBNIUM-SEED', image], { stdio: 'ignore' });
  return image;
}

describe('mountPrivate', () => {
  it('unmounts and removes its folder; a second release does nothing', async () => {
    const mount = await mountPrivate(await ext4Image(), 'ext4', { readOnly: false });
    await writeFile(path.join(mount.root, 'file'), 'bytes');
    expect(mounted(mount.root)).toBe(true);
    expect(await mount.release()).toBe(false);
    expect(mounted(mount.root)).toBe(false);
    expect(await mount.release()).toBe(false);
  });

  it('reports a mount a program still uses; after a failed build it is detached lazily instead', async () => {
    const mount = await mountPrivate(await ext4Image(), 'ext4', { readOnly: false });
    const held = await open(path.join(mount.root, 'held'), 'w');
    try {
      await expect(mount.release()).rejects.toThrow(/^Could not unmount .*busy.*Close programs using it, then run: umount /);
      expect(mounted(mount.root)).toBe(true);
      expect(await mount.release({ lazyIfBusy: true })).toBe(true);
      expect(mounted(mount.root)).toBe(false);
    } finally {
      await held.close();
    }
  }, 60_000);
});
