/**
 * Progress without a terminal: plain lines on stderr, at most one every few seconds per phase,
 * so logs of scripted builds stay readable. Nothing ever waits for input.
 */
import type { Progress } from '../core/types.js';
import { formatBytes, formatDuration, formatRate } from '../util/format.js';

export function plainProgress(log: (line: string) => void, intervalMs = 5000) {
  let lastAt = 0;
  let phaseStarted = Date.now();
  let lastPhase = '';
  return {
    onStep(step: string, state: 'start' | 'done', detail?: string) {
      if (state === 'start') phaseStarted = Date.now();
      log(`${state === 'start' ? '==>' : ' ok'} ${step}${detail ? `: ${detail}` : ''}${state === 'done' ? ` (${formatDuration(Date.now() - phaseStarted)})` : ''}`);
    },
    onProgress(progress: Progress) {
      const now = Date.now();
      if (progress.phase !== lastPhase) {
        lastPhase = progress.phase;
        phaseStarted = now;
        lastAt = now;
        return;
      }
      if (now - lastAt < intervalMs || progress.total === 0) return;
      lastAt = now;
      const elapsed = now - phaseStarted;
      const rate = progress.bytes / Math.max(elapsed, 1);
      // Later phases (the build's read-back) count too: "ETA 0 s" means the whole run is done.
      const eta = rate > 0 ? (progress.total - progress.bytes + (progress.following ?? 0)) / rate : 0;
      log(
        `    ${progress.phase} ${formatBytes(progress.bytes)} / ${formatBytes(progress.total)} (${Math.floor((progress.bytes / progress.total) * 100)}%)${progress.files !== undefined ? `, ${progress.files} files` : ''}, ${formatRate(progress.bytes, elapsed)}, ETA ${formatDuration(eta)}`,
      );
    },
  };
}
