/**
 * The task list of a device build (`build --device` in a terminal, and the wizard): buildOnDevice
 * runs once, in the background, and a listr2 task list follows its step notifications. The installer
 * image's scan is a task of its own, before anything is written, with the image's position and the
 * files scanned so far; a finding fails that task and the build stops with the stick untouched.
 * Steps a run does not take (a partition that already exists, mount on a FAT seed) show as skipped.
 */
import path from 'node:path';
import { Listr } from 'listr2';
import type { Progress } from '../core/types.js';
import type { DeviceBuildOptions, DeviceBuildResult, DeviceStep } from '../media/device-build.js';
import { formatBytes, formatDuration, formatRate } from '../util/format.js';
import { BUILD_TASK_TITLES, formatProgressLine, type BuildTaskSettings, type TaskRenderer } from './tasks.js';

type Listed = Exclude<DeviceStep, 'plan'>;

/** In the order buildOnDevice takes them. */
const ORDER: readonly Listed[] = ['installer-scan', 'installer', 'partition', 'format', 'installer-record', 'mount', 'archive', 'copy', 'finalize', 'sign', 'verify', 'unmount'];

/** Why a step was not taken, shown on its skipped task. */
const SKIPPED: Partial<Record<Listed, string>> = {
  partition: 'the seed partition is already there, reused',
  format: 'the seed partition is already there, reused',
  mount: 'a FAT seed is copied in with mtools, not mounted',
  unmount: 'a FAT seed is copied in with mtools, not mounted',
};

/** Steps whose progress is worth a line under the title. */
const LONG: ReadonlySet<Listed> = new Set(['installer-scan', 'installer', 'archive', 'copy', 'verify']);

/** The titles of a device build's tasks; the image's name is in its own two. */
export function deviceTaskTitles(iso: string | undefined): Record<Listed, string> {
  const name = iso ? path.basename(iso) : 'the installer image';
  return {
    'installer-scan': `Scan installer image ${name}`,
    installer: `Write installer image ${name} and read it back`,
    partition: 'Add the seed partition',
    format: 'Format the seed partition',
    'installer-record': 'Record the installer image for the manifest',
    mount: 'Mount the seed partition',
    ...BUILD_TASK_TITLES,
    unmount: 'Flush and unmount the seed partition',
  };
}

/**
 * `812 MiB of 1.3 GiB (61%), 12,345 files scanned, 95.0 MiB/s  nixos.iso › nix-store.squashfs › /nix/store/…`.
 * The position is where the scan is in the image: the flat pass over its bytes, then each container
 * read in place (the squashfs store) moves it again, so it is shown without an ETA.
 */
export function formatImageScanLine(progress: Progress, elapsedMs: number): string {
  const percent = progress.total > 0 ? Math.min(100, Math.floor((progress.bytes / progress.total) * 100)) : 100;
  const files = progress.files !== undefined ? `, ${progress.files.toLocaleString('en-US')} files scanned` : '';
  const where = progress.path ? `  ${progress.path.length > 70 ? `...${progress.path.slice(-67)}` : progress.path}` : '';
  return `${formatBytes(progress.bytes)} of ${formatBytes(progress.total)} (${percent}%)${files}, ${formatRate(progress.bytes, elapsedMs)}${where}`;
}

interface StepState {
  started: boolean;
  done: boolean;
  detail?: string;
  at: number;
}

/**
 * Runs buildOnDevice under a listr2 task list. Rejects with the core's own typed error
 * (SecretsFoundError for a leaking image: exit 4, nothing written), never a listr wrapper.
 */
export async function runDeviceBuildTasks(options: DeviceBuildOptions, settings: BuildTaskSettings): Promise<DeviceBuildResult> {
  const titles = deviceTaskTitles(options.iso);
  const steps = ORDER.filter(
    (step) =>
      (options.iso !== undefined || (step !== 'installer-scan' && step !== 'installer')) &&
      (step !== 'sign' || options.build.sign !== undefined) &&
      (step !== 'verify' || options.build.verify),
  );
  const states = new Map<Listed, StepState>(steps.map((step) => [step, { started: false, done: false, at: 0 }]));
  /** Index (in ORDER) of the furthest step started: a waiting step before it was not taken. */
  let furthest = -1;
  let current: Listed | undefined;
  let settled: { ok: true } | { ok: false; error: unknown } | undefined;
  let wake: () => void = () => undefined;
  let changed = new Promise<void>((resolve) => (wake = resolve));
  const notify = () => {
    const resolve = wake;
    changed = new Promise<void>((next) => (wake = next));
    resolve();
  };
  const running = new Map<Listed, { output: string }>();
  const lastDrawn = new Map<Listed, number>();
  const interval = settings.progressIntervalMs ?? (settings.renderer === 'default' ? 200 : 5000);

  const onStep: NonNullable<DeviceBuildOptions['onStep']> = (step, state, detail) => {
    options.onStep?.(step, state, detail);
    const entry = states.get(step as Listed);
    if (!entry) return;
    if (state === 'start') {
      // A FAT build copies twice (staging, then mtools): the task shows the first run of a step.
      if (!entry.started) Object.assign(entry, { started: true, at: Date.now() });
      furthest = Math.max(furthest, ORDER.indexOf(step as Listed));
      current = step as Listed;
    } else if (!entry.done) {
      entry.done = true;
      if (detail !== undefined) entry.detail = detail;
    }
    notify();
  };
  const onProgress = (progress: Progress) => {
    options.onProgress?.(progress);
    const step = current;
    const task = step ? running.get(step) : undefined;
    if (!step || !task || !LONG.has(step)) return;
    const now = Date.now();
    if (now - (lastDrawn.get(step) ?? 0) < interval && progress.bytes < progress.total) return;
    lastDrawn.set(step, now);
    const elapsed = now - states.get(step)!.at;
    task.output = step === 'installer-scan' ? formatImageScanLine(progress, elapsed) : formatProgressLine(progress, elapsed);
  };

  const { buildOnDevice } = await import('../media/device-build.js');
  const build = buildOnDevice({ ...options, onStep, onProgress, signal: settings.signal });
  build.then(
    () => {
      settled = { ok: true };
      notify();
    },
    (error: unknown) => {
      settled = { ok: false, error };
      notify();
    },
  );

  const list = new Listr<unknown, TaskRenderer, 'simple'>(
    steps.map((step) => ({
      title: titles[step],
      task: async (_context, task) => {
        const state = states.get(step)!;
        const index = ORDER.indexOf(step);
        // Wait for this step, or for a later one (this one was not taken), or for the end of the build.
        while (!state.started) {
          if (settled && !settled.ok) throw settled.error;
          if (furthest > index || settled) {
            task.skip(SKIPPED[step] ?? 'not needed');
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
          task.title = `${titles[step]}: ${state.detail ? `${state.detail}, ` : ''}${formatDuration(Date.now() - state.at)}`;
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
