/**
 * verifySeed: checks a seed folder (a mounted seed partition) against its manifest and SHA256SUMS:
 * every file's size and sha256, missing, corrupt, partial and unexpected files, and a leak scan of
 * every byte. Never writes to the media and never follows a symlink.
 */
import { constants } from 'node:fs';
import { lstat, open, readdir } from 'node:fs/promises';
import path from 'node:path';
import { CancelledError, UsageError } from '../errors.js';
import { plural } from '../util/format.js';
import { readFully } from '../util/read-fully.js';
import { checkSourceArchive } from './archive-safety.js';
import { checkCarriedInput } from './flake/verify-inputs.js';
import { HashPool, type HashOutcome } from './hash-pool.js';
import { resolveModelBundle } from './model-bundle.js';
import { CHECKSUMS_NAME, FORMAT_VERSION, JOURNAL_NAME, MANIFEST_NAME, PARTIAL_SUFFIX, SIGNATURE_NAME, parseChecksums, type Manifest } from './manifest.js';
import { checkSignature, MAX_SIGNATURE_BYTES, signatureProblem, type SignatureReport } from './sign.js';
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
  | 'bundle'
  | 'signature'
  | 'flake-input'
  | 'installer';

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
  /** Require a valid signature by this key (`SHA256:` fingerprint); without it the signer is reported, not checked. */
  signer?: string;
  onProgress?: ProgressHook;
  /** Aborting stops the reads at once (within one chunk) and rejects with CancelledError. */
  signal?: AbortSignal;
  /**
   * A hash pool to use (and leave open) instead of one of its own: a build's, whose workers read
   * its files back while it copied. Its gate must have been made with the same scan settings.
   */
  pool?: HashPool;
  /**
   * Files already read back from the media by `pool` (a build reads each one back once it is
   * flushed and renamed into place, while the next is copied): the outcome of that read (size,
   * sha256 and leak scan of the bytes the device returned, past the page cache) stands for this
   * verify's own read of the file.
   */
  readBack?: ReadonlyMap<string, Promise<HashOutcome>>;
}

export interface VerifyReport {
  root: string;
  ok: boolean;
  complete: boolean;
  manifest?: Pick<Manifest, 'format' | 'tool' | 'createdAt' | 'profile' | 'modelStore' | 'source' | 'bundles' | 'totals' | 'installer'>;
  files: number;
  bytes: number;
  durationMs: number;
  /**
   * Whether reads bypassed the page cache: all files, some, or none. Memory-backed filesystems
   * (tmpfs) always say none: their pages are the data.
   */
  cacheBypass: 'all' | 'some' | 'none';
  /** What was checked, in order, as short sentences for the report. */
  checked: string[];
  problems: VerifyProblem[];
  findings: Finding[];
  allowed: Finding[];
  /** Whether the manifest is signed, by which key, and whether that key was the one required. */
  signature?: SignatureReport;
}

/** Root entries a filesystem or desktop adds that are not the seed's business. */
const ROOT_NOISE = new Set(['lost+found', 'System Volume Information', '.Trashes', '.fseventsd', '.Spotlight-V100']);
/**
 * A manifest line is about 150 bytes per file, so 16 MiB is room for 100,000 files. Anything
 * larger is refused from its size alone, before a byte of it is read.
 */
const MAX_MANIFEST_BYTES = 16 * 1024 * 1024;

const errorCode = (error: unknown) => (error as NodeJS.ErrnoException | undefined)?.code;

/** Reads a small seed file without following a link and without trusting its size. */
async function readSmallFile(file: string, limit: number): Promise<{ text?: string; problem?: string }> {
  let stats;
  try {
    stats = await lstat(file);
  } catch (error) {
    const code = errorCode(error);
    return { problem: code === 'ENOENT' || code === 'ENOTDIR' ? 'missing' : `could not be read (${code ?? (error as Error).message})` };
  }
  if (!stats.isFile()) return { problem: stats.isSymbolicLink() ? 'is a symlink (never followed)' : 'is not a regular file' };
  if (stats.size > limit) return { problem: `is ${stats.size} bytes, more than the ${limit} a seed ever needs (refused unread)` };
  try {
    const handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      // Read at most limit + 1 bytes, whatever lstat said: the file may change under us.
      const buffer = Buffer.alloc(Math.min(limit + 1, Math.max(stats.size, 0) + 1));
      const length = await readFully(handle, buffer, 0);
      if (length > stats.size || length > limit) return { problem: `grew while it was read; refused` };
      return { text: buffer.subarray(0, length).toString('utf8') };
    } finally {
      await handle.close();
    }
  } catch (error) {
    return { problem: `could not be read (${errorCode(error) ?? (error as Error).message})` };
  }
}

type EntryType = 'file' | 'dir' | 'symlink' | 'other';

/** Lists every entry under the seed root without following symlinks; unreadable folders are reported. */
async function walk(root: string): Promise<{ entries: { rel: string; type: EntryType }[]; unreadable: { rel: string; code: string }[] }> {
  const entries: { rel: string; type: EntryType }[] = [];
  const unreadable: { rel: string; code: string }[] = [];
  const visit = async (relDir: string) => {
    let listing;
    try {
      listing = await readdir(path.join(root, relDir), { withFileTypes: true });
    } catch (error) {
      unreadable.push({ rel: relDir || '.', code: errorCode(error) ?? (error as Error).message });
      return;
    }
    for (const entry of listing) {
      const rel = relDir ? `${relDir}/${entry.name}` : entry.name;
      if (!relDir && (ROOT_NOISE.has(entry.name) || entry.name.startsWith('.Trash-'))) continue;
      const type = entry.isDirectory() ? 'dir' : entry.isFile() ? 'file' : entry.isSymbolicLink() ? 'symlink' : 'other';
      entries.push({ rel, type });
      if (type === 'dir') await visit(rel);
    }
  };
  await visit('');
  return { entries, unreadable };
}

/** Whether `rel` is `ancestor` or lies beneath it. */
const within = (rel: string, ancestor: string) => rel === ancestor || rel.startsWith(`${ancestor}/`);

/** Scanner findings that say "could not look inside", not "found a credential". */
const UNSCANNABLE_KINDS = new Set(['unscanned']);

const READ_ERROR_ACTION = 'The media has a read error: copy off what you need, rebuild the seed on another stick, and retire this one.';

/**
 * Verifies the seed folder `options.root` (a mounted seed partition): manifest, SHA256SUMS,
 * every file's size and sha256 read past the page cache, files the manifest does not list, the
 * source archive's entries, each bundle's validation, and (unless `scan` is false) a leak scan of
 * every byte. Problems are returned in the report, never thrown; never writes, never follows a link,
 * never reads outside the root.
 */
export async function verifySeed(options: VerifyOptions): Promise<VerifyReport> {
  const started = Date.now();
  const root = path.resolve(options.root);
  const problems: VerifyProblem[] = [];
  const findings: Finding[] = [];
  const allowed: Finding[] = [];
  const checked: string[] = [];
  const report = (): VerifyReport => ({
    root,
    ok: problems.length === 0 && findings.length === 0,
    complete: !problems.some((problem) => problem.kind === 'incomplete'),
    // A manifest with a credential in it is not summarized: the report would repeat the secret.
    ...(manifest && !findings.some((finding) => finding.path === MANIFEST_NAME)
      ? { manifest: { format: manifest.format, tool: manifest.tool, createdAt: manifest.createdAt, profile: manifest.profile, modelStore: manifest.modelStore, source: manifest.source, bundles: manifest.bundles, totals: manifest.totals, ...(manifest.installer ? { installer: manifest.installer } : {}) } }
      : {}),
    files: checkedFiles,
    bytes: checkedBytes,
    durationMs: Date.now() - started,
    cacheBypass: bypasses.length > 0 && bypasses.every((b) => b !== 'cached') ? 'all' : bypasses.some((b) => b !== 'cached') ? 'some' : 'none',
    checked,
    problems,
    findings,
    allowed,
    ...(signature ? { signature } : {}),
  });
  let manifest: Manifest | undefined;
  let signature: SignatureReport | undefined;
  let checkedFiles = 0;
  let checkedBytes = 0;
  const bypasses: CacheBypass[] = [];

  const rootInfo = await lstat(root).catch(() => undefined);
  if (!rootInfo?.isDirectory()) {
    problems.push({ path: '.', kind: 'incomplete', message: `${root} is not a folder`, action: 'Pass the mount point of the seed partition, a device, or an image file.' });
    return report();
  }

  // The hashing threads start now: their start-up and the leak rules they load overlap this thread
  // reading the manifest (and loading its schema) and walking the media.
  const pool = options.pool ?? new HashPool(options.scan ? { allowlist: options.scan.allowlist, operatorSecrets: options.scan.operatorSecrets } : undefined, undefined, options.signal);
  if (options.scan) pool.gate().catch(() => undefined);
  try {
    return await checkAll(pool);
  } finally {
    if (pool !== options.pool) await pool.close();
  }

  async function checkAll(pool: HashPool): Promise<VerifyReport> {
    const manifestRead = await readSmallFile(path.join(root, MANIFEST_NAME), MAX_MANIFEST_BYTES);
    if (manifestRead.problem === 'missing') {
      problems.push({
        path: MANIFEST_NAME,
        kind: 'incomplete',
        message: 'The seed is incomplete: dubnium-seed.json is missing (an interrupted or failed build).',
        action: 'Run the same build again; it finishes the seed without rewriting complete files.',
      });
    } else if (manifestRead.problem) {
      problems.push({ path: MANIFEST_NAME, kind: 'manifest', message: `${MANIFEST_NAME} ${manifestRead.problem}`, action: 'Do not use this media; rebuild the seed.' });
    } else {
      const text = manifestRead.text!;
      // Loaded here, after the hashing threads have started: zod is ~0.13 s of start-up.
      const { parseManifest } = await import('./manifest-schema.js');
      const parsed = parseManifest(text);
      for (const message of parsed.problems) {
        const newer = /has format (\d+);/.exec(message);
        problems.push({
          path: MANIFEST_NAME,
          kind: 'manifest',
          message,
          action: newer && Number(newer[1]) > FORMAT_VERSION ? 'Verify it with the newer dubnium-seed that wrote it, or rebuild the seed with this version.' : 'Do not use this media; rebuild the seed (the manifest is damaged or was not written by dubnium-seed).',
        });
      }
      // The builder writes JSON.stringify(manifest, null, 2) plus a newline, and selfSha256 covers
      // those bytes; a change the digest line cannot see (its own indent, say) shows here.
      if (parsed.manifest && !isCanonicalManifest(text)) {
        problems.push({ path: MANIFEST_NAME, kind: 'manifest', message: `${MANIFEST_NAME} was changed after it was written (its layout is not the one dubnium-seed writes)`, action: 'Do not use this media; rebuild the seed.' });
      } else {
        manifest = parsed.manifest;
      }
      if (manifest) checked.push(`manifest: format ${manifest.format}, schema and self-digest`);
    }

    const checksumsRead = await readSmallFile(path.join(root, CHECKSUMS_NAME), MAX_MANIFEST_BYTES);
    const listed = new Map<string, string>();
    if (checksumsRead.problem) {
      if (manifest || manifestRead.problem !== 'missing') {
        problems.push({ path: CHECKSUMS_NAME, kind: 'checksums', message: `${CHECKSUMS_NAME} ${checksumsRead.problem === 'missing' ? 'is missing' : checksumsRead.problem}`, action: 'Do not use this media; rebuild the seed.' });
      }
    } else {
      const parsed = parseChecksums(checksumsRead.text!);
      for (const problem of parsed.problems) {
        const escapes = problem.message.includes('leaves the seed root');
        problems.push({ path: CHECKSUMS_NAME, kind: 'checksums', message: `${CHECKSUMS_NAME} line ${problem.line}: ${problem.message}`, action: escapes ? 'Do not use this media: it names a file outside the seed (that file was not read). Rebuild the seed.' : 'Do not use this media; rebuild the seed.' });
      }
      for (const entry of parsed.entries) listed.set(entry.path, entry.sha256);
      if (manifest) {
        const actual = createHash('sha256').update(checksumsRead.text!).digest('hex');
        if (actual !== manifest.checksums.sha256) {
          problems.push({ path: CHECKSUMS_NAME, kind: 'checksums', message: `${CHECKSUMS_NAME} does not match the digest the manifest records (it was changed or damaged)`, action: 'Do not use this media; rebuild the seed.', expected: manifest.checksums.sha256, actual });
        }
        const inManifest = new Map(manifest.files.map((file) => [file.path, file.sha256]));
        for (const [file, sha] of listed) {
          if (!inManifest.has(file)) problems.push({ path: file, kind: 'checksums', message: `${file} is in ${CHECKSUMS_NAME} but not in the manifest`, action: 'Do not use this media; rebuild the seed.' });
          else if (inManifest.get(file) !== sha) problems.push({ path: file, kind: 'checksums', message: `${CHECKSUMS_NAME} and the manifest disagree on ${file}`, action: 'Do not use this media; rebuild the seed.' });
        }
        for (const file of inManifest.keys()) {
          if (!listed.has(file)) problems.push({ path: file, kind: 'checksums', message: `${file} is in the manifest but not in ${CHECKSUMS_NAME}`, action: 'Do not use this media; rebuild the seed.' });
        }
        checked.push(`${CHECKSUMS_NAME}: agrees with the manifest`);
      }
    }

    // What the media holds beyond what the manifest lists.
    const expected = new Map<string, { size: number; sha256: string }>();
    if (manifest) for (const file of manifest.files) expected.set(file.path, file);
    else for (const [file, sha256] of listed) expected.set(file, { size: -1, sha256 });
    const walked = await walk(root);
    const entries = walked.entries;
    const typeOf = new Map(entries.map((entry) => [entry.rel, entry.type]));
    for (const folder of walked.unreadable) {
      problems.push({ path: folder.rel, kind: 'unreadable', message: `the folder ${folder.rel} could not be listed (${folder.code})`, action: folder.code === 'EIO' ? READ_ERROR_ACTION : 'Check the media and rebuild the seed.' });
    }
    const expectedDirs = new Set<string>();
    for (const file of expected.keys()) {
      const parts = file.split('/');
      for (let index = 1; index < parts.length; index += 1) expectedDirs.add(parts.slice(0, index).join('/'));
    }
    for (const entry of entries) {
      if (entry.rel === MANIFEST_NAME || entry.rel === CHECKSUMS_NAME || expected.has(entry.rel)) continue;
      // The signature is the manifest's, not a payload file: checked below (and leak-scanned like any file).
      if (entry.rel === SIGNATURE_NAME && entry.type === 'file') continue;
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
          action: entry.type === 'file' ? 'Remove it (something added after the build), or rebuild the seed.' : 'Do not use this media; rebuild the seed.',
        });
      }
    }
    checked.push('no files beyond those the manifest lists');

    // Every listed file: regular, right size, right sha256, and clean. Only files the walk saw as
    // regular files are opened, so a symlinked folder on the way is never passed through.
    // Regular files the manifest does not list (added later, or left by an interrupted build) are
    // on the media too: the leak scan reads them, though there is no digest to compare.
    const unlistedFiles = options.scan === false ? [] : entries.filter((entry) => entry.type === 'file' && !expected.has(entry.rel) && entry.rel !== MANIFEST_NAME && entry.rel !== CHECKSUMS_NAME).map((entry) => entry.rel);
    const unlistedSize = new Map(await Promise.all(unlistedFiles.map(async (rel) => [rel, await lstat(path.join(root, rel)).then((info) => info.size, () => 0)] as const)));
    const unlistedBytes = [...unlistedSize.values()].reduce((sum, size) => sum + size, 0);
    const total = unlistedBytes + [...expected.values()].reduce((sum, file) => sum + Math.max(file.size, 0), 0);
    let done = 0;
    const readOne = async (rel: string, size: number | undefined) => {
      const progress = (bytes: number) => {
        done += bytes;
        options.onProgress?.({ phase: 'verify', bytes: done, total, path: rel });
      };
      const earlier = options.readBack?.get(rel);
      let outcome: HashOutcome;
      if (earlier) {
        outcome = await earlier;
        progress(outcome.size);
      } else {
        outcome = await pool.run({ file: path.join(root, rel), relPath: rel, bypassCache: options.bypassCache ?? true, scan: options.scan !== false, size }, progress);
      }
      bypasses.push(outcome.bypass);
      checkedFiles += 1;
      checkedBytes += outcome.size;
      return outcome;
    };
    const keepFindings = (found: Finding[], corrupt: boolean) => {
      for (const finding of found) {
        // A damaged archive cannot be unpacked for scanning; that is the corruption already
        // reported, not a credential. Real matches in a damaged file still count.
        if (corrupt && UNSCANNABLE_KINDS.has(finding.kind)) continue;
        (finding.allowed ? allowed : findings).push(finding);
      }
    };
    const readProblem = (rel: string, error: unknown): VerifyProblem => {
      // Cancelled is no problem of the media: it ends the verify (exit 130), with no report.
      if (error instanceof CancelledError) throw error;
      const code = errorCode(error);
      return {
        path: rel,
        kind: code === 'ELOOP' ? 'not-regular' : 'unreadable',
        message: code === 'ELOOP' ? `${rel} turned into a symlink while it was checked (not followed)` : `${rel} is unreadable: ${code === 'EIO' ? 'the media returned a read error (EIO)' : (code ?? (error as Error).message)}`,
        action: code === 'EIO' ? READ_ERROR_ACTION : 'Check the media and rebuild the seed.',
      };
    };
    try {
      // The manifest and SHA256SUMS are on the media too: a credential written into them leaks as
      // surely as one in a payload file. Their text, as read and parsed above, is scanned here (one
      // too large or unreadable is the problem already reported, and is not opened again).
      if (options.scan) {
        const gate = await pool.gate();
        for (const [rel, text] of [[MANIFEST_NAME, manifestRead.text], [CHECKSUMS_NAME, checksumsRead.text]] as const) {
          if (text === undefined) continue;
          const scanner = gate.open({ path: rel });
          scanner.update(Buffer.from(text, 'utf8'));
          keepFindings(await scanner.finish(), false);
        }
      }
      await Promise.all(
        unlistedFiles.map(async (rel) => {
          try {
            keepFindings((await readOne(rel, unlistedSize.get(rel))).findings, false);
          } catch (error) {
            problems.push(readProblem(rel, error));
          }
        }),
      );
      // Every file is looked at (lstat) before any is read, then all reads are queued at once: the
      // pool sees the whole list, and splits the last file between two threads only when it is alone.
      let unchecked = expected.size;
      let allChecked!: () => void;
      const checkedAll = new Promise<void>((resolve) => (allChecked = resolve));
      if (unchecked === 0) allChecked();
      await Promise.all(
        [...expected.entries()].map(async ([rel, want]) => {
          let waited = false;
          const waitForAll = () => {
            if (!waited) {
              waited = true;
              if (--unchecked === 0) allChecked();
            }
            return checkedAll;
          };
          try {
            await checkOne(rel, want, waitForAll);
          } finally {
            void waitForAll();
          }
        }),
      );
      async function checkOne(rel: string, want: { size: number; sha256: string }, waitForAll: () => Promise<void>): Promise<void> {
        const type = typeOf.get(rel);
        const parts = rel.split('/');
        const linkedFolder = parts.slice(0, -1).map((_, index) => parts.slice(0, index + 1).join('/')).find((folder) => typeOf.get(folder) !== undefined && typeOf.get(folder) !== 'dir');
        if (linkedFolder !== undefined) {
          problems.push({ path: rel, kind: 'not-regular', message: `${rel} lies under ${linkedFolder}, which is ${typeOf.get(linkedFolder) === 'symlink' ? 'a symlink (not followed)' : 'not a folder'}`, action: 'Do not use this media; rebuild the seed.' });
          return;
        }
        if (type === undefined) {
          if (!walked.unreadable.some((folder) => within(rel, folder.rel) || folder.rel === '.')) {
            problems.push({ path: rel, kind: 'missing', message: `${rel} is missing`, action: 'Rebuild the seed (rerunning the build restores it).' });
          }
          return;
        }
        if (type !== 'file') {
          problems.push({ path: rel, kind: 'not-regular', message: `${rel} is ${type === 'symlink' ? 'a symlink' : type === 'dir' ? 'a folder' : 'not a regular file'}; seed files are always regular files and links are never followed`, action: 'Do not use this media; rebuild the seed.' });
          return;
        }
        try {
          const info = await lstat(path.join(root, rel));
          if (!info.isFile()) {
            problems.push({ path: rel, kind: 'not-regular', message: `${rel} changed into something other than a regular file while it was checked`, action: 'Do not use this media; rebuild the seed.' });
            return;
          }
          const sizeWrong = want.size >= 0 && info.size !== want.size;
          if (sizeWrong) {
            problems.push({ path: rel, kind: 'size', message: `${rel} is ${info.size} bytes, the manifest says ${want.size}`, action: 'Rebuild the seed; the file is truncated or was changed.', expected: String(want.size), actual: String(info.size) });
          }
          // A file of the wrong size is still read through: its bytes must be leak-scanned.
          if (sizeWrong && options.scan === false) return;
          await waitForAll();
          const outcome = await readOne(rel, info.size);
          const corrupt = sizeWrong || outcome.sha256 !== want.sha256;
          if (corrupt && !sizeWrong) {
            problems.push({ path: rel, kind: 'corrupt', message: `${rel} does not match its checksum`, action: 'The media is damaged or the file was changed: rebuild the seed, and try another stick if it happens again.', expected: want.sha256, actual: outcome.sha256 });
          }
          keepFindings(outcome.findings, corrupt);
        } catch (error) {
          problems.push(readProblem(rel, error));
        }
      }
    } finally {
      // The threads are done with the files; what follows reads only the archive and the bundles.
      if (pool !== options.pool) await pool.close();
    }
    checked.push(`${checkedFiles} files: size and sha256${options.scan === false ? '' : ', and a leak scan of every byte'}`);
    if (options.signal?.aborted) throw new CancelledError();
    if (manifest) await checkPayloadStructure(root, manifest, typeOf, problems, checked);
    if (manifestRead.text !== undefined) signature = await checkSeedSignature(root, manifestRead.text, typeOf.get(SIGNATURE_NAME), options.signer, problems, checked);
    problems.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    return report();
  }
}

/**
 * The signature step: `dubnium-seed.json.sig`, when present, must be a valid signature of the
 * manifest; with `signer`, the seed must be signed, validly, by exactly that key. Unsigned seeds
 * without `signer` pass (the report says the signer was not checked).
 */
async function checkSeedSignature(root: string, manifestText: string, type: EntryType | undefined, signer: string | undefined, problems: VerifyProblem[], checked: string[]): Promise<SignatureReport> {
  let text: string | undefined;
  if (type !== undefined) {
    const read = type === 'file' ? await readSmallFile(path.join(root, SIGNATURE_NAME), MAX_SIGNATURE_BYTES) : { problem: 'is not a regular file' };
    // A symlink or non-file was already reported as such by the walk; anything unreadable is a bad signature.
    text = read.text ?? `unreadable: ${read.problem}`;
  }
  const report = await checkSignature(Buffer.from(manifestText, 'utf8'), text, signer);
  const line = signatureProblem(report);
  if (line) {
    problems.push({
      path: SIGNATURE_NAME,
      kind: 'signature',
      message: line,
      action: report.state === 'bad' || report.signerMatches === false
        ? 'Do not use this media: it was not signed by that key as it is now. Rebuild and sign the seed with build --sign, or check the --signer fingerprint.'
        : 'Rebuild the seed with build --sign KEY, or check the --signer fingerprint.',
    });
  }
  if (report.state === 'valid') checked.push(`${SIGNATURE_NAME}: a valid signature of the manifest${signer === undefined ? '' : report.signerMatches ? ', by the required signer' : ''}`);
  return report;
}

/** Whether `text` is byte for byte what `JSON.stringify(value, null, 2)` plus a newline gives. */
function isCanonicalManifest(text: string): boolean {
  try {
    return `${JSON.stringify(JSON.parse(text), null, 2)}\n` === text;
  } catch {
    return false;
  }
}

/** Beyond checksums: the source archive opens and is safe, and each bundle still validates. */
async function checkPayloadStructure(root: string, manifest: Manifest, typeOf: Map<string, EntryType>, problems: VerifyProblem[], checked: string[]): Promise<void> {
  // Anything with a problem is not opened again: it may be a link, unreadable, or hostile.
  const troubled = problems.map((problem) => problem.path);
  const blocked = (rel: string) => troubled.some((other) => within(rel, other) || within(other, rel));
  const sourceFile = manifest.source.file;
  if (!manifest.files.some((file) => file.path === sourceFile)) {
    problems.push({ path: MANIFEST_NAME, kind: 'manifest', message: `${MANIFEST_NAME}: source.file ${sourceFile} is not among the files it lists`, action: 'Do not use this media; rebuild the seed.' });
  } else if (!blocked(sourceFile) && typeOf.get(sourceFile) === 'file') {
    const check = await checkSourceArchive(path.join(root, sourceFile), manifest.source.topFolder);
    for (const issue of check.issues) {
      problems.push({
        path: sourceFile,
        kind: 'archive',
        message: `${sourceFile}${issue.entry ? `: entry ${JSON.stringify(issue.entry)}` : ''}: ${issue.message}`,
        action: 'Do not unpack this archive; rebuild the seed from the repository.',
      });
    }
    checked.push(`source archive: ${plural(check.entries, 'entry', 'entries')}, all inside ${manifest.source.topFolder}/`);
  }
  let bundlesChecked = 0;
  for (const bundle of manifest.bundles) {
    if (blocked(bundle.dir) || typeOf.get(bundle.dir) !== 'dir') continue;
    try {
      await resolveModelBundle(path.join(root, bundle.dir), { name: bundle.name });
      bundlesChecked += 1;
    } catch (error) {
      if (error instanceof UsageError) {
        problems.push({ path: bundle.dir, kind: 'bundle', message: `${bundle.dir} no longer validates: ${error.message}`, action: 'Rebuild the seed from a valid bundle.' });
      } else if (errorCode(error) !== undefined) {
        problems.push({ path: bundle.dir, kind: 'unreadable', message: `${bundle.dir} could not be read to validate it (${errorCode(error)})`, action: errorCode(error) === 'EIO' ? READ_ERROR_ACTION : 'Check the media and rebuild the seed.' });
      } else {
        throw error;
      }
    }
  }
  if (manifest.bundles.length > 0) checked.push(`model bundles: ${bundlesChecked} of ${manifest.bundles.length} validate (shard headers, index, config)`);
  await checkFlakeInputs(root, manifest, typeOf, blocked, problems, checked);
}

/** Carried flake inputs: listed files whose `source` tree, streamed through a NAR hasher, has the locked narHash. */
async function checkFlakeInputs(root: string, manifest: Manifest, typeOf: Map<string, EntryType>, blocked: (rel: string) => boolean, problems: VerifyProblem[], checked: string[]): Promise<void> {
  const carried = (manifest.flake?.inputs ?? []).filter((input) => input.class === 'carried');
  if (carried.length === 0) return;
  let proved = 0;
  for (const input of carried) {
    const action = 'Rebuild the seed; the carried input does not match flake.lock, so Nix would not use it.';
    if (!input.file || !input.narHash || !input.storePath || !input.sha256) {
      problems.push({ path: MANIFEST_NAME, kind: 'manifest', message: `${MANIFEST_NAME}: carried flake input ${input.name} lacks its file, narHash, store path or sha256`, action: 'Do not use this media; rebuild the seed.' });
      continue;
    }
    const listed = manifest.files.find((file) => file.path === input.file);
    if (!listed || listed.sha256 !== input.sha256) {
      problems.push({ path: input.file, kind: 'manifest', message: `${MANIFEST_NAME}: carried flake input ${input.name} names ${input.file}, which its file list ${listed ? 'records with another sha256' : 'does not have'}`, action: 'Do not use this media; rebuild the seed.' });
      continue;
    }
    if (blocked(input.file) || typeOf.get(input.file) !== 'file') continue;
    const issues = await checkCarriedInput(path.join(root, input.file), { narHash: input.narHash, storePath: input.storePath });
    for (const issue of issues) problems.push({ path: input.file, kind: 'flake-input', message: `${input.file} (flake input ${input.name}): ${issue}`, action });
    if (issues.length === 0) proved += 1;
  }
  checked.push(`flake inputs: ${proved} of ${carried.length} carried inputs have the locked NAR hash`);
}
