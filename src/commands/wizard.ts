/**
 * `dubnium-seed` in a terminal: the wizard. It only completes options: what flags and the chosen
 * profile already say is not asked again. Every question and the final confirmation come before
 * the task list starts; afterwards it offers to save the answers as a profile and prints the
 * scripted command line for the same build.
 */
import { realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { planBuild, type BuildOptions, type BuildResult, type ModelRequest } from '../core/build-seed.js';
import { filesystemInfo } from '../core/target.js';
import { CancelledError, isSeedError, UsageError } from '../errors.js';
import type { SafetyContext } from '../hardware/drive-safety.js';
import { driveSourceFromEnvironment, type DriveSource } from '../hardware/drives.js';
import { resolveBuild, type BuildFlags } from '../options.js';
import { loadProfile, PACKAGE_PROFILES, resolvePath, type LoadedProfile } from '../profile.js';
import { runBuildTasks, type TaskRenderer } from '../ui/tasks.js';
import { discoverModelBundles, discoverProfiles, discoverSigningKeys, discoverTargetDrives, hfCacheDir, type TargetDrives } from '../ui/wizard/discover.js';
import { cancellablePrompts, inquirerPrompts, type WizardPrompts } from '../ui/wizard/prompts.js';
import {
  askModels,
  askProfile,
  askRepository,
  askSigningKey,
  askTarget,
  confirmBuild,
  confirmDeviceBuild,
  formatDevicePlan,
  formatPlan,
  offerSaveProfile,
  portablePath,
  profileFromAnswers,
  scriptedCommand,
  type TargetAnswer,
  type WizardAnswers,
} from '../ui/wizard/steps.js';
import type { CommandContext } from './context.js';
import { formatBuildResult } from './build.js';

/** What tests and other front-ends may swap; every field defaults to the real thing. */
export interface WizardDependencies {
  prompts?: WizardPrompts;
  drives?: DriveSource;
  /** Where the wizard's own text goes (plan, result, command line); default stdout. */
  write?: (text: string) => void;
  renderer?: TaskRenderer;
  env?: NodeJS.ProcessEnv;
  /** Shipped profiles folder; default the package's profiles/. */
  shippedProfiles?: string;
  /** Passed to drive classification; default: detected live. */
  systemDisks?: string[];
  /**
   * `build --device` in a terminal without `--yes`: the flags decided everything, so nothing is
   * asked but the device plan's confirmation (`build` otherwise never prompts: CONTRACT.md).
   */
  confirmOnly?: boolean;
}

/**
 * Runs the wizard and the build; returns the exit code (0, or 3/4 when the read-back verification
 * failed). Throws CancelledError (130) on Ctrl-C or a "no" at the confirmation, UsageError (2) for
 * inputs the core refuses.
 */
export async function runWizard(context: CommandContext, flags: BuildFlags = {}, deps: WizardDependencies = {}): Promise<number> {
  const prompts = cancellablePrompts(deps.prompts ?? inquirerPrompts);
  const write = deps.write ?? ((text: string) => void process.stdout.write(`${text}\n`));
  const env = deps.env ?? process.env;
  const cwd = context.cwd;
  let asked = false;

  // 1. Profile.
  let profile: LoadedProfile | undefined;
  if (flags.profile !== undefined) {
    profile = await loadProfile(flags.profile, cwd);
  } else if (resolveBuild(flags, undefined, cwd).missing.length > 0) {
    // Flags that already say everything (`build --device` in a terminal) need no profile.
    profile = await askProfile(prompts, await discoverProfiles(cwd, deps.shippedProfiles ?? PACKAGE_PROFILES));
  }
  const resolved = resolveBuild(flags, profile, cwd);
  const profileBase = profile ? path.dirname(profile.file) : cwd;
  const from = profile ? ` (from profile ${profile.name})` : ' (from the command line)';

  // 2. Repository.
  let repo = resolved.options.source.repo;
  if (resolved.missing.includes('repo')) {
    repo = await askRepository(prompts, { cwd });
    asked = true;
  } else {
    write(`Repository: ${repo}${from}`);
  }

  // 3. Model bundles.
  let models: ModelRequest[] = resolved.options.models;
  const modelsGiven = (flags.model?.length ?? 0) > 0 || (profile?.data.models?.length ?? 0) > 0;
  if (!modelsGiven && !deps.confirmOnly) {
    const searched = [...(profile?.data.modelFolders ?? []).map((folder) => resolvePath(folder, profileBase)), hfCacheDir(env)];
    models = await askModels(prompts, await discoverModelBundles([...new Set(searched)]), { cwd, searched });
    asked = true;
  } else {
    write(`Model bundles: ${models.map((model) => model.path).join(', ')}${from}`);
  }

  // 4. Target. A whole stick (`--device`, or target.device in the profile) is built by the device
  // task list, its installer image (`--iso`) scanned first as a task of its own.
  if (resolved.target?.kind === 'device') {
    const iso = flags.iso !== undefined ? path.resolve(cwd, flags.iso) : undefined;
    write(`Target: ${resolved.target.path}${iso ? `, installer image ${iso} written first` : ''}${from}`);
    return runDeviceWizard(context, prompts, write, { ...resolved, device: resolved.target.path, repo, models, ...(iso ? { iso } : {}) }, flags, deps.renderer ?? 'default');
  }
  if (flags.iso !== undefined) throw new UsageError('--iso writes an installer image onto a whole disk; it goes with --device.');
  let target: TargetAnswer;
  if (resolved.target) {
    if (resolved.target.kind !== 'folder') {
      throw new UsageError(`A --${resolved.target.kind} target is not available in this version; pick the mounted seed partition or a folder.`);
    }
    target = { folder: resolved.target.path };
    write(`Target: ${target.folder}${from}`);
  } else {
    const safety: SafetyContext = { protectedPaths: [repo, ...models.map((model) => model.path)], ...(deps.systemDisks ? { systemDisks: deps.systemDisks } : {}) };
    let drives: TargetDrives = { mounts: [], unmounted: [], excluded: [] };
    let note: string | undefined;
    try {
      drives = await discoverTargetDrives(deps.drives ?? driveSourceFromEnvironment(env), safety);
    } catch (error) {
      // Without drive listing the folder path still works; say why the list is empty.
      if (!isSeedError(error)) throw error;
      note = error.message;
    }
    target = await askTarget(prompts, { drives, cwd, ...(note ? { note } : {}) });
    if (target.drive) await checkStillMounted(target.folder);
    asked = true;
  }

  // 4b. Signing key: asked only when neither flags nor the profile decided (and there is a key to offer).
  let sign = resolved.options.sign;
  if (flags.sign === undefined && profile?.data.sign === undefined) {
    const keys = await discoverSigningKeys(env);
    if (keys.length > 0) {
      sign = await askSigningKey(prompts, keys);
      asked = true;
    }
  } else if (sign !== undefined) {
    write(`Signing key: ${sign}${from}`);
  }

  // 5. Plan and confirmation: nothing has been written so far.
  const { sign: _decided, ...rest } = resolved.options;
  const options: BuildOptions = {
    ...rest,
    ...(sign !== undefined ? { sign } : {}),
    source: { ...resolved.options.source, repo },
    models,
    target: target.folder,
    ...(target.drive ? { label: resolved.label } : {}),
  };
  const plan = await planBuild(options);
  write(formatPlan(plan, { ...options, ...(target.drive ? { drive: target.drive } : {}) }));
  if (!(await confirmBuild(prompts, { plan, onDrive: target.drive !== undefined }))) {
    throw new CancelledError('Not confirmed: nothing was written.');
  }

  // 6. Run.
  write('');
  const result = await runBuildTasks(options, plan, { renderer: deps.renderer ?? 'default', signal: context.signal });
  write('');
  write(formatBuildResult(result));
  const exitCode = buildExitCode(result);

  // 7. Afterwards: save the answers, and the same build without questions.
  const answers: WizardAnswers = { repo, models, targetFolder: target.folder, ...(sign !== undefined ? { sign } : {}) };
  let savedAs: string | undefined;
  if (asked && exitCode === 0) {
    const file = await offerSaveProfile(prompts, { data: profileFromAnswers(answers, profile), cwd, ...(profile ? { suggestedName: profile.name } : {}) });
    if (file) {
      savedAs = path.basename(file).replace(/\.yaml$/, '');
      write(`Saved ${portablePath(file)}.`);
    }
  }
  write('');
  write('The same build without questions:');
  if (savedAs) write(`  ${scriptedCommand(answers, { profileName: savedAs })}`);
  else if (profile && !asked) write(`  ${scriptedCommand(answers, { profileName: profile.name })}`);
  write(`  ${scriptedCommand(answers)}`);
  return exitCode;
}

/**
 * The wizard's end for a whole stick: what will be written, one confirmation (default no: the stick's
 * partition table changes), then the device task list. A leaking installer image fails its scan task
 * (SecretsFoundError, exit 4) before a byte is written.
 */
async function runDeviceWizard(
  context: CommandContext,
  prompts: WizardPrompts,
  write: (text: string) => void,
  chosen: ReturnType<typeof resolveBuild> & { device: string; repo: string; models: ModelRequest[]; iso?: string },
  flags: BuildFlags,
  renderer: TaskRenderer,
): Promise<number> {
  const { sign: _sign, ...rest } = chosen.options;
  const sign = flags.sign === false ? undefined : chosen.options.sign;
  const build = { ...rest, ...(sign !== undefined ? { sign } : {}), source: { ...chosen.options.source, repo: chosen.repo }, models: chosen.models };
  write(formatDevicePlan({ device: chosen.device, label: chosen.label, filesystem: chosen.filesystem, models: chosen.models.map((model) => model.path), ...(chosen.iso ? { iso: chosen.iso } : {}) }));
  if (!(await confirmDeviceBuild(prompts, { device: chosen.device, ...(chosen.iso ? { iso: chosen.iso } : {}) }))) {
    throw new CancelledError('Not confirmed: nothing was written.');
  }
  write('');
  const { runDeviceBuildTasks } = await import('../ui/device-tasks.js');
  const result = await runDeviceBuildTasks(
    {
      device: chosen.device,
      ...(chosen.iso ? { iso: chosen.iso } : {}),
      label: chosen.label,
      filesystem: chosen.filesystem,
      allowFixedDisk: Boolean(flags.allowFixedDisk),
      allowLarge: Boolean(flags.allowLarge),
      build,
      onWarning: (message) => write(`warning: ${message}`),
    },
    { renderer, signal: context.signal },
  );
  write('');
  write(`Seed partition ${result.partition} (${result.filesystem}, label ${chosen.label}) on ${result.device}${result.created ? ', created now' : ', reused'}.`);
  write(formatBuildResult(result));
  return buildExitCode(result);
}

function buildExitCode(result: BuildResult): number {
  if (!result.verify || result.verify.ok) return 0;
  return result.verify.findings.length > 0 ? 4 : 3;
}

/** A drive picked from the list must still be mounted there: otherwise the seed would land on the disk underneath. */
async function checkStillMounted(mountPoint: string): Promise<void> {
  const isFolder = await stat(mountPoint).then((info) => info.isDirectory(), () => false);
  const mounted = isFolder ? (await filesystemInfo(mountPoint)).mountPoint === (await realpath(mountPoint)) : false;
  if (!mounted) {
    throw new UsageError(`${mountPoint} is no longer a mounted partition (was the stick removed?). Plug it in, mount it, and run dubnium-seed again.`);
  }
}

