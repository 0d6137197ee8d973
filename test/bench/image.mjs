#!/usr/bin/env node
/**
 * A scan of a realistic installer image with the built CLI (`node dist/cli.js scan nixos.iso`)
 * against `unsquashfs -d /dev/shm/x` of the same squashfs: the goal is at most 1.5x unsquashfs's wall
 * time and a peak RSS under 150 MB (memory stays flat whatever the image's size). The image: a zstd
 * squashfs of /usr/share and /usr/lib/x86_64-linux-gnu (about 1.3 GB of text and ELF files, like a
 * Nix store), as /nix-store.squashfs inside an ISO made with xorriso. Exits 1 when a goal is missed.
 * Needs `npm run build` first (the `bench` script does it).
 *
 *   BENCH_IMAGE_DIRS="/usr/share /usr/lib/x86_64-linux-gnu"  folders in the squashfs
 *   BENCH_ISO=path       keep the ISO there (and reuse it next time)
 *   BENCH_RUNS=1         runs of each (median)
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const dirs = (process.env.BENCH_IMAGE_DIRS ?? '/usr/share /usr/lib/x86_64-linux-gnu').split(/\s+/).filter(Boolean);
const RUNS = Number(process.env.BENCH_RUNS ?? 1);
const RATIO_GOAL = 1.5;
const RSS_GOAL_MB = 150;

const work = mkdtempSync(path.join(process.env.BENCH_DIR ?? tmpdir(), 'dubnium-image-bench-'));
const shm = mkdtempSync('/dev/shm/dubnium-image-bench-');
const iso = process.env.BENCH_ISO ?? path.join(work, 'nixos.iso');
const squashfs = path.join(work, 'iso-root', 'nix-store.squashfs');

/** Wall seconds and peak RSS (MB) of a command, from GNU time's format through bash. */
function timed(command, args) {
  const script = `TIMEFORMAT='%R'; time ( ${[command, ...args].map((arg) => `'${arg}'`).join(' ')} >/dev/null 2>/dev/null; echo "rc=$?" >&2 )`;
  const result = spawnSync('bash', ['-c', script], { encoding: 'utf8' });
  const lines = result.stderr.trim().split('\n');
  return { seconds: Number(lines.pop()), rc: Number(/rc=(\d+)/.exec(lines.join('\n'))?.[1] ?? -1) };
}

function peakRss(command, args) {
  // The peak of the process and its children from /proc (VmHWM), polled while it runs.
  const child = spawnSync('bash', ['-c', `${[command, ...args].map((arg) => `'${arg}'`).join(' ')} >/dev/null 2>&1 & pid=$!; peak=0; while kill -0 $pid 2>/dev/null; do for p in $pid $(pgrep -P $pid); do v=$(awk '/VmHWM/{print $2}' /proc/$p/status 2>/dev/null); [ -n "$v" ] && [ "$v" -gt "$peak" ] && peak=$v; done; sleep 0.2; done; echo $peak`], { encoding: 'utf8' });
  return Number(child.stdout.trim()) / 1024;
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
let failed = false;
try {
  if (!existsSync(iso)) {
    mkdirSync(path.dirname(squashfs), { recursive: true });
    execFileSync('mksquashfs', [...dirs, squashfs, '-noappend', '-quiet', '-no-progress', '-comp', 'zstd', '-no-xattrs'], { stdio: ['ignore', 'ignore', 'inherit'] });
    execFileSync('xorriso', ['-as', 'mkisofs', '-quiet', '-R', '-J', '-V', 'NIXOS_ISO', '-o', iso, path.dirname(squashfs)], { stdio: ['ignore', 'ignore', 'inherit'] });
  }
  if (!existsSync(squashfs)) {
    // A kept ISO: take its squashfs back out for unsquashfs.
    mkdirSync(path.dirname(squashfs), { recursive: true });
    execFileSync('xorriso', ['-osirrox', 'on', '-indev', iso, '-extract', '/nix-store.squashfs', squashfs], { stdio: 'ignore' });
  }
  console.log(`image: ${(statSync(iso).size / 2 ** 20).toFixed(0)} MiB ISO holding a zstd squashfs of ${dirs.join(' ')}`);
  const dropCaches = () => spawnSync('sh', ['-c', 'sync; echo 1 > /proc/sys/vm/drop_caches'], { stdio: 'ignore' });
  const unsquash = [];
  const scan = [];
  let rss = 0;
  for (let run = 0; run < RUNS; run++) {
    rmSync(path.join(shm, 'x'), { recursive: true, force: true });
    dropCaches();
    unsquash.push(timed('unsquashfs', ['-q', '-n', '-d', path.join(shm, 'x'), squashfs]).seconds);
    rmSync(path.join(shm, 'x'), { recursive: true, force: true });
    dropCaches();
    const result = timed(process.execPath, [path.join(ROOT, 'dist/cli.js'), 'scan', '--no-operator-secrets', iso]);
    scan.push(result.seconds);
    // 0 is clean, 4 is findings (a real /usr/share may hold test keys): anything else is a failure.
    if (result.rc !== 0 && result.rc !== 4) throw new Error(`scan exited ${result.rc}`);
  }
  dropCaches();
  rss = peakRss(process.execPath, [path.join(ROOT, 'dist/cli.js'), 'scan', '--no-operator-secrets', iso]);
  const ratio = median(scan) / median(unsquash);
  const runs = (values) => (values.length > 1 ? `  (runs: ${values.map((value) => value.toFixed(1)).join(', ')})` : '');
  console.log(`unsquashfs -d /dev/shm: ${median(unsquash).toFixed(1)} s${runs(unsquash)}`);
  console.log(`dubnium-seed scan:      ${median(scan).toFixed(1)} s  (${ratio.toFixed(2)}x, goal <= ${RATIO_GOAL}x)${runs(scan)}`);
  // A ratio is only as honest as its baseline: say so when the baseline's runs disagree.
  if (unsquash.length > 1 && Math.max(...unsquash) > 1.2 * Math.min(...unsquash)) {
    console.log(`NOTE: the unsquashfs runs differ by more than 20%: the machine is busy or the cache was not dropped; the ratio is uncertain`);
  }
  console.log(`peak RSS of the scan:   ${rss.toFixed(0)} MB (goal < ${RSS_GOAL_MB} MB)`);
  if (ratio > RATIO_GOAL) {
    console.log(`MISSED: the scan took ${ratio.toFixed(2)}x unsquashfs's time`);
    failed = true;
  }
  if (rss >= RSS_GOAL_MB) {
    console.log(`MISSED: peak RSS ${rss.toFixed(0)} MB`);
    failed = true;
  }
} finally {
  rmSync(shm, { recursive: true, force: true });
  if (!process.env.BENCH_ISO) rmSync(work, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
