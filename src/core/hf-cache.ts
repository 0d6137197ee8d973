/**
 * The Hugging Face hub cache layout (huggingface_hub's `~/.cache/huggingface/hub`):
 *
 *   models--org--name/
 *     blobs/<sha256 or git-sha1>     file contents, named by their digest
 *     refs/main                      a commit hash (refs/pr/1 and other refs likewise)
 *     snapshots/<commit>/<file>      symlinks ../../blobs/<digest>, one folder per revision
 *
 * Blob names are digests the hub computed: 64 hex digits are the sha256 of an LFS file, 40 hex
 * digits the git blob hash of a regular file, sha1("blob <size>\0" + content). Both can be checked
 * in the same pass that copies the bytes.
 */
import { createHash, type Hash } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from '../errors.js';

/** A digest the source already claims for a file (from its HF cache blob name). */
export type ExpectedDigest = { algorithm: 'sha256' | 'git-sha1'; hex: string };

/** A resolved revision of a cache repository. */
export interface HfSnapshot {
  /** The `models--org--name` folder. */
  repoDir: string;
  /** `org/name` (or `name` for repos without an owner). */
  repoId: string;
  /** The commit hash: the snapshot folder's name. */
  revision: string;
  /** The ref that was followed (`main`, `pr/1`...), when one was. */
  ref?: string;
  snapshotDir: string;
  blobsDir: string;
}

const SHA256_HEX = /^[0-9a-f]{64}$/;
const SHA1_HEX = /^[0-9a-f]{40}$/;

/** The digest a blob's file name states: sha256 for 64 hex digits, git-sha1 for 40, none otherwise. */
export function expectedDigestFromBlobName(name: string): ExpectedDigest | undefined {
  if (SHA256_HEX.test(name)) return { algorithm: 'sha256', hex: name };
  if (SHA1_HEX.test(name)) return { algorithm: 'git-sha1', hex: name };
  return undefined;
}

/**
 * A hash that checks bytes against an expected digest as they stream by. For git-sha1 the
 * `blob <size>\0` prefix is fed first, so `size` must be the file's full size.
 */
export interface ExpectedDigestHasher {
  update(chunk: Buffer): void;
  /** Finishes the hash; `actual` is the computed hex digest. Call once. */
  check(): { ok: boolean; actual: string };
}

/** Starts a hasher for `expected` over a file of `size` bytes. */
export function createExpectedDigestHasher(expected: ExpectedDigest, size: number): ExpectedDigestHasher {
  let hash: Hash;
  if (expected.algorithm === 'sha256') {
    hash = createHash('sha256');
  } else {
    hash = createHash('sha1');
    hash.update(`blob ${size}\0`);
  }
  return {
    update: (chunk) => void hash.update(chunk),
    check: () => {
      const actual = hash.digest('hex');
      return { ok: actual === expected.hex, actual };
    },
  };
}

/**
 * The repo id a cache folder name encodes (`models--Qwen--Qwen2.5-0.5B` → `Qwen/Qwen2.5-0.5B`,
 * `models--gpt2` → `gpt2`), or undefined when the name is not a model repo folder.
 */
export function repoIdFromFolderName(name: string): string | undefined {
  if (!name.startsWith('models--')) return undefined;
  const parts = name.slice('models--'.length).split('--');
  if (parts.length === 0 || parts.length > 2 || parts.some((part) => part === '')) return undefined;
  return parts.join('/');
}

async function isDirectory(candidate: string): Promise<boolean> {
  try {
    return (await stat(candidate)).isDirectory();
  } catch {
    return false;
  }
}

/** True when `dir` looks like a cache repository folder: it has `snapshots/` and `refs/` or `blobs/`. */
export async function isHfCacheRepo(dir: string): Promise<boolean> {
  if (!(await isDirectory(path.join(dir, 'snapshots')))) return false;
  return (await isDirectory(path.join(dir, 'blobs'))) || (await isDirectory(path.join(dir, 'refs')));
}

/** When `dir` is `<repo>/snapshots/<commit>` of a cache repository, that repo folder; else undefined. */
export async function hfRepoOfSnapshot(dir: string): Promise<string | undefined> {
  const parent = path.dirname(dir);
  if (path.basename(parent) !== 'snapshots') return undefined;
  const repoDir = path.dirname(parent);
  return (await isHfCacheRepo(repoDir)) ? repoDir : undefined;
}

/** The `models--*` repository folders directly inside `dir` (a hub cache root), sorted. */
export async function listHfCacheRepos(dir: string): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  const repos: string[] = [];
  for (const entry of entries) {
    if (!entry.name.startsWith('models--')) continue;
    if (await isHfCacheRepo(path.join(dir, entry.name))) repos.push(entry.name);
  }
  return repos.sort();
}

/** Refs (name → commit, e.g. `main`, `pr/1`) and snapshot folder names of a cache repository. */
export async function listHfRevisions(repoDir: string): Promise<{ refs: Record<string, string>; snapshots: string[] }> {
  const refs: Record<string, string> = {};
  const refsDir = path.join(repoDir, 'refs');
  if (await isDirectory(refsDir)) {
    const names = (await readdir(refsDir, { recursive: true, withFileTypes: true }))
      .filter((entry) => entry.isFile())
      .map((entry) => path.relative(refsDir, path.join(entry.parentPath, entry.name)).split(path.sep).join('/'))
      .sort();
    for (const name of names) refs[name] = (await readFile(path.join(refsDir, name), 'utf8')).trim();
  }
  const snapshots = (await readdir(path.join(repoDir, 'snapshots'), { withFileTypes: true }))
    .filter((entry) => entry.isDirectory() && !entry.name.startsWith('.'))
    .map((entry) => entry.name)
    .sort();
  return { refs, snapshots };
}

function describeRevisions(revisions: { refs: Record<string, string>; snapshots: string[] }): string {
  const refs = Object.entries(revisions.refs).map(([name, commit]) => `${name} -> ${commit}`);
  const parts = [
    refs.length > 0 ? `refs: ${refs.join(', ')}` : 'no refs',
    revisions.snapshots.length > 0 ? `snapshots: ${revisions.snapshots.join(', ')}` : 'no snapshots',
  ];
  return parts.join('; ');
}

/**
 * Resolves a revision of a cache repository to its snapshot folder.
 * @param repoDir the `models--org--name` folder
 * @param revision a ref name (`main`, `pr/1`), a commit hash, or a unique prefix of one (at least
 *   4 hex digits). Default: `main`; without `refs/main`, the only snapshot if there is exactly one.
 * @throws UsageError when the revision is missing or ambiguous, listing the available ones
 */
export async function resolveHfSnapshot(repoDir: string, revision?: string): Promise<HfSnapshot> {
  const folderName = path.basename(repoDir);
  const repoId = repoIdFromFolderName(folderName);
  if (repoId === undefined) {
    throw new UsageError(
      `${repoDir} is not a Hugging Face model cache folder: its name should look like models--org--name. Pass the model's folder under the hub cache (for example ~/.cache/huggingface/hub/models--org--name).`,
    );
  }
  const revisions = await listHfRevisions(repoDir);
  const snapshot = (commit: string, ref?: string): HfSnapshot => {
    const base = { repoDir, repoId, revision: commit, snapshotDir: path.join(repoDir, 'snapshots', commit), blobsDir: path.join(repoDir, 'blobs') };
    return ref === undefined ? base : { ...base, ref };
  };
  const available = describeRevisions(revisions);

  if (revision === undefined) {
    const main = revisions.refs.main;
    if (main !== undefined) {
      if (!revisions.snapshots.includes(main)) {
        throw new UsageError(
          `${repoDir}: refs/main points to ${main}, but snapshots/${main} is missing (an interrupted download?). Download the model again or pass --revision (${available}).`,
        );
      }
      return snapshot(main, 'main');
    }
    if (revisions.snapshots.length === 1) return snapshot(revisions.snapshots[0]!);
    throw new UsageError(`${repoDir} has no refs/main and ${revisions.snapshots.length} snapshots; pass --revision to pick one (${available}).`);
  }

  if (revision === '' || revision.startsWith('/') || revision.split('/').includes('..')) {
    throw new UsageError(`Invalid revision "${revision}": pass a ref name or a commit hash (${available}).`);
  }
  const refCommit = revisions.refs[revision];
  if (refCommit !== undefined) {
    if (!revisions.snapshots.includes(refCommit)) {
      throw new UsageError(`${repoDir}: refs/${revision} points to ${refCommit}, but snapshots/${refCommit} is missing. Download that revision again (${available}).`);
    }
    return snapshot(refCommit, revision);
  }
  if (revisions.snapshots.includes(revision)) return snapshot(revision);
  const lower = revision.toLowerCase();
  if (/^[0-9a-f]{4,40}$/.test(lower)) {
    const matches = revisions.snapshots.filter((name) => name.startsWith(lower));
    if (matches.length === 1) return snapshot(matches[0]!);
    if (matches.length > 1) {
      throw new UsageError(`Revision "${revision}" is ambiguous in ${repoDir}: it matches ${matches.join(', ')}. Pass more digits of the commit hash.`);
    }
  }
  throw new UsageError(`Revision "${revision}" not found in ${repoDir} (${available}). Pass one of these to --revision, or download that revision first.`);
}
