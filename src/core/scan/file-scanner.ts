/**
 * One file's flat scan: small files (≤ FULL_SCAN_LIMIT) are held whole and get every rule, SOPS
 * checks and UTF-16 decoding; larger files stream through the sampled raw scan (plus a full text scan
 * of their first MiB, where safetensors/GGUF metadata lives). Containers are the walker's
 * (reading/container-walker.ts, loaded when one is met): held bytes are handed to it, and the build's
 * push-fed large files are spooled to a private temp file and walked at `finish`.
 */
import path from 'node:path';
import type { ContentScanner, Finding } from '../types.js';
import { fingerprint } from './rules/fingerprint.js';
import { isPlainText, isQuietText as isQuietTextCore, SPECIAL_NAME_END } from './quiet-text.js';
import { looksLikeSecretValue, secretFileKind, soleLine } from './rules/named-secrets.js';
import { binaryKeyFile, textKeyFile } from './rules/key-files.js';
import { gitCryptPlaintextFinding, isGitAttributesFile, isGitCryptCiphertext } from './rules/git-crypt.js';
import { MAX_SECRET_SPAN, scanText, type OperatorSecret, type RawHit } from './rules/rules.js';
import { OVERLAP, RawStream } from './raw-stream.js';
import { analyzeSops, isAgeCiphertext, mayHoldSopsMetadata, mustBeEncrypted, sopsValueFingerprint, type SopsConfig } from './rules/sops.js';
import { entropy, isTemplateValue, looksLikePlaceholder, printableSegments, segmentOffset, TEXTY } from './rules/text-util.js';
import { detectContainer } from './formats/container-kind.js';
import { detectFormat } from './formats/index.js';
import { unopenedFilesystem, unopenedFilesystemMessage, unopenedReason } from './formats/filesystems.js';
import { unscannedFinding } from './reading/unscanned.js';
import { HEAD_BYTES } from './formats/types.js';
import { SyncSpool } from './reading/byte-source.js';
import type { ScanLimits } from './reading/container-walker.js';

/** Files up to this size are scanned whole with every rule. */
export const FULL_SCAN_LIMIT = 8 * 1024 * 1024;
const HEAD_SCAN = 1024 * 1024;

export interface Problem {
  path: string;
  inner?: string;
  message: string;
}

/** Shared, read-only state of a gate: what to match and what is allowed. */
export interface ScanEnvironment {
  operatorSecrets: OperatorSecret[];
  allow: ReadonlyMap<string, string>;
  sopsConfig?: SopsConfig;
  /** Bounds on container expansion (defaults: DEFAULT_LIMITS); plain data, it crosses to workers. */
  limits?: Partial<ScanLimits>;
  /**
   * Threads that decode and scan an image's members (see reading/member-pool.ts); default one per
   * core but one (at least one), 0 reads them on the walking thread. Results are the same whatever the count.
   */
  memberThreads?: number;
  /**
   * False keeps the walk of a large container file on the calling thread; by default it runs on a
   * thread of its own with a bounded young generation (see reading/walk-thread.ts). Same results.
   */
  walkThread?: boolean;
}

export interface FileTarget {
  path: string;
  inner?: string;
  /** Each level's inner path (`inner` is these joined with `!`); defaults to `[inner]`. */
  chain?: string[];
  repoPath?: string;
  size?: number;
  /**
   * False when no `.sops.yaml` can govern this file (none in its folders, none given to the gate):
   * then the SHA-256 of its content, only needed for an `unencrypted` finding, is not computed.
   */
  sopsGoverned?: boolean;
  /** Bytes that are no file's (see Member.raw): never taken for a filesystem the scan does not open. */
  raw?: true;
  /** Its `.gitattributes` give it to git-crypt: unless it is git-crypt ciphertext, it is a finding. */
  gitCrypt?: boolean;
}

/** Everything a file scan learned; `unencrypted` feeds `.sops.yaml` checks made after the walk. */
export interface FileResult {
  findings: Finding[];
  problems: Problem[];
  /**
   * Set when the file has no SOPS metadata and is neither age nor git-crypt ciphertext (a rule may
   * demand it). `streamed`: a file over FULL_SCAN_LIMIT, whose SOPS metadata was not looked for (only
   * git-crypt's rule applies) and whose fingerprint is that of its size and first bytes.
   */
  unencrypted?: { fingerprint: string; inner?: string; streamed?: true };
  /** Set when this file is itself a `.sops.yaml`: its text, for the walk that checks the files it governs. */
  sopsConfigs: { name: string; text: string }[];
  /** Set when this file is a `.gitattributes`: its text, for the walk that checks what git-crypt governs. */
  gitAttributes?: string;
  files: number;
}

// isAgeCiphertext's two headers, checked on the latin1 view a text file already has.
const AGE_BINARY = 'age-encryption.org/v1\n';
const AGE_ARMOR = '-----BEGIN AGE ENCRYPTED FILE-----';

/** A WireGuard key file's name: `privatekey` (as `wg genkey` is shown writing it), `private.key`, `wg0.key`, `*.privkey`; never a public one. */
const WIREGUARD_KEY_NAME = /^(?!.*pub)(?:.*priv(?:ate)?[._-]?key|wg[\w.-]*\.key|wireguard[\w.-]*key)$/i;
/** Nothing but 32 bytes of base64 (the last character before `=` carries only 4 bits). */
const WIREGUARD_KEY_FILE = /^\s*([A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=)\s*$/;

/** PostgreSQL's password file (`~/.pgpass`, `PGPASSFILE`): `host:port:database:user:password` lines. */
const PGPASS_NAME = /^\.?pgpass$/;
const PGPASS_LINE = /^((?:[^:\\\n]|\\.)*:){4}((?:[^:\\\n]|\\.)+)$/gm;
/**
 * iwd's network files (`/var/lib/iwd/<SSID>.psk`): the passphrase and the PSK derived from it, in
 * the `[Security]` section.
 */
const IWD_NAME = /\.psk$/;
const IWD_SECRET = /^(Passphrase|PreSharedKey)=(.+?)\s*$/gm;
/**
 * rclone's config: `pass`/`password`/`password2` hold the remote's password "obscured", that is
 * AES-CTR with a key every rclone binary carries (`rclone reveal` undoes it): base64url of a
 * 16-byte IV and the ciphertext.
 */
const RCLONE_NAME = /^rclone\.conf$/;
const RCLONE_PASSWORD = /^[ \t]*(pass|password2?)[ \t]*=[ \t]*([A-Za-z0-9_-]{22,})[ \t]*$/gm;
/**
 * npm's legacy credentials in `.npmrc`: `_auth` (base64 of `user:password`) and `_password` (base64
 * of the password), bare or scoped to a registry (`//registry.example/:_auth=…`).
 */
const NPMRC_NAME = /^\.?npmrc$/;
const NPMRC_AUTH = /^[ \t]*(?:\/\/[^\s=]*:)?(_auth|_password)[ \t]*=[ \t]*"?([A-Za-z0-9+/]{4,}={0,2})"?[ \t]*$/gm;
/**
 * Configs that keep a password in a form of their own, found under their own names or as the store
 * files home-manager and NixOS write them to (`/nix/store/<hash>-msmtprc`, `…-redis.conf`):
 * - Redis and Valkey (`redis.conf`, from `services.redis.servers.<name>.requirePass` and
 *   `settings`): `requirepass VALUE`, `masterauth VALUE`, and an ACL user's `>VALUE`; Sentinel's
 *   `sentinel auth-pass MASTER VALUE` (`sentinel.conf`);
 * - Postfix's `sasl_passwd` map and sSMTP's `AuthPass`;
 * the mail clients, when they are not given a command to fetch one:
 * - msmtp (`~/.msmtprc`, `/etc/msmtprc`): `password VALUE` (`passwordeval` runs a command);
 * - mbsync/isync (`~/.mbsyncrc`): `Pass VALUE` (`PassCmd` runs a command);
 * - OfflineIMAP (`~/.offlineimaprc`): `remotepass = VALUE` (`remotepasseval`, `remotepassfile` point elsewhere);
 * - fetchmail (`~/.fetchmailrc`): `password 'VALUE'` (or `pass`, `passwd`) anywhere in a poll entry.
 */
const NAMED_CONFIG_PASSWORDS: { rule: string; name: RegExp; pattern: RegExp; note: string }[] = [
  { rule: 'redis-password', name: /(?:redis|valkey)[\w.-]*\.conf$/, pattern: /^[ \t]*(?:requirepass|masterauth)[ \t]+(\S(?:.*\S)?)[ \t]*$/gm, note: 'Redis requirepass/masterauth' },
  { rule: 'redis-password', name: /(?:redis|valkey)[\w.-]*\.conf$/, pattern: /^[ \t]*user[ \t]+\S+[^\n#]*?[ \t]>(\S+)/gm, note: "a Redis ACL user's password" },
  // Sentinel (`sentinel.conf`, `redis-sentinel.conf`): the password of the master it watches.
  { rule: 'redis-password', name: /(?:redis|valkey|sentinel)[\w.-]*\.conf$/, pattern: /^[ \t]*sentinel[ \t]+auth-pass[ \t]+\S+[ \t]+(\S(?:.*\S)?)[ \t]*$/gm, note: 'Redis Sentinel auth-pass' },
  // Postfix's SASL password map (`smtp_sasl_password_maps`, `services.postfix.mapFiles.sasl_passwd`): `[relay]:587 user:password`.
  { rule: 'postfix-sasl-password', name: /(?:^|[-_])sasl[_-]?passwd$/, pattern: /^[ \t]*[^\s#]\S*[ \t]+[^\s:]*:(\S+)[ \t]*$/gm, note: "a password in Postfix's SASL password map" },
  // sSMTP (`/etc/ssmtp/ssmtp.conf`): `AuthPass=…`.
  { rule: 'ssmtp-password', name: /(?:^|-)ssmtp\.conf$/, pattern: /^[ \t]*AuthPass[ \t]*=[ \t]*(\S(?:.*\S)?)[ \t]*$/gm, note: 'sSMTP AuthPass' },
  { rule: 'msmtp-password', name: /^(?:.*-)?\.?msmtprc$/, pattern: /^[ \t]*password[ \t]+(\S(?:.*\S)?)[ \t]*$/gm, note: 'msmtp account password' },
  { rule: 'mbsync-password', name: /^(?:.*-)?\.?(?:mbsyncrc|isyncrc)$/, pattern: /^[ \t]*Pass[ \t]+(\S(?:.*\S)?)[ \t]*$/gm, note: 'mbsync (isync) account password' },
  { rule: 'offlineimap-password', name: /^(?:.*-)?(?:\.?offlineimaprc|offlineimap\.conf)$/, pattern: /^[ \t]*remotepass[ \t]*[=:][ \t]*(\S(?:.*\S)?)[ \t]*$/gm, note: 'OfflineIMAP remotepass' },
  {
    rule: 'fetchmail-password',
    name: /^(?:.*-)?\.?fetchmailrc$/,
    // Not the authentication method `auth password`.
    pattern: /(?<!\bauth(?:enticate)?[ \t]*)(?:^|[ \t])(?:password|pass|passwd)[ \t]+("(?:[^"\\\n]|\\.)*"|'[^'\n]*'|[^\s#"']+)/gm,
    note: 'fetchmail poll password',
  },
];
/**
 * OpenVPN's `auth-user-pass` file, user name and password on two lines, as NixOS writes
 * `services.openvpn.servers.<name>.authUserPass` into the store (`…-openvpn-credentials-<name>`).
 */
const OPENVPN_CREDENTIALS_NAME = /(?:^|-)openvpn-credentials(?:-|$)/;
const SSH_KEY_NAME = /^(?:ssh_host_[a-z0-9]+_key|id_(?:rsa|dsa|ecdsa|ed25519|ecdsa_sk|ed25519_sk|xmss))$/;
/**
 * A key file's name: `key`, `keyfile`, `*.key`, `*_key`, `*-keyfile`, each maybe with `.bin`
 * (`crypto_keyfile.bin`, the LUKS keyfile `boot.initrd.secrets` copies into the initrd); never a
 * public one, and not a word ending in "key" (`monkey`, `hotkey`).
 */
const KEY_FILE_NAME = /^(?!.*pub)(?:[\w.-]*[._-])?key(?:file)?(?:\.bin)?$/i;
/** One line of random text: a key written as hex or base64 (`openssl rand -hex 32 > luks.key`). */
const RANDOM_LINE = /^\s*([A-Za-z0-9+/=_-]{32,1024})\s*$/;

/**
 * Whether the bytes of a file named like a key file are key material: random bytes (byte entropy
 * near what random data of that length shows, not a container) or one random line of text.
 */
function looksLikeKeyMaterial(content: Buffer, binary: boolean): boolean {
  if (content.length < 16 || content.length > 65536) return false;
  if (!binary) {
    const line = RANDOM_LINE.exec(content.toString('latin1'))?.[1];
    return line !== undefined && entropy(line) >= 3.5 && /[0-9]/.test(line) && /[A-Za-z]/.test(line);
  }
  // LUKS headers (a header backup holds only encrypted key slots) and containers are not keys.
  if (content.toString('latin1', 0, 6) === 'LUKS\xba\xbe' || detectContainer(content)) return false;
  // The latin1 view has one character per byte: its entropy is the bytes'.
  return entropy(content.toString('latin1')) >= Math.min(7.2, Math.log2(content.length) - 1.5);
}

/** quiet-text.ts's check with the format registry: a file that starts like a container is asked. */
export function isQuietText(bytes: Buffer, start: number, end: number, name: string, sopsGoverned: boolean | undefined, environment: ScanEnvironment): boolean {
  return isQuietTextCore(bytes, start, end, name, sopsGoverned, environment.operatorSecrets, (held, from, to) => detectContainer(held, from, to) !== undefined);
}

/**
 * Whether a streamed chunk is text (UTF-8 or ASCII) rather than binary: from 64 samples of 64 bytes
 * spread over it, no NUL and under 1% control bytes. Random bytes and model weights have about one
 * control byte in ten; text has none but tab, LF and CR.
 */
export function looksLikeText(chunk: Buffer): boolean {
  const samples = 64;
  const span = 64;
  const step = Math.max(span, Math.floor(chunk.length / samples));
  let seen = 0;
  let control = 0;
  for (let start = 0; start < chunk.length; start += step) {
    const end = Math.min(chunk.length, start + span);
    for (let index = start; index < end; index++) {
      const byte = chunk[index]!;
      if (byte === 0) return false;
      if (byte < 0x80 && !TEXTY[byte]) control++;
    }
    seen += end - start;
  }
  return seen > 0 && control * 100 < seen;
}

function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let index = text.indexOf('\n'); index !== -1 && index < offset; index = text.indexOf('\n', index + 1)) line++;
  return line;
}

export class FileScanner implements ContentScanner {
  private readonly parts: Buffer[] = [];
  private held = 0;
  private raw: RawStream | undefined;
  /** Findings by rule and offset; made on the first hit (most files have none). */
  private hits: Map<string, Finding> | undefined;
  /** The build's push-fed large file: its first bytes, until they say whether it is a container. */
  private head: Buffer[] | undefined;
  private headBytes = 0;
  private spool: SyncSpool | undefined;
  /** Whether a streamed file is spooled for the walker when it is a container (not when the walker feeds it). */
  private spoolContainers = true;
  private headScanned = false;
  /** The last OVERLAP bytes of a streamed text window, scanned again with the next chunk. */
  private windowTail: { bytes: Buffer; start: number } | undefined;
  /** Set when a streamed file is UTF-16 text (decided from its first chunk). */
  private utf16: 'utf-16le' | 'utf-16be' | undefined;
  private total = 0;
  /** Set when the bytes are a filesystem whose files are not opened (see formats/filesystems.ts). */
  private unopened: Finding | undefined;
  /** A streamed file's first bytes, up to 64 KiB: whether it is ciphertext, and its fingerprint with its size. */
  private streamHead: Buffer | undefined;

  constructor(
    private readonly environment: ScanEnvironment,
    private readonly target: FileTarget,
    private readonly signal?: AbortSignal,
  ) {}

  /** Where findings are: inner path and chain, when inside a container. */
  private get place(): { inner?: string; chain?: string[] } {
    if (this.target.inner === undefined) return {};
    return { inner: this.target.inner, chain: this.target.chain ?? [this.target.inner] };
  }

  private get name(): string {
    const full = this.target.inner ?? this.target.path;
    if (full.endsWith('/') || full.endsWith('\\')) return path.posix.basename(full.replace(/\\/g, '/'));
    return full.slice(Math.max(full.lastIndexOf('/'), full.lastIndexOf('\\')) + 1);
  }

  private record(hit: RawHit, absoluteStart: number, line?: number): void {
    const key = `${hit.rule}:${absoluteStart}`;
    this.hits ??= new Map();
    if (this.hits.has(key)) return;
    const finding: Finding = {
      path: this.target.path,
      ...this.place,
      kind: hit.kind,
      rule: hit.rule,
      fingerprint: fingerprint(hit.rule, hit.secret),
      offset: absoluteStart,
      ...(line !== undefined ? { line } : {}),
      ...(hit.note ? { note: hit.note } : {}),
    };
    this.hits.set(key, finding);
  }

  private scanRegion = (bytes: Buffer, absoluteStart: number, acceptBefore: number): void => {
    const text = bytes.toString('latin1');
    for (const hit of scanText(text, { operatorSecrets: this.environment.operatorSecrets })) {
      const absolute = absoluteStart + hit.start;
      if (absolute < acceptBefore) this.record(hit, absolute);
    }
  };

  /** Every rule over the printable runs of binary bytes. */
  private scanBinary(bytes: Buffer, absoluteStart: number, acceptBefore: number): void {
    const segments = printableSegments(bytes);
    if (segments.text.length === 0) return;
    for (const hit of scanText(segments.text, { operatorSecrets: this.environment.operatorSecrets })) {
      const absolute = absoluteStart + segmentOffset(segments, hit.start);
      if (absolute < acceptBefore) this.record(hit, absolute);
    }
  }

  update(chunk: Buffer): void {
    this.total += chunk.length;
    if (!this.raw) {
      const large = (this.target.size ?? 0) > FULL_SCAN_LIMIT || this.held + chunk.length > FULL_SCAN_LIMIT;
      if (!large) {
        this.parts.push(Buffer.from(chunk)); // copy: callers reuse their buffers
        this.held += chunk.length;
        return;
      }
      this.startStreaming();
    }
    this.streamChunk(chunk);
  }

  private startStreaming(): void {
    this.raw = new RawStream(this.scanRegion);
    if (this.spoolContainers) this.head = [];
    const held = this.parts.splice(0);
    this.held = 0;
    for (const part of held) this.streamChunk(part);
  }

  /**
   * Streams from the first byte, whatever the size, with no spool: for the walker, which feeds the
   * bytes and opens the containers itself. Then `update`, and `endStream` at the end.
   */
  startStream(): void {
    this.spoolContainers = false;
    this.startStreaming();
  }

  /**
   * The build's push-fed large file: once its first HEAD_BYTES are in (whatever the chunk sizes, and
   * whether or not its size was given up front), a container is spooled from its first byte.
   */
  private watchHead(chunk: Buffer): void {
    if (this.spool) {
      this.spool.write(chunk);
      return;
    }
    if (!this.head) return;
    this.head.push(Buffer.from(chunk.subarray(0, HEAD_BYTES)));
    this.headBytes += chunk.length;
    if (chunk.length > HEAD_BYTES) this.head.push(chunk.subarray(HEAD_BYTES)); // written below, not kept
    if (this.headBytes >= HEAD_BYTES) this.decideHead();
  }

  private decideHead(): void {
    const parts = this.head;
    this.head = undefined;
    if (!parts || parts.length === 0) return;
    const bytes = Buffer.concat(parts);
    const format = detectFormat(bytes.subarray(0, HEAD_BYTES));
    // A model shard is not copied to a temp file to be walked (see FormatHandler.inPlaceOnly).
    if (!format || format.inPlaceOnly) return;
    this.spool = new SyncSpool();
    this.spool.write(bytes);
  }

  private streamChunk(chunk: Buffer): void {
    const first = !this.headScanned;
    if (first) {
      this.headScanned = true;
      this.streamHead = Buffer.from(chunk.subarray(0, 65536));
      this.utf16 = detectUtf16(chunk.subarray(0, 4096));
      this.checkFilesystem(chunk);
    }
    if (this.head || this.spool) this.watchHead(chunk);
    const raw = this.raw!;
    if (this.utf16 || looksLikeText(chunk)) {
      // Text (a large tokenizer, a log, a dump; UTF-16 too): every rule over every byte, in windows
      // that overlap, so short secrets (a URL password, a Nix password) are found deep inside too.
      // A text chunk takes over the printable tail the sampled scan carried; UTF-16 keeps that scan
      // of its raw bytes as well, and its windows never take a raw tail (it could split a code unit).
      this.scanWindow(chunk, this.windowTail ?? (this.utf16 ? undefined : raw.takeCarry()));
      if (this.utf16) raw.update(chunk);
      else raw.skip(chunk.length);
      return;
    }
    if (first) {
      // Metadata headers (safetensors JSON, GGUF key/values) are short strings between binary fields:
      // give the first MiB every rule, not just the sampled ones.
      const head = chunk.subarray(0, HEAD_SCAN);
      this.scanBinary(head, raw.bytes, raw.bytes + Math.max(0, head.length - MAX_SECRET_SPAN));
    }
    if (this.windowTail) {
      // Text ends here: the held tail, with enough of this chunk to finish a secret begun in it.
      const tail = this.windowTail;
      this.windowTail = undefined;
      this.scanBinary(Buffer.concat([tail.bytes, chunk.subarray(0, OVERLAP)]), tail.start, tail.start + tail.bytes.length);
    }
    raw.update(chunk);
  }

  /**
   * One window of a streamed text file: the held `tail` plus `chunk` gets every rule. Hits that start
   * in its last OVERLAP bytes wait for the next window, which sees them whole; `chunk` undefined
   * scans what is held, at the end of the file. UTF-16 windows are cut on a code unit and decoded (a
   * JS character is one unit, two bytes, so offsets map back exactly).
   */
  private scanWindow(chunk: Buffer | undefined, tail: { bytes: Buffer; start: number } | undefined): void {
    if (!chunk && !tail) return;
    const window = tail && chunk ? Buffer.concat([tail.bytes, chunk]) : (chunk ?? tail!.bytes);
    const start = tail ? tail.start : this.raw!.bytes;
    const usable = this.utf16 ? window.length & ~1 : window.length;
    const keep = chunk ? Math.min(usable, OVERLAP) : 0;
    const acceptBefore = chunk ? start + usable - keep : Number.POSITIVE_INFINITY;
    if (this.utf16) {
      for (const hit of scanText(decodeUtf16(window.subarray(0, usable), this.utf16), { operatorSecrets: this.environment.operatorSecrets })) {
        const absolute = start + hit.start * 2;
        if (absolute < acceptBefore) this.record(hit, absolute);
      }
    } else {
      this.scanBinary(window, start, acceptBefore);
    }
    // The kept tail starts on a code unit in UTF-16, and carries an odd last byte along.
    this.windowTail = chunk ? { bytes: Buffer.from(window.subarray(usable - keep)), start: start + usable - keep } : undefined;
  }

  /**
   * True once a streamed file's bytes so far hold a finding that is not allowlisted. Small files are
   * judged whole at `finish` (the build scans those in memory before writing them).
   */
  blocked(): boolean {
    for (const finding of this.hits?.values() ?? []) if (!this.environment.allow.has(finding.fingerprint)) return true;
    return false;
  }

  async finish(): Promise<Finding[]> {
    const result = await this.finishDetailed();
    return result.findings;
  }

  /** Like `finish`, with problems and the SOPS facts a folder or archive walk needs. */
  async finishDetailed(): Promise<FileResult> {
    if (!this.raw) {
      const parts = this.parts.splice(0);
      // One part was already copied by update(): no second copy.
      return this.scanOwned(parts.length === 1 ? parts[0]! : Buffer.concat(parts));
    }
    if (this.head) this.decideHead();
    const result = this.endStream();
    const spool = this.spool;
    if (!spool) return this.finalize(result);
    this.spool = undefined;
    try {
      spool.close();
      // Loaded on first use: a tree of plain files never needs the walker or the archive readers.
      const { walkSpooled } = await import('./reading/container-walker.js');
      return this.finalize(result, await walkSpooled(this.environment, this.target, spool.file, this.signal));
    } finally {
      spool.remove();
    }
  }

  /** The flat result of a streamed file (after `startStream` and `update`s): not finalized. */
  endStream(): FileResult {
    const result: FileResult = { findings: [], problems: [], sopsConfigs: [], files: 1 };
    this.scanWindow(undefined, this.windowTail);
    this.raw?.flush();
    const head = this.streamHead ?? Buffer.alloc(0);
    if (this.target.sopsGoverned !== false && !isGitCryptCiphertext(head) && !isAgeCiphertext(head)) {
      const contentFingerprint = fingerprint('sops-unencrypted-file', Buffer.concat([Buffer.from(`${this.total}:`), head]));
      result.unencrypted = { fingerprint: contentFingerprint, streamed: true, ...(this.target.inner !== undefined ? { inner: this.target.inner } : {}) };
    }
    return result;
  }

  /**
   * The fast path for trees of small files: scans a whole file the caller read into `content` and
   * will not reuse (no copy), instead of update() + finishDetailed(). Synchronous unless the bytes
   * are a container to unpack. Every rule sees every byte, exactly as on the streaming path.
   */
  scanOwned(content: Buffer): FileResult | Promise<FileResult> {
    return this.scanHeld(content, false);
  }

  /**
   * Like `scanOwned` for bytes the caller will overwrite as soon as this returns (a read buffer it
   * reuses for every file): they are only read synchronously, and copied when a container must be
   * unpacked later.
   */
  scanBorrowed(content: Buffer): FileResult | Promise<FileResult> {
    return this.scanHeld(content, true);
  }

  /** Every rule over held bytes, no containers opened, not finalized: for the walker. */
  scanFlat(content: Buffer): FileResult {
    const result: FileResult = { findings: [], problems: [], sopsConfigs: [], files: 1 };
    this.scanWhole(content, result);
    return result;
  }

  private scanHeld(content: Buffer, borrowed: boolean): FileResult | Promise<FileResult> {
    const result = this.scanFlat(content);
    if (content.length >= 2 && detectContainer(content)) return this.walkHeld(result, borrowed ? Buffer.from(content) : content);
    return this.finalize(result);
  }

  private async walkHeld(result: FileResult, content: Buffer): Promise<FileResult> {
    const { walkHeld } = await import('./reading/container-walker.js');
    return this.finalize(result, await walkHeld(this.environment, this.target, content, this.signal));
  }

  /**
   * The file's result: the findings of the containers inside it (`inner`) first, then its own hits
   * not already reported there (a plain tar shows its members' bytes raw as well: the member is
   * reported, not the raw copy), the gate's `.sops.yaml` rules, allowlist marks.
   */
  finalize(result: FileResult, inner?: FileResult): FileResult {
    if (inner) {
      result.findings.push(...inner.findings);
      result.problems.push(...inner.problems);
      result.files += inner.files;
    }
    if (this.hits) {
      const innerFingerprints = new Set(result.findings.map((finding) => finding.fingerprint));
      for (const finding of this.hits.values()) {
        if (!innerFingerprints.has(finding.fingerprint)) result.findings.push(finding);
      }
    }
    if (this.unopened) result.findings.push(this.unopened);
    this.applyRules(result);
    if (this.target.gitCrypt && result.unencrypted) {
      result.findings.push({ ...gitCryptPlaintextFinding(this.target.path, this.target.inner, result.unencrypted.fingerprint), ...this.place });
    }
    for (const finding of result.findings) {
      const reason = this.environment.allow.get(finding.fingerprint);
      if (reason !== undefined) finding.allowed = { reason };
    }
    return result;
  }

  /** Notes a filesystem whose files the scan does not open: an `unscanned` finding at `finalize`. */
  private checkFilesystem(head: Buffer): void {
    if (this.target.raw) return;
    const volume = unopenedFilesystem(head);
    if (volume) this.unopened = unscannedFinding(this.target, unopenedReason(volume), unopenedFilesystemMessage(volume));
  }

  private scanWhole(content: Buffer, result: FileResult): void {
    // Text, UTF-16 or binary, decided as detectUtf16 + the texty ratio of the head would. Most files
    // are plain text with no byte outside TEXTY: one native regex test proves it, no JS byte loop
    // (which costs most while the JIT is still cold, that is, for the whole of a short scan).
    let utf16: 'utf-16le' | 'utf-16be' | undefined;
    let binary = false;
    const plain = isPlainText(content);
    if (!plain) {
      const firstZero = content.indexOf(0);
      const bom = content.length >= 4 && ((content[0] === 0xff && content[1] === 0xfe) || (content[0] === 0xfe && content[1] === 0xff));
      // UTF-16 without a BOM needs zero bytes in its first 4 KiB.
      utf16 = bom || (firstZero !== -1 && firstZero < 4096) ? detectUtf16(content) : undefined;
      // A zero in the first 8 KiB settles it (an ELF file's is at byte 7): the head's texty ratio,
      // a loop over 64 KiB in JS, is only counted when it can decide.
      if (!utf16) binary = (firstZero !== -1 && firstZero < 8192) || textyRatio(content) < 0.9;
    }
    if (binary) this.checkFilesystem(content);
    // Binary key stores (DER, OpenPGP packets, GnuPG agent keys, keystores) by their structure.
    const keyFile = plain ? undefined : binaryKeyFile(content);
    if (keyFile) this.record(keyFile, 0);
    // The latin1 view only for text: a binary's bytes (most of an image's store) never become a string.
    const latin1 = binary || utf16 ? '' : content.toString('latin1');
    const text = utf16 ? decodeUtf16(content, utf16) : latin1;
    if (binary) {
      this.scanBinary(content, 0, Number.POSITIVE_INFINITY);
    } else {
      const scale = utf16 ? 2 : 1;
      const nixSource = (this.target.inner ?? this.target.path).endsWith('.nix');
      for (const hit of scanText(text, { operatorSecrets: this.environment.operatorSecrets, nixSource })) {
        this.record(hit, hit.start * scale, lineAt(text, hit.start));
      }
      const textKey = textKeyFile(text);
      if (textKey) this.record(textKey, 0, 1);
    }
    // Most names cannot be special: one test on the path before the basename is cut out.
    // Git-crypt ciphertext is random bytes under the secret's own name (`id_ed25519`, `luks.key`):
    // the rules that go by a file's name do not apply to it.
    const name = SPECIAL_NAME_END.test(this.target.inner ?? this.target.path) && !isGitCryptCiphertext(content) ? this.name : '';
    if (SSH_KEY_NAME.test(name) && content.length > 0) {
      const alreadyKey = [...(this.hits?.values() ?? [])].some((finding) => finding.kind === 'private-key');
      if (!alreadyKey) {
        this.record({ rule: 'ssh-private-key-file', kind: 'private-key', secret: content, start: 0, end: content.length, note: 'named like an SSH private key' }, 0);
      }
    }
    if (PGPASS_NAME.test(name)) {
      // The text view the rules read (empty for a binary file), so offsets count bytes as theirs do.
      for (const match of text.matchAll(PGPASS_LINE)) {
        const password = match[2]!;
        if (password === '*' || match[0].startsWith('#')) continue;
        const start = match.index + match[0].length - password.length;
        this.record({ rule: 'pgpass-password', kind: 'plaintext-password', secret: password, start, end: start + password.length, note: 'a password in a PostgreSQL password file' }, start * (utf16 ? 2 : 1), lineAt(text, start));
      }
    }
    if (IWD_NAME.test(name) && text.includes('[Security]')) {
      for (const match of text.matchAll(IWD_SECRET)) {
        const value = match[2]!;
        const raw = match[1] === 'PreSharedKey';
        if (raw ? !/^[0-9a-fA-F]{64}$/.test(value) : value.length < 8 || value.length > 63 || looksLikePlaceholder(value, 2)) continue;
        const start = match.index + match[0].indexOf('=') + 1;
        // Reported as what it is, not also as a generic config password.
        this.hits?.delete(`config-password:${start * (utf16 ? 2 : 1)}`);
        this.record({ rule: 'wifi-psk', kind: 'wifi-psk', secret: value, start, end: start + value.length, note: `iwd ${match[1]}` }, start * (utf16 ? 2 : 1), lineAt(text, start));
      }
    }
    if (RCLONE_NAME.test(name) && /^[ \t]*type[ \t]*=/m.test(text)) {
      for (const match of text.matchAll(RCLONE_PASSWORD)) {
        const value = match[2]!;
        if (Buffer.from(value, 'base64url').length < 17) continue;
        const start = match.index + match[0].lastIndexOf(value);
        this.hits?.delete(`config-password:${start * (utf16 ? 2 : 1)}`);
        this.record({ rule: 'rclone-password', kind: 'plaintext-password', secret: value, start, end: start + value.length, note: `rclone's ${match[1]}: obscured, which \`rclone reveal\` undoes` }, start * (utf16 ? 2 : 1), lineAt(text, start));
      }
    }
    if (NPMRC_NAME.test(name)) {
      for (const match of text.matchAll(NPMRC_AUTH)) {
        const decoded = Buffer.from(match[2]!, 'base64').toString('latin1');
        const password = match[1] === '_auth' ? decoded.slice(decoded.indexOf(':') + 1) : decoded;
        if ((match[1] === '_auth' && !decoded.includes(':')) || password.length < 4 || textyRatio(Buffer.from(decoded, 'latin1')) < 1 || looksLikePlaceholder(password, 1.5)) continue;
        const start = match.index + match[0].lastIndexOf(match[2]!);
        this.record({ rule: 'npm-auth', kind: 'plaintext-password', secret: password, start, end: start + match[2]!.length, note: `npm ${match[1]}: base64 of ${match[1] === '_auth' ? 'user:password' : 'the password'}` }, start * (utf16 ? 2 : 1), lineAt(text, start));
      }
    }
    for (const config of NAMED_CONFIG_PASSWORDS) {
      if (name === '' || !config.name.test(name)) continue;
      for (const match of text.matchAll(config.pattern)) {
        // A comment's line (fetchmail's keywords can be anywhere on a line, so its comments are looked at here).
        const lineStart = text.lastIndexOf('\n', match.index) + 1;
        if (/^[ \t]*#/.test(text.slice(lineStart, match.index + match[0].length))) continue;
        const value = match[1]!.replace(/^"(.*)"$|^'(.*)'$/, '$1$2');
        if (value === '' || isTemplateValue(value) || looksLikePlaceholder(value, 1.5)) continue;
        const start = match.index + match[0].lastIndexOf(match[1]!);
        this.hits?.delete(`config-password:${start * (utf16 ? 2 : 1)}`);
        this.record({ rule: config.rule, kind: 'plaintext-password', secret: value, start, end: start + match[1]!.length, note: config.note }, start * (utf16 ? 2 : 1), lineAt(text, start));
      }
    }
    if (OPENVPN_CREDENTIALS_NAME.test(name) && !binary && content.length <= 1024) {
      const lines = text.split('\n').map((line) => line.trim()).filter((line) => line !== '');
      const password = lines.length === 2 ? lines[1]! : undefined;
      if (password !== undefined && looksLikeSecretValue(password, 'plaintext-password')) {
        const start = text.indexOf(password, text.indexOf(lines[0]!) + lines[0]!.length);
        this.record({ rule: 'openvpn-credentials', kind: 'plaintext-password', secret: password, start, end: start + password.length, note: "OpenVPN auth-user-pass file: its second line is the password" }, start * (utf16 ? 2 : 1), lineAt(text, start));
      }
    }
    // `wg genkey > privatekey`: a file that is nothing but a WireGuard (X25519) private key.
    if (WIREGUARD_KEY_NAME.test(name) && content.length <= 64) {
      const key = WIREGUARD_KEY_FILE.exec(content.toString('latin1'))?.[1];
      if (key && !looksLikePlaceholder(key, 3.5)) {
        this.record({ rule: 'wireguard-private-key-file', kind: 'wireguard-private-key', secret: Buffer.from(key, 'base64'), start: 0, end: content.length, note: 'a key file named like a private key' }, 0);
      }
    }
    // A LUKS keyfile (`dd if=/dev/urandom of=luks.key`, the installer's `/crypto_keyfile.bin`) or a
    // key kept as one random line: nothing in its bytes names it, its name and randomness do.
    if (KEY_FILE_NAME.test(name) && (this.hits?.size ?? 0) === 0 && looksLikeKeyMaterial(content, binary)) {
      this.record({ rule: 'random-key-file', kind: 'private-key', secret: content, start: 0, end: content.length, note: 'random bytes in a file named like a key file (a LUKS keyfile?)' }, 0);
    }
    // A secret in a file of its own, named for it: `pkgs.writeText "restic-password" "…"` and
    // `environment.etc."restic-password".text` put one line into `/nix/store/…-restic-password`.
    if (!binary && content.length <= 1024 && (this.hits?.size ?? 0) === 0) {
      const kind = name === '' ? undefined : secretFileKind(name);
      const value = kind ? soleLine(text) : undefined;
      if (kind && value !== undefined && looksLikeSecretValue(value, kind)) {
        this.record({ rule: 'secret-named-file', kind, secret: value, start: 0, end: value.length, note: 'a file named like a secret that holds one line' }, 0, 1);
      }
    }
    if (!binary && (this.name === '.gitattributes' || this.name === 'attributes') && isGitAttributesFile(this.target.inner ?? this.target.path)) result.gitAttributes = content.toString('utf8');
    if (name === '.sops.yaml' || name === '.sops.yml') {
      result.sopsConfigs.push({ name: this.target.inner ?? this.target.path, text: content.toString('utf8') });
      return;
    }
    if (isGitCryptCiphertext(content) || (binary || utf16 ? isAgeCiphertext(content) : latin1.startsWith(AGE_BINARY) || latin1.startsWith(AGE_ARMOR))) return;
    // The prefilter sees the same ASCII in the latin1 view as in UTF-8: decode only when it passes.
    const analysis = !binary && mayHoldSopsMetadata(text) ? analyzeSops(utf16 ? text.replace(/^\ufeff/, '') : content.toString('utf8')) : undefined;
    if (analysis?.hasMetadata) {
      for (const value of analysis.plaintext) {
        const finding: Finding = {
          path: this.target.path,
          ...this.place,
          kind: 'sops-plaintext-value',
          rule: 'sops-plaintext-value',
          fingerprint: sopsValueFingerprint(value),
          note: `SOPS file has a value that is not ENC[...] at key ${value.keyPath}`,
        };
        result.findings.push(finding);
      }
      return;
    }
    if (this.target.sopsGoverned === false) return;
    const contentFingerprint = fingerprint('sops-unencrypted-file', content);
    result.unencrypted = { fingerprint: contentFingerprint, ...(this.target.inner !== undefined ? { inner: this.target.inner } : {}) };
  }

  /** `.sops.yaml` given to the gate: a file it says must be encrypted, and is not, is a finding. */
  private applyRules(result: FileResult): void {
    const config = this.environment.sopsConfig;
    if (!config || this.target.repoPath === undefined || !result.unencrypted || result.unencrypted.streamed) return;
    if (!mustBeEncrypted(config, this.target.repoPath)) return;
    result.findings.push({ ...unencryptedFinding(this.target.path, this.target.inner, this.target.repoPath, result.unencrypted.fingerprint), ...this.place });
  }
}

/** The finding for a file `.sops.yaml` says must be encrypted but that carries no SOPS metadata. */
export function unencryptedFinding(filePath: string, inner: string | undefined, repoPath: string, contentFingerprint: string): Finding {
  return {
    path: filePath,
    ...(inner !== undefined ? { inner } : {}),
    kind: 'sops-unencrypted-file',
    rule: 'sops-unencrypted-file',
    fingerprint: contentFingerprint,
    note: `.sops.yaml creation_rules require ${repoPath} to be SOPS-encrypted, but it has no sops metadata (a decrypted secrets file?)`,
  };
}

/** The share of TEXTY bytes in the first 64 KiB (1 for no bytes). */
function textyRatio(content: Buffer): number {
  const limit = Math.min(content.length, 65536);
  if (limit === 0) return 1;
  let texty = 0;
  for (let index = 0; index < limit; index++) texty += TEXTY[content[index]!]!;
  return texty / limit;
}

function detectUtf16(content: Buffer): 'utf-16le' | 'utf-16be' | undefined {
  if (content.length < 4) return undefined;
  if (content[0] === 0xff && content[1] === 0xfe) return 'utf-16le';
  if (content[0] === 0xfe && content[1] === 0xff) return 'utf-16be';
  // No BOM: mostly-ASCII UTF-16 has a zero in every other byte.
  const sample = Math.min(content.length & ~1, 4096);
  let evenZero = 0;
  let oddZero = 0;
  let textLike = 0;
  const pairs = sample / 2;
  for (let index = 0; index < sample; index += 2) {
    if (content[index] === 0) evenZero++;
    if (content[index + 1] === 0) oddZero++;
    if (TEXTY[content[index]!] || TEXTY[content[index + 1]!]) textLike++;
    // Stop once neither byte order can reach its share of zeros (most binaries, early on).
    const left = pairs - (index + 2) / 2;
    if (oddZero + left <= pairs * 0.7 && evenZero + left <= pairs * 0.7) return undefined;
  }
  if (oddZero > pairs * 0.7 && evenZero < pairs * 0.1 && textLike > pairs * 0.9) return 'utf-16le';
  if (evenZero > pairs * 0.7 && oddZero < pairs * 0.1 && textLike > pairs * 0.9) return 'utf-16be';
  return undefined;
}

/** Decodes UTF-16, a byte order mark kept as U+FEFF: character i is always bytes 2i and 2i+1. */
function decodeUtf16(content: Buffer, encoding: 'utf-16le' | 'utf-16be'): string {
  return new TextDecoder(encoding, { ignoreBOM: true }).decode(content);
}
