/**
 * The wizard's questions, one small function each. Every step takes the prompts object it asks
 * with (real @inquirer/prompts, or @inquirer/testing's render in tests) and returns an answer; none
 * writes anything.
 */
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { Separator } from '@inquirer/prompts';
import { stringify as stringifyYaml } from 'yaml';
import type { BuildOptions, BuildPlan, ModelRequest } from '../../core/build-seed.js';
import { describeSource } from '../../core/flake/carry.js';
import { resolveModelBundle } from '../../core/model-bundle.js';
import { FAT_MAX_FILE, inspectTarget, LABEL_LIMITS } from '../../core/target.js';
import { isSeedError } from '../../errors.js';
import { LARGE_DRIVE_BYTES, type DriveVerdict } from '../../hardware/drive-safety.js';
import { formatDriveSize } from '../../hardware/drives.js';
import { PACKAGE_PROFILES, parseProfile, profileSchema, resolvePath, type LoadedProfile, type ProfileData } from '../../profile.js';
import { formatBytes } from '../../util/format.js';
import { describeRepository, type BundleCandidate, type MountCandidate, type ProfileCandidate, type RepositoryInfo, type SigningKeyCandidate, type TargetDrives } from './discover.js';
import { keyTypeName, parsePublicKeyLine } from '../../core/sign.js';
import type { WizardPrompts } from './prompts.js';

/** Enough rows for a drive list on an 80x24 console without scrolling. */
const PAGE_SIZE = 12;

// ---------------------------------------------------------------------------------------------
// Profile

/** Which profile to start from; undefined for none. Profiles that fail to load are shown disabled with the reason. */
export async function askProfile(prompts: WizardPrompts, candidates: ProfileCandidate[]): Promise<LoadedProfile | undefined> {
  if (candidates.length === 0) return undefined;
  const choices = [
    { name: 'No profile: answer each question', value: null, description: 'Afterwards you can save the answers as a profile.' },
    ...candidates.map((candidate) => ({
      name: `${candidate.name}${candidate.origin === 'shipped' ? ' (shipped)' : ''}${candidate.profile?.data.description ? `  ${candidate.profile.data.description}` : ''}`,
      value: candidate.profile ?? null,
      description: candidate.file,
      ...(candidate.error ? { disabled: `invalid: ${candidate.error}` } : {}),
    })),
  ];
  const chosen = await prompts.select({ message: 'Start from a profile?', choices, pageSize: PAGE_SIZE });
  return chosen ?? undefined;
}

// ---------------------------------------------------------------------------------------------
// Repository

/** One line: `/path  (branch main, commit 1a2b3c4d5e6f, 2 uncommitted files)`. */
export function describeRepositoryLine(info: RepositoryInfo): string {
  if (!info.root) return `${info.path}  (not a git work tree)`;
  const parts = [
    info.branch ? `branch ${info.branch}` : 'detached HEAD',
    info.commit ? `commit ${info.commit.slice(0, 12)}` : 'no commits yet',
    info.dirtyFiles === 0 ? 'clean' : `${info.dirtyFiles} uncommitted file${info.dirtyFiles === 1 ? '' : 's'}`,
  ];
  return `${info.root}  (${parts.join(', ')})`;
}

const OTHER = Symbol('other');

/** Validates a typed repository path: it must be (inside) a git work tree with a commit. */
export async function validateRepositoryPath(value: string, cwd: string): Promise<true | string> {
  if (value.trim() === '') return 'Type the path of the configuration repository.';
  const absolute = expandPath(value.trim(), cwd);
  if (!(await stat(absolute).then((info) => info.isDirectory(), () => false))) return `${absolute} is not a folder.`;
  const info = await describeRepository(absolute);
  if (!info.root) return `${absolute} is not inside a git work tree (a plain folder needs \`dubnium-seed build --plain-folder\`).`;
  if (!info.commit) return `${info.root} has no commit yet; commit the configuration first.`;
  return true;
}

/**
 * The configuration repository. Default: the git work tree around `cwd`, shown with branch,
 * commit and dirty file count; or a typed path (a folder inside a work tree archives that subtree).
 */
export async function askRepository(prompts: WizardPrompts, options: { cwd: string; around?: RepositoryInfo }): Promise<string> {
  const around = options.around ?? (await describeRepository(options.cwd));
  if (around.root && around.commit) {
    const chosen = await prompts.select<string | typeof OTHER>({
      message: 'Which configuration repository goes on the seed?',
      choices: [
        { name: describeRepositoryLine(around), value: around.root, description: 'the git work tree around the current folder, as it is now (uncommitted changes included)' },
        { name: 'Another folder (type its path)', value: OTHER },
      ],
    });
    if (chosen !== OTHER) return chosen;
  }
  const typed = await prompts.input({
    message: around.root ? 'Path of the configuration repository:' : `No git work tree around ${options.cwd}. Path of the configuration repository:`,
    validate: (value) => validateRepositoryPath(value, options.cwd),
  });
  const absolute = expandPath(typed.trim(), options.cwd);
  return absolute;
}

// ---------------------------------------------------------------------------------------------
// Model bundles

/** One checkbox line: name, size, file and shard counts, where it is. */
export function describeBundleCandidate(candidate: BundleCandidate): string {
  const { bundle } = candidate;
  if (!bundle) return `${path.basename(candidate.path)}  ${candidate.path}`;
  const revision = bundle.revision ? `, revision ${bundle.revision.slice(0, 12)}` : '';
  return `${bundle.name}  ${formatBytes(bundle.totalBytes)}, ${bundle.files.length} files, ${bundle.shards.length} shards${revision}  ${candidate.path}`;
}

/** Validates a typed model bundle path (empty means: no bundle). */
export async function validateBundlePath(value: string, cwd: string): Promise<true | string> {
  if (value.trim() === '') return true;
  try {
    await resolveModelBundle(expandPath(value.trim(), cwd));
    return true;
  } catch (error) {
    if (isSeedError(error)) return error.message;
    throw error;
  }
}

/**
 * Model bundles as a checkbox list; invalid bundles are shown disabled with the reason. When
 * nothing was found, asks for a path instead (empty: a seed with the source archive only).
 */
export async function askModels(prompts: WizardPrompts, candidates: BundleCandidate[], options: { cwd: string; searched: string[] }): Promise<ModelRequest[]> {
  if (candidates.length === 0) {
    const typed = await prompts.input({
      message: `No model bundles found in ${options.searched.join(', ') || 'the Hugging Face cache'}. Path of a model bundle (empty for none):`,
      validate: (value) => validateBundlePath(value, options.cwd),
    });
    return typed.trim() === '' ? [] : [{ path: expandPath(typed.trim(), options.cwd) }];
  }
  const names = new Map(candidates.filter((candidate) => candidate.bundle).map((candidate) => [candidate.path, candidate.bundle!.name]));
  const chosen = await prompts.checkbox({
    message: 'Which model bundles go on the seed? (space selects, enter confirms)',
    pageSize: PAGE_SIZE,
    choices: candidates.map((candidate) => ({
      name: describeBundleCandidate(candidate),
      value: candidate.path,
      short: candidate.bundle?.name ?? candidate.path,
      ...(candidate.error ? { disabled: `invalid: ${firstLine(candidate.error)}` } : {}),
    })),
    validate: (selected) => {
      const seen = new Set<string>();
      for (const item of selected) {
        const name = names.get(item.value);
        if (name === undefined) continue;
        if (seen.has(name)) return `Two selected bundles are both named ${name}; pick one of them (or build from a profile that names them with models[].name).`;
        seen.add(name);
      }
      return true;
    },
  });
  return chosen.map((bundlePath) => ({ path: bundlePath }));
}

// ---------------------------------------------------------------------------------------------
// Target

/** The chosen target: a folder, and the drive it is a mounted partition of, when picked from the list. */
export interface TargetAnswer {
  folder: string;
  drive?: DriveVerdict;
}

function driveTitle(verdict: DriveVerdict): string {
  const { drive } = verdict;
  const name = drive.description || (drive.isVirtual ? 'virtual device' : drive.isCard ? 'SD/MMC card' : drive.busType === 'UNKNOWN' ? 'unnamed drive' : `${drive.busType} drive`);
  return `${name}, ${formatDriveSize(drive.size)}, ${drive.device}`;
}

/** Why a drive needs the extra confirmation, in words. */
export function confirmationText(verdict: DriveVerdict, largeBytes = LARGE_DRIVE_BYTES): string {
  const reasons = verdict.needsConfirmation.map((reason) =>
    reason === 'not-removable' ? 'it is a fixed, non-removable disk' : `it is larger than ${formatDriveSize(largeBytes)}, which is rarely a USB stick`,
  );
  return `${driveTitle(verdict)}: ${reasons.join(', and ')}. Write the seed to it anyway?`;
}

/** Validates a typed target folder: absent (it is created), or a folder that is empty or holds a seed. */
export async function validateTargetFolder(value: string, cwd: string): Promise<true | string> {
  if (value.trim() === '') return 'Type the folder to build the seed in (the mount point of the seed partition, or any empty folder).';
  const absolute = expandPath(value.trim(), cwd);
  try {
    const state = await inspectTarget(absolute);
    if (state.foreign.length > 0) return `${absolute} holds files that are not part of a seed (${state.foreign.slice(0, 3).join(', ')}${state.foreign.length > 3 ? ', ...' : ''}); pick an empty folder.`;
  } catch (error) {
    if (isSeedError(error)) return error.message;
    return `${absolute}: ${(error as Error).message}`;
  }
  return true;
}

const FOLDER = Symbol('folder');

/**
 * The target: a mounted partition of an eligible drive, or a folder. Excluded drives are listed
 * disabled with the reason; a single eligible drive is preselected (the final confirmation still
 * comes); a fixed or large drive needs an extra explicit "yes".
 */
export async function askTarget(prompts: WizardPrompts, options: { drives: TargetDrives; cwd: string; note?: string }): Promise<TargetAnswer> {
  const { drives } = options;
  const eligibleDevices = new Set(drives.mounts.map((mount) => mount.verdict.drive.device));
  let preselected: MountCandidate | undefined;
  if (eligibleDevices.size === 1) {
    preselected = drives.mounts.find((mount) => mount.label === 'DUBNIUM-SEED') ?? drives.mounts[0];
  }
  const mountChoices = drives.mounts.map((mount) => ({
    name: `${mount.mountPoint}${mount.label ? ` [${mount.label}]` : ''}  ${driveTitle(mount.verdict)}${mount.verdict.needsConfirmation.length > 0 ? '  (needs confirmation)' : ''}`,
    value: mount as MountCandidate | typeof FOLDER,
    short: mount.mountPoint,
  }));
  const others = [
    ...drives.unmounted.map((verdict) => ({ name: driveTitle(verdict), value: FOLDER as MountCandidate | typeof FOLDER, disabled: 'not mounted: mount its seed partition first' })),
    ...drives.excluded.map((verdict) => ({
      name: driveTitle(verdict),
      value: FOLDER as MountCandidate | typeof FOLDER,
      disabled: verdict.reasons.filter((reason) => reason.code !== 'not-removable' && reason.code !== 'too-large').map((reason) => reason.message)[0] ?? 'excluded',
    })),
  ];
  for (;;) {
    const chosen = await prompts.select<MountCandidate | typeof FOLDER>({
      message:
        drives.mounts.length === 0
          ? `Where should the seed go? No mounted USB stick or SD card is eligible${options.note ? ` (${options.note})` : ''}.`
          : 'Where should the seed go? (a mounted partition of a removable drive, or a folder)',
      pageSize: PAGE_SIZE,
      default: preselected ?? FOLDER,
      choices: [
        ...mountChoices,
        { name: 'A folder (type its path)', value: FOLDER, short: 'a folder' },
        ...(others.length > 0 ? [new Separator('── not eligible ──'), ...others] : []),
      ],
    });
    if (chosen === FOLDER) {
      const typed = await prompts.input({ message: 'Seed folder (created when missing):', validate: (value) => validateTargetFolder(value, options.cwd) });
      return { folder: expandPath(typed.trim(), options.cwd) };
    }
    if (chosen.verdict.needsConfirmation.length > 0) {
      const sure = await prompts.confirm({ message: confirmationText(chosen.verdict), default: false });
      if (!sure) continue;
    }
    return { folder: chosen.mountPoint, drive: chosen.verdict };
  }
}

// ---------------------------------------------------------------------------------------------
// Signing key

/** One line per key: fingerprint, type and comment, and where it signs from. */
export function describeSigningKey(candidate: SigningKeyCandidate): string {
  const { publicKey } = candidate;
  const where = candidate.inAgent ? `in ssh-agent${candidate.pubFile ? ` (${portablePath(candidate.pubFile)})` : ''}` : portablePath(candidate.spec);
  return `${publicKey.fingerprint}  ${keyTypeName(publicKey.type)}${publicKey.comment ? ` ${publicKey.comment}` : ''}  ${where}`;
}

/**
 * "Sign the seed with": the keys found in ssh-agent and ~/.ssh (unusable ones disabled with the
 * reason), or no signature. Returns the `--sign` value, or undefined for an unsigned seed.
 */
export async function askSigningKey(prompts: WizardPrompts, candidates: SigningKeyCandidate[]): Promise<string | undefined> {
  const NONE = '';
  const usable = candidates.find((candidate) => !candidate.unusable);
  const chosen = await prompts.select<string>({
    message: 'Sign the seed with',
    pageSize: PAGE_SIZE,
    ...(usable ? { default: usable.spec } : { default: NONE }),
    choices: [
      ...candidates.map((candidate) => ({
        name: describeSigningKey(candidate),
        value: candidate.spec,
        short: candidate.publicKey.fingerprint,
        description: 'the installer can then check the seed came from you: seed-install.sh --signer <fingerprint>',
        ...(candidate.unusable ? { disabled: candidate.unusable } : {}),
      })),
      { name: "Don't sign", value: NONE, short: 'not signed', description: 'the seed is still checked by its checksums, but not tied to your key' },
    ],
  });
  return chosen === NONE ? undefined : chosen;
}

// ---------------------------------------------------------------------------------------------
// Plan and confirmation

/** The plan in words: bytes to write, free space, filesystem limits, what the archive leaves out and why, warnings. */
export function formatPlan(plan: BuildPlan, options: Pick<BuildOptions, 'label' | 'modelStore' | 'verify'> & { drive?: DriveVerdict }): string {
  const { source } = plan;
  const lines: string[] = ['', 'The plan'];
  const revision = source.commit ? `commit ${source.commit.slice(0, 12)}` : 'plain folder, no commit';
  lines.push(`  source   ${source.root}`);
  lines.push(`           -> source/${source.fileName}  (${revision}; ${source.entries.length} ${source.entries.length === 1 ? 'entry' : 'entries'}, ${formatBytes(source.contentBytes)} before compression)`);
  const leftOut = source.plainFolder
    ? ['.git folders']
    : [
        '.git (history stays off the seed; the archive is the working tree)',
        'files ignored by .gitignore',
        ...(source.untrackedExcluded > 0 ? [`${source.untrackedExcluded} untracked file${source.untrackedExcluded === 1 ? '' : 's'} (add them with --include-untracked, or git add them)`] : []),
      ];
  lines.push(`           left out: ${leftOut.join('; ')}`);
  if (source.untrackedIncluded.length > 0) lines.push(`           untracked files included: ${source.untrackedIncluded.length}`);
  if (source.submodules.length > 0) lines.push(`           submodules included: ${source.submodules.join(', ')}`);
  if (source.dirty) {
    const shown = source.changedPaths.slice(0, 8);
    lines.push(`           differs from the commit in ${source.changedPaths.length} path${source.changedPaths.length === 1 ? '' : 's'}: ${shown.join(', ')}${source.changedPaths.length > shown.length ? ', ...' : ''}`);
  }
  lines.push(...flakeInputLines(plan));
  if (plan.bundles.length === 0) lines.push('  models   none');
  for (const [index, bundle] of plan.bundles.entries()) {
    lines.push(`  ${index === 0 ? 'models' : '      '}   models/${bundle.name}  ${formatBytes(bundle.totalBytes)}, ${bundle.files.length} files, ${bundle.shards.length} shards, ${bundle.tensors} tensors${bundle.revision ? `, revision ${bundle.revision.slice(0, 12)}` : ''}`);
    if (bundle.excluded.length > 0) lines.push(`             left out: ${bundle.excluded.map((entry) => `${entry.relPath} (${entry.reason})`).slice(0, 4).join(', ')}`);
  }
  lines.push(`           installed into ${options.modelStore}/<bundle> by seed-install.sh`);
  const fs = plan.filesystem;
  lines.push(`  target   ${plan.target}${options.drive ? `  on ${options.drive.drive.description || options.drive.drive.device} (${options.drive.drive.device}, ${formatDriveSize(options.drive.drive.size)})` : ''}`);
  lines.push(`           ${fs.type} at ${fs.mountPoint}: ${formatBytes(fs.freeBytes)} free, the seed needs ${formatBytes(plan.neededBytes)} (${formatBytes(plan.payloadBytes)} of payload)`);
  if (fs.family === 'fat') lines.push(`           FAT: no file may reach 4 GiB (largest allowed ${formatBytes(FAT_MAX_FILE)})`);
  // Labels only matter on a partition, where the seed's label identifies the stick.
  if (options.drive && fs.family !== 'other') lines.push(`           ${fs.family} labels are up to ${LABEL_LIMITS[fs.family]} characters${options.label ? ` (${options.label})` : ''}`);
  if (!plan.targetState.exists) lines.push('           the folder does not exist yet and will be created');
  else if (plan.targetState.hasJournal) lines.push('           an interrupted build is there: files it completed are checked and kept');
  else if (plan.targetState.hasManifest) lines.push('           holds a seed already: unchanged files are kept, the rest replaced');
  lines.push('  checks   every byte passes the leak scanner before the manifest is written');
  if (options.verify) lines.push('           then the seed is read back and verified');
  if (plan.signer) {
    const key = plan.signer.publicKey;
    lines.push(`  signed   by ${key.fingerprint}  (${keyTypeName(key.type)}${key.comment ? ` ${key.comment}` : ''}, ${plan.signer.via === 'ssh-agent' ? 'through ssh-agent' : 'key file'})`);
    lines.push('           write the fingerprint down: seed-install.sh --signer checks the seed against it');
  } else {
    lines.push('  signed   no (an unsigned seed is checked by its checksums only; --sign KEY ties it to your SSH key)');
  }
  for (const warning of plan.warnings) lines.push(`  warning  ${warning}`);
  return lines.join('\n');
}

/** Each locked flake input: carried on the seed (and from where), fetched at install, or already in the archive, and why. */
export function flakeInputLines(plan: Pick<BuildPlan, 'flake'>): string[] {
  const { flake } = plan;
  if (!flake || flake.lockFile === null) return [];
  const lines: string[] = [];
  const carried = new Map(flake.carried.map((input) => [input.input.node, input]));
  const shown = flake.inputs.length === 0 ? ['(flake.lock pins no inputs)'] : [];
  for (const input of flake.inputs) {
    const name = input.paths[0] ?? input.node;
    const carry = carried.get(input.node);
    if (carry) {
      shown.push(`${name}  carried -> inputs/${carry.fileName}  (${input.reason})`);
      shown.push(`  ${input.url}, from ${describeSource(carry.source)}; registered as ${carry.storePath} by seed-install.sh`);
    } else if (input.class === 'fetched') {
      shown.push(`${name}  fetched at install: ${input.url}  (${input.reason})`);
    } else {
      shown.push(`${name}  nothing to carry: ${input.reason}`);
    }
  }
  shown.forEach((line, index) => lines.push(`  ${index === 0 ? 'inputs' : '      '}   ${line}`));
  return lines;
}

/** The last question before anything is written. Default "no" when the target is a drive. */
export async function confirmBuild(prompts: WizardPrompts, options: { plan: BuildPlan; onDrive: boolean }): Promise<boolean> {
  return prompts.confirm({
    message: `Write ${formatBytes(options.plan.payloadBytes)} to ${options.plan.target}${options.onDrive ? ' (a removable drive)' : ''}?`,
    default: !options.onDrive,
  });
}

/** The plan of a whole-stick build: what goes where, and that the installer image is scanned first. */
export function formatDevicePlan(options: { device: string; iso?: string; label: string; filesystem: string; models: string[] }): string {
  const lines = ['', 'The plan'];
  if (options.iso) {
    lines.push(`  installer ${options.iso}`);
    lines.push(`            scanned inside out first (ISO, EFI image, squashfs store, initrds): a credential stops the build before a byte is written`);
    lines.push(`            then written to the start of ${options.device} and read back`);
  }
  lines.push(`  seed      partition "${options.label}" (${options.filesystem}) on ${options.device}, after the installer image; reused when it is there`);
  lines.push(`  models    ${options.models.length > 0 ? options.models.join(', ') : 'none'}`);
  return lines.join('\n');
}

/** Confirms a whole-stick build; the default is no (its partition table changes). */
export async function confirmDeviceBuild(prompts: WizardPrompts, options: { device: string; iso?: string }): Promise<boolean> {
  return prompts.confirm({
    message: `Write ${options.iso ? `the installer image ${path.basename(options.iso)} and ` : ''}the seed partition to ${options.device}?`,
    default: false,
  });
}

// ---------------------------------------------------------------------------------------------
// Saving the answers

/** What the wizard settled on, in absolute paths. */
export interface WizardAnswers {
  repo: string;
  models: ModelRequest[];
  targetFolder: string;
  /** The `--sign` value: a key path or a public key line; absent for an unsigned seed. */
  sign?: string;
}

/** `~/x` for paths under the home folder (profiles travel between machines of the same operator). */
export function portablePath(absolute: string, home = homedir()): string {
  if (absolute === home) return '~';
  if (absolute.startsWith(`${home}/`)) return `~/${absolute.slice(home.length + 1)}`;
  return absolute;
}

/**
 * Profile data for the answers, keeping the starting profile's other settings. Paths are
 * rewritten as absolute (or `~/`) so the profile means the same wherever it is saved.
 */
export function profileFromAnswers(answers: WizardAnswers, base?: LoadedProfile): ProfileData {
  const data: ProfileData = structuredClone(base?.data ?? {});
  const baseDir = base ? path.dirname(base.file) : undefined;
  data.source = { ...(data.source ?? {}), repo: portablePath(answers.repo) };
  data.models = answers.models.map((model) => ({ path: portablePath(path.resolve(model.path)), ...(model.revision ? { revision: model.revision } : {}), ...(model.name ? { name: model.name } : {}) }));
  if (data.modelFolders && baseDir) data.modelFolders = data.modelFolders.map((folder) => portablePath(expandPath(folder, baseDir)));
  const { device: _device, image: _image, folder: _folder, ...targetRest } = data.target ?? {};
  data.target = { ...targetRest, folder: portablePath(answers.targetFolder) };
  if (answers.sign !== undefined) data.sign = { key: signSpecForProfile(answers.sign) };
  return profileSchema.parse(data);
}

/** A key path as `~/...`; a public key line (an agent key without a .pub file) as it is. */
function signSpecForProfile(spec: string): string {
  return parsePublicKeyLine(spec) ? spec : portablePath(spec);
}

/**
 * YAML text of a profile, with a header saying where it came from and naming the shipped JSON Schema
 * (an editor with a YAML language server then checks later edits).
 */
export function renderProfile(data: ProfileData): string {
  const schema = path.join(PACKAGE_PROFILES, 'profile.schema.json');
  return `# yaml-language-server: $schema=${schema}\n# Saved by the dubnium-seed wizard. Build the same seed without questions:\n#   dubnium-seed build --profile <this file's name>\n${stringifyYaml(data)}`;
}

const PROFILE_NAME = /^[A-Za-z0-9._-]+$/;

/**
 * Offers to save the answers as ./profiles/<name>.yaml (validated by the profile schema and read
 * back). Never overwrites without asking. Returns the file written, or undefined.
 */
export async function offerSaveProfile(prompts: WizardPrompts, options: { data: ProfileData; cwd: string; suggestedName?: string }): Promise<string | undefined> {
  const save = await prompts.confirm({ message: 'Save these answers as a profile, to build the same seed again without questions?', default: true });
  if (!save) return undefined;
  const dir = path.join(options.cwd, 'profiles');
  for (;;) {
    const name = (
      await prompts.input({
        message: 'Profile name (saved as profiles/<name>.yaml):',
        ...(options.suggestedName ? { default: options.suggestedName } : {}),
        validate: (value) => (PROFILE_NAME.test(value.trim()) ? true : 'Use letters, digits, dot, dash and underscore.'),
      })
    ).trim();
    const file = path.join(dir, `${name}.yaml`);
    const exists = await stat(file).then(() => true, () => false);
    if (exists && !(await prompts.confirm({ message: `${path.relative(options.cwd, file)} exists. Overwrite it?`, default: false }))) continue;
    const text = renderProfile(options.data);
    parseProfile(text, file);
    await mkdir(dir, { recursive: true });
    await writeFile(file, text, { mode: 0o644 });
    // Read back: what is on disk is what loadProfile will see.
    parseProfile(await readFile(file, 'utf8'), file);
    return file;
  }
}

function shellQuote(value: string): string {
  return /^[A-Za-z0-9_@%+=:,./~-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}

/** The scripted command line that builds the same seed without questions. */
export function scriptedCommand(answers: WizardAnswers, options: { profileName?: string } = {}): string {
  if (options.profileName) return `dubnium-seed build --profile ${shellQuote(options.profileName)}`;
  const args = ['dubnium-seed', 'build', '--repo', shellQuote(portablePath(answers.repo))];
  const revisions = new Set(answers.models.map((model) => model.revision));
  for (const model of answers.models) args.push('--model', shellQuote(portablePath(path.resolve(model.path))));
  // --revision applies to every --model flag; a single shared revision can be expressed, mixed ones need a profile.
  const [revision] = [...revisions];
  if (revisions.size === 1 && revision) args.push('--revision', shellQuote(revision));
  args.push('--target', shellQuote(portablePath(answers.targetFolder)));
  if (answers.sign !== undefined) args.push('--sign', shellQuote(signSpecForProfile(answers.sign)));
  return args.join(' ');
}

// ---------------------------------------------------------------------------------------------

/** Expands `~` and resolves against `cwd`. */
export function expandPath(value: string, cwd: string): string {
  return resolvePath(value, cwd);
}

function firstLine(text: string): string {
  return text.split('\n')[0] ?? text;
}
