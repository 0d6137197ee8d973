/**
 * The one way a task list follows the core: a core function runs once, in the background, and
 * reports its steps (start, end with a detail) and progress; a listr2 task list shows a task per
 * step, a line of progress under the long ones, and each task's detail and time when it ends. A
 * step the run does not take shows as skipped (once a later step started, or the run ended). The
 * list rejects with the core's own typed error (SecretsFoundError, CancelledError...), never a listr
 * wrapper. The core never knows a task list exists.
 */
import { Listr } from 'listr2';
import type { Progress } from '../core/types.js';
import { formatDuration } from '../util/format.js';

/** How the task list is drawn: 'default' redraws in a terminal; 'simple' prints lines; 'silent' and 'test' are for tests. */
export type TaskRenderer = 'default' | 'simple' | 'silent' | 'test';

export interface BuildTaskSettings {
  renderer: TaskRenderer;
  /** Aborting stops the build (CancelledError, exit 130); the core removes its temporary files. */
  signal: AbortSignal;
  /** Minimum milliseconds between progress updates of one step; default 200 when redrawing, 5000 otherwise. */
  progressIntervalMs?: number;
}

/** The task list of one run: its steps in the order the core takes them, and how to show them. */
export interface StepList<Step extends string> {
  steps: readonly Step[];
  titles: Record<Step, string>;
  /** Why a step was not taken, on its skipped task (default: "not needed"). */
  skipped?: Partial<Record<Step, string>>;
  /** Steps that get a progress line under their title. */
  long: ReadonlySet<string>;
  /** The progress line of a long step. */
  line(step: Step, progress: Progress, elapsedMs: number): string;
}

/** What the running core reports through. */
export interface StepHooks {
  onStep(step: string, state: 'start' | 'done', detail?: string): void;
  onProgress(progress: Progress): void;
}

/**
 * `options` with the hooks chained after its own onStep and onProgress, and the abort signal: what
 * a core run is started with under a task list.
 */
export function withHooks<Options extends { onStep?: ((step: never, state: 'start' | 'done', detail?: string) => void) | undefined; onProgress?: ((progress: Progress) => void) | undefined }>(
  options: Options,
  hooks: StepHooks,
  signal: AbortSignal,
): Options & { signal: AbortSignal } {
  return {
    ...options,
    onStep: ((step: string, state: 'start' | 'done', detail?: string) => {
      (options.onStep as ((step: string, state: 'start' | 'done', detail?: string) => void) | undefined)?.(step, state, detail);
      hooks.onStep(step, state, detail);
    }) as Options['onStep'],
    onProgress: (progress: Progress) => {
      options.onProgress?.(progress);
      hooks.onProgress(progress);
    },
    signal,
  };
}

interface StepState {
  started: boolean;
  done: boolean;
  detail?: string;
  at: number;
}

/** Runs `start(hooks)` under a listr2 task list made from `list`; resolves with its result. */
export async function runStepTasks<Step extends string, Result>(list: StepList<Step>, settings: BuildTaskSettings, start: (hooks: StepHooks) => Promise<Result>): Promise<Result> {
  const { steps } = list;
  const states = new Map<Step, StepState>(steps.map((step) => [step, { started: false, done: false, at: 0 }]));
  /** Index of the furthest step started: a waiting step before it was not taken. */
  let furthest = -1;
  let current: Step | undefined;
  let settled: { ok: true } | { ok: false; error: unknown } | undefined;
  let wake: () => void = () => undefined;
  let changed = new Promise<void>((resolve) => (wake = resolve));
  const notify = () => {
    const resolve = wake;
    changed = new Promise<void>((next) => (wake = next));
    resolve();
  };
  const running = new Map<Step, { output: string }>();
  const lastDrawn = new Map<Step, number>();
  // A redrawing renderer replaces the line; a line-printing one appends, so it prints less often.
  const interval = settings.progressIntervalMs ?? (settings.renderer === 'default' ? 200 : 5000);

  const hooks: StepHooks = {
    onStep(name, state, detail) {
      const step = name as Step;
      const entry = states.get(step);
      if (!entry) return;
      if (state === 'start') {
        // A step that runs twice (a FAT device build copies to staging, then with mtools) shows its first run.
        if (!entry.started) Object.assign(entry, { started: true, at: Date.now() });
        furthest = Math.max(furthest, steps.indexOf(step));
        current = step;
      } else if (!entry.done) {
        entry.done = true;
        if (detail !== undefined) entry.detail = detail;
      }
      notify();
    },
    onProgress(progress) {
      // The step the progress names (steps may overlap), else the one started last.
      const step = states.has(progress.phase as Step) ? (progress.phase as Step) : current;
      const task = step ? running.get(step) : undefined;
      if (!step || !task || !list.long.has(step)) return;
      const now = Date.now();
      if (now - (lastDrawn.get(step) ?? 0) < interval && progress.bytes < progress.total) return;
      lastDrawn.set(step, now);
      task.output = list.line(step, progress, now - states.get(step)!.at);
    },
  };

  const run = start(hooks);
  run.then(
    () => {
      settled = { ok: true };
      notify();
    },
    (error: unknown) => {
      settled = { ok: false, error };
      notify();
    },
  );

  const tasks = new Listr<unknown, TaskRenderer, 'simple'>(
    steps.map((step) => ({
      title: list.titles[step],
      task: async (_context, task) => {
        const state = states.get(step)!;
        const index = steps.indexOf(step);
        // Wait for this step, or for a later one (this one was not taken), or for the end of the run.
        while (!state.started) {
          if (settled && !settled.ok) throw settled.error;
          if (furthest > index || settled) {
            task.skip(list.skipped?.[step] ?? 'not needed');
            return;
          }
          await changed;
        }
        running.set(step, task);
        try {
          while (!state.done) {
            if (settled && !settled.ok) throw settled.error;
            if (settled) break;
            await changed;
          }
          task.title = `${list.titles[step]}: ${state.detail ? `${state.detail}, ` : ''}${formatDuration(Date.now() - state.at)}`;
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
    await tasks.run();
  } catch (error) {
    // Prefer the core's typed error over whatever listr reports.
    await run;
    throw error;
  }
  return run;
}
