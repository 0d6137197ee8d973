/**
 * Types shared by the core and its front-ends. Core functions take fully resolved options
 * and report through hooks; they never prompt, print or exit.
 */

/** Steps of a build or verify, as shown by progress renderers. */
export type Phase = 'validate' | 'archive' | 'copy' | 'scan' | 'finalize' | 'verify';

/** Typed progress: `bytes` done of `total` within `phase`; `path` is the file being worked on. */
export interface Progress {
  phase: Phase;
  bytes: number;
  total: number;
  path?: string;
  /** Files scanned so far, members inside containers (an installer image's) included, when counted. */
  files?: number;
  /**
   * Bytes later phases of the same run will still process (the build's read-back verify while it
   * copies), so an ETA covers the whole run and "ETA 0 s" means done.
   */
  following?: number;
}

export type ProgressHook = (progress: Progress) => void;

/** A credential (or something that must not be on the media) found by the leak scanner. */
export interface Finding {
  /** The file, relative to the scanned root (for a build: relative to the seed root). */
  path: string;
  /** The path inside an archive (nested archives joined with `!`), when there is one. */
  inner?: string;
  /**
   * Each level's inner path, outermost first (`inner` is these joined with `!`): a tar inside a zip
   * inside an ISO is three entries. Present when `inner` is.
   */
  chain?: string[];
  /** What was found, e.g. `age-identity`, `openssh-private-key`, `github-token`. */
  kind: string;
  /** The rule id that matched. */
  rule: string;
  /** A stable fingerprint of the secret (never the secret itself). */
  fingerprint: string;
  line?: number;
  /** Byte offset within the (innermost) file. */
  offset?: number;
  /** Set when the profile's allowlist accepts this fingerprint. */
  allowed?: { reason: string };
  /** Optional human note (why it matched, e.g. "value is not ENC[...]" ). */
  note?: string;
}

/**
 * A streaming content scanner for one file. The build feeds it every chunk it writes, in the
 * same pass as hashing; `finish` returns what was found.
 */
export interface ContentScanner {
  update(chunk: Buffer): void;
  finish(): Promise<Finding[]>;
  /**
   * True once the bytes fed so far hold a finding that is not allowlisted. The writer asks after
   * every chunk and writes each chunk only after the next one was scanned, so a secret (even one
   * across a chunk boundary) is caught before its bytes reach the media.
   */
  blocked?(): boolean;
}

/** Where a file being scanned lives, for reporting and for SOPS creation_rules matching. */
export interface ScanTarget {
  /** Reported path (relative to the scanned root / seed root). */
  path: string;
  /** Path inside an archive, when the bytes are an archive member. */
  inner?: string;
  /** Each level's inner path (see Finding.chain); defaults to `[inner]`. */
  chain?: string[];
  /** Path relative to the repository root, matched against `.sops.yaml` creation_rules. */
  repoPath?: string;
  /** The file's size, when known (lets scanners pick a strategy). */
  size?: number;
  /** Its `.gitattributes` give it to git-crypt: unless it is git-crypt ciphertext, it is a finding. */
  gitCrypt?: boolean;
}

/** The leak gate the build runs every written byte through. */
export interface LeakGate {
  open(target: ScanTarget): ContentScanner;
}
