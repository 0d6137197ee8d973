/**
 * One file's scan: small files (≤ FULL_SCAN_LIMIT) are held whole and get every rule, SOPS checks,
 * UTF-16 decoding and container unpacking; larger files stream through the sampled raw scan (plus a
 * full text scan of their first MiB, where safetensors/GGUF metadata lives) and, when they are
 * archives, are spooled to a temp file and unpacked at the end.
 */
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ContentScanner, Finding } from '../types.js';
import { fingerprint } from './fingerprint.js';
import { MAX_SECRET_SPAN, scanText, type OperatorSecret, type RawHit } from './rules.js';
import { RawStream } from './raw-stream.js';
import { analyzeSops, isAgeCiphertext, mustBeEncrypted, sopsValueFingerprint, type SopsConfig } from './sops.js';
import { printableSegments, segmentOffset, TEXTY, textyRatio } from './text-util.js';
import { detectContainer, scanContainer, type ContainerKind } from './containers.js';

/** Files up to this size are scanned whole with every rule. */
export const FULL_SCAN_LIMIT = 8 * 1024 * 1024;
const HEAD_SCAN = 1024 * 1024;
const MAX_DEPTH = 8;

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
}

export interface FileTarget {
  path: string;
  inner?: string;
  repoPath?: string;
  size?: number;
}

/** Everything a file scan learned; `unencrypted` feeds `.sops.yaml` checks made after the walk. */
export interface FileResult {
  findings: Finding[];
  problems: Problem[];
  /** Set when the file has no SOPS metadata and is not age ciphertext (a rule may demand it). */
  unencrypted?: { fingerprint: string; inner?: string };
  /** Set when this file is itself a `.sops.yaml`: its text, for the walk that checks the files it governs. */
  sopsConfigs: { name: string; text: string }[];
  files: number;
}

const SSH_KEY_NAME = /^(?:ssh_host_[a-z0-9]+_key|id_(?:rsa|dsa|ecdsa|ed25519|ecdsa_sk|ed25519_sk|xmss))$/;

function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let index = text.indexOf('\n'); index !== -1 && index < offset; index = text.indexOf('\n', index + 1)) line++;
  return line;
}

export class FileScanner implements ContentScanner {
  private readonly parts: Buffer[] = [];
  private held = 0;
  private raw: RawStream | undefined;
  private readonly hits = new Map<string, Finding>();
  private spool: { dir: string; file: string; fd: number; kind: ContainerKind } | undefined;
  private headScanned = false;
  private total = 0;

  constructor(
    private readonly environment: ScanEnvironment,
    private readonly target: FileTarget,
    private readonly depth = 0,
  ) {}

  private get name(): string {
    return path.posix.basename((this.target.inner ?? this.target.path).replace(/\\/g, '/'));
  }

  private record(hit: RawHit, absoluteStart: number, line?: number): void {
    const key = `${hit.rule}:${absoluteStart}`;
    if (this.hits.has(key)) return;
    const finding: Finding = {
      path: this.target.path,
      ...(this.target.inner !== undefined ? { inner: this.target.inner } : {}),
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
    const held = this.parts.splice(0);
    this.held = 0;
    const first = held[0];
    const kind = first ? detectContainer(Buffer.concat(held.slice(0, 2)).subarray(0, 512)) : undefined;
    if (kind && kind !== 'zlib') {
      const dir = mkdtempSync(path.join(tmpdir(), 'dubnium-scan-'));
      const file = path.join(dir, 'spool');
      this.spool = { dir, file, fd: openSync(file, 'w', 0o600), kind };
    }
    for (const part of held) this.streamChunk(part);
  }

  private streamChunk(chunk: Buffer): void {
    if (!this.headScanned) {
      // Metadata headers (safetensors JSON, GGUF key/values) are short strings between binary fields:
      // give the first MiB every rule, not just the sampled ones.
      this.headScanned = true;
      const head = chunk.subarray(0, HEAD_SCAN);
      this.scanBinary(head, this.raw!.bytes, this.raw!.bytes + Math.max(0, head.length - MAX_SECRET_SPAN));
    }
    if (this.spool) writeSync(this.spool.fd, chunk);
    this.raw!.update(chunk);
  }

  async finish(): Promise<Finding[]> {
    const result = await this.finishDetailed();
    return result.findings;
  }

  /** Like `finish`, with problems and the SOPS facts a folder or archive walk needs. */
  async finishDetailed(): Promise<FileResult> {
    const result: FileResult = { findings: [], problems: [], sopsConfigs: [], files: 1 };
    let content: Buffer | undefined;
    if (this.raw) {
      this.raw.flush();
    } else {
      content = Buffer.concat(this.parts.splice(0));
      this.scanWhole(content, result);
    }
    const kind = content ? detectContainer(content.subarray(0, 512)) : this.spool?.kind;
    if (kind && this.depth < MAX_DEPTH) {
      if (this.spool) closeSync(this.spool.fd);
      try {
        const inner = await scanContainer(kind, content ?? this.spool!.file, this.environment, this.target, this.depth + 1);
        this.mergeInner(inner, result);
      } finally {
        if (this.spool) rmSync(this.spool.dir, { recursive: true, force: true });
      }
    } else if (this.spool) {
      closeSync(this.spool.fd);
      rmSync(this.spool.dir, { recursive: true, force: true });
    }
    const innerFingerprints = new Set(result.findings.map((finding) => finding.fingerprint));
    for (const finding of this.hits.values()) {
      // A plain tar shows its members' bytes raw as well: report the member, not the raw copy.
      if (!innerFingerprints.has(finding.fingerprint)) result.findings.push(finding);
    }
    this.applyRules(result);
    for (const finding of result.findings) {
      const reason = this.environment.allow.get(finding.fingerprint);
      if (reason !== undefined) finding.allowed = { reason };
    }
    return result;
  }

  private mergeInner(inner: FileResult, result: FileResult): void {
    result.findings.push(...inner.findings);
    result.problems.push(...inner.problems);
    result.files += inner.files;
  }

  private scanWhole(content: Buffer, result: FileResult): void {
    const utf16 = detectUtf16(content);
    const binary = !utf16 && (content.subarray(0, 8192).includes(0) || textyRatio(content, 65536) < 0.9);
    const text = utf16 ? decodeUtf16(content, utf16) : binary ? '' : content.toString('latin1');
    if (binary) {
      this.scanBinary(content, 0, Number.POSITIVE_INFINITY);
    } else {
      const scale = utf16 ? 2 : 1;
      for (const hit of scanText(text, { operatorSecrets: this.environment.operatorSecrets })) {
        this.record(hit, hit.start * scale, lineAt(text, hit.start));
      }
    }
    if (SSH_KEY_NAME.test(this.name) && content.length > 0) {
      const alreadyKey = [...this.hits.values()].some((finding) => finding.kind === 'private-key');
      if (!alreadyKey) {
        this.record({ rule: 'ssh-private-key-file', kind: 'private-key', secret: content, start: 0, end: content.length, note: 'named like an SSH private key' }, 0);
      }
    }
    if (this.name === '.sops.yaml' || this.name === '.sops.yml') {
      result.sopsConfigs.push({ name: this.target.inner ?? this.target.path, text: content.toString('utf8') });
      return;
    }
    if (isAgeCiphertext(content)) return;
    const analysis = binary ? undefined : analyzeSops(utf16 ? text : content.toString('utf8'));
    if (analysis?.hasMetadata) {
      for (const value of analysis.plaintext) {
        const finding: Finding = {
          path: this.target.path,
          ...(this.target.inner !== undefined ? { inner: this.target.inner } : {}),
          kind: 'sops-plaintext-value',
          rule: 'sops-plaintext-value',
          fingerprint: sopsValueFingerprint(value),
          note: `SOPS file has a value that is not ENC[...] at key ${value.keyPath}`,
        };
        result.findings.push(finding);
      }
      return;
    }
    const contentFingerprint = fingerprint('sops-unencrypted-file', content);
    result.unencrypted = { fingerprint: contentFingerprint, ...(this.target.inner !== undefined ? { inner: this.target.inner } : {}) };
  }

  /** `.sops.yaml` given to the gate: a file it says must be encrypted, and is not, is a finding. */
  private applyRules(result: FileResult): void {
    const config = this.environment.sopsConfig;
    if (!config || this.target.repoPath === undefined || !result.unencrypted) return;
    if (!mustBeEncrypted(config, this.target.repoPath)) return;
    result.findings.push(unencryptedFinding(this.target.path, this.target.inner, this.target.repoPath, result.unencrypted.fingerprint));
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

function detectUtf16(content: Buffer): 'utf-16le' | 'utf-16be' | undefined {
  if (content.length < 4) return undefined;
  if (content[0] === 0xff && content[1] === 0xfe) return 'utf-16le';
  if (content[0] === 0xfe && content[1] === 0xff) return 'utf-16be';
  // No BOM: mostly-ASCII UTF-16 has a zero in every other byte.
  const sample = Math.min(content.length & ~1, 4096);
  let evenZero = 0;
  let oddZero = 0;
  let textLike = 0;
  for (let index = 0; index < sample; index += 2) {
    if (content[index] === 0) evenZero++;
    if (content[index + 1] === 0) oddZero++;
    if (TEXTY[content[index]!] || TEXTY[content[index + 1]!]) textLike++;
  }
  const pairs = sample / 2;
  if (oddZero > pairs * 0.7 && evenZero < pairs * 0.1 && textLike > pairs * 0.9) return 'utf-16le';
  if (evenZero > pairs * 0.7 && oddZero < pairs * 0.1 && textLike > pairs * 0.9) return 'utf-16be';
  return undefined;
}

function decodeUtf16(content: Buffer, encoding: 'utf-16le' | 'utf-16be'): string {
  return new TextDecoder(encoding).decode(content);
}
