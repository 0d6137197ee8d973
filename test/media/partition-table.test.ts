import { describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.js';
import { appendPartition, planAppend, readTable, type PartitionTable } from '../../src/media/partition-table.js';
import { loopDisk, sh } from './media-fixture.js';

const MiB = 1024 * 1024;
const dos = (entries: [number, number, string][]): PartitionTable => ({
  label: 'dos',
  sectorSize: 512,
  entries: entries.map(([start, size, type], index) => ({ node: `/dev/sdz${index + 1}`, number: index + 1, start, size, type })),
});

describe('planAppend', () => {
  it('places the seed after the last partition end, 1 MiB aligned, to the end of the disk', () => {
    // A hybrid image: partition 1 covers the ISO from sector 0, partition 2 (EFI) sits inside it.
    const plan = planAppend('/dev/sdz', dos([[0, 10200, '0'], [136, 4096, 'ef']]), 256 * MiB, 100 * MiB);
    expect(plan).toEqual({ number: 3, start: 10240, size: 256 * 2048 - 10240, bytes: 256 * MiB - 5 * MiB });
    // An end that is not aligned moves the start up to the next MiB.
    expect(planAppend('/dev/sdz', dos([[0, 10300, '0']]), 256 * MiB, MiB).start).toBe(12288);
  });

  it('refuses too little room, four used slots, extended partitions and non-MBR tables', () => {
    expect(() => planAppend('/dev/sdz', dos([[0, 10200, '0']]), 64 * MiB, 100 * MiB)).toThrow(/too small, the seed partition needs 100 MiB, has 59\.0 MiB/);
    expect(() => planAppend('/dev/sdz', dos([[2048, 2048, '83'], [4096, 2048, '83'], [6144, 2048, '83'], [8192, 2048, '83']]), 256 * MiB, MiB)).toThrow(/all four MBR partition slots/);
    expect(() => planAppend('/dev/sdz', dos([[2048, 2048, '83'], [4096, 20480, '5']]), 256 * MiB, MiB)).toThrow(/extended partition/);
    expect(() => planAppend('/dev/sdz', { label: 'gpt', sectorSize: 512, entries: [] }, 256 * MiB, MiB)).toThrow(UsageError);
  });
});

describe('appendPartition on a real loop device', () => {
  it('adds the entry with sfdisk --append and keeps every other line of the dump', async () => {
    const { device } = await loopDisk(64);
    sh('sfdisk', ['-q', device], 'label: dos\n,8MiB,c,*\n');
    const before = sh('sfdisk', ['--dump', device]);
    const table = await readTable(device);
    expect(table?.entries).toHaveLength(1);
    const plan = planAppend(device, table!, 64 * MiB, 32 * MiB);
    await appendPartition(device, plan, '83');
    const after = sh('sfdisk', ['--dump', device]);
    expect(after.split('\n').filter((line) => !line.startsWith(`${device}p2`))).toEqual(before.split('\n'));
    expect(after).toMatch(new RegExp(`${device}p2 : start=\\s*18432, size=\\s*112640, type=83`));
  });

  it('reads no table as null', async () => {
    const { device } = await loopDisk(16);
    expect(await readTable(device)).toBeNull();
  });
});
