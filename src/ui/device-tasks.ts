/**
 * The task list of a device build (`build --device` in a terminal, and the wizard): buildOnDevice
 * runs once, in the background, and a listr2 task list follows its step notifications. The installer
 * image's scan is a task of its own, before anything is written, with the image's position and the
 * files scanned so far; a finding fails that task and the build stops with the stick untouched.
 * Steps a run does not take (a partition that already exists, mount on a FAT seed) show as skipped.
 */
import path from 'node:path';
import type { Progress } from '../core/types.js';
import type { DeviceBuildOptions, DeviceBuildResult, DeviceStep } from '../media/device-build.js';
import { formatBytes, formatRate } from '../util/format.js';
import { runStepTasks, withHooks, type BuildTaskSettings } from './step-tasks.js';
import { BUILD_TASK_TITLES, formatProgressLine } from './tasks.js';

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

/**
 * Runs buildOnDevice under a listr2 task list. Rejects with the core's own typed error
 * (SecretsFoundError for a leaking image: exit 4, nothing written), never a listr wrapper.
 */
export async function runDeviceBuildTasks(options: DeviceBuildOptions, settings: BuildTaskSettings): Promise<DeviceBuildResult> {
  const steps = ORDER.filter(
    (step) =>
      (options.iso !== undefined || (step !== 'installer-scan' && step !== 'installer')) &&
      (step !== 'sign' || options.build.sign !== undefined) &&
      (step !== 'verify' || options.build.verify),
  );
  const { buildOnDevice } = await import('../media/device-build.js');
  const line = (step: Listed, progress: Progress, elapsed: number) => (step === 'installer-scan' ? formatImageScanLine(progress, elapsed) : formatProgressLine(progress, elapsed));
  return runStepTasks({ steps, titles: deviceTaskTitles(options.iso), skipped: SKIPPED, long: LONG, line }, settings, (hooks) =>
    buildOnDevice(withHooks(options, hooks, settings.signal)),
  );
}
