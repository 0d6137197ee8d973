/**
 * The container walker: the one place that opens containers. Given a file's or member's bytes (a
 * stream, and a ByteSource when they are addressable), it detects the format, runs its handler, scans
 * every member with the same FileScanner (every rule, SOPS checks, `.sops.yaml` governance among the
 * members) and recurses. It owns what formats know nothing of: nesting depth, the bytes expanded per
 * top-level file and their ratio to its size, spooling a stream to a private temp file when a
 * 'random' format needs one (a member that has a `source` is read in place), the abort signal, and
 * turning whatever could not be read into an `unscanned` finding. It fails closed: nothing it could
 * not read passes as clean.
 */
import { createReadStream } from 'node:fs';
import path from 'node:path';
import { CancelledError } from '../../../errors.js';
import { FileScanner, FULL_SCAN_LIMIT, unencryptedFinding, type FileResult, type FileTarget, type ScanEnvironment } from '../file-scanner.js';
import { decompressBlock } from '../decompress/block.js';
import { detectFormat, FormatError, HEAD_BYTES, type BlockDecoder, type ByteSource, type FormatContext, type FormatHandler, type UnscannedReason } from '../formats/index.js';
import { fingerprint, sha256Hex } from '../rules/fingerprint.js';
import { mustBeEncrypted, parseSopsConfig } from '../rules/sops.js';
import { gitAttributesOf, gitCryptPlaintextFinding, isGitCryptPath } from '../rules/git-crypt.js';
import { BufferSource, FileSource, Spool } from './byte-source.js';
import { chainOf, unscannedFinding } from './unscanned.js';
import { MemberPool } from './member-pool.js';

const GiB = 1024 ** 3;

/** Blocks decoded on the calling thread. */
const LOCAL_DECODER: BlockDecoder = { decompress: decompressBlock };

/** Bounds on what one top-level file may expand to. Hitting one is an `unscanned` finding (reason `limit`). */
export interface ScanLimits {
  /** Containers inside containers, the outermost counted as 1. */
  maxDepth: number;
  /** Bytes all containers of one top-level file may expand to, every level counted. */
  maxExpandedBytes: number;
  /** Expanded bytes per byte of the top-level file, checked once RATIO_FLOOR bytes were expanded. */
  maxRatio: number;
}

/**
 * Generous enough for real media: an installer ISO of some GiB whose squashfs expands ~3x, multi-GiB
 * model shards, a tar.zst of a Nix closure (~5-10x); far below what a zip bomb expands to.
 */
export const DEFAULT_LIMITS: ScanLimits = { maxDepth: 16, maxExpandedBytes: 256 * GiB, maxRatio: 1000 };
/** The ratio is judged only after this much output, so small files never trip it. */
export const RATIO_FLOOR = GiB;
/**
 * Streamed bytes are handed to the scanner in pieces of at least this (decompressors give 16-64 KiB,
 * squashfs 128 KiB). Under 1 MiB on purpose: a text piece becomes a string with the 64 KiB the window
 * before it keeps, and Node makes a string of 1,031,913 bytes or more outside the V8 heap, where it is
 * freed only when a collection gets to it; a smaller one is young-generation garbage that costs nothing.
 */
const SCAN_PIECE = 896 * 1024;
const READ_CHUNK = 4 * 1024 * 1024;

function describeBytes(bytes: number): string {
  return bytes >= GiB ? `${+(bytes / GiB).toFixed(1)} GiB` : `${+(bytes / 1024 ** 2).toFixed(1)} MiB`;
}

/**
 * Where the scan of one large top-level file is: `position` is the end of the last bytes read from the
 * file (the flat pass and every container read in place move it; a later pass starts over), `files`
 * the members scanned so far, every level counted, and `path` the chain of the last one.
 */
export interface WalkProgress {
  position: number;
  size: number;
  files: number;
  path?: string;
}

/** The state of one top-level file's walk. */
class Walk {
  expanded = 0;
  /** Members scanned so far, every level counted. */
  files = 0;
  /** See WalkProgress; set by scanLargeFile. */
  position = 0;
  onProgress: ((progress: WalkProgress) => void) | undefined;
  /** The limit finding, once a limit was hit: the walk then stops everywhere. */
  tripped: ReturnType<typeof unscannedFinding> | undefined;
  reported = false;
  readonly limits: ScanLimits;

  constructor(
    readonly environment: ScanEnvironment,
    readonly topSize: number,
    readonly signal: AbortSignal | undefined,
  ) {
    this.limits = { ...DEFAULT_LIMITS, ...environment.limits };
  }

  checkSignal(): void {
    if (this.signal?.aborted) throw new CancelledError('Scan cancelled.');
  }

  /** The top-level file was read up to `position`, or (`member` given) one more member was scanned. */
  progress(position: number | undefined, member?: FileTarget): void {
    if (position !== undefined) this.position = position;
    if (member) this.files += 1;
    if (!this.onProgress) return;
    const path = member ? [member.path, ...(chainOf(member) ?? [])].join(' › ') : undefined;
    this.onProgress({ position: this.position, size: this.topSize, files: this.files, ...(path ? { path } : {}) });
  }

  private trip(target: FileTarget, message: string): never {
    this.tripped = unscannedFinding(target, 'limit', message);
    throw new FormatError('limit', message);
  }

  /** Counts `bytes` more expanded for `target`; throws FormatError('limit') once a limit is passed. */
  add(bytes: number, target: FileTarget): void {
    if (this.tripped) throw new FormatError('limit', 'scan limit reached');
    this.expanded += bytes;
    const { maxExpandedBytes, maxRatio } = this.limits;
    if (this.expanded > maxExpandedBytes) {
      this.trip(target, `expands to more than ${describeBytes(maxExpandedBytes)} (scan.limits.maxExpandedBytes); raise it in the profile to scan further`);
    }
    if (this.expanded >= RATIO_FLOOR && this.expanded > maxRatio * Math.max(1, this.topSize)) {
      this.trip(
        target,
        `expands more than ${maxRatio} times its ${describeBytes(this.topSize)} (scan.limits.maxRatio; a compression bomb?); raise it in the profile to scan further`,
      );
    }
  }

  /** A member's bytes, counted against the limits, stopping on abort. */
  async *count(stream: AsyncIterable<Buffer>, target: FileTarget): AsyncGenerator<Buffer> {
    for await (const chunk of stream) {
      this.checkSignal();
      this.add(chunk.length, target);
      yield chunk;
    }
  }

  /** The threads members are scanned on: started with the first container that offers jobs (null: none to be had). */
  private pool: MemberPool | null | undefined;

  memberPool(): MemberPool | undefined {
    if (this.pool === undefined) this.pool = MemberPool.start(this.environment, this.environment.memberThreads) ?? null;
    return this.pool ?? undefined;
  }

  /** What is left of the limits for the containers inside a member at nesting `level`, scanned on another thread. */
  limitsLeft(level: number): Partial<ScanLimits> {
    return { maxDepth: this.limits.maxDepth - level, maxExpandedBytes: Math.max(0, this.limits.maxExpandedBytes - this.expanded), maxRatio: this.limits.maxRatio };
  }

  async close(): Promise<void> {
    const pool = this.pool;
    this.pool = null;
    await pool?.close();
  }

  /**
   * Containers already walked in this file, by content: an identical copy (a nested zip bomb is made
   * of them) is not unpacked again. Its findings are reported again under its own name, and what it
   * expanded to counts again against the limits: the bomb still ends at a limit, in seconds.
   */
  readonly seen = new Map<string, { owner: FileTarget; result: FileResult; expanded: number }>();
}

const MAX_SEEN = 4096;

/** `result` (of a container walked as `from`) as the identical container `to` would have given it. */
function relabel(result: FileResult, from: FileTarget, to: FileTarget, allow: ReadonlyMap<string, string>): FileResult {
  const fromChain = chainOf(from) ?? [];
  const toChain = chainOf(to) ?? [];
  const move = (inner: string | undefined): string | undefined => {
    // What lies below `from`, put below `to`.
    const rest = from.inner === undefined ? inner : inner === from.inner ? undefined : inner?.startsWith(`${from.inner}!`) ? inner.slice(from.inner.length + 1) : inner;
    return rest === undefined ? to.inner : joinInner(to.inner, rest);
  };
  const findings = result.findings.map((finding) => {
    const inner = move(finding.inner);
    const chain = finding.chain ? [...toChain, ...finding.chain.slice(fromChain.length)] : undefined;
    const moved: typeof finding = { ...finding, path: to.path, ...(inner !== undefined ? { inner } : {}), ...(chain ? { chain } : {}) };
    delete moved.allowed;
    if (finding.kind === 'unscanned') moved.fingerprint = fingerprint(finding.rule, `${to.path}\0${inner ?? ''}\0${finding.rule.slice('unscanned-'.length)}`);
    const reason = allow.get(moved.fingerprint);
    if (reason !== undefined) moved.allowed = { reason };
    return moved;
  });
  const problems = result.problems.map((problem) => {
    const inner = move(problem.inner);
    return { ...problem, path: to.path, ...(inner !== undefined ? { inner } : {}) };
  });
  return { findings, problems, sopsConfigs: [], files: result.files };
}

/** A held container: walked once per content, copies reuse the first walk (see Walk.seen). */
async function openHeld(walk: Walk, format: FormatHandler, content: Buffer, owner: FileTarget, level: number): Promise<FileResult> {
  if (level > walk.limits.maxDepth) return depthFinding(owner, format, walk.limits);
  const key = `${format.name}:${sha256Hex(content)}`;
  const seen = walk.seen.get(key);
  if (seen) {
    walk.add(seen.expanded, owner);
    return relabel(seen.result, seen.owner, owner, walk.environment.allow);
  }
  const before = walk.expanded;
  const result = await openContainer(walk, format, { buffer: content }, owner, level);
  if (!walk.tripped && walk.seen.size < MAX_SEEN) walk.seen.set(key, { owner, result: relabel(result, owner, owner, walk.environment.allow), expanded: walk.expanded - before });
  return result;
}

function joinInner(parent: string | undefined, name: string): string {
  return parent === undefined ? name : `${parent}!${name}`;
}

function child(target: FileTarget, name: string, size?: number): FileTarget {
  return { path: target.path, inner: joinInner(target.inner, name), chain: [...(chainOf(target) ?? []), name], ...(size !== undefined ? { size } : {}) };
}

function baseName(target: FileTarget): string {
  const full = (target.inner !== undefined ? (chainOf(target)?.at(-1) ?? target.inner) : target.path).replace(/\\/g, '/').replace(/\/+$/, '');
  return path.posix.basename(full);
}

function empty(): FileResult {
  return { findings: [], problems: [], sopsConfigs: [], files: 0 };
}

function reasonOf(error: unknown): { reason: UnscannedReason; message: string } {
  if (error instanceof FormatError) return { reason: error.reason, message: error.message };
  const code = (error as NodeJS.ErrnoException)?.code;
  const message = (error as Error)?.message ?? String(error);
  if (code && /^E[A-Z]+$/.test(code)) return { reason: 'read-error', message };
  return { reason: 'corrupt', message };
}

/** The first HEAD_BYTES of `parts`, for detection. */
function headOf(parts: Buffer[]): Buffer {
  if (parts.length === 0) return Buffer.alloc(0);
  if (parts.length === 1 || parts[0]!.length >= HEAD_BYTES) return parts[0]!;
  const take: Buffer[] = [];
  let length = 0;
  for (const part of parts) {
    take.push(part);
    length += part.length;
    if (length >= HEAD_BYTES) break;
  }
  return Buffer.concat(take, length);
}

async function* slices(bytes: Buffer): AsyncGenerator<Buffer> {
  for (let offset = 0; offset < bytes.length; offset += READ_CHUNK) yield bytes.subarray(offset, offset + READ_CHUNK);
}

async function* sourceStream(source: ByteSource): AsyncGenerator<Buffer> {
  for (let offset = 0; offset < source.size; ) {
    const bytes = await source.read(offset, Math.min(READ_CHUNK, source.size - offset));
    if (bytes.length === 0) throw new FormatError('truncated', `bytes end at ${offset}, before ${source.size}`);
    offset += bytes.length;
    yield bytes;
  }
}

/**
 * The piece a Feed gathers small chunks into for the scanner, reused: the scanner copies what it
 * keeps (`FileScanner.update`), and a large member's thousands of 128 KiB blocks would otherwise each
 * MiB be a new buffer (GBs on an image, freed only when the GC gets to them).
 */
let gatheredPiece: Buffer | undefined;

/**
 * One pass over streamed bytes that several consumers share: the flat scan (in pieces of SCAN_PIECE),
 * a spool when one is set, and a stream format's handler (`iterable`). What the handler leaves
 * unread, `drain` reads: every byte is scanned flat whatever the handler did.
 */
class Feed {
  private index = 0;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  spool: Spool | undefined;

  constructor(
    private readonly held: Buffer[],
    private readonly iterator: AsyncIterator<Buffer>,
    private readonly scanner: FileScanner,
  ) {}

  private flush(): void {
    if (this.pendingBytes === 0) return;
    if (this.pending.length === 1) this.scanner.update(this.pending[0]!);
    else {
      if (!gatheredPiece || gatheredPiece.length < this.pendingBytes) gatheredPiece = Buffer.allocUnsafe(Math.max(this.pendingBytes, 2 * SCAN_PIECE));
      let at = 0;
      for (const chunk of this.pending) at += chunk.copy(gatheredPiece, at);
      // Synchronous, and the scanner keeps copies: the piece is free again when it returns.
      this.scanner.update(gatheredPiece.subarray(0, at));
    }
    this.pending = [];
    this.pendingBytes = 0;
  }

  private async take(): Promise<Buffer | undefined> {
    let chunk: Buffer;
    if (this.index < this.held.length) {
      chunk = this.held[this.index]!;
      this.held[this.index++] = undefined as unknown as Buffer; // let it go once passed on
    } else {
      const next = await this.iterator.next();
      if (next.done) {
        this.flush();
        return undefined;
      }
      chunk = next.value;
    }
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    if (this.pendingBytes >= SCAN_PIECE) this.flush();
    if (this.spool) await this.spool.write(chunk);
    return chunk;
  }

  /** The bytes from where the feed is, for a handler; ending it early leaves the rest to `drain`. */
  iterable(): AsyncIterable<Buffer> {
    const next = async (): Promise<IteratorResult<Buffer>> => {
      const chunk = await this.take();
      return chunk ? { value: chunk, done: false } : { value: undefined, done: true };
    };
    const iterator: AsyncIterator<Buffer> = { next, return: async () => ({ value: undefined, done: true }) };
    return { [Symbol.asyncIterator]: () => iterator };
  }

  async drain(): Promise<void> {
    while (await this.take());
  }
}

type Input = { buffer: Buffer } | { stream: AsyncIterable<Buffer> } | { source: ByteSource };

/**
 * A member's result as a container keeps it until its end, for the merge and the `.sops.yaml` checks.
 * A clean file is not kept at all (only counted), and one whose only note is its content fingerprint
 * (most of an image's files, which a `.sops.yaml` among them might govern) as that string: an image's
 * tens of thousands of members would otherwise each hold a result, a name and a promise to the end.
 */
interface MemberResult {
  /** The member's place in the container: results from other threads come back out of order. */
  seq: number;
  name: string;
  result?: FileResult;
  fingerprint?: string;
  /** The fingerprint is a streamed file's (see FileResult.unencrypted): not for `.sops.yaml` rules. */
  streamed?: true;
}

/** Keeps what `result` (of member `seq`) needs to be kept; returns the files it counts when it is not kept. */
function keepMember(members: MemberResult[], seq: number, name: string, result: FileResult): number {
  if (result.files !== 1 || result.findings.length > 0 || result.problems.length > 0 || result.sopsConfigs.length > 0 || result.gitAttributes !== undefined) {
    members.push({ seq, name, result });
    return 0;
  }
  if (!result.unencrypted) return 1;
  members.push({ seq, name, fingerprint: result.unencrypted.fingerprint, ...(result.unencrypted.streamed ? { streamed: true as const } : {}) });
  return 0;
}

/**
 * Applies `.gitattributes` files found among a container's members: a member they give to git-crypt
 * that is not git-crypt ciphertext (nor SOPS or age ciphertext) is a finding. Paths are the members'
 * names, each file governing its own folder and below, as in the work tree the archive was made from.
 */
function applyMemberGitCrypt(members: MemberResult[], parent: FileTarget, out: FileResult): void {
  // Names as paths from the container's top (a filesystem's members are named from `/`).
  const relative = (name: string) => name.replace(/^\/+/, '');
  const files = members.flatMap((member) => (member.result?.gitAttributes !== undefined ? [{ path: relative(member.name), text: member.result.gitAttributes }] : []));
  const attributes = gitAttributesOf(files);
  if (attributes.length === 0) return;
  for (const member of members) {
    const fingerprint = member.fingerprint ?? member.result?.unencrypted?.fingerprint;
    if (fingerprint === undefined || !isGitCryptPath(attributes, relative(member.name))) continue;
    const finding = gitCryptPlaintextFinding(parent.path, joinInner(parent.inner, member.name), fingerprint);
    out.findings.push({ ...finding, chain: [...(chainOf(parent) ?? []), member.name] });
  }
}

/** Applies `.sops.yaml` files found among a container's members to the members they govern. */
function applyMemberSopsRules(members: MemberResult[], parent: FileTarget, out: FileResult): void {
  const configs = members.filter((member) => /(^|\/)\.sops\.ya?ml$/.test(member.name) && (member.result?.sopsConfigs.length ?? 0) > 0);
  for (const config of configs) {
    let parsed;
    try {
      parsed = parseSopsConfig(config.result!.sopsConfigs[0]!.text);
    } catch (error) {
      out.problems.push({ path: parent.path, inner: joinInner(parent.inner, config.name), message: `cannot parse .sops.yaml: ${(error as Error).message}` });
      continue;
    }
    const dir = path.posix.dirname(config.name);
    for (const member of members) {
      if (member.streamed || member.result?.unencrypted?.streamed) continue;
      const fingerprint = member.fingerprint ?? member.result?.unencrypted?.fingerprint;
      if (fingerprint === undefined) continue;
      const relative = dir === '.' ? member.name : member.name.startsWith(`${dir}/`) ? member.name.slice(dir.length + 1) : undefined;
      if (relative === undefined || !mustBeEncrypted(parsed, relative)) continue;
      const finding = unencryptedFinding(parent.path, joinInner(parent.inner, member.name), relative, fingerprint);
      out.findings.push({ ...finding, chain: [...(chainOf(parent) ?? []), member.name] });
    }
  }
}

/** A member a thread could not decode and scan (it stopped, or the scan ended): one file, unscanned. */
function notScanned(where: FileTarget, format: FormatHandler, error: unknown): FileResult {
  const result = empty();
  result.files = 1;
  result.findings.push(unscannedFinding(where, 'read-error', `${format.name}: the member was not scanned: ${(error as Error)?.message ?? String(error)}`));
  return result;
}

function depthFinding(target: FileTarget, format: FormatHandler, limits: ScanLimits): FileResult {
  const out = empty();
  out.findings.push(
    unscannedFinding(target, 'limit', `a ${format.name} container nested deeper than ${limits.maxDepth} levels (scan.limits.maxDepth); raise it in the profile to scan further`),
  );
  return out;
}

/** Opens a container at nesting `level` (the outermost is 1) and scans its members. Throws only on cancel. */
async function openContainer(walk: Walk, format: FormatHandler, input: Input, target: FileTarget, level: number): Promise<FileResult> {
  if (level > walk.limits.maxDepth) return depthFinding(target, format, walk.limits);
  const out = empty();
  const members: MemberResult[] = [];
  let seq = 0;
  /** Clean members, counted and not kept. */
  let cleanFiles = 0;
  /** Members on other threads whose results are not back yet, and who waits for the last. */
  let outstanding = 0;
  let allBack: (() => void) | undefined;
  const context: FormatContext = {
    ...(walk.signal ? { signal: walk.signal } : {}),
    name: baseName(target),
    unreadable: (name, reason, message) => out.findings.push(unscannedFinding(name === undefined ? target : child(target, name), reason, message)),
    problem: (name, message) => out.problems.push({ path: target.path, inner: joinInner(target.inner, name), message }),
  };
  const pool = format.offersJobs ? walk.memberPool() : undefined;
  if (pool) {
    context.jobsUpTo = FULL_SCAN_LIMIT;
    // The large members' blocks: on the workers when there are several; a lone worker is busy with
    // batches of members, and a block queued behind them would keep the main thread waiting.
    context.decoder = pool.threads > 1 ? pool : LOCAL_DECODER;
  }
  let handlerInput: ByteSource | AsyncIterable<Buffer>;
  if (format.access === 'random') handlerInput = 'source' in input ? input.source : 'buffer' in input ? new BufferSource(input.buffer) : undefined!;
  else handlerInput = 'stream' in input ? input.stream : 'buffer' in input ? slices(input.buffer) : sourceStream(input.source);
  let current: FileTarget | undefined;
  try {
    if (!handlerInput) throw new FormatError('unsupported', `${format.name} needs random access`);
    for await (const member of format.members(handlerInput, context)) {
      walk.checkSignal();
      current = child(target, member.name, member.size);
      // A `.sops.yaml` governs its fellow members only: a compressed stream's lone member has none.
      if (member.sopsGoverned === false || format.transparent) current.sopsGoverned = false;
      if (pool && member.job) {
        // Decoded and scanned on a worker; the results are gathered at the end of the container.
        const size = member.job.parts.reduce((sum, part) => sum + part.length, 0);
        walk.add(size, current);
        if (pool.wouldWait(size)) {
          // The workers are behind: this thread scans the member itself rather than wait for them.
          const where = current;
          const result = await pool.scanHere(where, member.job, walk.limitsLeft(level)).catch((error: unknown) => notScanned(where, format, error));
          cleanFiles += keepMember(members, seq++, member.name, result);
          walk.progress(undefined, current);
          current = undefined;
          continue;
        }
        await pool.reserve(size);
        const where = current;
        const place = seq++;
        const name = member.name;
        outstanding += 1;
        void pool
          .scan(where, member.job, walk.limitsLeft(level), size)
          .catch((error: unknown) => notScanned(where, format, error))
          .then((result) => {
            cleanFiles += keepMember(members, place, name, result);
            if (--outstanding === 0) allBack?.();
          });
        walk.progress(undefined, current);
        current = undefined;
        continue;
      }
      if (member.raw) {
        current.sopsGoverned = false;
        current.raw = true;
      }
      const result = await scanBytes(walk, current, member.size, walk.count(member.stream(), current), member.source, level, format.transparent ? target : current, member.raw, member.source !== undefined);
      cleanFiles += keepMember(members, seq++, member.name, result);
      if (!format.transparent) walk.progress(undefined, current);
      current = undefined;
      if (walk.tripped) break;
    }
  } catch (error) {
    walk.checkSignal();
    if (error instanceof CancelledError) throw error;
    if (!walk.tripped) {
      const { reason, message } = reasonOf(error);
      // A broken member of an archive is named; a broken compressed stream is the file itself.
      const where = current && !format.transparent ? current : target;
      out.findings.push(unscannedFinding(where, reason, message.startsWith(`${format.name}:`) ? message : `${format.name}: ${message}`));
    }
  }
  if (pool) {
    pool.flush();
    if (outstanding > 0) await new Promise<void>((resolve) => (allBack = resolve));
    members.sort((a, b) => a.seq - b.seq);
    walk.checkSignal();
  }
  if (walk.tripped && !walk.reported) {
    walk.reported = true;
    out.findings.push(walk.tripped);
  }
  out.files += cleanFiles;
  for (const { result } of members) {
    if (!result) {
      out.files += 1;
      continue;
    }
    out.findings.push(...result.findings);
    out.problems.push(...result.problems);
    out.files += result.files;
  }
  applyMemberSopsRules(members, target, out);
  applyMemberGitCrypt(members, target, out);
  return out;
}

/**
 * Scans bytes at nesting `level` (a top-level file is 0) and whatever containers they are: held whole
 * when small (every rule, SOPS checks), streamed when large. A stream format reads the stream as the
 * flat scan does; a random format reads `source` in place, or a spool of the stream.
 */
async function scanBytes(
  walk: Walk,
  target: FileTarget,
  size: number | undefined,
  chunks: AsyncIterable<Buffer>,
  source: ByteSource | undefined,
  level: number,
  /** Under whose name the members of a container in these bytes are reported (see FormatHandler.transparent). */
  owner: FileTarget = target,
  /** Flat only, never opened as a container (see Member.raw). */
  raw = false,
  /**
   * The bytes lie in place in a container whose own flat pass read them (a partition of a disk, an
   * ISO's squashfs, an image file on a partition: a member with a `source`).
   */
  covered = false,
): Promise<FileResult> {
  const scanner = new FileScanner(walk.environment, target);
  const iterator = chunks[Symbol.asyncIterator]();
  const held: Buffer[] = [];
  let heldBytes = 0;
  let ended = false;
  const want = size !== undefined && size > FULL_SCAN_LIMIT ? HEAD_BYTES : FULL_SCAN_LIMIT + 1;
  try {
    while (heldBytes < want) {
      const next = await iterator.next();
      if (next.done) {
        ended = true;
        break;
      }
      held.push(next.value);
      heldBytes += next.value.length;
    }
    if (ended && heldBytes <= FULL_SCAN_LIMIT) {
      const content = held.length === 1 ? held[0]! : Buffer.concat(held, heldBytes);
      held.length = 0;
      const result = scanner.scanFlat(content);
      const format = content.length >= 2 && !raw ? detectFormat(content, content.length) : undefined;
      const inner = format ? await openHeld(walk, format, content, owner, level + 1) : undefined;
      return scanner.finalize(result, inner);
    }
    let format = raw ? undefined : detectFormat(headOf(held), size);
    // A model shard inside a stream (a tar member) is not spooled: its bytes get the flat scan (see FormatHandler.inPlaceOnly).
    if (format?.inPlaceOnly && !source) format = undefined;
    let inner: FileResult | undefined;
    if (format && level + 1 > walk.limits.maxDepth) {
      inner = depthFinding(owner, format, walk.limits);
      format = undefined;
    }
    scanner.startStream();
    const feed = new Feed(held, iterator, scanner);
    if (!format) {
      await feed.drain();
    } else if (format.access === 'stream') {
      inner = await openContainer(walk, format, { stream: feed.iterable() }, owner, level + 1);
      if (!walk.tripped) await feed.drain();
    } else if (source) {
      // A large container read in place whose bytes its parent's flat pass already read: that pass
      // is the same sampled scan, so it is not run a second time over the same bytes (a disk's
      // partitions would otherwise be read twice, and their filesystems' files a third time).
      if (!(covered && size !== undefined && size > FULL_SCAN_LIMIT && !format.inPlaceOnly)) await feed.drain();
      inner = await openContainer(walk, format, { source }, owner, level + 1);
    } else {
      const spool = await Spool.create();
      try {
        feed.spool = spool;
        await feed.drain();
        inner = await openContainer(walk, format, { source: spool.source() }, owner, level + 1);
      } finally {
        await spool.remove();
      }
    }
    return scanner.finalize(scanner.endStream(), inner);
  } finally {
    await iterator.return?.();
  }
}

/**
 * The containers in a small file's bytes (held whole, already scanned flat by the caller): their
 * members' findings, problems and `unscanned` findings, not yet merged with the file's own.
 */
export async function walkHeld(environment: ScanEnvironment, target: FileTarget, content: Buffer, signal?: AbortSignal): Promise<FileResult | undefined> {
  const format = detectFormat(content, content.length);
  if (!format) return undefined;
  const walk = new Walk(environment, content.length, signal);
  try {
    return await openContainer(walk, format, { buffer: content }, target, 1);
  } finally {
    await walk.close();
  }
}

/** The containers in a spooled file (the build's large files), already scanned flat. */
export async function walkSpooled(environment: ScanEnvironment, target: FileTarget, file: string, signal?: AbortSignal): Promise<FileResult | undefined> {
  const source = await FileSource.open(file);
  try {
    const format = detectFormat(await source.read(0, HEAD_BYTES), source.size);
    if (!format) return undefined;
    const walk = new Walk(environment, source.size, signal);
    try {
      return await openContainer(walk, format, format.access === 'random' ? { source } : { stream: sourceStream(source) }, target, 1);
    } finally {
      await walk.close();
    }
  } finally {
    await source.close();
  }
}

async function* fileChunks(file: string, walk: Walk): AsyncGenerator<Buffer> {
  let position = 0;
  for await (const chunk of createReadStream(file, { highWaterMark: READ_CHUNK })) {
    walk.checkSignal();
    position += (chunk as Buffer).length;
    walk.progress(position);
    yield chunk as Buffer;
  }
}

/** The top-level file read in place by the containers in it, each read moving the walk's position. */
class TrackedSource implements ByteSource {
  constructor(
    private readonly inner: ByteSource,
    private readonly walk: Walk,
  ) {}

  get size(): number {
    return this.inner.size;
  }

  async read(position: number, length: number): Promise<Buffer> {
    const bytes = await this.inner.read(position, length);
    this.walk.progress(position + bytes.length);
    return bytes;
  }
}

/**
 * Scans a large file (over FULL_SCAN_LIMIT) completely: its bytes streamed through the flat scan and
 * every container inside it walked, in one read (a 'random' format reads the file again in place).
 * Read errors and whatever could not be unpacked are `unscanned` findings; only cancellation throws.
 * `onProgress` hears where the walk is in the file and how many members it scanned.
 */
export async function scanLargeFile(
  environment: ScanEnvironment,
  target: FileTarget,
  file: string,
  size: number,
  signal?: AbortSignal,
  /** Progress inside the file (an installer image takes minutes): its position and the members scanned. */
  onProgress?: (progress: WalkProgress) => void,
): Promise<FileResult> {
  const source = await FileSource.open(file);
  try {
    const walk = new Walk(environment, Math.max(size, source.size), signal);
    walk.onProgress = onProgress;
    const tracked = onProgress ? new TrackedSource(source, walk) : source;
    try {
      return await scanBytes(walk, { ...target, size: source.size }, source.size, fileChunks(file, walk), tracked, 0);
    } finally {
      await walk.close();
    }
  } finally {
    await source.close();
  }
}
