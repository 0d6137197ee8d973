// Micro-benchmark of the leak gate's hot path (run after `npm run build`):
//   node test/core/scan/throughput.bench.mjs [megabytes]
// Prints sha256 alone vs sha256 + scan on random and bf16-like chunks of 4 MiB.
import { measureScanThroughput } from '../../../dist/core/scan/bench.js';

const megabytes = Number(process.argv[2] ?? 256);
for (const result of await measureScanThroughput({ megabytes })) {
  console.log(
    `${result.kind.padEnd(6)} ${result.megabytes.toFixed(0)} MB: sha256 ${result.hashMBps.toFixed(0)} MB/s, scan ${result.scanMBps.toFixed(0)} MB/s, ` +
      `sha256+scan ${result.hashAndScanMBps.toFixed(0)} MB/s, overhead ${result.overheadPercent.toFixed(1)}%`,
  );
}
