/**
 * The fault device itself: each fault does what the build tests rely on, on the raw loop device,
 * and stopping it leaves no loop device, mount or process behind.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { startFaultDevice } from '../helpers/fault-device.js';

const MiB = 1024 * 1024;

/** dd with O_DIRECT on the loop device: the exit code and seconds taken. */
function dd(args: string[]): { ok: boolean; seconds: number; stderr: string } {
  const started = process.hrtime.bigint();
  const result = spawnSync('dd', [...args, 'status=none'], { encoding: 'utf8' });
  return { ok: result.status === 0, seconds: Number(process.hrtime.bigint() - started) / 1e9, stderr: result.stderr };
}

describe('fault device', () => {
  it('passes data through to the backing file, fails writes from an offset and reads of a range, and unplugs', async () => {
    const fault = await startFaultDevice({ sizeMiB: 16, partitions: false });
    expect(dd(['if=/dev/urandom', `of=${fault.device}`, 'bs=1M', 'count=4', 'oflag=direct']).ok).toBe(true);
    expect(readFileSync(fault.backing).subarray(0, 4 * MiB).equals(Buffer.alloc(4 * MiB))).toBe(false);

    fault.setFaults({ writeEioFrom: 8 * MiB });
    expect(dd(['if=/dev/zero', `of=${fault.device}`, 'bs=1M', 'count=1', 'seek=7', 'oflag=direct']).ok).toBe(true);
    const refused = dd(['if=/dev/zero', `of=${fault.device}`, 'bs=1M', 'count=1', 'seek=8', 'oflag=direct']);
    expect(refused.ok).toBe(false);
    expect(refused.stderr).toMatch(/Input\/output error/);

    fault.setFaults({ writeEioFrom: null, readEio: [2 * MiB, 3 * MiB] });
    expect(dd([`if=${fault.device}`, 'of=/dev/null', 'bs=1M', 'count=2', 'iflag=direct']).ok).toBe(true);
    expect(dd([`if=${fault.device}`, 'of=/dev/null', 'bs=1M', 'count=1', 'skip=2', 'iflag=direct']).ok).toBe(false);

    fault.setFaults({ readEio: null, unplugged: true });
    expect(dd([`if=${fault.device}`, 'of=/dev/null', 'bs=4k', 'count=1', 'iflag=direct']).ok).toBe(false);
    expect(dd(['if=/dev/zero', `of=${fault.device}`, 'bs=4k', 'count=1', 'oflag=direct']).ok).toBe(false);
    fault.clearFaults();
    expect(dd([`if=${fault.device}`, 'of=/dev/null', 'bs=1M', 'iflag=direct']).ok).toBe(true);
    const status = fault.status();
    expect(status.failed_writes).toBeGreaterThan(0);
    expect(status.failed_reads).toBeGreaterThan(0);
    expect(status.unplugged).toBe(false);
  });

  it('limits bandwidth: 8 MiB at 8 MB/s takes about a second, reads and writes alike', async () => {
    const fault = await startFaultDevice({ sizeMiB: 16, partitions: false, faults: { readBps: 8e6, writeBps: 8e6 } });
    const read = dd([`if=${fault.device}`, 'of=/dev/null', 'bs=1M', 'count=8', 'iflag=direct']);
    const write = dd(['if=/dev/zero', `of=${fault.device}`, 'bs=1M', 'count=8', 'oflag=direct']);
    expect(read.ok && write.ok).toBe(true);
    // 8 MiB at 8 MB/s is 1.05 s; the 0.1 s carried-over budget can shave a little off.
    expect(read.seconds).toBeGreaterThan(0.85);
    expect(write.seconds).toBeGreaterThan(0.85);
    fault.setFaults({ readBps: 0 });
    expect(dd([`if=${fault.device}`, 'of=/dev/null', 'bs=1M', 'count=8', 'iflag=direct']).seconds).toBeLessThan(0.85);
  });

  it('stops cleanly, even with a filesystem mounted from it and the stick unplugged', async () => {
    const fault = await startFaultDevice({ sizeMiB: 64, partitions: false });
    expect(spawnSync('mkfs.ext4', ['-q', '-F', fault.device]).status).toBe(0);
    const root = fault.mount(fault.device);
    fault.setFaults({ unplugged: true });
    const device = fault.device;
    await fault.stop();
    const mounts = readFileSync('/proc/self/mounts', 'utf8');
    expect(mounts).not.toContain(root);
    // Checked for this device's own folder: other test files run fault devices in parallel.
    const own = path.dirname(fault.backing);
    expect(mounts).not.toContain(path.join(own, 'fuse'));
    expect(spawnSync('losetup', ['-n', '-O', 'BACK-FILE', device], { encoding: 'utf8' }).stdout).not.toContain(own);
    expect(() => process.kill(fault.pid, 0)).toThrow(/ESRCH/);
  });
});
