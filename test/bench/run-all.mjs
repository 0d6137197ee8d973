#!/usr/bin/env node
/**
 * `npm run bench`: every benchmark runs and prints its ratios, whichever goals an earlier one missed;
 * the exit code is non-zero when any goal was missed.
 *   test/bench/bench.mjs   build, verify, slow stick, RSS, leak-gate speed (issues 14 and 15)
 *   test/bench/image.mjs   installer-image scan against unsquashfs (issue 11)
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

let failed = false;
for (const script of ['bench.mjs', 'image.mjs']) {
  const result = spawnSync(process.execPath, [fileURLToPath(new URL(script, import.meta.url))], { stdio: 'inherit' });
  if (result.status !== 0) {
    failed = true;
    console.log(`${script}: ${result.signal ? `killed by ${result.signal}` : `exit ${result.status}`} (a goal was missed or the run failed)`);
  }
}
process.exit(failed ? 1 : 0);
