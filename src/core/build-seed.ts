/**
 * buildSeed: turns the operator's configuration working tree and local model bundles into a complete,
 * self-verifying seed folder. Plain async functions: no prompts, no printing, no exits.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, rmdir, stat, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pipeline } from 'node:stream/promises';
import { CancelledError, SecretsFoundError, UsageError } from '../errors.js';
import { formatBytes, plural } from '../util/format.js';
import { TOOL_VERSION } from '../version.js';
import { Journal } from './journal.js';
import {
  CHECKSUMS_NAME,
  DEFAULT_MODEL_STORE,
  FORMAT_VERSION,
  INSTALLER_NAME,
  JOURNAL_NAME,
  MANIFEST_NAME,
  PARTIAL_SUFFIX,
  SIGNATURE_NAME,
  renderChecksums,
  renderManifest,
  type Manifest,
  type ManifestFile,
  type ManifestInstaller,
} from './manifest.js';
import { resolveModelBundle, type ModelBundle } from './model-bundle.js';
import { HashPool, type HashOutcome } from './hash-pool.js';
import { readThrough } from './read-direct.js';
import { createLeakGate, type AllowEntry, type LeakGateOptions } from './scan/index.js';
import {
  copyPool,
  mediaWriteError,
  PRESCAN_LIMIT,
  readFileChunks,
  syncDirectory,
  writeAtomic,
  writeSeedFile,
  type ExpectedDigest,
  ScannerBlocked,
  type WrittenFile,
} from './seed-writer.js';
import { keyTypeName, resolveSigner, signSeed, type SeedSigner } from './sign.js';
import { estimateArchiveBytes, planSourceArchive, streamSourceArchive, type SourceArchiveOptions, type SourcePlan } from './source-archive.js';
import { checkFilesystemLimits, filesystemInfo, inspectTarget, onDisk, type FilesystemInfo, type TargetState } from './target.js';
import type { Finding, LeakGate, ProgressHook } from './types.js';
import { verifySeed, type VerifyReport } from './verify-seed.js';
import { flakeManifest, planFlakeInputsFor, type CarriedFile, type FlakeBuildOptions } from './flake/build-phase.js';
import { INPUTS_DIR, packCarriedInput, type FlakeInputsPlan } from './flake/carry.js';

/** A model bundle the user asked for: a bundle folder or a Hugging Face cache repository folder. */
export interface ModelRequest {
  path: string;
  /** Snapshot to use from a Hugging Face cache (ref name or commit hash); default `main`. */
  revision?: string;
  /** Folder name on the seed; default from the input. */
  name?: string;
}

export interface BuildOptions {
  /** Seed root: the mounted seed partition or any folder. Created when missing. */
  target: string;
  /** Profile name recorded in the manifest (null when built from flags alone). */
  profile: string | null;
  source: SourceArchiveOptions;
  models: ModelRequest[];
  /** Where seed-install.sh puts bundles on the installed host. */
  modelStore: string;
  /** Filesystem label to check against the filesystem's limit, when the caller formats the partition. */
  label?: string;
  /** Leak gate settings. */
  scan: { allowlist: AllowEntry[]; operatorSecrets: boolean; limits?: LeakGateOptions['limits'] };
  /** The installer image on the stick (a device build), recorded in the manifest before it is written (and signed). */
  installer?: ManifestInstaller;
  /** Read the whole seed back and verify it after writing. */
  verify: boolean;
  /**
   * Sign the manifest with this SSH key: a private key file, or a public key (file or
   * `type base64` line) whose private half ssh-agent holds. Resolved and checked by planBuild.
   */
  sign?: string;
  /** Private flake inputs: which to carry, local clones, the Nix store to look in (default: none named, `/`). */
  flakeInputs?: FlakeBuildOptions;
  onProgress?: ProgressHook;
  /** Step notifications for task lists and plain progress lines. */
  onStep?: (step: BuildStep, state: 'start' | 'done', detail?: string) => void;
  signal?: AbortSignal;
}

export type BuildStep = 'plan' | 'archive' | 'copy' | 'finalize' | 'sign' | 'verify';

/** Everything known before a byte is written: what the wizard shows and the free-space check uses. */
export interface BuildPlan {
  source: SourcePlan;
  bundles: ModelBundle[];
  target: string;
  targetState: TargetState;
  filesystem: FilesystemInfo;
  /** Payload bytes (archive size is an upper bound until packed). */
  payloadBytes: number;
  /** Bytes the filesystem must have free, block-rounded, minus what existing files free up. */
  neededBytes: number;
  warnings: string[];
  /** The key that signs the manifest (`sign`), checked usable without a prompt. */
  signer?: SeedSigner;
  /** The flake's locked inputs and where each carried one's bytes come from. */
  flake: FlakeInputsPlan;
}

export interface BuildResult {
  target: string;
  manifest: Manifest;
  /** Files written in this run, and files kept from an earlier (interrupted) run. */
  written: string[];
  reused: string[];
  removed: string[];
  bytesWritten: number;
  durationMs: number;
  findingsAllowed: Finding[];
  operatorSecretsLoaded: string[];
  verify?: VerifyReport;
  /** The signature written beside the manifest, when the build signed. */
  signature?: BuildSignature;
}

export interface BuildSignature {
  file: string;
  fingerprint: string;
  keyType: string;
  comment: string;
  via: SeedSigner['via'];
}

const INSTALLER_SOURCE = fileURLToPath(new URL('../assets/seed-install.sh', import.meta.url));
const MANIFEST_OVERHEAD = 1024 * 1024;

/** Validates inputs and the target and computes sizes. Writes nothing. */
export async function planBuild(options: BuildOptions): Promise<BuildPlan> {
  const warnings: string[] = [];
  // The key first: a passphrase prompt or a missing agent key is refused before any slow work.
  const signer = options.sign !== undefined ? await resolveSigner(options.sign) : undefined;
  // The repository (git subprocesses), the bundles and the target are looked at side by side, then
  // awaited in this order: a failure is reported as when they ran one after another.
  const target = path.resolve(options.target);
  const sourcePlanned = planSourceArchive(options.source);
  const bundlesResolved = options.models.map((request) => resolveModelBundle(path.resolve(request.path), { revision: request.revision, name: request.name }));
  const targetInspected = inspectTarget(target);
  for (const pending of [sourcePlanned, ...bundlesResolved, targetInspected]) pending.catch(() => undefined);
  const source = await sourcePlanned;
  const bundles: ModelBundle[] = [];
  for (const resolved of bundlesResolved) bundles.push(await resolved);
  const targetState = await targetInspected;
  if (source.dirty) warnings.push(`The repository has uncommitted changes (${source.changedPaths.length} paths); the archive holds the working tree as it is now.`);
  if (options.models.length === 0) warnings.push('No model bundles: the seed holds only the source archive.');

  const seen = new Map<string, string>();
  for (const bundle of bundles) {
    const other = seen.get(bundle.name);
    if (other) throw new UsageError(`Two model bundles would both be named ${bundle.name} (${other} and ${bundle.input}); give one another name in the profile (models[].name).`);
    seen.set(bundle.name, bundle.input);
  }

  const flake = await planFlakeInputsFor(source, options.flakeInputs);
  warnings.push(...flake.warnings);

  if (targetState.foreign.length > 0) {
    throw new UsageError(
      `Target ${target} holds files that are not part of a seed (${targetState.foreign.slice(0, 5).join(', ')}${targetState.foreign.length > 5 ? ', ...' : ''}); pass an empty folder or the seed partition's mount point.`,
    );
  }
  const filesystem = await filesystemInfo(await nearestExisting(target));

  const installerSize = (await stat(INSTALLER_SOURCE)).size;
  const archiveEstimate = estimateArchiveBytes(source);
  const files = [
    { path: `source/${source.fileName}`, size: archiveEstimate },
    { path: INSTALLER_NAME, size: installerSize },
    ...flake.carried.map((carried) => ({ path: `inputs/${carried.fileName}`, size: estimateInputBytes(carried.contentBytes) })),
    ...bundles.flatMap((bundle) => bundle.files.map((file) => ({ path: `models/${bundle.name}/${file.relPath}`, size: file.size }))),
  ];
  checkFilesystemLimits({ family: filesystem.family, files: files.slice(2 + flake.carried.length), label: options.label });

  const payloadBytes = files.reduce((sum, file) => sum + file.size, 0);
  let neededBytes = files.reduce((sum, file) => sum + onDisk(file.size, filesystem.blockSize), 0) + MANIFEST_OVERHEAD;
  if (targetState.exists) {
    // Existing seed files at the same paths are either kept or deleted before their replacement is written.
    for (const file of files) {
      const existing = await stat(path.join(target, file.path)).catch(() => undefined);
      if (existing?.isFile()) neededBytes -= onDisk(existing.size, filesystem.blockSize);
    }
  }
  if (neededBytes > filesystem.freeBytes) {
    throw new UsageError(
      `Not enough space on ${filesystem.mountPoint}: the seed needs ${formatBytes(neededBytes)}, has ${formatBytes(filesystem.freeBytes)} free. Use a larger partition or fewer model bundles.`,
    );
  }
  return { source, bundles, target, targetState, filesystem, payloadBytes, neededBytes, warnings, flake, ...(signer ? { signer } : {}) };
}

/** Upper bound of a carried input's .tar.gz from its content bytes (headers and deflate overhead); 0 when unknown. */
function estimateInputBytes(contentBytes: number | undefined): number {
  if (contentBytes === undefined) return 0;
  return Math.ceil(contentBytes * 1.01) + 64 * 1024;
}

async function nearestExisting(target: string): Promise<string> {
  let current = target;
  for (;;) {
    try {
      await stat(current);
      return current;
    } catch {
      const parent = path.dirname(current);
      if (parent === current) return current;
      current = parent;
    }
  }
}

interface PayloadFile {
  relPath: string;
  size: number;
  /** The local file whose bytes are copied (read once per pass: check, then write). */
  source: string;
  /**
   * Read around the page cache (O_DIRECT): model files, large and usually not cached, whose
   * copy through the cache would cost as much CPU as hashing them. Not the archive and inputs
   * packed moments ago into the local temp folder, which are still cached.
   */
  direct?: boolean;
  expected?: ExpectedDigest;
}

/**
 * Builds the seed. The leak gate sees every byte before the manifest exists; on any finding the
 * files written in this run are removed, no manifest is written, and SecretsFoundError is thrown.
 */
export async function buildSeed(options: BuildOptions, givenPlan?: BuildPlan): Promise<BuildResult> {
  // Worker threads, started first so they are up by the time the copy begins: they hash the copy's
  // chunks (the main thread reads, scans and writes) and, with the read-back verify, read each file
  // back behind the copy. The main thread takes no files of its own until the verify.
  const workers = new HashPool(options.verify ? { allowlist: options.scan.allowlist, operatorSecrets: options.scan.operatorSecrets } : undefined, undefined, options.signal);
  workers.setCallerHashes(false);
  try {
    return await buildSeedWith(workers, options, givenPlan);
  } finally {
    await workers.close();
  }
}

async function buildSeedWith(workers: HashPool, options: BuildOptions, givenPlan?: BuildPlan): Promise<BuildResult> {
  const started = Date.now();
  options.onStep?.('plan', 'start');
  const plan = givenPlan ?? (await planBuild(options));
  options.onStep?.('plan', 'done');
  const target = plan.target;
  const sopsConfig = await readFile(path.join(plan.source.root, '.sops.yaml'), 'utf8').catch(() => undefined);
  // The repository's SOPS files are decrypted in memory first: their values are needles before the
  // archive that may quote them is packed and scanned.
  const sopsSources = plan.source.entries.filter((entry) => entry.type === 'file').map((entry) => ({ path: entry.absPath, label: entry.path }));
  const gate = await createLeakGate({
    allowlist: options.scan.allowlist,
    operatorSecrets: options.scan.operatorSecrets,
    sopsConfig,
    sopsSources,
    ...(options.scan.limits ? { limits: options.scan.limits } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  });
  const allowed: Finding[] = [];
  const checkCancelled = () => {
    if (options.signal?.aborted) throw new CancelledError('Build cancelled: no manifest was written; run the same build again to finish the seed.');
  };

  // 1. The source archive is packed and scanned in a local temp folder first: a repository
  //    secret never reaches the media, not even as a temporary file.
  options.onStep?.('archive', 'start', plan.source.fileName);
  const workDir = await mkdtemp(path.join(tmpdir(), 'dubnium-seed-'));
  // The manifest's schema (zod, ~0.13 s of this thread's time to load) is needed at the end: it is
  // loaded once the copy has 32 MiB on the way, when the writes already queued keep a slow stick
  // busy through it, rather than before the first byte or after the last one.
  let manifestSchema: Promise<typeof import('./manifest-schema.js')> | undefined;
  const loadManifestSchema = () => {
    if (!manifestSchema) {
      manifestSchema = import('./manifest-schema.js');
      manifestSchema.catch(() => undefined);
    }
    return manifestSchema;
  };
  const written: string[] = [];
  const reused: string[] = [];
  let journal: Journal | undefined;
  try {
    const archivePath = path.join(workDir, plan.source.fileName);
    const archiveFindings = await packSourceArchive(plan.source, archivePath, gate, options);
    allowed.push(...archiveFindings.filter((finding) => finding.allowed));
    const blocking = archiveFindings.filter((finding) => !finding.allowed);
    if (blocking.length > 0) throw secretsError(blocking, 'the source archive');
    const archiveSize = (await stat(archivePath)).size;
    // Carried flake inputs are packed, proved and scanned in the same local temp folder.
    const carried = await carryFlakeInputs(plan, workDir, options, sopsSources);
    allowed.push(...carried.allowed);
    options.onStep?.('archive', 'done', `${plural(plan.source.entries.length, 'entry', 'entries')}, ${formatBytes(archiveSize)}${carried.files.length > 0 ? `; ${plural(carried.files.length, 'flake input')} carried` : ''}`);
    checkCancelled();

    // 2. From here the seed is incomplete: drop the manifest first, remembering what it vouched for.
    await mkdir(target, { recursive: true });
    const previous = await readPreviousManifest(target);
    // A signature vouches for one manifest only: it goes before that manifest does, signed or not.
    await unlink(path.join(target, SIGNATURE_NAME)).catch(() => undefined);
    await unlink(path.join(target, MANIFEST_NAME)).catch(() => undefined);
    await unlink(path.join(target, CHECKSUMS_NAME)).catch(() => undefined);
    await syncDirectory(target);
    journal = await Journal.open(target, previous?.files ?? []);

    const payload: PayloadFile[] = [
      { relPath: `source/${plan.source.fileName}`, size: archiveSize, source: archivePath },
      { relPath: INSTALLER_NAME, size: (await stat(INSTALLER_SOURCE)).size, source: INSTALLER_SOURCE },
      ...carried.files.map((file) => ({ relPath: file.relPath, size: file.size, source: file.localPath })),
      // Small files first: a leak in a config or tokenizer file stops the build before the big copies.
      ...plan.bundles
        .flatMap((bundle) =>
          bundle.files.map((file) => ({
            relPath: `models/${bundle.name}/${file.relPath}`,
            size: file.size,
            source: file.sourcePath,
            direct: true,
            expected: file.expected,
          })),
        )
        // Code-unit order: localeCompare would load ICU's collator first (~35 ms before the first byte).
        .sort((a, b) => a.size - b.size || (a.relPath < b.relPath ? -1 : a.relPath > b.relPath ? 1 : 0)),
    ];
    const total = payload.reduce((sum, file) => sum + file.size, 0);
    let done = 0;
    let readBackDone = 0;
    const report = (file: string) => (bytes: number) => {
      done += bytes;
      if (done >= 32 * 1024 * 1024) void loadManifestSchema();
      // The read-back verify reads every byte again (what it has not yet): the copy's ETA includes it.
      options.onProgress?.({ phase: 'copy', bytes: done, total, path: file, ...(options.verify ? { following: Math.max(0, total - readBackDone) } : {}) });
    };
    // With the read-back verify, each file is read back from the media (past the page cache,
    // hashed and leak-scanned, as verify does) on a worker thread while the copy goes on: a large
    // file chunk by chunk behind its own copy, as its O_DIRECT writes reach the device (the rest
    // once it is flushed and renamed), a small one once it is flushed and renamed. The verify
    // then has only what is left. Without a worker (tests against src/), the verify reads it all.
    const readBackPool = options.verify ? workers : undefined;
    const readBack = new Map<string, Promise<HashOutcome>>();
    const countReadBack = (bytes: number) => {
      readBackDone += bytes;
    };
    const keepReadBack = (relPath: string, read: Promise<HashOutcome>) => {
      // Read by the verify below (a failure there is the verify's problem to report), never unhandled.
      read.catch(() => undefined);
      readBack.set(relPath, read);
    };
    const startReadBack = (entry: ManifestFile) => {
      if (readBackPool?.hasWorkers) keepReadBack(entry.path, readBackPool.run({ file: path.join(target, entry.path), relPath: entry.path, bypassCache: true, scan: true, size: entry.size }, countReadBack));
    };

    // 3. Copy: hash, scan and write in one pass; keep files an interrupted run already completed.
    options.onStep?.('copy', 'start', `${plural(payload.length, 'file')}, ${formatBytes(total)}`);
    const manifestFiles: ManifestFile[] = [];
    let bytesWritten = 0;
    // A file's flush runs while the next file is copied; at most two flushes wait at once.
    const flushing: Promise<void>[] = [];
    try {
      for (const file of payload) {
        checkCancelled();
        const destination = path.join(target, file.relPath);
        const candidate = await journal.candidate(target, file.relPath);
        if (candidate) {
          // Keep the file only if both the source and what is really on the media still match the
          // journal: a stick that lost or flipped bytes gets the file rewritten.
          const [check, onMedia] = await Promise.all([
            copyScanned(gate, file, destination, { dryRun: true, signal: options.signal }),
            hashOnMedia(destination),
          ]);
          if (check.sha256 === candidate.sha256 && check.size === candidate.size && onMedia === candidate.sha256) {
            allowed.push(...check.allowed);
            reused.push(file.relPath);
            report(file.relPath)(file.size);
            manifestFiles.push(candidate);
            continue;
          }
        }
        await unlink(destination).catch(() => undefined);
        const follower = file.size > PRESCAN_LIMIT ? readBackPool?.follow({ relPath: file.relPath, bypassCache: true, scan: true, size: file.size }, countReadBack) : undefined;
        if (follower) keepReadBack(file.relPath, follower.result);
        let result: Awaited<ReturnType<typeof copyScanned>>;
        try {
          result = await copyScanned(gate, file, destination, {
            hashers: workers,
            readingBack: options.verify,
            onBytes: report(file.relPath),
            signal: options.signal,
            ...(follower ? { onDevice: (partial: string, bytes: number) => follower.written(partial, bytes) } : {}),
          });
        } catch (error) {
          follower?.abort('the copy stopped');
          throw error;
        }
        allowed.push(...result.allowed);
        written.push(file.relPath);
        bytesWritten += result.size;
        const entry = { path: file.relPath, size: result.size, sha256: result.sha256 };
        manifestFiles.push(entry);
        const activeJournal = journal;
        // Recording the file in the journal is the last step of finishing it: its errors name it too.
        const flush = result
          .commit()
          .then(() => activeJournal.record(entry).catch((error: unknown) => Promise.reject(mediaWriteError(error, entry.path))))
          .then(
            () => (follower ? follower.final(destination, entry.size) : startReadBack(entry)),
            (error: unknown) => {
              follower?.abort('the flush failed');
              throw error;
            },
          );
        // A flush may fail (the stick failed) while the next file is copied: awaited below, never unhandled.
        flush.catch(() => undefined);
        flushing.push(flush);
        if (flushing.length >= 2) await flushing.shift();
      }
    } finally {
      const settled = await Promise.allSettled(flushing);
      const failed = settled.find((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected');
      if (failed) throw failed.reason;
    }
    options.onStep?.('copy', 'done', `${written.length} written, ${reused.length} kept`);

    // 4. Finalize: remove what no longer belongs, then SHA256SUMS and the manifest, atomically.
    options.onStep?.('finalize', 'start');
    checkCancelled();
    const keep = new Set(manifestFiles.map((file) => file.path));
    const removed = await removeStale(target, keep);
    // The folders' renames are flushed together: one journal commit on ext4 instead of one per folder
    // (each costs a round trip to a slow stick); all are durable before SHA256SUMS is written.
    await Promise.all([...new Set(manifestFiles.map((file) => path.dirname(path.join(target, file.path))))].map((dir) => syncDirectory(dir)));
    manifestFiles.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    const checksums = renderChecksums(manifestFiles);
    await writeAtomic(path.join(target, CHECKSUMS_NAME), checksums);
    const manifestText = renderManifest({ ...makeManifest(options, plan, manifestFiles, checksums), ...flakeManifest(plan.flake, carried.files, options.flakeInputs), ...(options.installer ? { installer: options.installer } : {}) });
    // The build checks its own manifest with the verifier's schema.
    const manifest = (await loadManifestSchema()).parseManifest(manifestText).manifest!;
    await writeAtomic(path.join(target, MANIFEST_NAME), manifestText);
    await journal.close();
    journal = undefined;
    await unlink(path.join(target, JOURNAL_NAME)).catch(() => undefined);
    await syncDirectory(target);
    options.onStep?.('finalize', 'done');
    const signature = plan.signer ? await signPhase(options, target, manifestText, plan.signer) : undefined;

    let verify: VerifyReport | undefined;
    if (options.verify) {
      options.onStep?.('verify', 'start');
      readBackPool?.setCallerHashes(true);
      verify = await verifySeed({
        root: target,
        scan: { allowlist: options.scan.allowlist, operatorSecrets: options.scan.operatorSecrets },
        onProgress: options.onProgress,
        signal: options.signal,
        ...(readBackPool ? { pool: readBackPool, readBack } : {}),
        ...(signature ? { signer: signature.fingerprint } : {}),
      });
      options.onStep?.('verify', 'done', verify.ok ? 'ok' : `${verify.problems.length} problems`);
    }
    return {
      target,
      manifest,
      written,
      reused,
      removed,
      bytesWritten,
      durationMs: Date.now() - started,
      findingsAllowed: allowed,
      operatorSecretsLoaded: [...gate.operatorSecrets.loaded, ...(gate.operatorSecrets.notes ?? []).map((note) => `${note.path}: ${note.message}`)],
      verify,
      ...(signature ? { signature } : {}),
    };
  } catch (caught) {
    await journal?.close().catch(() => undefined);
    const error = asMediaError(caught, target);
    if (error instanceof SecretsFoundError) {
      // Nothing of this run may stay on the media; the journal goes too, so no rerun trusts it.
      for (const file of written) await unlink(path.join(target, file)).catch(() => undefined);
      await removeStale(target, new Set(reused)).catch(() => undefined);
      await unlink(path.join(target, JOURNAL_NAME)).catch(() => undefined);
      // Empty folders this run made go too (rmdir leaves a folder that still holds anything).
      for (const dir of ['source', 'models', 'inputs']) await rmdir(path.join(target, dir)).catch(() => undefined);
      if (!plan.targetState.exists) await rmdir(target).catch(() => undefined);
    }
    throw error;
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

/**
 * 5. Sign: the final manifest's bytes, with the operator's key; the signature lands beside it,
 * atomically and flushed, after it. A failure here leaves a complete seed without a signature.
 */
async function signPhase(options: BuildOptions, target: string, manifestText: string, signer: SeedSigner): Promise<BuildSignature> {
  options.onStep?.('sign', 'start', signer.publicKey.fingerprint);
  try {
    const written = await signSeed(target, manifestText, signer);
    options.onStep?.('sign', 'done', written.fingerprint);
    return { file: written.file, fingerprint: written.fingerprint, keyType: keyTypeName(signer.publicKey.type), comment: signer.publicKey.comment, via: signer.via };
  } catch (error) {
    if (error instanceof UsageError) throw new UsageError(`The seed in ${target} is complete but NOT signed: ${error.message}`, error.details);
    throw error;
  }
}

/**
 * Carry inputs: packs every carried flake input into the local work folder, proving its bytes
 * against the lock's narHash and feeding every file to a leak gate that knows the input's own
 * `.sops.yaml`. A blocking finding throws SecretsFoundError before anything reaches the media.
 */
async function carryFlakeInputs(
  plan: BuildPlan,
  workDir: string,
  options: BuildOptions,
  repositorySopsSources: { path: string; label: string }[],
): Promise<{ files: CarriedFile[]; allowed: Finding[] }> {
  const files: CarriedFile[] = [];
  const allowed: Finding[] = [];
  if (plan.flake.carried.length === 0) return { files, allowed };
  await mkdir(path.join(workDir, INPUTS_DIR), { recursive: true });
  const total = plan.flake.carried.reduce((sum, carried) => sum + (carried.contentBytes ?? 0), 0);
  let packed = 0;
  for (const carried of plan.flake.carried) {
    if (options.signal?.aborted) throw new CancelledError('Build cancelled: no manifest was written; run the same build again to finish the seed.');
    const relPath = `${INPUTS_DIR}/${carried.fileName}`;
    const localPath = path.join(workDir, relPath);
    const result = await packCarriedInput(carried, localPath, {
      workDir,
      // The repository's SOPS values and the input's own are needles in the input's files.
      gate: (sopsConfig, root) =>
        createLeakGate({
          allowlist: options.scan.allowlist,
          operatorSecrets: options.scan.operatorSecrets,
          sopsConfig,
          sopsSources: [...repositorySopsSources, { path: root, label: `${INPUTS_DIR}/${carried.name}` }],
          ...(options.scan.limits ? { limits: options.scan.limits } : {}),
          ...(options.signal ? { signal: options.signal } : {}),
        }),
      onBytes: (bytes) => {
        packed += bytes;
        options.onProgress?.({ phase: 'archive', bytes: packed, total: Math.max(total, packed), path: relPath });
      },
    });
    const blocking = result.findings.filter((finding) => !finding.allowed);
    if (blocking.length > 0) throw secretsError(blocking, `flake input ${carried.name}`);
    allowed.push(...result.findings.filter((finding) => finding.allowed));
    files.push({ carried, relPath, localPath, size: result.size, sha256: result.sha256 });
  }
  return { files, allowed };
}

/**
 * An I/O error on the media outside a payload file (the journal, SHA256SUMS, the manifest, a
 * folder) becomes the same typed error as one inside it; errors naming a path off the media (the
 * local work folder) pass through.
 */
function asMediaError(error: unknown, target: string): unknown {
  const where = (error as NodeJS.ErrnoException | undefined)?.path;
  const relative = where === undefined ? undefined : path.relative(target, where);
  if (relative !== undefined && (relative.startsWith('..') || path.isAbsolute(relative))) return error;
  return mediaWriteError(error, relative || undefined);
}

function secretsError(findings: Finding[], where: string): SecretsFoundError {
  const first = findings[0]!;
  const location = (finding: Finding) => `${finding.path}${finding.inner ? ` (${finding.inner})` : ''}`;
  const error = new SecretsFoundError(
    `Credentials found in ${where}: ${first.kind} in ${location(first)}${findings.length > 1 ? ` and ${findings.length - 1} more` : ''}. Nothing was finalized on the media; remove the secret from the source (or allowlist its fingerprint in the profile with a reason) and build again.`,
    findings.map((finding) => `${finding.kind} (${finding.rule}) in ${location(finding)}${finding.line ? `:${finding.line}` : ''} fingerprint ${finding.fingerprint}${finding.note ? `: ${finding.note}` : ''}`),
  );
  (error as SecretsFoundError & { findings: Finding[] }).findings = findings;
  return error;
}

/** Packs the deterministic archive into `destination` (local disk), feeding each entry to the gate. */
async function packSourceArchive(plan: SourcePlan, destination: string, gate: LeakGate, options: BuildOptions): Promise<Finding[]> {
  const findings: Finding[] = [];
  const scanners = new Map<string, ReturnType<LeakGate['open']>>();
  let packed = 0;
  const stream = streamSourceArchive(plan, {
    onEntryStart: (entry) => {
      if (entry.type === 'file') {
        scanners.set(entry.path, gate.open({ path: `source/${plan.fileName}`, inner: `${plan.topFolder}/${entry.path}`, repoPath: entry.path, size: entry.size, ...(entry.gitCrypt ? { gitCrypt: true } : {}) }));
      }
    },
    onEntryChunk: (entry, chunk) => {
      scanners.get(entry.path)?.update(chunk);
      packed += chunk.length;
      options.onProgress?.({ phase: 'archive', bytes: packed, total: plan.contentBytes, path: entry.path });
    },
    onEntryEnd: async (entry) => {
      const scanner = scanners.get(entry.path);
      if (!scanner) return;
      scanners.delete(entry.path);
      findings.push(...(await scanner.finish()));
    },
  });
  await pipeline(stream as NodeJS.ReadableStream, createWriteStream(destination));
  // The archive as a whole is scanned too: the gate's container reader checks it opens cleanly.
  return findings;
}

async function copyScanned(
  gate: LeakGate,
  file: PayloadFile,
  destination: string,
  extra: { dryRun?: boolean; onBytes?: (bytes: number) => void; onDevice?: (partialPath: string, bytes: number) => void; signal?: AbortSignal; hashers?: HashPool; readingBack?: boolean },
): Promise<WrittenFile & { allowed: Finding[] }> {
  const scanner = gate.open({ path: file.relPath, size: file.size });
  // The source archive's entries were scanned (and their allowed findings reported) while it was
  // packed; this second scan of the whole archive only blocks, so an allowed finding is listed once.
  const reportAllowed = !file.relPath.startsWith('source/') && !file.relPath.startsWith('inputs/');
  const allowedOf = (findings: Finding[]) => (reportAllowed ? findings.filter((finding) => finding.allowed) : []);
  const common = { destination, displayPath: file.relPath, expected: file.expected, expectedSize: file.size, onBytes: extra.onBytes, signal: extra.signal };
  if (!extra.dryRun && file.size <= PRESCAN_LIMIT) {
    // Small files are read, hashed and scanned in memory; only clean bytes reach the media.
    const parts: Buffer[] = [];
    for await (const chunk of readFileChunks(file.source)) parts.push(chunk);
    const whole = Buffer.concat(parts);
    scanner.update(whole);
    const findings = await scanner.finish();
    const blocking = findings.filter((finding) => !finding.allowed);
    if (blocking.length > 0) throw secretsError(blocking, file.relPath);
    const written = await writeSeedFile({ ...common, chunks: once(whole) });
    return Object.assign(written, { allowed: allowedOf(findings) });
  }
  let written: WrittenFile;
  try {
    // The copy cycles through the process's few copy blocks: memory stays flat whatever the size.
    const pool = copyPool();
    const chunks = readFileChunks(file.source, { pool, direct: file.direct === true });
    // A worker hashes the chunks once it is up (a file begun before then is hashed here), unless
    // the only worker reads the copy back: the two sha256 passes then take a core each.
    const hashers = extra.hashers;
    const hasher = hashers?.ready && (!extra.readingBack || hashers.workerCount > 1) ? hashers.hasher() : undefined;
    written = await writeSeedFile({ ...common, chunks, pool, scanner, dryRun: extra.dryRun, ...(extra.onDevice ? { onDevice: extra.onDevice } : {}), ...(hasher ? { hasher } : {}) });
  } catch (error) {
    const findings = await scanner.finish().catch(() => [] as Finding[]);
    const blocking = findings.filter((finding) => !finding.allowed);
    // The scanner stopped the copy mid-file: the flagged chunk never reached the media.
    if (error instanceof ScannerBlocked && blocking.length > 0) throw secretsError(blocking, file.relPath);
    throw error;
  }
  const findings = await scanner.finish();
  const blocking = findings.filter((finding) => !finding.allowed);
  if (blocking.length > 0) {
    await written.discard();
    throw secretsError(blocking, file.relPath);
  }
  return Object.assign(written, { allowed: allowedOf(findings) });
}

async function hashOnMedia(file: string): Promise<string | undefined> {
  const hash = createHash('sha256');
  try {
    await readThrough(file, true, (chunk) => {
      hash.update(chunk);
    });
    return hash.digest('hex');
  } catch {
    return undefined;
  }
}

async function* once(buffer: Buffer): AsyncGenerator<Buffer> {
  yield buffer;
}

async function readPreviousManifest(target: string): Promise<Manifest | undefined> {
  const text = await readFile(path.join(target, MANIFEST_NAME), 'utf8').catch(() => undefined);
  return text === undefined ? undefined : (await import('./manifest-schema.js')).parseManifest(text).manifest;
}

/** Removes payload files and partial files under source/ and models/ that the new seed does not list. */
async function removeStale(target: string, keep: Set<string>): Promise<string[]> {
  const removed: string[] = [];
  const walk = async (relDir: string): Promise<void> => {
    const dir = path.join(target, relDir);
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      const rel = relDir ? `${relDir}/${entry.name}` : entry.name;
      if (entry.isDirectory()) {
        await walk(rel);
        await rmdir(path.join(target, rel)).catch(() => undefined);
      } else if (!keep.has(rel)) {
        await unlink(path.join(target, rel));
        removed.push(rel);
      }
    }
  };
  await walk('source');
  await walk('models');
  await walk('inputs');
  for (const name of await readdir(target).catch(() => [] as string[])) {
    if (name.startsWith('.') && name.endsWith(PARTIAL_SUFFIX)) {
      await unlink(path.join(target, name)).catch(() => undefined);
      removed.push(name);
    }
  }
  return removed;
}

function makeManifest(options: BuildOptions, plan: BuildPlan, files: ManifestFile[], checksums: string): Omit<Manifest, 'selfSha256'> {
  const { source } = plan;
  const sha256 = createSha256(checksums);
  return {
    format: FORMAT_VERSION,
    tool: { name: 'dubnium-seed', version: TOOL_VERSION },
    createdAt: new Date().toISOString(),
    profile: options.profile,
    modelStore: options.modelStore || DEFAULT_MODEL_STORE,
    source: {
      file: `source/${source.fileName}`,
      name: source.name,
      commit: source.commit,
      shortRev: source.shortRev,
      topFolder: source.topFolder,
      dirty: source.dirty,
      changedPaths: source.changedPaths,
      untrackedIncluded: source.untrackedIncluded,
      submodules: source.submodules,
      plainFolder: source.plainFolder,
      mtime: source.mtime,
      entries: source.entries.length,
    },
    bundles: plan.bundles.map((bundle) => ({
      name: bundle.name,
      dir: `models/${bundle.name}`,
      kind: bundle.kind,
      ...(bundle.repoId ? { repoId: bundle.repoId } : {}),
      ...(bundle.revision ? { revision: bundle.revision } : {}),
      files: bundle.files.length,
      bytes: bundle.totalBytes,
      shards: bundle.shards.length,
      tensors: bundle.tensors,
    })),
    files,
    checksums: { file: CHECKSUMS_NAME, sha256 },
    totals: { files: files.length, bytes: files.reduce((sum, file) => sum + file.size, 0) },
  };
}

function createSha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
