/**
 * The build's task list (archive, copy, finalize, sign, verify) over step-tasks.ts, with bytes,
 * throughput and ETA for the long steps.
 */
import { buildSeed, type BuildOptions, type BuildPlan, type BuildResult, type BuildStep } from '../core/build-seed.js';
import type { Progress } from '../core/types.js';
import { formatBytes, formatDuration, formatRate } from '../util/format.js';
import { runStepTasks, withHooks, type BuildTaskSettings } from './step-tasks.js';

export type { BuildTaskSettings, TaskRenderer } from './step-tasks.js';

/** The titles of the build's own tasks (the device build's task list shows them too). */
export const BUILD_TASK_TITLES: Record<Exclude<BuildStep, 'plan'>, string> = {
  archive: 'Pack and scan the source archive',
  copy: 'Copy, hash and scan model bundles and the installer',
  finalize: 'Write SHA256SUMS and the manifest',
  sign: 'Sign the manifest with your SSH key',
  verify: 'Read the seed back and verify it',
};

/** Steps whose progress is worth bytes, throughput and ETA. */
const LONG_STEPS = new Set<BuildStep>(['archive', 'copy', 'verify']);

/** `1.2 GiB of 4.0 GiB (30%), 85.0 MiB/s, ETA 33.0 s` plus the file being worked on. */
export function formatProgressLine(progress: Progress, elapsedMs: number): string {
  const percent = progress.total > 0 ? Math.min(100, Math.floor((progress.bytes / progress.total) * 100)) : 100;
  const rate = progress.bytes / Math.max(elapsedMs, 1);
  const remaining = progress.total - progress.bytes + (progress.following ?? 0);
  const eta = rate > 0 && remaining > 0 ? formatDuration(remaining / rate) : '-';
  const file = progress.path ? `  ${progress.path.length > 60 ? `...${progress.path.slice(-57)}` : progress.path}` : '';
  return `${formatBytes(progress.bytes)} of ${formatBytes(progress.total)} (${percent}%), ${formatRate(progress.bytes, elapsedMs)}, ETA ${eta}${file}`;
}

/**
 * Runs buildSeed under a listr2 task list (archive, copy, finalize, sign, verify) with bytes, throughput
 * and ETA for long steps; renderer 'default' in a TTY, 'simple'/'verbose' otherwise, 'silent' in tests.
 * Rejects with the core's own typed error (SecretsFoundError, CancelledError...), never a listr wrapper.
 */
export async function runBuildTasks(options: BuildOptions, plan: BuildPlan, settings: BuildTaskSettings): Promise<BuildResult> {
  const steps = (['archive', 'copy', 'finalize', 'sign', 'verify'] as const).filter((step) => (step !== 'verify' || options.verify) && (step !== 'sign' || plan.signer !== undefined));
  return runStepTasks({ steps, titles: BUILD_TASK_TITLES, long: LONG_STEPS, line: (_step, progress, elapsed) => formatProgressLine(progress, elapsed) }, settings, (hooks) =>
    buildSeed(withHooks(options, hooks, settings.signal), plan),
  );
}
