/**
 * The leak gate: nothing secret ever lands on the installer media. `createLeakGate` gives the build a
 * per-file streaming scanner it feeds in the same pass as hashing; `scanPaths` scans folders, files and
 * archives for `dubnium-seed scan` and `verify`. See README "Leak gate" for what is found and why.
 */
import { blockDeviceSizeSync } from './formats/byte-source.js';
import { closeSync, lstatSync, openSync, readdirSync, readFileSync, readlinkSync, readSync, type Dirent } from 'node:fs';
import { createHash } from 'node:crypto';
import { availableParallelism, homedir } from 'node:os';
import path from 'node:path';
import { UsageError } from '../../errors.js';
import type { ContentScanner, Finding, LeakGate, ProgressHook, ScanTarget } from '../types.js';
import { nixpkgsCopyHint } from './public-sources.js';
import { FileScanner, unencryptedFinding, type FileResult, type Problem, type ScanEnvironment } from './file-scanner.js';
import { scanTasks, startHelpers, WORKER_MIN_FILES, type Helpers } from './reading/file-pool.js';
import type { FileTask } from './reading/file-task.js';
import { startReadAhead, stopReadAhead, type ReadAhead } from './reading/read-ahead.js';
import { mustBeEncrypted, parseSopsConfig, type SopsConfig } from './rules/sops.js';
import { gitAttributesOf, gitCryptPlaintextFinding, isGitAttributesFile, isGitCryptCiphertext, isGitCryptPath, isInGitDir } from './rules/git-crypt.js';
import type { DecryptionIdentity } from './rules/operator-secrets.js';
import type { SopsFileRef } from './rules/sops-values.js';
import type { ScanLimits } from './reading/container-walker.js';

export { fingerprint } from './rules/fingerprint.js';
export type { ScanLimits } from './reading/container-walker.js';

/** One allowlisted finding, by fingerprint, with the reason a human gave (like `.gitleaksignore`). */
export interface AllowEntry {
  fingerprint: string;
  reason: string;
}

export interface OperatorSecretsReport {
  /** False when loading was turned off (`--no-operator-secrets` or the profile's `scan.operatorSecrets: false`). */
  enabled: boolean;
  /** Human labels of what was loaded: 'SOPS_AGE_KEY_FILE (/path)', 'env HF_TOKEN', '7 values from 2 SOPS files' — never values. */
  loaded: string[];
  /** Informational, per file: SOPS files the loaded identities cannot decrypt (their values cannot be matched). */
  notes?: { path: string; message: string }[];
}

export interface LeakGateOptions {
  /** Findings with these fingerprints are reported as allowed (never silently dropped). */
  allowlist?: AllowEntry[];
  /** Load the operator's own secrets (identity files, token env vars) to match exactly. Default true. */
  operatorSecrets?: boolean;
  /** Environment to read token variables and SOPS_AGE_KEY_FILE from (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Home folder for ~/.ssh/id_* and ~/.config/sops/age/keys.txt (default os.homedir()). */
  home?: string;
  /** Prefix for /etc/ssh and /var/lib/sops-nix (default '/'); tests point it at a temp folder. */
  systemRoot?: string;
  /** Extra identity files to treat as operator secrets. */
  identityFiles?: string[];
  /** The `.sops.yaml` text that governs `ScanTarget.repoPath` matching (creation_rules). */
  sopsConfig?: string;
  /**
   * Files and folders whose SOPS files `createLeakGate` decrypts (with the identities loaded as
   * operator secrets) so that their values are matched exactly: the repository's files, carried
   * inputs. `scanPaths` finds them among the files it walks by itself.
   */
  sopsSources?: { path: string; label: string }[];
  /**
   * Bounds on what containers may expand to (profile `scan.limits`); each one not given keeps its
   * default (DEFAULT_LIMITS). Hitting one is an `unscanned` finding, never a silent pass.
   */
  limits?: Partial<ScanLimits>;
  /** Stops a gate's container walk (at `finish`) with CancelledError. */
  signal?: AbortSignal;
}

export interface Gate extends LeakGate {
  operatorSecrets: OperatorSecretsReport;
}

export interface ScanReport {
  /** Findings not allowed: any one of them fails the scan. */
  findings: Finding[];
  /** Findings that matched the allowlist; shown as allowed, never silently. */
  allowed: Finding[];
  /** Unreadable containers and files, symlinks leaving the root, special files. */
  problems: { path: string; inner?: string; message: string }[];
  files: number;
  bytes: number;
  operatorSecrets: OperatorSecretsReport;
}

export interface ScanOptions extends LeakGateOptions {
  onProgress?: ProgressHook;
  /** No longer used: each thread scans its files one after the other (small files are read synchronously). */
  concurrency?: number;
  /**
   * Threads that scan files, the main thread included. Default: one per core when a scan has
   * thousands of files, else 1. Results are the same, in the same order, whatever the count.
   */
  threads?: number;
  /** Threads that decode and scan the members of an image (squashfs); default one per core but one (at least one), 0 none. */
  memberThreads?: number;
  /** False walks a large container file (an image) on the main thread rather than on a thread of its own; same results. */
  walkThread?: boolean;
  /**
   * With one scanning thread, let a worker read small files ahead (see read-ahead.ts). Default: on
   * when the machine has more than one core and the scan has thousands of files.
   */
  readAhead?: boolean;
  /** Stops the scan between chunks with CancelledError (Ctrl-C). */
  signal?: AbortSignal;
}

async function buildEnvironment(options: LeakGateOptions): Promise<{ environment: ScanEnvironment; loaded: string[]; identities: DecryptionIdentity[] }> {
  let sopsConfig: SopsConfig | undefined;
  if (options.sopsConfig !== undefined) {
    try {
      sopsConfig = parseSopsConfig(options.sopsConfig);
    } catch (error) {
      throw new UsageError(`Cannot read the repository's .sops.yaml: ${(error as Error).message}. Fix its creation_rules (path_regex must be a valid regular expression).`);
    }
  }
  const allow = new Map<string, string>();
  for (const entry of options.allowlist ?? []) allow.set(entry.fingerprint, entry.reason);
  let loaded: string[] = [];
  let identities: DecryptionIdentity[] = [];
  let operatorSecrets: ScanEnvironment['operatorSecrets'] = [];
  if (options.operatorSecrets !== false) {
    // Loaded only when asked for (it brings node:fs/promises along).
    const { loadOperatorSecrets } = await import('./rules/operator-secrets.js');
    const result = await loadOperatorSecrets({
      env: options.env ?? process.env,
      home: options.home ?? homedir(),
      systemRoot: options.systemRoot ?? '/',
      identityFiles: options.identityFiles ?? [],
    });
    operatorSecrets = result.secrets;
    loaded = result.loaded;
    identities = result.identities;
  }
  const limits = options.limits ? Object.fromEntries(Object.entries(options.limits).filter(([, value]) => value !== undefined)) : undefined;
  return { environment: { operatorSecrets, allow, ...(sopsConfig ? { sopsConfig } : {}), ...(limits ? { limits } : {}) }, loaded, identities };
}

/**
 * Decrypts the SOPS files among `files` and adds their values to the environment's needles (a new
 * array: matchers are cached per array). Only called when an identity that may decrypt was loaded.
 */
async function addSopsValues(environment: ScanEnvironment, identities: DecryptionIdentity[], files: SopsFileRef[], loaded: string[]) {
  const { loadSopsValues } = await import('./rules/sops-values.js');
  const values = await loadSopsValues(files, identities);
  if (values.secrets.length > 0) environment.operatorSecrets = [...environment.operatorSecrets, ...values.secrets];
  if (values.summary) loaded.push(values.summary);
  return values;
}

/**
 * Creates the leak gate. `open(target)` returns a scanner fed chunk by chunk; `finish()` resolves that
 * file's findings, allowlisted ones carrying `allowed`. Holds no main-thread state: a worker thread can
 * create its own gate from the same (cloneable) options.
 */
export async function createLeakGate(options: LeakGateOptions = {}): Promise<Gate> {
  const { environment, loaded, identities } = await buildEnvironment(options);
  let notes: { path: string; message: string }[] = [];
  if (identities.length > 0 && options.sopsSources && options.sopsSources.length > 0) {
    const { sopsFilesUnder } = await import('./rules/sops-values.js');
    const values = await addSopsValues(environment, identities, sopsFilesUnder(options.sopsSources), loaded);
    // The gate has no problem list: a SOPS file that does not verify is told with the others.
    notes = [...values.problems, ...values.notes];
  }
  return {
    operatorSecrets: { enabled: options.operatorSecrets !== false, loaded, ...(notes.length > 0 ? { notes } : {}) },
    open(target: ScanTarget): ContentScanner {
      return new FileScanner(environment, target, options.signal);
    },
  };
}

/**
 * A walked file: the task a scan thread runs (full path, reported path, SOPS governance) and where it
 * came from. The full path is the prefix plus the reported path, built when it is needed: twenty
 * thousand strings fewer for the walk to allocate and the collector to copy.
 */
class WalkEntry implements FileTask {
  sopsGoverned = false;

  constructor(
    /** The scanned root and a separator (a file given directly: its folder and a separator). */
    private readonly prefix: string,
    readonly reported: string,
    readonly rootIndex: number,
    /** Known for a file given directly; a walked file's size is learned when it is opened (-1). */
    readonly size: number,
    private readonly direct: boolean,
  ) {}

  get full(): string {
    return this.prefix + this.reported;
  }

  /** Root-relative posix path, for `.sops.yaml` lookups; undefined for a file given directly. */
  get relative(): string | undefined {
    return this.direct ? undefined : this.reported;
  }
}

function isInside(root: string, candidate: string): boolean {
  const relative = path.relative(root, candidate);
  return relative === '' || (!relative.startsWith('..') && !path.isAbsolute(relative));
}

function walk(root: string, rootIndex: number, files: WalkEntry[], problems: Problem[], sopsDirs: Set<string>, onLarge: () => void): void {
  const pending = [''];
  const base = root.endsWith(path.sep) ? root : `${root}${path.sep}`;
  while (pending.length > 0) {
    const relativeDir = pending.pop()!;
    const dir = path.join(root, relativeDir);
    let entries: Dirent[];
    try {
      // Synchronous: a tree of hundreds of folders waits less on listings than on thread-pool round
      // trips. Listing order is kept: the report is sorted once at the end.
      entries = readdirSync(dir, { withFileTypes: true });
    } catch (error) {
      problems.push({ path: relativeDir || '.', message: `cannot list folder: ${(error as Error).message}` });
      continue;
    }
    for (const dirent of entries) {
      // The walk builds clean paths itself: path.join per file is measurable on 20,000 files.
      const relative = relativeDir ? `${relativeDir}/${dirent.name}` : dirent.name;
      // The folder entry's type comes without a stat per file; a file's size is read when it is opened.
      if (dirent.isSymbolicLink()) {
        const full = `${base}${relative}`;
        let link = '';
        try {
          link = readlinkSync(full);
        } catch {
          // gone since the listing: nothing left to follow or report
        }
        if (!isInside(root, path.resolve(path.dirname(full), link))) {
          problems.push({ path: relative, message: `symlink points outside the scanned folder (${link}); not followed` });
        }
      } else if (dirent.isDirectory()) {
        pending.push(relative);
      } else if (dirent.isFile()) {
        if (dirent.name === '.sops.yaml' || dirent.name === '.sops.yml') sopsDirs.add(`${rootIndex}:${relativeDir || '.'}`);
        if (files.push(new WalkEntry(base, relative, rootIndex, -1, false)) === WORKER_MIN_FILES) onLarge();
      } else {
        problems.push({ path: relative, message: 'not a regular file (device, socket or FIFO); not read' });
      }
    }
  }
}

/**
 * Scan threads for a large tree. Measured on 2 cores: a worker bought nothing (the main thread plus
 * V8's compiler and GC threads already fill both, and each worker boots and warms its own JIT), so
 * workers start only from 4 cores, one per core beyond the main thread's two.
 */
function defaultThreads(): number {
  const cores = availableParallelism();
  return cores >= 4 ? cores - 1 : 1;
}

/** Walks each root in turn: folders recursively, files given directly as they are. */
function walkRoots(paths: string[], roots: string[], files: WalkEntry[], problems: Problem[], sopsDirs: Set<string>, onLarge: () => void): void {
  for (const [index, root] of roots.entries()) {
    let stats;
    try {
      stats = lstatSync(root);
    } catch (error) {
      throw new UsageError(`Cannot scan ${paths[index]}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or folder' : (error as Error).message}.`);
    }
    if (stats.isSymbolicLink()) problems.push({ path: paths[index]!, message: 'is a symlink; not followed (scan its target instead)' });
    else if (stats.isDirectory()) walk(root, index, files, problems, sopsDirs, onLarge);
    else if (stats.isFile()) files.push(new WalkEntry(root.slice(0, root.length - path.basename(root).length), path.basename(root), index, stats.size, true));
    // A whole stick or one partition: read like an image file, everything on it walked (an ISO, the
    // partition table, FAT); a partition of a filesystem the walker does not open (ext4, exFAT) is
    // still streamed through the flat scan, which finds what the filesystem stores uncompressed.
    else if (stats.isBlockDevice()) files.push(new WalkEntry(root.slice(0, root.length - path.basename(root).length), path.basename(root), index, blockDeviceSizeSync(stats.rdev) ?? 0, true));
    else problems.push({ path: paths[index]!, message: 'not a regular file or folder; not read' });
  }
}

/**
 * Scans folders, files and archives. Paths in findings are relative to each scanned root (a file given
 * directly: its basename). Never skips a file for its name, extension, binary look, `.gitignore` or a
 * hidden or `.git` path; never follows a symlink.
 */
export async function scanPaths(paths: string[], options: ScanOptions = {}): Promise<ScanReport> {
  const { environment, loaded, identities } = await buildEnvironment(options);
  if (options.memberThreads !== undefined) environment.memberThreads = options.memberThreads;
  if (options.walkThread !== undefined) environment.walkThread = options.walkThread;
  const files: WalkEntry[] = [];
  const problems: Problem[] = [];
  const sopsDirs = new Set<string>();
  const roots = paths.map((item) => path.resolve(item));
  // A large tree gets worker threads, started as soon as the walk knows it is large: they boot while
  // it goes on. Ended by scanTasks, or below when the walk fails.
  let helpers: Helpers | undefined;
  let reader: ReadAhead | undefined;
  let started = false;
  // With an identity that may decrypt SOPS files, worker threads start after the pre-pass below:
  // they take the needles with them when they start.
  const deferHelpers = identities.length > 0;
  const onLarge = () => {
    if (started) return;
    started = true;
    const threads = options.threads ?? defaultThreads();
    if (threads > 1 && !deferHelpers) helpers = startHelpers(environment, threads);
    else if (threads <= 1 && (options.readAhead ?? availableParallelism() > 1)) reader = startReadAhead();
  };
  try {
    walkRoots(paths, roots, files, problems, sopsDirs, onLarge);
    if (files.length >= WORKER_MIN_FILES) onLarge(); // thousands of files given one by one
  } catch (error) {
    for (const { worker } of helpers?.workers ?? []) void worker.terminate();
    if (reader) stopReadAhead(reader);
    throw error;
  }

  let notes: Problem[] = [];
  if (deferHelpers) {
    // Pre-pass: the SOPS values must be needles before any file that may quote them is scanned.
    // Git's objects and packs are compressed: no SOPS text shows in their heads (the scan reads them whole).
    const candidates = files.filter((file) => !file.reported.startsWith('.git/') && !file.reported.includes('/.git/'));
    const values = await addSopsValues(environment, identities, candidates.map((file) => ({ full: file.full, label: file.reported })), loaded);
    problems.push(...values.problems);
    notes = values.notes;
    const threads = options.threads ?? defaultThreads();
    if (started && threads > 1) helpers = startHelpers(environment, threads);
  }

  // Sizes of walked files are learned when they are opened; the total is known only for files given directly.
  const total = files.every((file) => file.size >= 0) ? files.reduce((sum, file) => sum + file.size, 0) : 0;
  markSopsGoverned(files, sopsDirs, environment);
  const { results, bytes: done } = await scanTasks(
    files,
    environment,
    { total, ...(helpers ? { helpers } : {}), ...(reader ? { reader } : {}), ...(options.signal ? { signal: options.signal } : {}), ...(options.onProgress ? { onProgress: options.onProgress } : {}) },
  );
  const findings: Finding[] = [];

  let fileCount = 0;
  for (const result of results) {
    if (!result) continue;
    findings.push(...result.findings);
    problems.push(...result.problems);
    fileCount += result.files;
  }
  findings.push(...sopsRuleFindings(files, results, roots, environment, problems));
  findings.push(...gitCryptFindings(files, problems));

  for (const finding of findings) {
    const reason = environment.allow.get(finding.fingerprint);
    if (reason !== undefined) finding.allowed = { reason };
  }
  const order = (a: Finding, b: Finding) =>
    a.path.localeCompare(b.path) || (a.inner ?? '').localeCompare(b.inner ?? '') || (a.offset ?? 0) - (b.offset ?? 0) || a.rule.localeCompare(b.rule);
  const problemOrder = (a: Problem, b: Problem) => a.path.localeCompare(b.path) || (a.inner ?? '').localeCompare(b.inner ?? '') || a.message.localeCompare(b.message);
  return {
    findings: findings.filter((finding) => !finding.allowed).sort(order),
    allowed: findings.filter((finding) => finding.allowed).sort(order),
    problems: problems.sort(problemOrder),
    files: fileCount,
    bytes: done,
    operatorSecrets: { enabled: options.operatorSecrets !== false, loaded, ...(notes.length > 0 ? { notes } : {}) },
  };
}

/**
 * Files a `.gitattributes` of the scanned tree gives to git-crypt, and that are not git-crypt
 * ciphertext: a work tree left unlocked. Only those files are read again, their first bytes and, for
 * the fingerprint, their content.
 */
function gitCryptFindings(files: WalkEntry[], problems: Problem[]): Finding[] {
  const byRoot = new Map<number, WalkEntry[]>();
  for (const entry of files) {
    const relative = entry.relative;
    if (relative === undefined || (isInGitDir(relative) && !isGitAttributesFile(relative))) continue;
    let list = byRoot.get(entry.rootIndex);
    if (!list) byRoot.set(entry.rootIndex, (list = []));
    list.push(entry);
  }
  const out: Finding[] = [];
  for (const entries of byRoot.values()) {
    const texts: { path: string; text: string }[] = [];
    for (const entry of entries) {
      if (!isGitAttributesFile(entry.relative!)) continue;
      try {
        texts.push({ path: entry.relative!, text: readFileSync(entry.full, 'utf8') });
      } catch (error) {
        problems.push({ path: entry.reported, message: `cannot read .gitattributes: ${(error as Error).message}` });
      }
    }
    const attributes = gitAttributesOf(texts);
    if (attributes.length === 0) continue;
    for (const entry of entries) {
      if (!isGitCryptPath(attributes, entry.relative!)) continue;
      try {
        const content = fileDigest(entry.full);
        if (!content.gitCrypt) out.push(gitCryptPlaintextFinding(entry.reported, undefined, `sops-unencrypted-file:${content.sha256.slice(0, 16)}`));
      } catch (error) {
        problems.push({ path: entry.reported, message: `cannot read it to check that git-crypt encrypted it: ${(error as Error).message}` });
      }
    }
  }
  return out;
}

/** Whether a file begins as git-crypt ciphertext, and its SHA-256, read in 1 MiB pieces. */
function fileDigest(file: string): { gitCrypt: boolean; sha256: string } {
  const descriptor = openSync(file, 'r');
  try {
    const buffer = Buffer.allocUnsafe(1024 * 1024);
    const hash = createHash('sha256');
    let gitCrypt: boolean | undefined;
    for (;;) {
      const read = readSync(descriptor, buffer, 0, buffer.length, null);
      if (read === 0) break;
      gitCrypt ??= isGitCryptCiphertext(buffer.subarray(0, read));
      hash.update(buffer.subarray(0, read));
    }
    return { gitCrypt: gitCrypt ?? false, sha256: hash.digest('hex') };
  } finally {
    closeSync(descriptor);
  }
}

/**
 * Only a file with a `.sops.yaml` in its folder or above (or any walked file, when the scan was given
 * one) can be a "must be encrypted" finding; the others skip hashing their whole content for it.
 */
function markSopsGoverned(files: WalkEntry[], sopsDirs: Set<string>, environment: ScanEnvironment): void {
  for (const entry of files) {
    if (entry.relative === undefined) entry.sopsGoverned = false;
    else if (environment.sopsConfig || sopsDirs.size === 0) entry.sopsGoverned = environment.sopsConfig !== undefined;
    else {
      let dir = path.posix.dirname(entry.relative);
      let governed = sopsDirs.has(`${entry.rootIndex}:${dir}`);
      while (!governed && dir !== '.') {
        dir = path.posix.dirname(dir);
        governed = sopsDirs.has(`${entry.rootIndex}:${dir}`);
      }
      entry.sopsGoverned = governed;
    }
  }
}

/** Files a `.sops.yaml` (nearest ancestor in the scanned tree, else the one given) says must be encrypted, and are not. */
function sopsRuleFindings(files: WalkEntry[], results: (FileResult | undefined)[], roots: string[], environment: ScanEnvironment, problems: Problem[]): Finding[] {
  const configs = new Map<string, SopsConfig>(); // key: rootIndex + dir
  files.forEach((entry, index) => {
    const text = results[index]?.sopsConfigs[0]?.text;
    if (text === undefined || entry.relative === undefined) return;
    try {
      configs.set(`${entry.rootIndex}:${path.posix.dirname(entry.relative)}`, parseSopsConfig(text));
    } catch (error) {
      problems.push({ path: entry.reported, message: `cannot parse .sops.yaml: ${(error as Error).message}` });
    }
  });
  const out: Finding[] = [];
  files.forEach((entry, index) => {
    const unencrypted = results[index]?.unencrypted;
    if (!unencrypted || unencrypted.streamed || entry.relative === undefined) return;
    let dir = path.posix.dirname(entry.relative);
    for (;;) {
      const config = configs.get(`${entry.rootIndex}:${dir}`);
      if (config) {
        const repoPath = dir === '.' ? entry.relative : entry.relative.slice(dir.length + 1);
        if (mustBeEncrypted(config, repoPath)) out.push(unencryptedFinding(entry.reported, undefined, repoPath, unencrypted.fingerprint));
        return;
      }
      if (dir === '.') break;
      dir = path.posix.dirname(dir);
    }
    if (environment.sopsConfig && mustBeEncrypted(environment.sopsConfig, entry.relative)) {
      out.push(unencryptedFinding(entry.reported, undefined, entry.relative, unencrypted.fingerprint));
    }
  });
  void roots;
  return out;
}

function where(item: { path: string; inner?: string; chain?: string[]; line?: number; offset?: number }): string {
  const chain = item.chain ?? (item.inner ? [item.inner] : []);
  const location = [item.path, ...chain].join(' › ');
  if (item.line !== undefined) return `${location}:${item.line}`;
  if (item.offset !== undefined) return `${location} @${item.offset}`;
  return location;
}

/** Human report; never contains a secret value (only paths, kinds, fingerprints and notes). */
export function formatScanReport(report: ScanReport): string {
  const lines: string[] = [];
  const megabytes = (report.bytes / 1e6).toFixed(1);
  lines.push(`Scanned ${report.files} file${report.files === 1 ? '' : 's'} (${megabytes} MB).`);
  if (report.operatorSecrets.enabled === false) lines.push('Operator secrets: not loaded (turned off by --no-operator-secrets or the profile).');
  else lines.push(report.operatorSecrets.loaded.length > 0 ? `Operator secrets matched exactly: ${report.operatorSecrets.loaded.join(', ')}.` : 'Operator secrets matched exactly: none found to load.');
  for (const finding of report.findings) {
    lines.push(`FOUND    ${finding.kind} in ${where(finding)}  [${finding.fingerprint}]${finding.note ? `  ${finding.note}` : ''}`);
  }
  for (const finding of report.allowed) {
    lines.push(`ALLOWED  ${finding.kind} in ${where(finding)}  [${finding.fingerprint}]  reason: ${finding.allowed?.reason ?? ''}`);
  }
  for (const problem of report.problems) lines.push(`PROBLEM  ${where(problem)}: ${problem.message}`);
  for (const note of report.operatorSecrets.notes ?? []) lines.push(`NOTE     ${note.path}: ${note.message}`);
  if (report.findings.length === 0) {
    lines.push(`Clean: no credentials found${report.allowed.length > 0 ? ` (${report.allowed.length} allowed by the allowlist)` : ''}.`);
  } else {
    lines.push(
      `${report.findings.length} credential finding${report.findings.length === 1 ? '' : 's'}: remove them, or add a fingerprint with a reason to the profile's scan allowlist if one is a false positive.`,
    );
    const hint = nixpkgsCopyHint(report.findings);
    if (hint) lines.push(hint);
    const unscanned = report.findings.filter((finding) => finding.kind === 'unscanned').length;
    if (unscanned > 0) {
      lines.push(
        `${unscanned} of them ${unscanned === 1 ? 'is' : 'are'} content the scan could not read (unscanned): the gate fails closed. Fix or remove it, raise a limit in the profile's scan.limits, or allowlist its fingerprint with a reason.`,
      );
    }
  }
  return lines.join('\n');
}

/** SARIF 2.1.0 for code-scanning tools; allowed findings carry an external suppression. */
export function toSarif(report: ScanReport, toolVersion: string): object {
  const all = [...report.findings, ...report.allowed];
  const ruleIds = [...new Set(all.map((finding) => finding.rule))].sort();
  return {
    $schema: 'https://json.schemastore.org/sarif-2.1.0.json',
    version: '2.1.0',
    runs: [
      {
        tool: {
          driver: {
            name: 'dubnium-seed',
            version: toolVersion,
            rules: ruleIds.map((id) => ({ id, shortDescription: { text: `Credential: ${id}` } })),
          },
        },
        results: all.map((finding) => ({
          ruleId: finding.rule,
          ruleIndex: ruleIds.indexOf(finding.rule),
          level: 'error',
          message: { text: `${finding.kind} found${finding.note ? ` (${finding.note})` : ''}; fingerprint ${finding.fingerprint}` },
          locations: [
            {
              physicalLocation: {
                artifactLocation: { uri: finding.path.split(path.sep).join('/') },
                ...(finding.line !== undefined ? { region: { startLine: finding.line } } : finding.offset !== undefined ? { region: { byteOffset: finding.offset } } : {}),
              },
              ...(finding.inner ? { logicalLocations: [{ fullyQualifiedName: finding.inner, kind: 'member' }] } : {}),
            },
          ],
          partialFingerprints: { 'dubnium-seed/v1': finding.fingerprint },
          ...(finding.allowed ? { suppressions: [{ kind: 'external', justification: finding.allowed.reason }] } : {}),
          properties: { kind: finding.kind, ...(finding.inner ? { inner: finding.inner } : {}) },
        })),
      },
    ],
  };
}
