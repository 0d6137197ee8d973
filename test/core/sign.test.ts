/**
 * src/core/sign.ts against the real ssh-keygen and ssh-agent: fingerprints, the SSHSIG parser,
 * resolving --sign (key file, agent, passphrase, permissions) and checking signatures.
 */
import { execFileSync } from 'node:child_process';
import { chmod, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.js';
import {
  checkSignature,
  fingerprintOf,
  parsePublicKeyText,
  parseSshSignature,
  resolveExpectedSigner,
  resolveSigner,
  signatureProblem,
  signData,
  SIGNATURE_NAMESPACE,
} from '../../src/core/sign.js';
import { makeKey, startAgent } from '../helpers/ssh-signing.js';
import { tempDir } from '../helpers/tmp.js';

const manifest = '{\n  "format": 1\n}\n';
const noAgent = { SSH_AUTH_SOCK: '' };

describe('fingerprints and the SSHSIG parser', () => {
  it.each(['ed25519', 'ecdsa', 'rsa'] as const)('computes the fingerprint ssh-keygen -lf prints, for %s keys', async (type) => {
    const dir = await tempDir();
    const key = makeKey(dir, `id_${type}`, { type });
    const parsed = parsePublicKeyText(await readFile(key.pub, 'utf8'))!;
    expect(parsed.fingerprint).toBe(key.fingerprint);
    expect(fingerprintOf(parsed.blob)).toBe(key.fingerprint);
    expect(parsed.comment).toBe(`id_${type}@example.invalid`);
  });

  it('reads the signer key out of a signature made by ssh-keygen -Y sign', async () => {
    const dir = await tempDir();
    const key = makeKey(dir, 'id');
    const signature = execFileSync('ssh-keygen', ['-Y', 'sign', '-n', SIGNATURE_NAMESPACE, '-f', key.file], { input: manifest, encoding: 'utf8', stdio: ['pipe', 'pipe', 'ignore'] });
    const info = parseSshSignature(signature);
    if ('error' in info) throw new Error(info.error);
    expect(info.publicKey.fingerprint).toBe(key.fingerprint);
    expect(info.namespace).toBe('dubnium-seed');
    expect(info.hashAlgorithm).toBe('sha512');
  });

  it('refuses text that is not a signature, and a truncated one, with a reason', async () => {
    expect(parseSshSignature('hello')).toEqual({ error: 'it is not an armored SSH signature' });
    const dir = await tempDir();
    const key = makeKey(dir, 'id');
    const signature = execFileSync('ssh-keygen', ['-Y', 'sign', '-n', SIGNATURE_NAMESPACE, '-f', key.file], { input: manifest, encoding: 'utf8', stdio: ['pipe', 'pipe', 'ignore'] });
    const lines = signature.trim().split('\n');
    const truncated = [lines[0], lines[1], lines[lines.length - 1]].join('\n');
    expect(parseSshSignature(truncated)).toHaveProperty('error');
  });
});

describe('resolveSigner', () => {
  it('takes an unencrypted private key file as it is', async () => {
    const dir = await tempDir();
    const key = makeKey(dir, 'id_ed25519');
    const signer = await resolveSigner(key.file, { env: noAgent });
    expect(signer.via).toBe('key-file');
    expect(signer.publicKey.fingerprint).toBe(key.fingerprint);
    expect(signer.publicKey.comment).toBe('id_ed25519@example.invalid');
  });

  it('refuses a passphrase-protected key file at once, with the ssh-agent advice (no prompt, no hang)', async () => {
    const dir = await tempDir();
    const key = makeKey(dir, 'id_locked', { passphrase: 'correct horse' });
    const started = Date.now();
    const error = await resolveSigner(key.file, { env: noAgent }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(UsageError);
    expect((error as Error).message).toMatch(/protected by a passphrase.*ssh-add .*id_locked.*--sign .*id_locked\.pub/);
    expect((error as UsageError).details.join(' ')).toContain(key.fingerprint);
    expect(Date.now() - started).toBeLessThan(20_000);
  });

  it('signs a passphrase-protected key file through ssh-agent when the agent holds it', async () => {
    const dir = await tempDir();
    const key = makeKey(dir, 'id_locked', { passphrase: 'pw' });
    // Loaded into the agent from an unencrypted copy: ssh-add would ask for the passphrase.
    const copy = path.join(dir, 'copy');
    await writeFile(copy, await readFile(key.file), { mode: 0o600 });
    execFileSync('ssh-keygen', ['-q', '-p', '-P', 'pw', '-N', '', '-f', copy], { stdio: 'ignore' });
    const agent = await startAgent(dir);
    agent.add({ ...key, file: copy });
    const signer = await resolveSigner(key.file, { env: agent.env });
    expect(signer.via).toBe('ssh-agent');
    expect(signer.publicKey.fingerprint).toBe(key.fingerprint);
    const signature = await signData(signer, manifest, { env: agent.env });
    expect((await checkSignature(manifest, signature, key.fingerprint)).signerMatches).toBe(true);
  });

  it('says "chmod 600" for a key file others can read', async () => {
    const dir = await tempDir();
    const key = makeKey(dir, 'id_open');
    await chmod(key.file, 0o644);
    await expect(resolveSigner(key.file, { env: noAgent })).rejects.toThrow(/chmod 600/);
  });

  it('takes a .pub whose private half is in ssh-agent, and signs without the private key file', async () => {
    const dir = await tempDir();
    const key = makeKey(dir, 'id_agent');
    const agent = await startAgent(dir);
    agent.add(key);
    await rename(key.file, `${key.file}.elsewhere`);
    const signer = await resolveSigner(key.pub, { env: agent.env });
    expect(signer).toMatchObject({ via: 'ssh-agent', publicKey: { fingerprint: key.fingerprint } });
    const signature = await signData(signer, manifest, { env: agent.env });
    const report = await checkSignature(manifest, signature, key.fingerprint);
    expect(report).toMatchObject({ state: 'valid', fingerprint: key.fingerprint, signerMatches: true });
  });

  it('refuses a .pub the agent does not hold, naming its fingerprint, and one with no agent at all', async () => {
    const dir = await tempDir();
    const key = makeKey(dir, 'id_missing');
    const agent = await startAgent(dir);
    await expect(resolveSigner(key.pub, { env: agent.env })).rejects.toThrow(new RegExp(`ssh-agent does not hold the private key of ${key.fingerprint.replace(/[+/]/g, '\\$&')}`));
    await expect(resolveSigner(key.pub, { env: noAgent })).rejects.toThrow(/No ssh-agent is reachable/);
  });

  it('refuses a file that is no key', async () => {
    const dir = await tempDir();
    await writeFile(path.join(dir, 'notes.txt'), 'hello\n');
    await expect(resolveSigner(path.join(dir, 'notes.txt'), { env: noAgent })).rejects.toThrow(/neither an SSH private key nor an SSH public key/);
    await expect(resolveSigner(path.join(dir, 'absent'), { env: noAgent })).rejects.toThrow(/does not exist/);
  });
});

describe('checkSignature', () => {
  it('tells valid, bad, unsigned and another signer apart, in one line each', async () => {
    const dir = await tempDir();
    const mine = makeKey(dir, 'mine');
    const theirs = makeKey(dir, 'theirs');
    const signer = await resolveSigner(mine.file, { env: noAgent });
    const signature = await signData(signer, manifest);

    expect(await checkSignature(manifest, signature)).toEqual({ state: 'valid', fingerprint: mine.fingerprint, keyType: 'ED25519' });
    expect(signatureProblem(await checkSignature(manifest, signature))).toBeUndefined();
    expect(signatureProblem(await checkSignature(manifest, signature, mine.fingerprint))).toBeUndefined();

    const changed = await checkSignature(manifest.replace('1', '2'), signature, mine.fingerprint);
    expect(changed.state).toBe('bad');
    expect(signatureProblem(changed)).toMatch(/^bad signature: dubnium-seed\.json\.sig \(key SHA256:\S+\) does not verify for this manifest/);

    expect(signatureProblem(await checkSignature(manifest, undefined, mine.fingerprint))).toMatch(/^unsigned: /);
    expect(signatureProblem(await checkSignature(manifest, undefined))).toBeUndefined();

    const other = signatureProblem(await checkSignature(manifest, signature, theirs.fingerprint))!;
    expect(other).toBe(`other signer: the seed is signed by ${mine.fingerprint}, not by the expected ${theirs.fingerprint}`);
  });

  it('refuses a signature made for another namespace', async () => {
    const dir = await tempDir();
    const key = makeKey(dir, 'id');
    const signature = execFileSync('ssh-keygen', ['-Y', 'sign', '-n', 'file', '-f', key.file], { input: manifest, encoding: 'utf8', stdio: ['pipe', 'pipe', 'ignore'] });
    const report = await checkSignature(manifest, signature, key.fingerprint);
    expect(report.state).toBe('bad');
    expect(signatureProblem(report)).toContain('was made for "file"');
  });
});

describe('resolveExpectedSigner', () => {
  it('takes a fingerprint or a public key file, and refuses anything else', async () => {
    const dir = await tempDir();
    const key = makeKey(dir, 'id');
    expect(await resolveExpectedSigner(key.fingerprint)).toBe(key.fingerprint);
    expect(await resolveExpectedSigner(key.pub)).toBe(key.fingerprint);
    expect(await resolveExpectedSigner(path.basename(key.pub), dir)).toBe(key.fingerprint);
    await expect(resolveExpectedSigner('SHA256:short')).rejects.toThrow(/not a whole SHA256 fingerprint/);
    await expect(resolveExpectedSigner(key.file)).rejects.toThrow(/is not an SSH public key/);
  });
});
