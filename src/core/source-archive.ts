/**
 * The deterministic source archive of the operator's configuration repository, taken from the
 * working tree: what the operator sees is what the installer gets, dirty or not, and the plan says
 * exactly how it differs from the commit. Two builds of the same tree give the same bytes.
 */
import { constants as fsConstants } from 'node:fs';
import { lstat, open, readdir, readFile, readlink, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { Readable, Transform, pipeline, type TransformCallback } from 'node:stream';
import { createGzip, constants as zlibConstants } from 'node:zlib';
import { UsageError } from '../errors.js';
import { encodeTarHeader, tarEntryBytes, tarPadding, TAR_END, type TarHeaderInput } from './source-archive-tar.js';
import { headCommit, listChangedSinceHead, listGitCrypt, listIndex, listUntracked, locateWorkTree } from './source-archive-git.js';
import { gitAttributesOf, isGitAttributesFile, isGitCryptPath } from './scan/rules/git-crypt.js';

export interface SourceArchiveOptions {
  /**
   * Path to a git work tree, or a folder INSIDE a work tree (then only that subtree is archived,
   * paths relative to that folder — the monorepo case).
   */
  repo: string;
  /** Include untracked-but-not-ignored files (default false). */
  includeUntracked: boolean;
  /** Archive a folder that is not a git work tree as a plain folder (explicit opt-in; flag --plain-folder). */
  plainFolder: boolean;
  /** 'include' the working trees of submodules (paths prefixed), or 'refuse' with a UsageError. */
  submodules: 'include' | 'refuse';
  /** Override mtime (seconds); default: SOURCE_DATE_EPOCH env if set, else the commit time (0 for a plain folder). */
  sourceDateEpoch?: number;
  /** Override the archive's name (default: basename of the repo folder); sanitized either way. */
  name?: string;
}

/** One archive member, relative to the archived root. */
export interface SourceEntry {
  /** Relative posix path, without the top-level folder and without a trailing slash. */
  path: string;
  type: 'file' | 'symlink' | 'directory';
  /** Bytes of content (0 for symlinks and directories). */
  size: number;
  /** Normalized mode: 0o755 for directories and executables, 0o644 for other files, 0o777 for symlinks. */
  mode: number;
  /** A symlink's target, verbatim (never followed). */
  linkTarget?: string;
  /** Where the entry is on disk. */
  absPath: string;
  /** A file its `.gitattributes` give to git-crypt (the leak gate wants it to be git-crypt ciphertext). */
  gitCrypt?: true;
}

export interface SourcePlan {
  /** Sanitized archive name. */
  name: string;
  /** The commit archived (HEAD of the work tree), or null for a plain folder. */
  commit: string | null;
  /** 12 hex chars of the commit, or 'nogit' for a plain folder. */
  shortRev: string;
  /** `${name}-${shortRev}`: the single folder at the top of the archive. */
  topFolder: string;
  /** `${topFolder}.tar.gz`. */
  fileName: string;
  /** True when the archived content differs from the commit (changedPaths is not empty). */
  dirty: boolean;
  /** Paths (relative to the archived root, sorted) differing from the commit: modified, deleted, added, and untracked ones when included. Submodule changes are listed with their path prefix. */
  changedPaths: string[];
  /** Untracked files put in the archive (only with includeUntracked). */
  untrackedIncluded: string[];
  /** Untracked, not ignored files left out because includeUntracked was off. */
  untrackedExcluded: number;
  /** Submodule paths whose working trees were included (nested ones too). */
  submodules: string[];
  /** The mtime of every entry, seconds since the epoch. */
  mtime: number;
  /** Files, symlinks and directories, sorted bytewise by path. */
  entries: SourceEntry[];
  /** Sum of file sizes. */
  contentBytes: number;
  plainFolder: boolean;
  /** Absolute (real) path of the folder archived. */
  root: string;
}

/** Hooks called while packing, for each regular file, in archive order. */
export interface SourceArchiveHooks {
  onEntryStart?: (entry: SourceEntry) => void;
  /** Every content chunk of the file, in order; the concatenation is exactly the bytes archived. */
  onEntryChunk?: (entry: SourceEntry, chunk: Buffer) => void;
  /** Awaited before the next entry is packed. */
  onEntryEnd?: (entry: SourceEntry) => void | Promise<void>;
}

const READ_CHUNK = 1024 * 1024;
const GZIP_LEVEL = 9;
/** RFC 1952 OS byte "Unix", forced so the gzip header does not depend on the platform zlib was built for. */
const GZIP_OS_UNIX = 3;
const MAX_MTIME = 0o77777777777;

// ---------------------------------------------------------------------------------------------
// Planning

/** A path collected for the archive before its type is looked at. */
interface Candidate {
  path: string;
  absPath: string;
}

interface Collected {
  candidates: Candidate[];
  /** Folders that must exist even when empty (submodule roots). */
  folders: Set<string>;
  changed: Set<string>;
  untrackedIncluded: string[];
  untrackedExcluded: number;
  submodules: string[];
  /** Candidate paths git-crypt encrypts (see listGitCrypt). */
  gitCrypt: Set<string>;
}

function isGitName(component: string): boolean {
  return component.toLowerCase() === '.git';
}

function hasGitComponent(relative: string): boolean {
  return relative.split('/').some(isGitName);
}

/** A name that is safe as a file name and as a Nix store path name. */
export function sanitizeArchiveName(raw: string): string {
  const cleaned = raw
    .replace(/[^A-Za-z0-9._+-]+/g, '-')
    .replace(/-{2,}/g, '-')
    .replace(/^[-.]+/, '')
    .replace(/-+$/, '');
  return cleaned || 'source';
}

function resolveMtime(options: SourceArchiveOptions, commitTime: number): number {
  let mtime = commitTime;
  if (options.sourceDateEpoch !== undefined) {
    mtime = options.sourceDateEpoch;
  } else {
    const fromEnv = process.env.SOURCE_DATE_EPOCH;
    if (fromEnv !== undefined && fromEnv.trim() !== '') {
      if (!/^\d+$/.test(fromEnv.trim())) {
        throw new UsageError(`SOURCE_DATE_EPOCH is ${JSON.stringify(fromEnv)}, not a whole number of seconds: set it to a Unix time such as 1700000000, or unset it.`);
      }
      mtime = Number.parseInt(fromEnv.trim(), 10);
    }
  }
  if (!Number.isSafeInteger(mtime) || mtime < 0 || mtime > MAX_MTIME) {
    throw new UsageError(`The archive time ${mtime} is not a whole number of seconds between 0 and ${MAX_MTIME}: pass another source date epoch.`);
  }
  return mtime;
}

function describeSubmodules(paths: string[]): string {
  return paths.length === 1 ? `a submodule (${paths[0]})` : `submodules (${paths.join(', ')})`;
}

/**
 * Collects one git work tree: `toplevel` is its top, `prefix` the subtree archived ('' for all),
 * `into` the path prefix inside the archive (for submodules). Recurses into submodules.
 */
async function collectGitTree(toplevel: string, prefix: string, into: string, options: SourceArchiveOptions, collected: Collected): Promise<void> {
  const within = (fullName: string): string | null => {
    if (!prefix) return fullName;
    return fullName.startsWith(`${prefix}/`) ? fullName.slice(prefix.length + 1) : null;
  };
  const [index, untracked, changed] = await Promise.all([
    listIndex(toplevel, prefix),
    listUntracked(toplevel, prefix),
    listChangedSinceHead(toplevel, prefix),
  ]);

  const gitlinks: string[] = [];
  /** Archived files by their name in the work tree, for git's reading of their attributes. */
  const archived = new Map<string, string>();
  for (const entry of index) {
    const relative = within(entry.path);
    if (relative === null || hasGitComponent(relative)) continue;
    if (entry.mode === '160000') gitlinks.push(relative);
    else {
      collected.candidates.push({ path: into + relative, absPath: path.join(toplevel, entry.path) });
      archived.set(entry.path, into + relative);
    }
  }
  for (const fullName of changed) {
    const relative = within(fullName);
    if (relative !== null) collected.changed.add(into + relative);
  }

  const nestedRepositories = untracked.filter((name) => name.endsWith('/'));
  const untrackedFiles = untracked.filter((name) => !name.endsWith('/'));
  if (options.includeUntracked) {
    if (nestedRepositories.length > 0) {
      const names = nestedRepositories.map((name) => into + (within(name.slice(0, -1)) ?? name));
      throw new UsageError(
        `${names.join(', ')} in ${toplevel} ${names.length === 1 ? 'is a git repository' : 'are git repositories'} inside the work tree but not a submodule, so including untracked files cannot archive it: add it as a submodule, list it in .gitignore, or leave out untracked files.`,
      );
    }
    for (const fullName of untrackedFiles) {
      const relative = within(fullName);
      if (relative === null || hasGitComponent(relative)) continue;
      collected.candidates.push({ path: into + relative, absPath: path.join(toplevel, fullName) });
      archived.set(fullName, into + relative);
      collected.untrackedIncluded.push(into + relative);
      collected.changed.add(into + relative);
    }
  } else {
    collected.untrackedExcluded += untrackedFiles.length + nestedRepositories.length;
  }
  for (const fullName of await listGitCrypt(toplevel, [...archived.keys()])) collected.gitCrypt.add(archived.get(fullName)!);

  if (gitlinks.length === 0) return;
  if (options.submodules === 'refuse') {
    const names = gitlinks.map((name) => into + name);
    throw new UsageError(
      `${toplevel} contains ${describeSubmodules(names)} and submodules are set to refuse: include their working trees (submodules: include) or remove them from the repository.`,
    );
  }
  for (const relative of gitlinks) {
    const fullName = prefix ? `${prefix}/${relative}` : relative;
    const submoduleRoot = path.join(toplevel, fullName);
    const shown = into + relative;
    const uninitialized = new UsageError(
      `Submodule ${shown} in ${toplevel} is not initialized, so its files cannot be archived: run \`git submodule update --init --recursive\` in ${toplevel}, or remove the submodule.`,
    );
    const info = await lstat(submoduleRoot).catch(() => null);
    if (!info?.isDirectory()) throw uninitialized;
    const location = await locateWorkTree(submoduleRoot);
    if (location.kind !== 'work-tree' || (await realpath(location.toplevel)) !== (await realpath(submoduleRoot))) throw uninitialized;
    if (!(await headCommit(submoduleRoot))) throw uninitialized;
    collected.submodules.push(shown);
    collected.folders.add(shown);
    await collectGitTree(submoduleRoot, '', `${shown}/`, options, collected);
  }
}

/** Walks a plain folder: everything except `.git` entries, symlinks not followed. */
async function collectPlainFolder(root: string, collected: Collected): Promise<void> {
  const pending: string[] = [''];
  while (pending.length > 0) {
    const relativeDir = pending.pop()!;
    const children = await readdir(path.join(root, relativeDir), { withFileTypes: true });
    for (const child of children) {
      if (isGitName(child.name)) continue;
      const relative = relativeDir ? `${relativeDir}/${child.name}` : child.name;
      if (child.isDirectory()) {
        collected.folders.add(relative);
        pending.push(relative);
      } else {
        collected.candidates.push({ path: relative, absPath: path.join(root, relative) });
      }
    }
  }
}

function normalizedFileMode(mode: number): number {
  return mode & 0o111 ? 0o755 : 0o644;
}

function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** Looks at each candidate on disk (never following symlinks) and adds the folders above it. */
async function toEntries(root: string, collected: Collected): Promise<SourceEntry[]> {
  const byPath = new Map<string, SourceEntry>();
  const folders = new Set(collected.folders);
  for (const candidate of collected.candidates) {
    if (byPath.has(candidate.path)) continue;
    let info;
    try {
      info = await lstat(candidate.absPath);
    } catch (error) {
      // A tracked file deleted from the working tree: absent from the archive, listed as changed.
      if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as NodeJS.ErrnoException).code === 'ENOTDIR') continue;
      throw error;
    }
    if (info.isFile()) {
      byPath.set(candidate.path, { path: candidate.path, type: 'file', size: info.size, mode: normalizedFileMode(info.mode), absPath: candidate.absPath });
    } else if (info.isSymbolicLink()) {
      const linkTarget = await readlink(candidate.absPath);
      byPath.set(candidate.path, { path: candidate.path, type: 'symlink', size: 0, mode: 0o777, linkTarget, absPath: candidate.absPath });
    } else if (info.isDirectory()) {
      // A tracked file replaced by a folder: its contents are untracked and were listed (or not) as such.
      continue;
    } else {
      throw new UsageError(`${candidate.absPath} is not a regular file, symlink or folder (a socket, pipe or device?), so it cannot be archived: remove it or ignore it in .gitignore.`);
    }
  }
  for (const entryPath of byPath.keys()) {
    for (let slash = entryPath.lastIndexOf('/'); slash > 0; slash = entryPath.lastIndexOf('/', slash - 1)) {
      folders.add(entryPath.slice(0, slash));
    }
  }
  for (const folder of [...folders]) {
    for (let slash = folder.lastIndexOf('/'); slash > 0; slash = folder.lastIndexOf('/', slash - 1)) folders.add(folder.slice(0, slash));
  }
  for (const folder of folders) {
    if (!byPath.has(folder)) byPath.set(folder, { path: folder, type: 'directory', size: 0, mode: 0o755, absPath: path.join(root, folder) });
  }
  return [...byPath.values()].sort((a, b) => compareBytes(a.path, b.path));
}

/**
 * Marks the files git-crypt encrypts: as git read their attributes (work trees), or as the folder's
 * own `.gitattributes` read (a plain folder, perhaps an unpacked copy of a git-crypt repository).
 */
async function markGitCrypt(entries: SourceEntry[], collected: Collected, plainFolder: boolean): Promise<void> {
  if (plainFolder) {
    const files: { path: string; text: string }[] = [];
    for (const entry of entries) {
      if (entry.type === 'file' && isGitAttributesFile(entry.path)) files.push({ path: entry.path, text: await readFile(entry.absPath, 'utf8') });
    }
    const attributes = gitAttributesOf(files);
    if (attributes.length === 0) return;
    for (const entry of entries) if (entry.type === 'file' && isGitCryptPath(attributes, entry.path)) collected.gitCrypt.add(entry.path);
  }
  for (const entry of entries) if (entry.type === 'file' && collected.gitCrypt.has(entry.path)) entry.gitCrypt = true;
}

/**
 * Lists what would be archived, without reading any content. Throws UsageError when the path is
 * missing, is not a git work tree (unless plainFolder), is a bare repository, has no commit yet,
 * has a refused or uninitialized submodule, or holds nothing to archive.
 */
export async function planSourceArchive(options: SourceArchiveOptions): Promise<SourcePlan> {
  const given = path.resolve(options.repo);
  const info = await stat(given).catch(() => null);
  if (!info) throw new UsageError(`The repository folder ${given} does not exist: check --repo.`);
  if (!info.isDirectory()) throw new UsageError(`${given} is not a folder: --repo takes the folder of the configuration repository.`);
  const root = await realpath(given);
  const name = sanitizeArchiveName(options.name ?? path.basename(root));
  const collected: Collected = { candidates: [], folders: new Set(), changed: new Set(), untrackedIncluded: [], untrackedExcluded: 0, submodules: [], gitCrypt: new Set() };

  const location = await locateWorkTree(root).catch((error: unknown) => {
    // Without git, a plain folder can still be archived.
    if (options.plainFolder && error instanceof UsageError && /git is not installed/.test(error.message)) return { kind: 'not-a-repository' } as const;
    throw error;
  });

  let commit: string | null = null;
  let commitTime = 0;
  if (location.kind === 'bare') {
    throw new UsageError(`${given} is a bare git repository, which has no working tree to archive: pass the folder of a checkout instead.`);
  } else if (location.kind === 'inside-git-dir') {
    throw new UsageError(`${given} is inside a .git folder, not a working tree: pass the folder of the checkout instead.`);
  } else if (location.kind === 'not-a-repository') {
    if (!options.plainFolder) {
      throw new UsageError(`${given} is not inside a git work tree, so there is no commit to record: run \`git init\` and commit it, or pass --plain-folder to archive the folder as it is.`);
    }
    await collectPlainFolder(root, collected);
  } else {
    if (options.plainFolder) {
      throw new UsageError(`${given} is inside the git work tree ${location.toplevel}, so it is archived from git and --plain-folder does not apply: drop --plain-folder.`);
    }
    const toplevel = await realpath(location.toplevel);
    const head = await headCommit(toplevel);
    if (!head) {
      throw new UsageError(`The git repository ${toplevel} has no commit yet, so there is nothing to record the archive against: commit something first or pass --plain-folder.`);
    }
    commit = head.commit;
    commitTime = head.time;
    const prefix = path.relative(toplevel, root).split(path.sep).join('/');
    if (prefix.startsWith('..')) throw new UsageError(`${given} resolves outside its work tree ${toplevel}: pass the work tree folder itself.`);
    if (hasGitComponent(prefix)) throw new UsageError(`${given} is inside a .git folder, not a working tree: pass the folder of the checkout instead.`);
    await collectGitTree(toplevel, prefix, '', options, collected);
  }

  const entries = await toEntries(root, collected);
  await markGitCrypt(entries, collected, location.kind === 'not-a-repository');
  if (!entries.some((entry) => entry.type !== 'directory')) {
    const hint = collected.untrackedExcluded > 0 ? ` (${collected.untrackedExcluded} untracked files were left out: commit them or include untracked files)` : '';
    throw new UsageError(`There is nothing to archive in ${given}: no files${location.kind === 'work-tree' ? ' tracked by git' : ''}${hint}.`);
  }
  const mtime = resolveMtime(options, commitTime);
  const shortRev = commit ? commit.slice(0, 12) : 'nogit';
  const topFolder = `${name}-${shortRev}`;
  const changedPaths = [...collected.changed].sort(compareBytes);
  return {
    name,
    commit,
    shortRev,
    topFolder,
    fileName: `${topFolder}.tar.gz`,
    dirty: changedPaths.length > 0,
    changedPaths,
    untrackedIncluded: [...collected.untrackedIncluded].sort(compareBytes),
    untrackedExcluded: collected.untrackedExcluded,
    submodules: [...collected.submodules].sort(compareBytes),
    mtime,
    entries,
    contentBytes: entries.reduce((sum, entry) => sum + (entry.type === 'file' ? entry.size : 0), 0),
    plainFolder: location.kind === 'not-a-repository',
    root,
  };
}

// ---------------------------------------------------------------------------------------------
// Packing

function headerInput(plan: SourcePlan, entry: SourceEntry): TarHeaderInput {
  const name = `${plan.topFolder}/${entry.path}${entry.type === 'directory' ? '/' : ''}`;
  return { name, type: entry.type, mode: entry.mode, size: entry.type === 'file' ? entry.size : 0, mtime: plan.mtime, linkname: entry.linkTarget };
}

function topFolderInput(plan: SourcePlan): TarHeaderInput {
  return { name: `${plan.topFolder}/`, type: 'directory', mode: 0o755, size: 0, mtime: plan.mtime };
}

/**
 * Upper bound of the .tar.gz size, for the free-space check: the exact tar size (headers, pax
 * records, content, padding, end blocks) plus zlib's worst-case overhead for data that does not
 * compress, plus the gzip header and trailer.
 */
export function estimateArchiveBytes(plan: SourcePlan): number {
  let tarBytes = tarEntryBytes(topFolderInput(plan)) + TAR_END.length;
  for (const entry of plan.entries) tarBytes += tarEntryBytes(headerInput(plan, entry));
  const deflateOverhead = Math.floor(tarBytes / 4096) + Math.floor(tarBytes / 16384) + Math.floor(tarBytes / 33554432) + 13;
  return tarBytes + deflateOverhead + 18;
}

function changedWhileArchiving(entry: SourceEntry, what: string): UsageError {
  return new UsageError(`${entry.absPath} changed while archiving (${what}): rerun the build once nothing is writing to the repository.`);
}

/** Reads one planned file in chunks, refusing to follow a symlink that replaced it since planning. */
async function* fileChunks(entry: SourceEntry): AsyncGenerator<Buffer> {
  let handle;
  try {
    handle = await open(entry.absPath, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw changedWhileArchiving(entry, 'it was removed');
    if (code === 'ELOOP') throw changedWhileArchiving(entry, 'it became a symlink');
    throw error;
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw changedWhileArchiving(entry, 'it is no longer a regular file');
    if (info.size !== entry.size) throw changedWhileArchiving(entry, `size ${entry.size} became ${info.size}`);
    let total = 0;
    for (;;) {
      // A fresh buffer per read: the previous chunk may still sit in a downstream queue.
      const buffer = Buffer.allocUnsafe(READ_CHUNK);
      const { bytesRead } = await handle.read(buffer, 0, READ_CHUNK, null);
      if (bytesRead === 0) break;
      total += bytesRead;
      if (total > entry.size) throw changedWhileArchiving(entry, 'it grew while being read');
      yield buffer.subarray(0, bytesRead);
    }
    if (total !== entry.size) throw changedWhileArchiving(entry, 'it shrank while being read');
  } finally {
    await handle.close();
  }
}

async function* tarStream(plan: SourcePlan, hooks: SourceArchiveHooks): AsyncGenerator<Buffer> {
  yield encodeTarHeader(topFolderInput(plan));
  for (const entry of plan.entries) {
    if (entry.type === 'symlink') {
      const now = await readlink(entry.absPath).catch(() => null);
      if (now !== entry.linkTarget) throw changedWhileArchiving(entry, 'the symlink changed');
    }
    yield encodeTarHeader(headerInput(plan, entry));
    if (entry.type !== 'file') continue;
    hooks.onEntryStart?.(entry);
    for await (const chunk of fileChunks(entry)) {
      hooks.onEntryChunk?.(entry, chunk);
      yield chunk;
    }
    const padding = tarPadding(entry.size);
    if (padding.length > 0) yield padding;
    await hooks.onEntryEnd?.(entry);
  }
  yield TAR_END;
}

/** Overwrites the gzip header's OS byte (offset 9) as it streams past. */
function fixGzipOsByte(): Transform {
  let offset = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
      if (offset <= 9 && offset + chunk.length > 9) chunk[9 - offset] = GZIP_OS_UNIX;
      offset += chunk.length;
      callback(null, chunk);
    },
  });
}

/**
 * Streams the deterministic .tar.gz bytes of `plan`. Each regular file is read in 1 MiB chunks,
 * once; its chunks go to `hooks.onEntryChunk` as they are packed (the leak gate sees exactly the
 * archived bytes). A file that changed since planning fails the stream with a UsageError.
 * Destroying the returned stream stops reading and closes the open file.
 */
export function streamSourceArchive(plan: SourcePlan, hooks: SourceArchiveHooks = {}): Readable {
  return gzipDeterministic(tarStream(plan, hooks));
}

/**
 * The source archive's gzip writer over any stream of tar bytes (carried flake inputs use it too):
 * fixed level and strategy, mtime 0, no file name, OS byte "Unix", so the same tar gives the same bytes.
 */
export function gzipDeterministic(tarChunks: AsyncIterable<Buffer>): Readable {
  const tar = Readable.from(tarChunks, { objectMode: false, highWaterMark: READ_CHUNK });
  // Node's gzip writes mtime 0 and no file name; level and strategy are fixed so the bytes are too.
  const gzip = createGzip({ level: GZIP_LEVEL, strategy: zlibConstants.Z_DEFAULT_STRATEGY, chunkSize: 64 * 1024 });
  const output = fixGzipOsByte();
  pipeline(tar, gzip, output, () => {
    // Errors reach the consumer through `output`, which pipeline destroys with them.
  });
  return output;
}
