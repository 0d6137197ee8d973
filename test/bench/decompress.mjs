#!/usr/bin/env node
/**
 * Throughput of decompressStream per codec, next to the CLI tool's own `-dc > /dev/null`, on realistic
 * data: a tar of /usr/share and /usr/lib/x86_64-linux-gnu cut to DECOMPRESS_BENCH_MB (default 256) MiB,
 * compressed with each CLI. Each codec runs in its own child process so its peak RSS is its own.
 * Run after `npm run build`: node test/bench/decompress.mjs
 */
import { execFileSync, execSync } from 'node:child_process';
import { createReadStream, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CODECS = [
  { kind: 'gzip', compress: 'gzip -6 -c', decompress: 'gzip -dc', ext: 'gz' },
  { kind: 'zstd', compress: 'zstd -q -3 -T0 -c', decompress: 'zstd -q -dc', ext: 'zst' },
  { kind: 'xz', compress: 'xz -6 -T0 -c', decompress: 'xz -dc', ext: 'xz' },
  { kind: 'bzip2', compress: 'bzip2 -9 -c', decompress: 'bzip2 -dc', ext: 'bz2' },
  { kind: 'lz4', compress: 'lz4 -q -c', decompress: 'lz4 -q -dc', ext: 'lz4' },
  { kind: 'lz4-legacy', compress: 'lz4 -q -l -c', decompress: 'lz4 -q -dc', ext: 'lz4l' },
];

if (process.argv[2] === '--child') {
  // One codec: decompress the file and report output bytes, seconds, peak RSS.
  const [, , , kind, file] = process.argv;
  const { decompressStream } = await import(pathToFileURL(path.join(root, 'dist/core/scan/decompress/index.js')).href);
  const started = process.hrtime.bigint();
  const before = process.cpuUsage();
  let bytes = 0;
  for await (const chunk of decompressStream(kind, createReadStream(file, { highWaterMark: 1 << 20 }))) bytes += chunk.length;
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const cpu = process.cpuUsage(before);
  console.log(JSON.stringify({ bytes, seconds, cpu: (cpu.user + cpu.system) / 1e6, rss: process.resourceUsage().maxRSS * 1024 }));
  process.exit(0);
}

const megabytes = Number(process.env.DECOMPRESS_BENCH_MB ?? 256);
const only = process.env.DECOMPRESS_BENCH_CODECS?.split(',');
const dir = mkdtempSync(path.join(tmpdir(), 'decompress-bench-'));
try {
  const plain = path.join(dir, 'data.tar');
  execSync(`tar -cf - /usr/share /usr/lib/x86_64-linux-gnu 2>/dev/null | head -c ${megabytes * 1024 * 1024} > ${plain}`, { shell: '/bin/bash' });
  const size = statSync(plain).size;
  console.log(`data: ${(size / 2 ** 20).toFixed(0)} MiB tar of /usr/share and /usr/lib/x86_64-linux-gnu; load average ${execSync('cut -d" " -f1-3 /proc/loadavg').toString().trim()}`);
  // On a shared, loaded machine wall time says little: MB/s are also given per CPU-second.
  console.log('codec       ratio   ours: wall MB/s  CPU MB/s   CLI -dc: wall MB/s  CPU MB/s   ours peak RSS');
  for (const codec of CODECS) {
    if (only && !only.includes(codec.kind)) continue;
    const file = path.join(dir, `data.${codec.ext}`);
    execSync(`${codec.compress} ${plain} > ${file}`, { shell: '/bin/bash' });
    const ours = JSON.parse(execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--child', codec.kind, file]).toString());
    if (ours.bytes !== size) throw new Error(`${codec.kind}: ${ours.bytes} bytes out, expected ${size}`);
    const timed = execSync(`{ /usr/bin/time -f '%e %U %S' ${codec.decompress} ${file} > /dev/null; } 2>&1`, { shell: '/bin/bash' }).toString().trim().split('\n').pop().split(' ').map(Number);
    const [cliWall, cliUser, cliSys] = timed;
    const mb = size / 1e6;
    const rate = (seconds) => (seconds > 0 ? (mb / seconds).toFixed(0) : '-').padStart(9);
    console.log(
      `${codec.kind.padEnd(11)} ${(size / statSync(file).size).toFixed(2).padStart(5)}   ${rate(ours.seconds)}  ${rate(ours.cpu)}   ${rate(cliWall)}     ${rate(cliUser + cliSys)}   ${(ours.rss / 2 ** 20).toFixed(0).padStart(8)} MiB`,
    );
    rmSync(file);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
