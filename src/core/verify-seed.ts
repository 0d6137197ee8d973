/**
 * verifySeed: checks a seed folder (a mounted seed partition) against its manifest and SHA256SUMS:
 * every file's size and sha256, missing, corrupt, partial and unexpected files, and a leak scan of
 * every byte. Never writes to the media and never follows a symlink.
 */
import { lstat, open, readdir } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from '../errors.js';
import { checkSourceArchive } from './archive-safety.js';
import { HashPool } from './hash-pool.js';
import { resolveModelBundle } from './model-bundle.js';
import { CHECKSUMS_NAME, JOURNAL_NAME, MANIFEST_NAME, PARTIAL_SUFFIX, parseChecksums, parseManifest, type Manifest } from './manifest.js';
import type { CacheBypass } from './read-direct.js';
import { createHash } from 'node:crypto';
import type { AllowEntry } from './scan/index.js';
import type { Finding, ProgressHook } from './types.js';

export type ProblemKind =
  | 'incomplete'
  | 'manifest'
  | 'checksums'
  | 'missing'
  | 'size'
  | 'corrupt'
  | 'partial'
  | 'unexpected'
  | 'not-regular'
  | 'unreadable'
  | 'archive'
  | 'bundle';

export interface VerifyProblem {
  path: string;
  kind: ProblemKind;
  message: string;
  /** What to do next. */
  action: string;
  expected?: string;
  actual?: string;
}

export interface VerifyOptions {
  root: string;
  /** Leak-scan every byte (default on); false skips it. */
  scan: false | { allowlist: AllowEntry[]; operatorSecrets: boolean };
  /** Bypass the page cache (O_DIRECT or dropped pages); default true. */
  bypassCache?: boolean;
  onProgress?: ProgressHook;
}

export interface VerifyReport {
  root: string;
  ok: boolean;
  complete: boolean;
  manifest?: Pick<Manifest, 'format' | 'tool' | 'createdAt' | 'profile' | 'modelStore' | 'source' | 'bundles' | 'totals'>;
  files: number;
  bytes: number;
  durationMs: number;
  /** Whether reads bypassed the page cache: all files, some, or none. */
  cacheBypass: 'all' | 'some' | 'none';
  problems: VerifyProblem[];
  findings: Finding[];
  allowed: Finding[];
}

/** Root entries a filesystem or desktop adds that are not the seed's business. */
const ROOT_NOISE = new Set(['lost+found', 'System Volume Information', '.Trashes', '.fseventsd', '.Spotlight-V100']);
const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;

async function readSmallFile(file: string, limit: number): Promise<{ text?: string; problem?: string }> {
  const info = await lstat(file).catch(() => undefined);
  if (!info) return { problem: 'missing' };
  if (!info.isFile()) return { problem: info.isSymbolicLink() ? 'is a symlink (never followed)' : 'is not a regular file' };
  if (info.size > limit) return { problem: `is ${info.size} bytes, more than the ${limit} a seed ever needs` };
  const handle = await open(file, 'r');
  try {
    return { text: (await handle.readFile()).toString('utf8') };
  } finally {
    await handle.close();
  }
}

/** Lists every entry under the seed root without following symlinks. */
async function walk(root: string): Promise<{ rel: string; type: 'file' | 'dir' | 'symlink' | 'other' }[]> {
  const out: { rel: string; type: 'file' | 'dir' | 'symlink' | 'other' }[] = [];
  const visit = async (relDir: string) => {
    const entries = await readdir(path.join(root, relDir), { withFileTypes: true });
    for (const entry of entries) {
      const rel = relDir ? `${relDir}/${entry.name}` : entry.name;
      if (!relDir && (ROOT_NOISE.has(entry.name) || entry.name.startsWith('.Trash-'))) continue;
      const type = entry.isDirectory() ? 'dir' : entry.isFile() ? 'file' : entry.isSymbolicLink() ? 'symlink' : 'other';
      out.push({ rel, type });
      if (type === 'dir') await visit(rel);
    }
  };
  await visit('');
  return out;
}

export async function verifySeed(options: VerifyOptions): Promise<VerifyReport> {
  const started = Date.now();
  const root = path.resolve(options.root);
  const problems: VerifyProblem[] = [];
  const findings: Finding[] = [];
  const allowed: Finding[] = [];
  const report = (): VerifyReport => ({
    root,
    ok: problems.length === 0 && findings.length === 0,
    complete: !problems.some((problem) => problem.kind === 'incomplete'),
    ...(manifest ? { manifest: { format: manifest.format, tool: manifest.tool, createdAt: manifest.createdAt, profile: manifest.profile, modelStore: manifest.modelStore, source: manifest.source, bundles: manifest.bundles, totals: manifest.totals } } : {}),
    files: checkedFiles,
    bytes: checkedBytes,
    durationMs: Date.now() - started,
    cacheBypass: bypasses.length > 0 && bypasses.every((b) => b !== 'cached') ? 'all' : bypasses.some((b) => b !== 'cached') ? 'some' : 'none',
    problems,
    findings,
    allowed,
  });
  let manifest: Manifest | undefined;
  let checkedFiles = 0;
  let checkedBytes = 0;
  const bypasses: CacheBypass[] = [];

  const rootInfo = await lstat(root).catch(() => undefined);
  if (!rootInfo?.isDirectory()) {
    problems.push({ path: '.', kind: 'incomplete', message: `${root} is not a folder`, action: 'Pass the mount point of the seed partition, a device, or an image file.' });
    return report();
  }

  const manifestRead = await readSmallFile(path.join(root, MANIFEST_NAME), MAX_MANIFEST_BYTES);
  if (manifestRead.problem === 'missing') {
    problems.push({
      path: MANIFEST_NAME,
      kind: 'incomplete',
      message: 'The seed is incomplete: dubnium-seed.json is missing (an interrupted or failed build).',
      action: 'Run the same build again; it finishes the seed without rewriting complete files.',
    });
  } else if (manifestRead.problem) {
    problems.push({ path: MANIFEST_NAME, kind: 'manifest', message: `${MANIFEST_NAME} ${manifestRead.problem}`, action: 'Rebuild the seed.' });
  } else {
    const parsed = parseManifest(manifestRead.text!);
    manifest = parsed.manifest;
    for (const message of parsed.problems) problems.push({ path: MANIFEST_NAME, kind: 'manifest', message, action: 'Rebuild the seed; the manifest is damaged or was not written by this tool.' });
  }

  const checksumsRead = await readSmallFile(path.join(root, CHECKSUMS_NAME), MAX_MANIFEST_BYTES);
  const listed = new Map<string, string>();
  if (checksumsRead.problem) {
    if (manifest || manifestRead.problem !== 'missing') {
      problems.push({ path: CHECKSUMS_NAME, kind: 'checksums', message: `${CHECKSUMS_NAME} ${checksumsRead.problem}`, action: 'Rebuild the seed.' });
    }
  } else {
    const parsed = parseChecksums(checksumsRead.text!);
    for (const problem of parsed.problems) problems.push({ path: CHECKSUMS_NAME, kind: 'checksums', message: `${CHECKSUMS_NAME} line ${problem.line}: ${problem.message}`, action: 'Rebuild the seed; do not use this media.' });
    for (const entry of parsed.entries) listed.set(entry.path, entry.sha256);
    if (manifest) {
      const actual = createHash('sha256').update(checksumsRead.text!).digest('hex');
      if (actual !== manifest.checksums.sha256) {
        problems.push({ path: CHECKSUMS_NAME, kind: 'checksums', message: `${CHECKSUMS_NAME} does not match the digest the manifest records`, action: 'Rebuild the seed.', expected: manifest.checksums.sha256, actual });
      }
      const inManifest = new Map(manifest.files.map((file) => [file.path, file.sha256]));
      for (const [file, sha] of listed) {
        if (!inManifest.has(file)) problems.push({ path: file, kind: 'checksums', message: `${file} is in ${CHECKSUMS_NAME} but not in the manifest`, action: 'Rebuild the seed.' });
        else if (inManifest.get(file) !== sha) problems.push({ path: file, kind: 'checksums', message: `${CHECKSUMS_NAME} and the manifest disagree on ${file}`, action: 'Rebuild the seed.' });
      }
      for (const file of inManifest.keys()) {
        if (!listed.has(file)) problems.push({ path: file, kind: 'checksums', message: `${file} is in the manifest but not in ${CHECKSUMS_NAME}`, action: 'Rebuild the seed.' });
      }
    }
  }

  // What the media holds beyond what the manifest lists.
  const expected = new Map<string, { size: number; sha256: string }>();
  if (manifest) for (const file of manifest.files) expected.set(file.path, file);
  else for (const [file, sha256] of listed) expected.set(file, { size: -1, sha256 });
  const entries = await walk(root);
  const expectedDirs = new Set<string>();
  for (const file of expected.keys()) {
    const parts = file.split('/');
    for (let index = 1; index < parts.length; index += 1) expectedDirs.add(parts.slice(0, index).join('/'));
  }
  for (const entry of entries) {
    if (entry.rel === MANIFEST_NAME || entry.rel === CHECKSUMS_NAME || expected.has(entry.rel)) continue;
    if (entry.type === 'dir' && expectedDirs.has(entry.rel)) continue;
    const base = path.posix.basename(entry.rel);
    if (base.endsWith(PARTIAL_SUFFIX) || entry.rel === JOURNAL_NAME) {
      problems.push({ path: entry.rel, kind: 'partial', message: `${entry.rel} is left from an interrupted build`, action: 'Run the same build again to finish the seed.' });
    } else if (entry.type === 'dir') {
      if (!entries.some((other) => other.rel.startsWith(`${entry.rel}/`))) problems.push({ path: entry.rel, kind: 'unexpected', message: `${entry.rel}/ is an empty folder the manifest does not list`, action: 'Remove it, or rebuild the seed.' });
    } else {
      problems.push({
        path: entry.rel,
        kind: entry.type === 'file' ? 'unexpected' : 'not-regular',
        message: `${entry.rel} is on the media but not in the manifest${entry.type === 'symlink' ? ' (a symlink, not followed)' : entry.type === 'other' ? ' (not a regular file)' : ''}`,
        action: 'Remove it (something added after the build), or rebuild the seed.',
      });
    }
  }

  // Every listed file: regular, right size, right sha256, and clean.
  const total = [...expected.values()].reduce((sum, file) => sum + Math.max(file.size, 0), 0);
  let done = 0;
  const pool = new HashPool(options.scan ? { allowlist: options.scan.allowlist, operatorSecrets: options.scan.operatorSecrets } : undefined);
  try {
    await Promise.all(
      [...expected.entries()].map(async ([rel, want]) => {
        const full = path.join(root, rel);
        const info = await lstat(full).catch(() => undefined);
        if (!info) {
          problems.push({ path: rel, kind: 'missing', message: `${rel} is missing`, action: 'Rebuild the seed (rerunning the build restores it).' });
          return;
        }
        if (!info.isFile()) {
          problems.push({ path: rel, kind: 'not-regular', message: `${rel} is ${info.isSymbolicLink() ? 'a symlink' : 'not a regular file'}; seed files are always regular files and links are never followed`, action: 'Do not use this media; rebuild the seed.' });
          return;
        }
        if (want.size >= 0 && info.size !== want.size) {
          problems.push({ path: rel, kind: 'size', message: `${rel} is ${info.size} bytes, the manifest says ${want.size}`, action: 'Rebuild the seed; the file is truncated or was changed.', expected: String(want.size), actual: String(info.size) });
          return;
        }
        try {
          const outcome = await pool.run({ file: full, relPath: rel, bypassCache: options.bypassCache ?? true, scan: options.scan !== false }, (bytes) => {
            done += bytes;
            options.onProgress?.({ phase: 'verify', bytes: done, total, path: rel });
          });
          bypasses.push(outcome.bypass);
          checkedFiles += 1;
          checkedBytes += outcome.size;
          if (outcome.sha256 !== want.sha256) {
            problems.push({ path: rel, kind: 'corrupt', message: `${rel} does not match its checksum`, action: 'The media is damaged or the file was changed: rebuild the seed, and try another stick if it happens again.', expected: want.sha256, actual: outcome.sha256 });
          }
          for (const finding of outcome.findings) (finding.allowed ? allowed : findings).push(finding);
        } catch (error) {
          const code = (error as NodeJS.ErrnoException).code;
          problems.push({ path: rel, kind: 'unreadable', message: `${rel} could not be read (${code ?? (error as Error).message})`, action: code === 'EIO' ? 'The media has a read error: copy what you need and replace the stick.' : 'Check the media and rebuild the seed.' });
        }
      }),
    );
  } finally {
    await pool.close();
  }
  if (manifest) await checkPayloadStructure(root, manifest, problems);
  problems.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return report();
}

/** Beyond checksums: the source archive opens and is safe, and each bundle still validates. */
async function checkPayloadStructure(root: string, manifest: Manifest, problems: VerifyProblem[]): Promise<void> {
  const unusable = new Set(problems.map((problem) => problem.path));
  const sourceFile = manifest.source.file;
  if (!unusable.has(sourceFile)) {
    const check = await checkSourceArchive(path.join(root, sourceFile), manifest.source.topFolder);
    for (const issue of check.issues) {
      problems.push({
        path: sourceFile,
        kind: 'archive',
        message: `${sourceFile}${issue.entry ? `: entry ${JSON.stringify(issue.entry)}` : ''}: ${issue.message}`,
        action: 'Do not unpack this archive; rebuild the seed from the repository.',
      });
    }
  }
  for (const bundle of manifest.bundles) {
    if ([...unusable].some((file) => file.startsWith(`${bundle.dir}/`))) continue;
    try {
      await resolveModelBundle(path.join(root, bundle.dir), { name: bundle.name });
    } catch (error) {
      if (!(error instanceof UsageError)) throw error;
      problems.push({ path: bundle.dir, kind: 'bundle', message: `${bundle.dir} no longer validates: ${error.message}`, action: 'Rebuild the seed from a valid bundle.' });
    }
  }
}
