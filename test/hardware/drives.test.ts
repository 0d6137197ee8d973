import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.js';
import { diskHoldingPath } from '../../src/hardware/block-devices.js';
import { classifyDrives } from '../../src/hardware/drive-safety.js';
import { drivelistSource, formatDriveSize, normalizeDrive, recordedSource } from '../../src/hardware/drives.js';
import { tempDir } from '../helpers/tmp.js';

const fixtures = path.resolve(import.meta.dirname, '../../fixtures/drivelist');

describe('recordedSource', () => {
  it('replays every recorded drivelist result as normalized drives', async () => {
    const files = (await readdir(fixtures)).filter((name) => name.endsWith('.json'));
    expect(files.length).toBeGreaterThanOrEqual(6);
    for (const file of files) {
      const drives = await recordedSource(path.join(fixtures, file)).list();
      expect(drives.length, file).toBeGreaterThan(0);
      for (const drive of drives) {
        expect(drive.device, file).toMatch(/^\/dev\//);
        expect(drive.enumerator).toBe('lsblk:json');
        expect(drive.raw).toMatchObject({ device: drive.device });
      }
    }
  });

  it('keeps drivelist quirks visible: zram is virtual and "removable" with no size; mmcblk is a card', async () => {
    const vm = await recordedSource(path.join(fixtures, 'this-vm.json')).list();
    const zram = vm.find((drive) => drive.device === '/dev/zram0');
    expect(zram).toMatchObject({ isVirtual: true, isRemovable: true, size: null });
    const card = (await recordedSource(path.join(fixtures, 'sd-card-reader.json')).list()).find((drive) => drive.device === '/dev/mmcblk0');
    expect(card).toMatchObject({ isCard: true, busType: 'UNKNOWN', isRemovable: true, size: 31914983424 });
    expect(card!.mountpoints.map((mount) => mount.label)).toEqual(['bootfs', 'rootfs']);
  });

  it('fails with a usage error on a missing or malformed recording', async () => {
    const dir = await tempDir();
    await expect(recordedSource(path.join(dir, 'missing.json')).list()).rejects.toThrow(UsageError);
    await writeFile(path.join(dir, 'object.json'), '{"device":"/dev/sda"}');
    await expect(recordedSource(path.join(dir, 'object.json')).list()).rejects.toThrow(/not a JSON array/);
    await writeFile(path.join(dir, 'junk.json'), '[{"size":1}]');
    await expect(recordedSource(path.join(dir, 'junk.json')).list()).rejects.toThrow(/Unexpected drive record/);
  });

  it('normalizes missing and odd fields conservatively', () => {
    const drive = normalizeDrive({ device: '/dev/sdz', size: 0, mountpoints: [{ path: '/mnt', label: '' }, { label: 'x' }] });
    expect(drive).toMatchObject({ size: null, isRemovable: false, isReadOnly: false, busType: 'UNKNOWN', description: '', isUSB: null, isCard: null });
    expect(drive.mountpoints).toEqual([{ path: '/mnt', label: null }]);
  });
});

describe('drivelistSource on this machine', () => {
  it('lists the real drives, and the disk holding / is excluded as the system drive', async () => {
    const drives = await drivelistSource().list();
    expect(drives.length).toBeGreaterThan(0);
    const root = await diskHoldingPath('/');
    const system = drives.find((drive) => drive.device === root);
    expect(system, `drivelist should list ${root}`).toBeDefined();
    const result = await classifyDrives(drives, { protectedPaths: [process.cwd()] });
    const verdict = result.excluded.find((entry) => entry.drive.device === root);
    expect(verdict?.reasons.map((reason) => reason.code)).toContain('system-drive');
    expect(result.candidates.map((entry) => entry.drive.device)).not.toContain(root);
  });
});

describe('formatDriveSize', () => {
  it('uses decimal units like drive vendors', () => {
    expect(formatDriveSize(null)).toBe('no medium');
    expect(formatDriveSize(512)).toBe('512 B');
    expect(formatDriveSize(61530439680)).toBe('61.5 GB');
    expect(formatDriveSize(1000204886016)).toBe('1.00 TB');
    expect(formatDriveSize(128e9)).toBe('128.0 GB');
  });
});
