/**
 * Carrying private flake inputs on the seed. Their bytes are found on this machine only, never on
 * the network: the Nix store path the lock's narHash determines, else a local clone the profile
 * names (or the input's own local location), exported at the locked commit. Every byte is proved
 * against the lock's narHash while it is packed into a deterministic `inputs/<name>-<hash>.tar.gz`
 * (one top folder `source/`), and every file passes the leak gate on the way.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { lstat, mkdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { UsageError } from '../../errors.js';
import { run } from '../../util/run.js';
import { runGit } from '../source-archive-git.js';
import { gzipDeterministic } from '../source-archive.js';
import { encodeTarHeader, TAR_END, tarPadding, type TarHeaderInput } from '../source-archive-tar.js';
import type { Finding, LeakGate } from '../types.js';
import { readLockedInputs, type CarrySelection, type LockedInput } from './lock.js';
import { NarHasher, readFileChunks, walkNarOrder, type WalkedEntry } from './nar.js';
import { fixedOutputSourcePath, parseSriSha256, toSriSha256 } from './store-path.js';

/** What the operator says about flake inputs (profile `source.carryInputs`, `source.inputClones`). */
export interface FlakeInputOptions {
  /** Inputs to carry whatever their URL (node keys or attribute paths such as `a/b`), or `all`. */
  carry: CarrySelection;
  /** Local clones (or folders) by input name, for inputs not in the Nix store. */
  clones: Record<string, string>;
  /**
   * The root the Nix store lives under: `/` for this machine's `/nix/store`, or the folder of a
   * chroot store (`nix --store DIR` keeps it at `DIR/nix/store`).
   */
  nixStore: string;
}

/** Where a carried input's bytes come from. */
export type InputSource =
  | { kind: 'store'; path: string }
  | { kind: 'clone'; path: string; rev: string }
  | { kind: 'folder'; path: string };

export interface CarriedInput {
  input: LockedInput;
  /** The name shown and recorded: the shortest attribute path from the root. */
  name: string;
  /** `<node>-<first 12 hex of the narHash>.tar.gz` under `inputs/`. */
  fileName: string;
  /** `/nix/store/<hash>-source`: where Nix looks for the locked tree. */
  storePath: string;
  narHash: string;
  source: InputSource;
  /** Content bytes of the tree (for the free-space check), counted before packing. */
  contentBytes?: number;
}

export interface FlakeInputsPlan {
  /** `flake.lock` relative to the archived root, or null when there is none. */
  lockFile: string | null;
  lockVersion?: number;
  inputs: LockedInput[];
  carried: CarriedInput[];
  warnings: string[];
}

export const INPUTS_DIR = 'inputs';

/** A name safe in a file name and in a store path name. */
function safeName(raw: string): string {
  return raw.replace(/[^A-Za-z0-9._+-]+/g, '-').replace(/^[-.]+/, '').replace(/-+$/, '') || 'input';
}

const exists = (file: string) => lstat(file).then(() => true, () => false);

async function isDirectory(file: string): Promise<boolean> {
  return stat(file).then((info) => info.isDirectory(), () => false);
}

async function hasCommit(repo: string, rev: string): Promise<boolean> {
  const probe = await runGit(repo, ['cat-file', '-e', `${rev}^{commit}`], { reject: false }).catch(() => undefined);
  return probe?.exitCode === 0;
}

/** The input's own location when it is on this machine: an absolute path input, or a local git URL. */
function ownLocation(input: LockedInput): string | undefined {
  const locked = input.locked;
  if (input.type === 'path' && typeof locked.path === 'string' && locked.path.startsWith('/') && !locked.path.startsWith('/nix/store/')) return locked.path;
  if (input.type === 'git' && typeof locked.url === 'string') {
    if (locked.url.startsWith('/')) return locked.url;
    if (locked.url.startsWith('file://')) {
      try {
        return decodeURIComponent(new URL(locked.url).pathname);
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

function missingInput(name: string, input: LockedInput, storePath: string, nixStore: string): UsageError {
  const where = nixStore === '/' ? storePath : `${path.join(nixStore, storePath)} (the store under ${nixStore})`;
  return new UsageError(
    `Flake input ${name} (${input.url}) must travel on the seed (${input.reason}), but its bytes are not on this machine: build or evaluate the flake once here so Nix puts ${where} in place (e.g. \`nix flake archive\` in the repository), or name a local clone in the profile (source.inputClones: { ${name}: /path/to/clone }).`,
  );
}

/** Decides where each input's bytes come from; finds them all before anything is written. */
async function locateInput(input: LockedInput, name: string, storePath: string, options: FlakeInputOptions, base: string): Promise<InputSource> {
  const inStore = path.join(options.nixStore, storePath);
  if (await exists(inStore)) return { kind: 'store', path: inStore };
  const cloneName = [input.node, ...input.paths].find((candidate) => options.clones[candidate] !== undefined);
  const configured = cloneName !== undefined ? path.resolve(base, options.clones[cloneName]!) : undefined;
  const candidates = [...(configured ? [{ path: configured, configured: true }] : []), ...(ownLocation(input) ? [{ path: ownLocation(input)!, configured: false }] : [])];
  for (const candidate of candidates) {
    if (!(await isDirectory(candidate.path))) {
      if (candidate.configured) throw new UsageError(`The clone named for flake input ${name} (source.inputClones.${cloneName}) is ${candidate.path}, which is not a folder: fix the path in the profile.`);
      continue;
    }
    if (input.rev) {
      if (input.submodules) {
        throw new UsageError(`Flake input ${name} locks its git submodules, which an export of a clone does not reproduce: build or evaluate the flake once on this machine so ${storePath} is in the Nix store.`);
      }
      if (await hasCommit(candidate.path, input.rev)) return { kind: 'clone', path: candidate.path, rev: input.rev };
      if (candidate.configured) {
        throw new UsageError(`The clone ${candidate.path} named for flake input ${name} does not have the locked commit ${input.rev}: run \`git fetch\` in it, or build the flake once on this machine.`);
      }
      continue;
    }
    // No commit to export (a path or tarball input): the folder itself, proved by the narHash.
    return { kind: 'folder', path: candidate.path };
  }
  throw missingInput(name, input, storePath, options.nixStore);
}

/** Bytes of the files of `rev` in a clone, for the free-space check (`git ls-tree -l`; links count as 0). */
async function commitBytes(repo: string, rev: string): Promise<number> {
  const listing = await runGit(repo, ['ls-tree', '-r', '-l', '-z', rev]);
  let total = 0;
  for (const record of listing.stdout.split('\0')) {
    const size = /^(\d+) blob [0-9a-f]+ +(\d+)\t/.exec(record);
    if (size && size[1] !== '120000') total += Number(size[2]);
  }
  return total;
}

async function treeBytes(root: string): Promise<number> {
  let total = 0;
  for await (const entry of walkNarOrder(root)) if (entry.type === 'file') total += entry.size;
  return total;
}

/**
 * Reads `flake.lock` at the top of the archived tree (if it is archived), classifies the inputs and
 * locates the bytes of every carried one. `base` resolves relative clone paths (the profile's
 * folder). Throws UsageError naming the input and the two ways to provide it when bytes are missing.
 */
export async function planFlakeInputs(sourceRoot: string, archived: boolean, options: FlakeInputOptions, base = sourceRoot): Promise<FlakeInputsPlan> {
  const lockPath = path.join(sourceRoot, 'flake.lock');
  if (!archived || !(await exists(lockPath))) {
    if (options.carry === 'all' || options.carry.length > 0 || Object.keys(options.clones).length > 0) {
      throw new UsageError(`Flake inputs are named to carry, but the source archive has no flake.lock at its top (${lockPath}): run \`nix flake lock\` and commit flake.lock, or drop source.carryInputs.`);
    }
    return { lockFile: null, inputs: [], carried: [], warnings: [] };
  }
  const lock = readLockedInputs(await readFile(lockPath, 'utf8'), { file: lockPath, carry: options.carry });
  const carried: CarriedInput[] = [];
  for (const input of lock.inputs.filter((candidate) => candidate.class === 'carried')) {
    const name = input.paths[0] ?? input.node;
    if (!input.narHash || !parseSriSha256(input.narHash)) {
      throw new UsageError(`Flake input ${name} must travel on the seed (${input.reason}), but flake.lock records no sha256 narHash to prove its bytes: run \`nix flake lock\` with a current Nix.`);
    }
    const storePath = fixedOutputSourcePath(input.narHash);
    const source = await locateInput(input, name, storePath, options, base);
    const short = parseSriSha256(input.narHash)!.toString('hex').slice(0, 12);
    carried.push({
      input,
      name,
      fileName: `${safeName(input.node)}-${short}.tar.gz`,
      storePath,
      narHash: input.narHash,
      source,
      contentBytes: source.kind === 'clone' ? await commitBytes(source.path, source.rev) : await treeBytes(source.path),
    });
  }
  return { lockFile: 'flake.lock', lockVersion: lock.version, inputs: lock.inputs, carried, warnings: lock.warnings };
}

/** Exports a clone at the locked commit into `destination` (a new folder): `git archive`, then tar. */
async function exportClone(source: { path: string; rev: string }, workDir: string, destination: string): Promise<void> {
  const tarFile = path.join(workDir, `${path.basename(destination)}.export.tar`);
  await runGit(source.path, ['archive', '--format=tar', `--output=${tarFile}`, source.rev]);
  await mkdir(destination, { recursive: true });
  await run('tar', ['-x', '-f', tarFile, '-C', destination], { cwd: workDir, timeout: 600_000 });
}

export interface PackedInput {
  findings: Finding[];
  /** The NAR hash of what was packed (equal to the lock's, or packing threw). */
  narHash: string;
  size: number;
  sha256: string;
}

export interface PackOptions {
  /** A scratch folder on local disk (clones are exported there). */
  workDir: string;
  /** Makes the leak gate for this input, given the input's own `.sops.yaml` text when it has one. */
  /** The gate for one input's files, given its `.sops.yaml` and the folder its files are read from. */
  gate: (sopsConfig: string | undefined, root: string) => Promise<LeakGate>;
  onBytes?: (bytes: number) => void;
}

function tarName(entry: WalkedEntry): string {
  const base = entry.path ? `source/${entry.path}` : 'source';
  return entry.type === 'directory' ? `${base}/` : base;
}

/**
 * Packs one carried input into `destination` (a local .tar.gz): entries in NAR order under one top
 * folder `source/`, modes as NAR sees them (0755 for folders and executables, 0644 for other files,
 * symlinks kept), owner 0:0, mtime the lock's lastModified. The NAR hash is computed from the same
 * chunks and must equal the lock's narHash, else UsageError (exit 2). Findings are returned; the
 * caller decides (allowlisted or blocking).
 */
export async function packCarriedInput(carried: CarriedInput, destination: string, options: PackOptions): Promise<PackedInput> {
  let root: string;
  if (carried.source.kind === 'clone') {
    root = path.join(options.workDir, `${safeName(carried.input.node)}-export`, 'source');
    await exportClone(carried.source, options.workDir, root);
  } else {
    root = carried.source.path;
  }
  const sopsConfig = await readFile(path.join(root, '.sops.yaml'), 'utf8').catch(() => undefined);
  const gate = await options.gate(sopsConfig, root);
  const reported = `${INPUTS_DIR}/${carried.fileName}`;
  const findings: Finding[] = [];
  const hasher = new NarHasher();
  const mtime = Math.max(0, Math.min(carried.input.lastModified ?? 0, 0o77777777777));

  async function* tarChunks(): AsyncGenerator<Buffer> {
    for await (const entry of walkNarOrder(root)) {
      hasher.entry(entry);
      const header: TarHeaderInput = {
        name: tarName(entry),
        type: entry.type,
        mode: entry.type === 'directory' ? 0o755 : entry.type === 'symlink' ? 0o777 : entry.executable ? 0o755 : 0o644,
        size: entry.type === 'file' ? entry.size : 0,
        mtime,
        ...(entry.type === 'symlink' ? { linkname: entry.target } : {}),
      };
      yield encodeTarHeader(header);
      if (entry.type !== 'file') continue;
      const scanner = gate.open({ path: reported, inner: tarName(entry), repoPath: entry.path, size: entry.size });
      for await (const chunk of readFileChunks(entry.absPath, entry.size)) {
        hasher.contents(chunk);
        scanner.update(chunk);
        options.onBytes?.(chunk.length);
        yield chunk;
      }
      findings.push(...(await scanner.finish()));
      const padding = tarPadding(entry.size);
      if (padding.length > 0) yield padding;
    }
    yield TAR_END;
  }

  const digest = createHash('sha256');
  let size = 0;
  const count = new Transform({
    transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
      digest.update(chunk);
      size += chunk.length;
      callback(null, chunk);
    },
  });
  try {
    await pipeline(gzipDeterministic(tarChunks()), count, createWriteStream(destination));
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError(`Flake input ${carried.name} could not be packed from ${describeSource(carried.source)}: ${(error as Error).message}`, [], { cause: error });
  }
  const narHash = toSriSha256(hasher.digest());
  if (narHash !== carried.narHash) {
    throw new UsageError(
      `The bytes found for flake input ${carried.name} at ${describeSource(carried.source)} do not match flake.lock (their NAR hash differs): ${carried.source.kind === 'store' ? 'the store path is damaged; run `nix-store --verify --check-contents --repair`' : 'the folder or clone differs from what was locked; check it out at the locked state, or build the flake once on this machine'}.`,
      [`lock narHash ${carried.narHash}`, `found       ${narHash}`],
    );
  }
  return { findings, narHash, size, sha256: digest.digest('hex') };
}

/** Short words for where bytes came from, for plans and messages. */
export function describeSource(source: InputSource): string {
  switch (source.kind) {
    case 'store':
      return source.path;
    case 'clone':
      return `the clone ${source.path} at ${source.rev.slice(0, 12)}`;
    case 'folder':
      return `the folder ${source.path}`;
  }
}
