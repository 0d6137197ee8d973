/**
 * Task lists over the core: buildSeed runs once, in the background, and a listr2 task list follows
 * its step notifications (archive, copy, finalize, verify), showing bytes, throughput and ETA for
 * the long steps. The core never knows a task list exists.
 */
import { Listr } from 'listr2';
import { buildSeed, type BuildOptions, type BuildPlan, type BuildResult, type BuildStep } from '../core/build-seed.js';
import type { Progress } from '../core/types.js';
import { formatBytes, formatDuration, formatRate } from '../util/format.js';

/** How the task list is drawn: 'default' redraws in a terminal; 'simple' prints lines; 'silent' and 'test' are for tests. */
export type TaskRenderer = 'default' | 'simple' | 'silent' | 'test';

export interface BuildTaskSettings {
  renderer: TaskRenderer;
  /** Aborting stops the build (CancelledError, exit 130); the core removes its temporary files. */
  signal: AbortSignal;
  /** Minimum milliseconds between progress updates of one step; default 200 when redrawing, 5000 otherwise. */
  progressIntervalMs?: number;
}

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

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (error: unknown) => void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // A step that never started when the build failed must not surface as an unhandled rejection.
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

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
 * Runs buildSeed under a listr2 task list (archive, copy, finalize, verify) with bytes, throughput
 * and ETA for long steps; renderer 'default' in a TTY, 'simple'/'verbose' otherwise, 'silent' in tests.
 * Rejects with the core's own typed error (SecretsFoundError, CancelledError...), never a listr wrapper.
 */
export async function runBuildTasks(options: BuildOptions, plan: BuildPlan, settings: BuildTaskSettings): Promise<BuildResult> {
  const steps = (['archive', 'copy', 'finalize', 'sign', 'verify'] as const).filter((step) => (step !== 'verify' || options.verify) && (step !== 'sign' || plan.signer !== undefined));
  const started = new Map(steps.map((step) => [step, deferred<void>()]));
  const finished = new Map(steps.map((step) => [step, deferred<string | undefined>()]));
  const stepStart = new Map<BuildStep, number>();
  /** What a running step needs of its listr task: the line under its title. */
  const running = new Map<BuildStep, { output: string }>();
  const lastDrawn = new Map<BuildStep, number>();
  // A redrawing renderer replaces the line; a line-printing one appends, so it prints less often.
  const interval = settings.progressIntervalMs ?? (settings.renderer === 'default' ? 200 : 5000);

  const onStep: NonNullable<BuildOptions['onStep']> = (step, state, detail) => {
    options.onStep?.(step, state, detail);
    if (state === 'start') {
      stepStart.set(step, Date.now());
      started.get(step as (typeof steps)[number])?.resolve();
    } else {
      finished.get(step as (typeof steps)[number])?.resolve(detail);
    }
  };
  const onProgress = (progress: Progress) => {
    options.onProgress?.(progress);
    const step = progress.phase as BuildStep;
    const task = running.get(step);
    if (!task || !LONG_STEPS.has(step)) return;
    const now = Date.now();
    if (now - (lastDrawn.get(step) ?? 0) < interval && progress.bytes < progress.total) return;
    lastDrawn.set(step, now);
    task.output = formatProgressLine(progress, now - (stepStart.get(step) ?? now));
  };

  const build = buildSeed({ ...options, onStep, onProgress, signal: settings.signal }, plan);
  build.then(
    () => undefined,
    (error: unknown) => {
      for (const step of steps) {
        started.get(step)!.reject(error);
        finished.get(step)!.reject(error);
      }
    },
  );

  const list = new Listr<unknown, TaskRenderer, 'simple'>(
    steps.map((step) => ({
      title: BUILD_TASK_TITLES[step],
      task: async (_context, task) => {
        await started.get(step)!.promise;
        running.set(step, task);
        const begin = Date.now();
        try {
          const detail = await finished.get(step)!.promise;
          const elapsed = formatDuration(Date.now() - begin);
          task.title = `${BUILD_TASK_TITLES[step]}: ${detail ? `${detail}, ` : ''}${elapsed}`;
        } finally {
          running.delete(step);
        }
      },
    })),
    {
      renderer: settings.renderer,
      fallbackRenderer: 'simple',
      exitOnError: true,
      // The entry point owns SIGINT: it aborts `settings.signal`, and the core stops cleanly.
      registerSignalListeners: false,
    },
  );

  try {
    await list.run();
  } catch (error) {
    // Prefer the core's typed error over whatever listr reports.
    await build;
    throw error;
  }
  return build;
}
