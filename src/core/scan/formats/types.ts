/**
 * The one interface every container format implements (the model of unblob's handlers and Go's
 * archive/tar `Reader.Next()`): a format recognizes its magic, then yields members (inner path, size,
 * bytes). It knows nothing about rules, findings, limits or recursion: the container walker
 * (`reading/`) recurses into members, counts depth and expanded bytes, and turns whatever a format
 * could not read into an `unscanned` finding. Adding a format is one file here plus its test.
 */
import type { BlockCompression } from '../decompress/block.js';

/** Random access to bytes: a file, a region of one (an ISO extent), or a spooled stream. */
export interface ByteSource {
  readonly size: number;
  /** Reads up to `length` bytes at `position`; fewer only at the end of the source. */
  read(position: number, length: number): Promise<Buffer>;
}

/** One member of a container: a regular file's bytes. Folders, devices and links are not members. */
export interface Member {
  /**
   * Path inside the container, posix separators, no leading `./`. Filesystems (ISO 9660, squashfs,
   * FAT, cpio) give absolute paths (`/nix/store/...-etc/etc/ssh/ssh_host_ed25519_key`); archives
   * give them as stored. A one-member container (a compressed stream) names it after the outer file
   * without its compression suffix, or `(xz)`-style when there is none to strip.
   */
  name: string;
  /** Size in bytes when the container says it (a compressed stream does not). */
  size?: number;
  /**
   * Random access to the member's bytes when the container stores them addressable and uncompressed
   * (an ISO 9660 extent, a FAT cluster chain, an uncompressed tar member of a file): a nested ISO or
   * squashfs is then read in place instead of being spooled to a temp file.
   */
  source?: ByteSource;
  /** The member's bytes, in order. Called at most once; must be consumed (or returned) before the next member. */
  stream(): AsyncIterable<Buffer>;
  /**
   * The member's still-compressed bytes as a job another thread can decode by itself (see
   * reading/member-pool.ts), offered only when the walker said it takes jobs (`FormatContext.jobsUpTo`);
   * the walker then scans it from the job, and `stream()` is not called.
   */
  job?: MemberJob;
  /**
   * False when the container knows no `.sops.yaml` among its members can govern this one (a
   * squashfs reads its directories first): the scanner then skips the content fingerprint that only
   * such a rule needs. Absent when unknown.
   */
  sopsGoverned?: false;
  /**
   * Bytes that are no file's (a filesystem's free space, where deleted files' bytes stay): every rule
   * reads them flat, as they lie, and they are never opened as a container (old bytes can start like
   * one and then break off, which is no container to report as unreadable).
   */
  raw?: true;
}

/**
 * A member's bytes as compressed blocks that need nothing from the container to be decoded: each
 * part in order, `length` bytes once decoded. A fragment (squashfs packs the tails of small files
 * into shared blocks) names its block by `key` so a thread can keep it decoded for the next member.
 */
export interface MemberJob {
  compression: BlockCompression;
  /** No part decodes to more than this. */
  maxBlock: number;
  parts: JobPart[];
}

export type JobPart =
  | { type: 'block'; stored: Buffer; compressed: boolean; length: number }
  | { type: 'sparse'; length: number }
  | { type: 'fragment'; key: string; stored: Buffer; compressed: boolean; offset: number; length: number };

/** The decompressors a walk shares among its containers (the member pool's threads). */
export interface BlockDecoder {
  decompress(kind: BlockCompression, input: Buffer, maxOutput: number): Promise<Buffer>;
}

/** Why bytes could not be scanned: the reason of an `unscanned` finding. */
export type UnscannedReason =
  | 'unknown-compression'
  | 'unsupported'
  | 'corrupt'
  | 'truncated'
  | 'limit'
  | 'encrypted'
  | 'read-error';

/**
 * Thrown by formats and decompressors when bytes cannot be read completely. The walker turns it into
 * an `unscanned` finding with this reason; any other error is reported as `corrupt`.
 */
export class FormatError extends Error {
  constructor(
    readonly reason: UnscannedReason,
    message: string,
  ) {
    super(message);
    this.name = 'FormatError';
  }
}

/** What a format may tell the walker besides its members. */
export interface FormatContext {
  /**
   * The container's own name (the basename of its path or inner path), for a one-member container
   * to name its member after (`keys.txt.xz` → `keys.txt`).
   */
  name?: string;
  /** Checked between members and blocks: an aborted signal must end `members()` promptly (throw signal.reason). */
  signal?: AbortSignal;
  /**
   * A member (or region) the format skipped because it cannot read it (an encrypted zip entry, a
   * compression it does not know, a block that fails to decompress) while the rest of the container
   * is still readable. `name` is the member's inner path (or undefined for the container itself).
   */
  unreadable(name: string | undefined, reason: UnscannedReason, message: string): void;
  /** A remark that is not a finding: a symlink that points outside the container, say. */
  problem(name: string, message: string): void;
  /**
   * Set when the walker scans members on other threads: a member of at most this many bytes may come
   * with a `job` (its compressed bytes), which the walker hands to a thread that decodes and scans it
   * (every job: a format need not make such a member streamable too).
   */
  jobsUpTo?: number;
  /** Block decompressors on the walker's threads, for a format to use instead of starting its own. */
  decoder?: BlockDecoder;
}

/** How much of a file `detect` is shown: ISO 9660's volume descriptors start at 32 KiB. */
export const HEAD_BYTES = 64 * 1024;

export interface FormatHandler {
  /** Short id used in messages and chains: 'tar', 'zip', 'iso9660', 'squashfs', 'cpio', 'fat', ... */
  readonly name: string;
  /**
   * 'random': `members` needs a ByteSource (the walker spools a stream to a temp file first).
   * 'stream': `members` reads the bytes once, in order (it is given an AsyncIterable).
   */
  readonly access: 'random' | 'stream';
  /**
   * A one-member wrapper (a compression): when its member is itself a container (`x.tar.xz`), that
   * container's members are named directly under the outer file (`x.tar.xz › etc/keys.txt`), as a
   * user thinks of it, not under the decompressed middle (`x.tar`). A plain member keeps its name.
   */
  readonly transparent?: boolean;
  /**
   * Walked only where its bytes can be read in place (a file the scan command opens, a member that
   * has a `source`), never spooled: a multi-GiB model shard (safetensors, GGUF) is not copied to a
   * temp file by the build's and verify's push-fed scanner, nor when it is a member of a tar. There
   * its bytes get the flat scan as any large file's (every rule on the first MiB, the sampled scan
   * after): found all the same, named by the file and offset rather than by the tensor.
   */
  readonly inPlaceOnly?: boolean;
  /**
   * Offers members as `MemberJob`s when the walker asks (`FormatContext.jobsUpTo`): their compressed
   * blocks, which another thread decodes and scans (squashfs, whose members are most of an image).
   */
  readonly offersJobs?: boolean;
  /** From the first bytes (HEAD_BYTES, fewer when the file is shorter) and the total size when known. Cheap and exact: never by name. */
  detect(head: Buffer, size: number | undefined): boolean;
  /** Yields the members in order. Throwing (FormatError or any error) means the container could not be read whole from there on. */
  members(input: ByteSource | AsyncIterable<Buffer>, context: FormatContext): AsyncIterable<Member>;
}
