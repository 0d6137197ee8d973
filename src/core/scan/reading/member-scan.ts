/**
 * Decodes and scans members from their compressed parts (a WireJob and the buffer its stored bytes
 * lie in): on a member-pool worker for its batches, and on the walking thread itself for the jobs it
 * takes while the workers are behind (MemberPool.scanHere). Members are scanned one after another,
 * so one buffer holds the member being scanned; decoded fragments are kept for the next members.
 */
import { decompressBlock, decompressBlockInto } from '../decompress/block.js';
import { FileScanner, type FileResult, type ScanEnvironment } from '../file-scanner.js';
import { FormatError } from '../formats/types.js';
import { isNothing } from './file-task.js';
import { FRAGMENT_SLOTS, type WireJob } from './member-pool.js';
import { unscannedFinding } from './unscanned.js';

export class MemberScanner {
  /** Decoded fragments by key, oldest first: on a worker, the same sequence of uses as the pool's mirror. */
  private readonly fragments = new Map<string, Buffer | FormatError>();
  /** The member being scanned; grown as needed, reused for the next. */
  private scratch = Buffer.allocUnsafe(1024 * 1024);

  constructor(private readonly environment: ScanEnvironment) {}

  /** The decoded fragment `key`: held, or decoded from the stored bytes that came along. */
  private async fragment(job: WireJob, part: Extract<WireJob['parts'][number], { type: 'fragment' }>, bytes: Buffer): Promise<Buffer> {
    let held = this.fragments.get(part.key);
    if (held !== undefined) {
      // Used again: the most recent now (a worker is only sent a fragment it does not hold).
      this.fragments.delete(part.key);
    } else if (part.at === null) {
      throw new Error(`member scan thread: fragment ${part.key} was not sent`);
    } else {
      const stored = bytes.subarray(part.at, part.at + part.stored);
      try {
        // A decoded block is a buffer of its own already; stored bytes are copied out of the batch's.
        held = part.compressed ? await decompressBlock(job.compression, stored, job.maxBlock) : Buffer.from(stored);
      } catch (error) {
        held = error instanceof FormatError ? error : new FormatError('corrupt', (error as Error).message);
      }
      if (this.fragments.size >= FRAGMENT_SLOTS) this.fragments.delete(this.fragments.keys().next().value!);
    }
    this.fragments.set(part.key, held);
    if (held instanceof FormatError) throw new FormatError(held.reason, `squashfs: fragment ${part.key.split(':').pop()} does not decompress: ${held.message}`);
    if (part.offset + part.length > held.length) throw new FormatError('corrupt', `squashfs: a file's tail lies outside fragment ${part.key.split(':').pop()}`);
    return held.subarray(part.offset, part.offset + part.length);
  }

  /** Decodes one member into the this.scratch buffer and scans it; a part that does not decode is `unscanned`. */
  async scan(job: WireJob, bytes: Buffer): Promise<FileResult | string | null> {
    let size = 0;
    for (const part of job.parts) size += part.length;
    if (this.scratch.length < size) this.scratch = Buffer.allocUnsafe(Math.max(size, this.scratch.length * 2));
    let filled = 0;
    let broken: FormatError | undefined;
    // Every fragment part is looked at, even after a broken block: the cache must stay in step.
    for (const part of job.parts) {
      try {
        if (part.type === 'sparse') {
          if (!broken) this.scratch.fill(0, filled, filled + part.length);
        } else if (part.type === 'fragment') {
          const tail = await this.fragment(job, part, bytes);
          if (!broken) tail.copy(this.scratch, filled);
        } else if (!broken) {
          const stored = bytes.subarray(part.at, part.at + part.stored);
          // Decoded straight into the member's buffer (written only when the length is right).
          let length = stored.length;
          if (part.compressed) length = await decompressBlockInto(job.compression, stored, job.maxBlock, this.scratch, filled, part.length);
          else if (length === part.length) stored.copy(this.scratch, filled);
          if (length !== part.length) throw new FormatError('corrupt', `squashfs: a data block holds ${length} bytes where ${part.length} belong`);
        }
      } catch (error) {
        broken ??= error instanceof FormatError ? error : new FormatError('corrupt', (error as Error).message);
      }
      if (!broken) filled += part.length;
    }
    const scanner = new FileScanner({ ...this.environment, limits: { ...this.environment.limits, ...job.limits } }, job.target);
    const pending = scanner.scanOwned(this.scratch.subarray(0, filled));
    const result = pending instanceof Promise ? await pending : pending;
    if (broken) {
      // As the walker reports a member whose stream broke: what was read is scanned, the rest is unscanned.
      const message = broken.message.startsWith('squashfs:') ? broken.message : `squashfs: ${broken.message}`;
      result.findings.push(unscannedFinding(job.target, broken.reason, message));
    }
    if (result.unencrypted && result.findings.length === 0 && result.problems.length === 0 && result.sopsConfigs.length === 0 && result.gitAttributes === undefined && result.files === 1) {
      // Clean, with only the fingerprint a `.sops.yaml` among its siblings may ask for: sent as that.
      return result.unencrypted.fingerprint;
    }
    return isNothing(result) ? null : result;
  }
}
