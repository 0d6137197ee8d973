#!/usr/bin/env node
/**
 * Speed of the squashfs handler against `unsquashfs -d /dev/shm/...` (the target: a full read of every
 * member at most 1.5x unsquashfs's time). Builds a zstd image of /usr/share/doc and
 * /usr/lib/x86_64-linux-gnu (a few hundred MB, like a Nix store), then times, interleaved, the median
 * of BENCH_RUNS (default 3) runs of each: unsquashfs extracting to tmpfs, and the handler streaming
 * every member's bytes (the walker's work without the rules). Needs `npm run build` first. Wall time
 * and CPU time (user + system, all threads) are both reported: on a shared, loaded machine the CPU
 * time is the steadier comparison. BENCH_IMAGE=path keeps the image there (and reuses it next time).
 *
 *   node test/bench/squashfs.mjs [--comp zstd|xz|gzip|lz4] [--block 128K|1M] [dirs...]
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const args = process.argv.slice(2);
const option = (name, fallback) => {
  const index = args.indexOf(name);
  if (index < 0) return fallback;
  const value = args[index + 1];
  args.splice(index, 2);
  return value;
};
const comp = option('--comp', 'zstd');
const block = option('--block', '128K');
const dirs = args.length > 0 ? args : ['/usr/share/doc', '/usr/lib/x86_64-linux-gnu'];
const RUNS = Number(process.env.BENCH_RUNS ?? 3);

const { squashfs } = await import(path.join(ROOT, 'dist/core/scan/formats/squashfs.js'));
const { fileSource } = await import(path.join(ROOT, 'dist/core/scan/formats/byte-source.js'));

const work = mkdtempSync(path.join(process.env.BENCH_DIR ?? tmpdir(), 'dubnium-squashfs-bench-'));
const shm = mkdtempSync('/dev/shm/dubnium-squashfs-bench-');
const image = process.env.BENCH_IMAGE ?? path.join(work, 'bench.squashfs');
try {
  if (!existsSync(image)) execFileSync('mksquashfs', [...dirs, image, '-noappend', '-quiet', '-no-progress', '-comp', comp, '-b', block, '-no-xattrs'], { stdio: ['ignore', 'ignore', 'inherit'] });
  const size = statSync(image).size;
  console.log(`image: ${(size / 2 ** 20).toFixed(0)} MiB ${comp}, ${block} blocks, of ${dirs.join(' ')}`);

  const dropCaches = () => spawnSync('sh', ['-c', 'sync; echo 1 > /proc/sys/vm/drop_caches'], { stdio: 'ignore' });
  const unsquash = () => {
    rmSync(path.join(shm, 'x'), { recursive: true, force: true });
    dropCaches();
    // bash's `time` gives the wall and CPU seconds of unsquashfs and its threads.
    const script = `TIMEFORMAT='%R %U %S'; time unsquashfs -q -n -d '${path.join(shm, 'x')}' '${image}' >/dev/null`;
    const result = spawnSync('bash', ['-c', script], { encoding: 'utf8' });
    if (result.status !== 0) throw new Error(`unsquashfs failed: ${result.stderr}`);
    const [real, user, system] = result.stderr.trim().split('\n').pop().split(' ').map(Number);
    rmSync(path.join(shm, 'x'), { recursive: true, force: true });
    return { seconds: real, cpu: user + system };
  };
  const handler = async () => {
    dropCaches();
    const start = process.hrtime.bigint();
    const cpuStart = process.cpuUsage();
    const source = await fileSource(image);
    let files = 0;
    let bytes = 0;
    const context = { unreadable: (name, reason, message) => console.error(`unreadable ${name}: ${reason} ${message}`), problem: () => undefined };
    try {
      for await (const member of squashfs.members(source, context)) {
        files += 1;
        for await (const chunk of member.stream()) bytes += chunk.length;
      }
    } finally {
      await source.close();
    }
    const cpu = process.cpuUsage(cpuStart);
    return { seconds: Number(process.hrtime.bigint() - start) / 1e9, cpu: (cpu.user + cpu.system) / 1e6, files, bytes };
  };

  const times = { unsquashfs: [], handler: [] };
  const cpu = { unsquashfs: [], handler: [] };
  let last;
  for (let run = 0; run < RUNS; run++) {
    const u = unsquash();
    times.unsquashfs.push(u.seconds);
    cpu.unsquashfs.push(u.cpu);
    last = await handler();
    times.handler.push(last.seconds);
    cpu.handler.push(last.cpu);
  }
  const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
  const u = median(times.unsquashfs);
  const h = median(times.handler);
  console.log(`files: ${last.files}, bytes: ${(last.bytes / 2 ** 20).toFixed(0)} MiB`);
  console.log(`unsquashfs -d /dev/shm: ${u.toFixed(2)} s (runs ${times.unsquashfs.map((t) => t.toFixed(2)).join(', ')})`);
  console.log(`squashfs handler:       ${h.toFixed(2)} s (runs ${times.handler.map((t) => t.toFixed(2)).join(', ')}), ${(last.bytes / 2 ** 20 / h).toFixed(0)} MiB/s`);
  console.log(`ratio: ${(h / u).toFixed(2)}x wall (target <= 1.5x)`);
  const uc = median(cpu.unsquashfs);
  const hc = median(cpu.handler);
  console.log(`cpu: unsquashfs ${uc.toFixed(2)} s, handler ${hc.toFixed(2)} s, ratio ${(hc / uc).toFixed(2)}x`);
} finally {
  rmSync(work, { recursive: true, force: true }); // a BENCH_IMAGE outside it stays
  if (existsSync(shm)) rmSync(shm, { recursive: true, force: true });
}
