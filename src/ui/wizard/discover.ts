/**
 * What the wizard finds by itself before asking: profiles, the git work tree around the current
 * folder, model bundles (profile model folders and the Hugging Face cache), and target drives.
 * Discovery never throws for what it cannot use: it reports why, and the prompt shows it.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { isSeedError } from '../../errors.js';
import { listHfCacheRepos } from '../../core/hf-cache.js';
import { resolveModelBundle, type ModelBundle } from '../../core/model-bundle.js';
import { classifyDrives, type DriveVerdict, type SafetyContext } from '../../hardware/drive-safety.js';
import type { DriveSource } from '../../hardware/drives.js';
import { loadProfile, PACKAGE_PROFILES, type LoadedProfile } from '../../profile.js';
import { run } from '../../util/run.js';
import { agentPublicKeys, parsePublicKeyText, publicKeyLine, resolveSigner, type SshPublicKey } from '../../core/sign.js';

/** A profile file the wizard can offer; `error` when it does not load. */
export interface ProfileCandidate {
  file: string;
  name: string;
  origin: 'here' | 'shipped';
  profile?: LoadedProfile;
  error?: string;
}

async function yamlFiles(dir: string): Promise<string[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  return names.filter((name) => /\.ya?ml$/i.test(name)).sort().map((name) => path.join(dir, name));
}

/** Profiles in ./profiles of `cwd` first, then the shipped ones (a local one shadows a shipped one of the same name). */
export async function discoverProfiles(cwd: string, shippedDir = PACKAGE_PROFILES): Promise<ProfileCandidate[]> {
  const local = path.resolve(cwd, 'profiles');
  const seen = new Set<string>();
  const candidates: ProfileCandidate[] = [];
  const dirs: [string, ProfileCandidate['origin']][] = [[local, 'here']];
  if (path.resolve(shippedDir) !== local) dirs.push([shippedDir, 'shipped']);
  for (const [dir, origin] of dirs) {
    for (const file of await yamlFiles(dir)) {
      const name = path.basename(file).replace(/\.ya?ml$/i, '');
      if (seen.has(name)) continue;
      seen.add(name);
      try {
        candidates.push({ file, name, origin, profile: await loadProfile(file, cwd) });
      } catch (error) {
        if (!isSeedError(error)) throw error;
        candidates.push({ file, name, origin, error: error.message });
      }
    }
  }
  return candidates;
}

/** The git work tree around a folder, as the repository question shows it. */
export interface RepositoryInfo {
  /** The folder asked about (absolute). */
  path: string;
  /** The work tree's top folder; null when `path` is not inside a git work tree. */
  root: string | null;
  branch: string | null;
  /** Full commit hash of HEAD; null in a repository without commits. */
  commit: string | null;
  /** Paths `git status --porcelain` lists (modified, staged, untracked). */
  dirtyFiles: number;
}

/** Describes the git work tree containing `dir` (branch, commit, dirty file count), or says there is none. */
export async function describeRepository(dir: string): Promise<RepositoryInfo> {
  const absolute = path.resolve(dir);
  const none: RepositoryInfo = { path: absolute, root: null, branch: null, commit: null, dirtyFiles: 0 };
  const top = await run('git', ['rev-parse', '--show-toplevel'], { cwd: absolute, reject: false, timeout: 30_000 }).catch(() => undefined);
  if (!top || top.exitCode !== 0) return none;
  const root = top.stdout.trim();
  const branch = await run('git', ['symbolic-ref', '--quiet', '--short', 'HEAD'], { cwd: absolute, reject: false, timeout: 30_000 });
  const head = await run('git', ['rev-parse', '--verify', '--quiet', 'HEAD'], { cwd: absolute, reject: false, timeout: 30_000 });
  const status = await run('git', ['status', '--porcelain', '-z'], { cwd: root, reject: false, timeout: 60_000 });
  // -z: entries are NUL-terminated; a rename carries its old path as an extra entry.
  const entries = status.exitCode === 0 ? status.stdout.split('\0').filter(Boolean) : [];
  let dirtyFiles = 0;
  for (let index = 0; index < entries.length; index += 1) {
    dirtyFiles += 1;
    if (/^[RC]/.test(entries[index]!)) index += 1;
  }
  return {
    path: absolute,
    root,
    branch: branch.exitCode === 0 ? branch.stdout.trim() || null : null,
    commit: head.exitCode === 0 ? head.stdout.trim() || null : null,
    dirtyFiles,
  };
}

/** The Hugging Face hub cache folder huggingface_hub uses: $HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub. */
export function hfCacheDir(env: NodeJS.ProcessEnv = process.env, home = env.HOME || homedir()): string {
  if (env.HF_HUB_CACHE) return path.resolve(env.HF_HUB_CACHE);
  if (env.HF_HOME) return path.join(path.resolve(env.HF_HOME), 'hub');
  const cacheHome = env.XDG_CACHE_HOME ? path.resolve(env.XDG_CACHE_HOME) : path.join(home, '.cache');
  return path.join(cacheHome, 'huggingface', 'hub');
}

/** A model bundle found on disk: `bundle` when it validates, `error` (the reason) when it does not. */
export interface BundleCandidate {
  path: string;
  /** Where it was found (a model folder or the HF cache). */
  foundIn: string;
  bundle?: ModelBundle;
  error?: string;
}

async function isDirectory(candidate: string): Promise<boolean> {
  return stat(candidate).then(
    (info) => info.isDirectory(),
    () => false,
  );
}

async function looksLikeBundle(dir: string): Promise<boolean> {
  const names = await readdir(dir).catch(() => [] as string[]);
  return names.includes('config.json') || names.some((name) => name.endsWith('.safetensors'));
}

/**
 * Model bundles under `folders`: HF cache repositories (`models--org--name`) of a hub cache root,
 * bundle folders (config.json or *.safetensors) directly inside a folder, or the folder itself.
 * Each is validated with resolveModelBundle; invalid ones come back with the reason.
 */
export async function discoverModelBundles(folders: string[]): Promise<BundleCandidate[]> {
  const found = new Map<string, string>();
  for (const folder of folders.map((dir) => path.resolve(dir))) {
    if (!(await isDirectory(folder))) continue;
    if (path.basename(folder).startsWith('models--') || (await looksLikeBundle(folder))) {
      if (!found.has(folder)) found.set(folder, folder);
      continue;
    }
    for (const repo of await listHfCacheRepos(folder)) {
      const full = path.join(folder, repo);
      if (!found.has(full)) found.set(full, folder);
    }
    const entries = await readdir(folder, { withFileTypes: true }).catch(() => []);
    for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      if (entry.name.startsWith('.') || entry.name.startsWith('models--')) continue;
      const full = path.join(folder, entry.name);
      if ((await isDirectory(full)) && (await looksLikeBundle(full)) && !found.has(full)) found.set(full, folder);
    }
  }
  const candidates: BundleCandidate[] = [];
  for (const [bundlePath, foundIn] of found) {
    try {
      candidates.push({ path: bundlePath, foundIn, bundle: await resolveModelBundle(bundlePath) });
    } catch (error) {
      if (!isSeedError(error)) throw error;
      candidates.push({ path: bundlePath, foundIn, error: error.message });
    }
  }
  return candidates;
}

/** A mounted partition of a drive, as a seed folder candidate. */
export interface MountCandidate {
  verdict: DriveVerdict;
  mountPoint: string;
  label: string | null;
}

/** Drives sorted for the target question: mounted partitions of eligible drives, plus everything else with why. */
export interface TargetDrives {
  mounts: MountCandidate[];
  /** Eligible drives without a mounted partition (cannot be used as a folder). */
  unmounted: DriveVerdict[];
  excluded: DriveVerdict[];
}

/** Lists drives through the seam and classifies them (system, virtual, read-only, holds the repo or a model...). */
export async function discoverTargetDrives(source: DriveSource, context: SafetyContext): Promise<TargetDrives> {
  const drives = await source.list();
  const { candidates, excluded } = await classifyDrives(drives, context);
  const mounts: MountCandidate[] = [];
  const unmounted: DriveVerdict[] = [];
  for (const verdict of candidates) {
    const usable = verdict.drive.mountpoints.filter((mount) => mount.path.startsWith('/'));
    if (usable.length === 0) unmounted.push(verdict);
    for (const mount of usable) mounts.push({ verdict, mountPoint: mount.path, label: mount.label });
  }
  return { mounts, unmounted, excluded };
}

// ---------------------------------------------------------------------------------------------
// Signing keys

/** A key the wizard can offer for "Sign the seed with": in ssh-agent, or a `~/.ssh/*.pub` with its private file. */
export interface SigningKeyCandidate {
  publicKey: SshPublicKey;
  /** What goes into `--sign` and the profile's `sign.key`: a .pub path, a private key path, or the public key line. */
  spec: string;
  inAgent: boolean;
  pubFile?: string;
  /** Why this key cannot sign without a prompt; the wizard shows it disabled. */
  unusable?: string;
}

/**
 * Keys ssh-agent holds (`ssh-add -L`) and `~/.ssh/*.pub` files, one entry per key. A key the agent
 * holds signs through it; another signs from its private key file when that needs no passphrase.
 */
export async function discoverSigningKeys(env: NodeJS.ProcessEnv = process.env): Promise<SigningKeyCandidate[]> {
  const home = env.HOME ?? homedir();
  const sshDir = path.join(home, '.ssh');
  const agentKeys = (await agentPublicKeys(env)) ?? [];
  const pubFiles: { file: string; key: SshPublicKey }[] = [];
  for (const name of (await readdir(sshDir).catch(() => [] as string[])).filter((entry) => entry.endsWith('.pub')).sort()) {
    const file = path.join(sshDir, name);
    const key = parsePublicKeyText(await readFile(file, 'utf8').catch(() => ''));
    if (key) pubFiles.push({ file, key });
  }
  const candidates: SigningKeyCandidate[] = [];
  const seen = new Set<string>();
  for (const key of agentKeys) {
    if (seen.has(key.fingerprint)) continue;
    seen.add(key.fingerprint);
    const pub = pubFiles.find((entry) => entry.key.blob.equals(key.blob));
    candidates.push({ publicKey: { ...key, comment: key.comment || pub?.key.comment || '' }, spec: pub?.file ?? publicKeyLine(key), inAgent: true, ...(pub ? { pubFile: pub.file } : {}) });
  }
  for (const { file, key } of pubFiles) {
    if (seen.has(key.fingerprint)) continue;
    seen.add(key.fingerprint);
    const privateFile = file.slice(0, -'.pub'.length);
    const candidate: SigningKeyCandidate = { publicKey: key, spec: privateFile, inAgent: false, pubFile: file };
    try {
      await resolveSigner(privateFile, { env });
    } catch (error) {
      if (!isSeedError(error)) throw error;
      candidate.unusable = /does not exist/.test(error.message)
        ? 'not in ssh-agent, and no private key file beside it'
        : /passphrase/.test(error.message)
          ? 'passphrase-protected: ssh-add it first'
          : error.message;
    }
    candidates.push(candidate);
  }
  return candidates;
}
