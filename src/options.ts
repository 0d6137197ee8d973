/**
 * Turns flags and a profile into the core's fully resolved options: defaults < profile < flags.
 * Flags carry no parser defaults, so "not given" is distinguishable from "given as the default".
 */
import path from 'node:path';
import { UsageError } from './errors.js';
import type { BuildOptions, ModelRequest } from './core/build-seed.js';
import { DEFAULT_MODEL_STORE } from './core/manifest.js';
import type { LoadedProfile } from './profile.js';
import { resolvePath } from './util/resolve-path.js';
import { parsePublicKeyLine } from './core/sign.js';

/** Flags of `build` as commander parses them (all optional). */
export interface BuildFlags {
  profile?: string;
  repo?: string;
  model?: string[];
  revision?: string;
  target?: string;
  device?: string;
  image?: string;
  size?: string;
  label?: string;
  filesystem?: 'ext4' | 'exfat' | 'fat';
  modelStore?: string;
  includeUntracked?: boolean;
  plainFolder?: boolean;
  submodules?: 'include' | 'refuse';
  verify?: boolean;
  operatorSecrets?: boolean;
  json?: boolean;
  yes?: boolean;
  allowFixedDisk?: boolean;
  allowLarge?: boolean;
  /** Installer image to write onto --device first. */
  iso?: string;
  /** SSH key that signs the manifest (a path or a public key line); false (`--no-sign`) overrides the profile. */
  sign?: string | false;
  /** Flake inputs to carry whatever their URL (repeatable; `all` for every input). */
  carryInput?: string[];
  /** The Nix store root to find carried inputs in (`/` or a chroot store folder). */
  nixStore?: string;
  /** nixosConfigurations name for seed-install.sh's `nixos-install --flake` line. */
  flakeHost?: string;
}

export const DEFAULT_LABEL = 'DUBNIUM-SEED';

/** Where the seed goes: exactly one of a folder, a device or an image file. */
export type TargetChoice = { kind: 'folder'; path: string } | { kind: 'device'; path: string } | { kind: 'image'; path: string };

export interface ResolvedBuild {
  options: Omit<BuildOptions, 'target'>;
  target: TargetChoice | undefined;
  label: string;
  filesystem: 'ext4' | 'exfat' | 'fat';
  size?: string;
  missing: ('repo' | 'target')[];
}

export function resolveBuild(flags: BuildFlags, profile: LoadedProfile | undefined, cwd = process.cwd()): ResolvedBuild {
  const data = profile?.data ?? {};
  const base = profile ? path.dirname(profile.file) : cwd;
  const missing: ResolvedBuild['missing'] = [];

  const repo = flags.repo !== undefined ? resolvePath(flags.repo, cwd) : data.source?.repo !== undefined ? resolvePath(data.source.repo, base) : undefined;
  if (repo === undefined) missing.push('repo');

  let models: ModelRequest[];
  if (flags.model !== undefined && flags.model.length > 0) {
    models = flags.model.map((model) => ({ path: resolvePath(model, cwd), ...(flags.revision ? { revision: flags.revision } : {}) }));
  } else {
    if (flags.revision !== undefined) throw new UsageError('--revision applies to the --model flags given with it; pass --model too, or set models[].revision in the profile.');
    models = (data.models ?? []).map((model) => ({ path: resolvePath(model.path, base), ...(model.revision ? { revision: model.revision } : {}), ...(model.name ? { name: model.name } : {}) }));
  }

  const targets: TargetChoice[] = [];
  if (flags.target !== undefined) targets.push({ kind: 'folder', path: resolvePath(flags.target, cwd) });
  if (flags.device !== undefined) targets.push({ kind: 'device', path: flags.device });
  if (flags.image !== undefined) targets.push({ kind: 'image', path: resolvePath(flags.image, cwd) });
  if (targets.length > 1) throw new UsageError('Pass only one of --target, --device and --image.');
  let target = targets[0];
  if (!target) {
    if (data.target?.folder) target = { kind: 'folder', path: resolvePath(data.target.folder, base) };
    else if (data.target?.device) target = { kind: 'device', path: data.target.device };
    else if (data.target?.image) target = { kind: 'image', path: resolvePath(data.target.image, base) };
  }
  if (!target) missing.push('target');

  const modelStore = flags.modelStore ?? data.modelStore ?? DEFAULT_MODEL_STORE;
  if (!/^\/[A-Za-z0-9._/-]*$/.test(modelStore) || modelStore.split('/').includes('..')) {
    throw new UsageError(`--model-store ${JSON.stringify(modelStore)} must be an absolute path of letters, digits, dot, dash, underscore and slash.`);
  }

  const carryFlag = flags.carryInput ?? [];
  const carry = carryFlag.includes('all') ? 'all' : carryFlag.length > 0 ? carryFlag : (data.source?.carryInputs ?? []);
  if (flags.flakeHost !== undefined && !/^[A-Za-z0-9._-]+$/.test(flags.flakeHost)) throw new UsageError(`--flake-host ${JSON.stringify(flags.flakeHost)} must be a nixosConfigurations name: letters, digits, dot, dash, underscore.`);
  const flakeHost = flags.flakeHost ?? data.source?.flakeHost;

  return {
    options: {
      profile: profile?.name ?? null,
      flakeInputs: {
        carry,
        clones: Object.fromEntries(Object.entries(data.source?.inputClones ?? {}).map(([name, clone]) => [name, resolvePath(clone, base)])),
        nixStore: flags.nixStore !== undefined ? resolvePath(flags.nixStore, cwd) : data.source?.nixStore !== undefined ? resolvePath(data.source.nixStore, base) : '/',
        ...(flakeHost ? { host: flakeHost } : {}),
      },
      source: {
        repo: repo ?? '',
        includeUntracked: flags.includeUntracked ?? data.source?.includeUntracked ?? false,
        plainFolder: flags.plainFolder ?? data.source?.plainFolder ?? false,
        submodules: flags.submodules ?? data.source?.submodules ?? 'include',
        ...(data.source?.name ? { name: data.source.name } : {}),
        ...(process.env.SOURCE_DATE_EPOCH && /^\d+$/.test(process.env.SOURCE_DATE_EPOCH) ? { sourceDateEpoch: Number(process.env.SOURCE_DATE_EPOCH) } : {}),
      },
      models,
      modelStore,
      scan: {
        allowlist: data.scan?.allow ?? [],
        operatorSecrets: flags.operatorSecrets ?? data.scan?.operatorSecrets ?? true,
        ...(data.scan?.limits ? { limits: data.scan.limits } : {}),
      },
      verify: flags.verify ?? data.verify ?? true,
      ...signOption(flags.sign, data.sign?.key, cwd, base),
    },
    target,
    label: flags.label ?? data.target?.label ?? DEFAULT_LABEL,
    filesystem: flags.filesystem ?? data.target?.filesystem ?? 'ext4',
    ...(flags.size ?? data.target?.size ? { size: flags.size ?? data.target?.size } : {}),
    missing,
  };
}

/** `--sign` over the profile's `sign.key`; a path resolves like every other, a public key line stays as it is. */
function signOption(flag: string | false | undefined, fromProfile: string | undefined, cwd: string, base: string): { sign?: string } {
  if (flag === false) return {};
  const [value, against] = flag !== undefined ? [flag, cwd] : [fromProfile, base];
  if (value === undefined) return {};
  if (value.trim() === '') throw new UsageError('--sign needs an SSH key: a private key file, or a .pub file whose private half is in ssh-agent.');
  return { sign: parsePublicKeyLine(value) ? value.trim() : resolvePath(value, against) };
}

/** The flag a scripted run must pass for each missing choice. */
export const FLAG_FOR: Record<ResolvedBuild['missing'][number], string> = {
  repo: '--repo PATH (or source.repo in the profile)',
  target: '--target DIR, --device PATH or --image FILE (or target.* in the profile)',
};
