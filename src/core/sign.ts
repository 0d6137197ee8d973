/**
 * Signed seeds: the operator's SSH key signs the final manifest with `ssh-keygen -Y sign`, and
 * `verify --signer` checks with `ssh-keygen -Y verify` that the signature is valid and was made by
 * that key. The manifest records the digest of SHA256SUMS and of every file, so the signature
 * covers every byte of the seed.
 *
 * The key never leaves its file or ssh-agent: only its path (or its public half) is handed to
 * ssh-keygen. Nothing here prompts: a passphrase-protected key file that ssh-agent does not hold is
 * refused with advice, since ssh-keygen would ask for the passphrase.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { UsageError } from '../errors.js';
import { run } from '../util/run.js';
import { MANIFEST_NAME, SIGNATURE_NAME } from './manifest.js';
import { writeAtomic } from './seed-writer.js';

/** The `-n` namespace of every seed signature: a signature made for anything else never verifies. */
export const SIGNATURE_NAMESPACE = 'dubnium-seed';
/** An armored SSHSIG is well under 2 KiB even for RSA 16384; anything larger is not one. */
export const MAX_SIGNATURE_BYTES = 64 * 1024;
const MAX_KEY_FILE_BYTES = 1024 * 1024;
/** Signing through a hardware token waits for a touch; give the operator time, but never forever. */
const SIGN_TIMEOUT_MS = 120_000;
const PRINCIPAL = 'dubnium-seed-signer';

/** An SSH public key: its type, wire-format blob, and `SHA256:` fingerprint (as `ssh-keygen -lf` prints it). */
export interface SshPublicKey {
  type: string;
  blob: Buffer;
  comment: string;
  fingerprint: string;
}

/** The key a build signs with, resolved and checked before anything is written. */
export interface SeedSigner {
  /** What the operator named: a path, or a public key line. */
  spec: string;
  /** `key-file`: an unencrypted private key file; `ssh-agent`: the private half is held by the agent. */
  via: 'key-file' | 'ssh-agent';
  /** The private key file (key-file only); agent signing writes the public key to a temp file. */
  keyFile?: string;
  publicKey: SshPublicKey;
}

/** `SHA256:` plus the unpadded base64 of the sha256 of the key blob: what `ssh-keygen -lf` prints. */
export function fingerprintOf(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** `ED25519`, `RSA`, `ECDSA-SK`...: the short name ssh-keygen shows. */
export function keyTypeName(type: string): string {
  if (type === 'ssh-ed25519') return 'ED25519';
  if (type === 'ssh-rsa') return 'RSA';
  if (type.startsWith('ecdsa-sha2-')) return 'ECDSA';
  if (type.startsWith('sk-ssh-ed25519')) return 'ED25519-SK';
  if (type.startsWith('sk-ecdsa-sha2-')) return 'ECDSA-SK';
  if (type === 'ssh-dss') return 'DSA';
  return type;
}

/** Reads one SSH string (uint32 length + bytes) at `offset`; undefined past the end. */
function readString(buffer: Buffer, offset: number): { value: Buffer; next: number } | undefined {
  if (offset + 4 > buffer.length) return undefined;
  const length = buffer.readUInt32BE(offset);
  const end = offset + 4 + length;
  if (end > buffer.length) return undefined;
  return { value: buffer.subarray(offset + 4, end), next: end };
}

const KEY_TYPE = /^[a-z0-9@.-]{3,64}$/;

/** A public key from its wire blob; undefined when the blob does not start with a sane type name. */
export function publicKeyFromBlob(blob: Buffer, comment = ''): SshPublicKey | undefined {
  const type = readString(blob, 0)?.value.toString('latin1');
  if (!type || !KEY_TYPE.test(type)) return undefined;
  return { type, blob: Buffer.from(blob), comment, fingerprint: fingerprintOf(blob) };
}

/** Parses `type base64 [comment]` (a `.pub` file's line, or `ssh-add -L` output); the blob's own type must agree. */
export function parsePublicKeyLine(line: string): SshPublicKey | undefined {
  const match = /^([a-z0-9@.-]{3,64})\s+([A-Za-z0-9+/]+={0,2})(?:\s+(.*))?$/.exec(line.trim());
  if (!match) return undefined;
  const key = publicKeyFromBlob(Buffer.from(match[2]!, 'base64'), (match[3] ?? '').trim());
  return key && key.type === match[1] ? key : undefined;
}

/** The first public key line in a text (a `.pub` file may start with comments). */
export function parsePublicKeyText(text: string): SshPublicKey | undefined {
  for (const line of text.split('\n')) {
    if (line.trim() === '' || line.trim().startsWith('#')) continue;
    return parsePublicKeyLine(line);
  }
  return undefined;
}

/** The `type base64 comment` line of a key (what a `.pub` file holds). */
export function publicKeyLine(key: SshPublicKey): string {
  return `${key.type} ${key.blob.toString('base64')}${key.comment ? ` ${key.comment}` : ''}`;
}

/** What an armored SSHSIG (`-----BEGIN SSH SIGNATURE-----`) says about itself, read without trusting it. */
export interface SshSignatureInfo {
  publicKey: SshPublicKey;
  namespace: string;
  hashAlgorithm: string;
}

/**
 * Parses the armored SSHSIG blob (PROTOCOL.sshsig): magic, version 1, public key, namespace,
 * reserved, hash algorithm, signature. Only the structure is checked here; whether the signature
 * holds is ssh-keygen's job. Returns a reason when the text is not a signature.
 */
export function parseSshSignature(text: string): SshSignatureInfo | { error: string } {
  const lines = text.replace(/\r\n/g, '\n').trim().split('\n');
  if (lines[0] !== '-----BEGIN SSH SIGNATURE-----' || lines[lines.length - 1] !== '-----END SSH SIGNATURE-----') return { error: 'it is not an armored SSH signature' };
  const body = lines.slice(1, -1).join('');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(body)) return { error: 'its armored body is not base64' };
  const blob = Buffer.from(body, 'base64');
  if (blob.subarray(0, 6).toString('latin1') !== 'SSHSIG' || blob.length < 10 || blob.readUInt32BE(6) !== 1) return { error: 'it is not an SSHSIG signature of version 1' };
  const key = readString(blob, 10);
  const namespace = key && readString(blob, key.next);
  const reserved = namespace && readString(blob, namespace.next);
  const hash = reserved && readString(blob, reserved.next);
  const signature = hash && readString(blob, hash.next);
  if (!key || !namespace || !reserved || !hash || !signature || signature.next !== blob.length) return { error: 'its SSHSIG structure is truncated or malformed' };
  const publicKey = publicKeyFromBlob(key.value);
  if (!publicKey) return { error: 'the public key inside it is malformed' };
  return { publicKey, namespace: namespace.value.toString('utf8'), hashAlgorithm: hash.value.toString('latin1') };
}

const FINGERPRINT = /^SHA256:[A-Za-z0-9+/]{43}$/;

/** Whether a value has the form `SHA256:` + 43 base64 characters. */
export function isFingerprint(value: string): boolean {
  return FINGERPRINT.test(value);
}

async function readLimited(file: string, limit: number): Promise<Buffer> {
  const handle = await open(file, 'r');
  try {
    const buffer = Buffer.alloc(limit + 1);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    if (bytesRead > limit) throw new UsageError(`${file} is larger than any SSH key file; pass a private key file or a .pub file.`);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/**
 * The public key inside an OpenSSH private key file (`openssh-key-v1`): stored unencrypted even
 * when the private half is protected by a passphrase, so an encrypted key can be looked up in the
 * agent without asking for it.
 */
function publicKeyOfOpensshPrivate(text: string): SshPublicKey | undefined {
  const match = /-----BEGIN OPENSSH PRIVATE KEY-----([\s\S]*?)-----END OPENSSH PRIVATE KEY-----/.exec(text);
  if (!match) return undefined;
  const blob = Buffer.from(match[1]!.replace(/\s+/g, ''), 'base64');
  const magic = 'openssh-key-v1\0';
  if (blob.subarray(0, magic.length).toString('latin1') !== magic) return undefined;
  const cipher = readString(blob, magic.length);
  const kdf = cipher && readString(blob, cipher.next);
  const kdfOptions = kdf && readString(blob, kdf.next);
  if (!kdfOptions || kdfOptions.next + 4 > blob.length || blob.readUInt32BE(kdfOptions.next) < 1) return undefined;
  const first = readString(blob, kdfOptions.next + 4);
  return first ? publicKeyFromBlob(first.value) : undefined;
}

/** Public keys ssh-agent holds (`ssh-add -L`); undefined when no agent answers. */
export async function agentPublicKeys(env: NodeJS.ProcessEnv = process.env): Promise<SshPublicKey[] | undefined> {
  if (!env.SSH_AUTH_SOCK) return undefined;
  const listed = await run('ssh-add', ['-L'], { cwd: '/', reject: false, timeout: 15_000, env }).catch(() => undefined);
  // 0: keys listed; 1: an agent with no identities; 2: no agent to talk to.
  if (!listed || (listed.exitCode !== 0 && listed.exitCode !== 1)) return undefined;
  return listed.stdout.split('\n').map(parsePublicKeyLine).filter((key): key is SshPublicKey => key !== undefined);
}

const sameKey = (a: SshPublicKey, b: SshPublicKey) => a.blob.equals(b.blob);

/**
 * Resolves `--sign KEY` before a byte is written: an unencrypted private key file signs by itself;
 * a public key (a `.pub` file, or a `type base64` line) signs through ssh-agent, which must hold
 * its private half; a passphrase-protected key file signs through the agent when the agent holds
 * it, and is refused otherwise (ssh-keygen would prompt). Throws UsageError (exit 2) with advice.
 */
export async function resolveSigner(spec: string, options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<SeedSigner> {
  const env = options.env ?? process.env;
  const literal = parsePublicKeyLine(spec);
  if (literal) return requireInAgent({ spec, via: 'ssh-agent', publicKey: literal }, env, 'the public key given');
  const file = path.resolve(options.cwd ?? process.cwd(), spec);
  let bytes: Buffer;
  try {
    bytes = await readLimited(file, MAX_KEY_FILE_BYTES);
  } catch (error) {
    if (error instanceof UsageError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    throw new UsageError(`Cannot read the signing key ${file} (${code === 'ENOENT' ? 'it does not exist' : code ?? (error as Error).message}); pass --sign with an SSH private key file or a .pub file whose private half is in ssh-agent.`);
  }
  const text = bytes.toString('utf8');
  const asPublic = parsePublicKeyText(text);
  if (asPublic) return requireInAgent({ spec, via: 'ssh-agent', publicKey: asPublic }, env, file);
  if (!/-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/.test(text)) {
    throw new UsageError(`${file} is neither an SSH private key nor an SSH public key; pass --sign with your key file (e.g. ~/.ssh/id_ed25519) or its .pub with the key loaded in ssh-agent.`);
  }
  // `-y -P ''` prints the public key of an unencrypted key and fails at once for an encrypted
  // one: a probe that can never stop to ask for a passphrase.
  const probe = await run('ssh-keygen', ['-y', '-P', '', '-f', file], { cwd: '/', reject: false, timeout: 30_000, env });
  if (probe.exitCode === 0) {
    const publicKey = parsePublicKeyText(probe.stdout);
    if (!publicKey) throw new UsageError(`ssh-keygen could not give the public key of ${file}; check that it is an SSH private key.`);
    const comment = parsePublicKeyText(await readLimited(`${file}.pub`, MAX_KEY_FILE_BYTES).then((b) => b.toString('utf8'), () => ''))?.comment ?? '';
    return { spec, via: 'key-file', keyFile: file, publicKey: { ...publicKey, comment: publicKey.comment || comment } };
  }
  if (/bad permissions|too open/i.test(probe.stderr)) {
    throw new UsageError(`ssh-keygen refuses the signing key ${file}: others can read it. Run chmod 600 ${file} and build again.`);
  }
  if (/passphrase/i.test(probe.stderr)) {
    const publicKey = publicKeyOfOpensshPrivate(text) ?? parsePublicKeyText(await readLimited(`${file}.pub`, MAX_KEY_FILE_BYTES).then((b) => b.toString('utf8'), () => ''));
    const inAgent = publicKey ? (await agentPublicKeys(env))?.find((key) => sameKey(key, publicKey)) : undefined;
    if (publicKey && inAgent) return { spec, via: 'ssh-agent', publicKey: { ...publicKey, comment: inAgent.comment } };
    throw new UsageError(
      `The signing key ${file} is protected by a passphrase, and a build never stops to ask for it: load it into ssh-agent (ssh-add ${file}) and pass the public key (--sign ${file}.pub).`,
      publicKey ? [`key ${publicKey.fingerprint}`] : [],
    );
  }
  throw new UsageError(`ssh-keygen cannot read the signing key ${file}: ${probe.stderr.trim().split('\n').pop() ?? `exit ${probe.exitCode}`}.`);
}

async function requireInAgent(signer: SeedSigner, env: NodeJS.ProcessEnv, what: string): Promise<SeedSigner> {
  const keys = await agentPublicKeys(env);
  const { fingerprint } = signer.publicKey;
  if (keys === undefined) {
    throw new UsageError(`No ssh-agent is reachable to sign with ${fingerprint} (${what}; SSH_AUTH_SOCK ${env.SSH_AUTH_SOCK ? 'points to no agent' : 'is not set'}): start ssh-agent and ssh-add the key, or pass --sign with the private key file.`);
  }
  const held = keys.find((key) => sameKey(key, signer.publicKey));
  if (!held) {
    throw new UsageError(`ssh-agent does not hold the private key of ${fingerprint} (${what}): load it with ssh-add (ssh-add -L lists what the agent holds), or pass --sign with the private key file.`);
  }
  return { ...signer, publicKey: { ...signer.publicKey, comment: signer.publicKey.comment || held.comment } };
}

/** The detached signature of `data` by the signer, armored, as `ssh-keygen -Y sign` writes it. */
export async function signData(signer: SeedSigner, data: string | Buffer, options: { env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  const work = await mkdtemp(path.join(tmpdir(), 'dubnium-seed-sign-'));
  try {
    let keyFile = signer.keyFile;
    if (signer.via === 'ssh-agent') {
      // Given a public key, ssh-keygen asks the agent to sign; the private half never leaves it.
      keyFile = path.join(work, 'signer.pub');
      await writeFile(keyFile, `${publicKeyLine(signer.publicKey)}\n`, { mode: 0o600 });
    }
    const result = await run('ssh-keygen', ['-Y', 'sign', '-n', SIGNATURE_NAMESPACE, '-f', keyFile!], { cwd: work, input: data, reject: false, timeout: SIGN_TIMEOUT_MS, env: options.env });
    const info = result.exitCode === 0 ? parseSshSignature(result.stdout) : undefined;
    if (!info || 'error' in info) {
      const why = result.stderr.split('\n').filter((line) => line.trim() && !/^Signing data on standard input/.test(line)).pop() ?? `exit ${result.exitCode}`;
      throw new UsageError(`Signing with ${signer.publicKey.fingerprint} failed: ${why}.${signer.via === 'ssh-agent' ? ' Check that ssh-agent still holds the key (ssh-add -L).' : ''}`);
    }
    if (!sameKey(info.publicKey, signer.publicKey)) throw new UsageError(`ssh-keygen signed with ${info.publicKey.fingerprint}, not with ${signer.publicKey.fingerprint}; check --sign.`);
    return result.stdout;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * Signs the final manifest text and writes `dubnium-seed.json.sig` beside it, atomically and
 * flushed, after the manifest. Returns the signer's fingerprint.
 */
export async function signSeed(target: string, manifestText: string, signer: SeedSigner): Promise<{ file: string; fingerprint: string }> {
  const signature = await signData(signer, manifestText);
  await writeAtomic(path.join(target, SIGNATURE_NAME), signature);
  return { file: SIGNATURE_NAME, fingerprint: signer.publicKey.fingerprint };
}

/**
 * The expected signer of `verify --signer`: a `SHA256:` fingerprint, or a public key file (or
 * line), reduced to its fingerprint. Throws UsageError for anything else.
 */
export async function resolveExpectedSigner(value: string, cwd = process.cwd()): Promise<string> {
  if (isFingerprint(value)) return value;
  if (/^SHA256:/i.test(value)) throw new UsageError(`--signer ${value} is not a whole SHA256 fingerprint: it is SHA256: and 43 base64 characters, as ssh-keygen -lf KEY.pub prints it.`);
  const literal = parsePublicKeyLine(value);
  if (literal) return literal.fingerprint;
  const file = path.resolve(cwd, value);
  const text = await readLimited(file, MAX_KEY_FILE_BYTES).then(
    (bytes) => bytes.toString('utf8'),
    (error: unknown) => {
      if (error instanceof UsageError) throw error;
      throw new UsageError(`--signer ${value}: ${file} cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); pass the signer's SHA256:... fingerprint or its .pub file.`);
    },
  );
  const key = parsePublicKeyText(text);
  if (!key) throw new UsageError(`--signer ${value}: ${file} is not an SSH public key; pass the signer's SHA256:... fingerprint or its .pub file.`);
  return key.fingerprint;
}

/** What verify learned about the seed's signature. */
export interface SignatureReport {
  /** `unsigned`: no signature file; `valid`: a good signature of this manifest (by `fingerprint`); `bad`: present but not a good signature of this manifest. */
  state: 'unsigned' | 'valid' | 'bad';
  /** The key the signature names (when it could be read). */
  fingerprint?: string;
  keyType?: string;
  /** Why a signature is bad. */
  reason?: string;
  /** The signer `--signer` asked for; absent when the signer was not checked. */
  expected?: string;
  /** With `expected`: whether the seed is validly signed by exactly that key. */
  signerMatches?: boolean;
}

/**
 * Checks a signature text against the manifest bytes with `ssh-keygen -Y verify`, trusting only
 * the key the signature names (an allowed_signers line made from it), then compares that key's
 * fingerprint with `expected` when given. Never throws for a bad signature: it is reported.
 */
export async function checkSignature(manifestText: string | Buffer, signatureText: string | undefined, expected?: string): Promise<SignatureReport> {
  const withExpected = (report: SignatureReport): SignatureReport =>
    expected === undefined ? report : { ...report, expected, signerMatches: report.state === 'valid' && report.fingerprint === expected };
  if (signatureText === undefined) return withExpected({ state: 'unsigned' });
  const info = parseSshSignature(signatureText);
  if ('error' in info) return withExpected({ state: 'bad', reason: `cannot be read: ${info.error}` });
  const named = { fingerprint: info.publicKey.fingerprint, keyType: keyTypeName(info.publicKey.type) };
  if (info.namespace !== SIGNATURE_NAMESPACE) return withExpected({ state: 'bad', ...named, reason: `was made for ${JSON.stringify(info.namespace)}, not for a dubnium seed` });
  const work = await mkdtemp(path.join(tmpdir(), 'dubnium-seed-verify-sig-'));
  try {
    const allowed = path.join(work, 'allowed_signers');
    await writeFile(allowed, `${PRINCIPAL} namespaces="${SIGNATURE_NAMESPACE}" ${info.publicKey.type} ${info.publicKey.blob.toString('base64')}\n`);
    const signature = path.join(work, `${MANIFEST_NAME}.sig`);
    await writeFile(signature, signatureText);
    const result = await run('ssh-keygen', ['-Y', 'verify', '-f', allowed, '-I', PRINCIPAL, '-n', SIGNATURE_NAMESPACE, '-s', signature], {
      cwd: work,
      input: manifestText,
      reject: false,
      timeout: 60_000,
    });
    if (result.exitCode !== 0) return withExpected({ state: 'bad', ...named, reason: 'does not verify for this manifest (the manifest changed after signing, or the signature belongs to another build)' });
    return withExpected({ state: 'valid', ...named });
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** The one line a failed signer check says: unsigned, bad signature, or another signer (both fingerprints). */
export function signatureProblem(report: SignatureReport): string | undefined {
  if (report.state === 'bad') return `bad signature: ${SIGNATURE_NAME}${report.fingerprint ? ` (key ${report.fingerprint})` : ''} ${report.reason ?? 'does not verify'}`;
  if (report.expected === undefined || report.signerMatches) return undefined;
  if (report.state === 'unsigned') return `unsigned: the seed has no ${SIGNATURE_NAME}, so it cannot be shown to come from ${report.expected}`;
  return `other signer: the seed is signed by ${report.fingerprint}, not by the expected ${report.expected}`;
}
