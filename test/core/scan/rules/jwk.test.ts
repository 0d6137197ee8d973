/**
 * JSON Web Keys with their private part are private keys (rules.ts `jwkRule`): EC, OKP and RSA keys
 * with `d`, symmetric (`oct`) keys with `k`, alone or in a JWKS, made by Node's crypto at test time.
 * Their public halves, placeholders and a `d` of the wrong length for the curve are not findings.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { scanText } from '../../../../src/core/scan/rules/rules.js';
import { runCli } from '../../../helpers/cli.js';
import { tempDir } from '../../../helpers/tmp.js';

type Jwk = Record<string, unknown>;

function pair(type: 'ec' | 'ed25519' | 'x25519' | 'rsa', namedCurve?: string): { privateJwk: Jwk; publicJwk: Jwk } {
  const options = type === 'ec' ? { namedCurve: namedCurve! } : type === 'rsa' ? { modulusLength: 2048 } : {};
  const { privateKey, publicKey } = generateKeyPairSync(type as 'ec', options as { namedCurve: string });
  return { privateJwk: privateKey.export({ format: 'jwk' }) as Jwk, publicJwk: publicKey.export({ format: 'jwk' }) as Jwk };
}

const jwkHits = (text: string) => scanText(text, { operatorSecrets: [] }).filter((hit) => hit.rule === 'jwk-private-key');

describe('JSON Web Keys', () => {
  it.each([
    ['EC P-256', () => pair('ec', 'prime256v1')],
    ['EC P-384', () => pair('ec', 'secp384r1')],
    ['EC P-521', () => pair('ec', 'secp521r1')],
    ['EC secp256k1', () => pair('ec', 'secp256k1')],
    ['OKP Ed25519', () => pair('ed25519')],
    ['OKP X25519', () => pair('x25519')],
    ['RSA 2048', () => pair('rsa')],
  ])('%s: the private key is found at its d, the public one is not', (_, make) => {
    const { privateJwk, publicJwk } = make();
    for (const text of [JSON.stringify(privateJwk), JSON.stringify({ keys: [publicJwk, privateJwk] }, null, 2)]) {
      const hits = jwkHits(text);
      expect(hits).toHaveLength(1);
      expect(text.slice(hits[0]!.start, hits[0]!.end)).toBe(privateJwk.d);
      expect(hits[0]!.kind).toBe('private-key');
    }
    expect(jwkHits(JSON.stringify({ keys: [publicJwk] }, null, 2))).toEqual([]);
  });

  it('a symmetric (oct) key is found at its k; several keys in a JWKS are each found', () => {
    const oct = { kty: 'oct', kid: 'hmac', alg: 'HS256', k: randomBytes(32).toString('base64url') };
    const ed = pair('ed25519').privateJwk;
    const hits = jwkHits(JSON.stringify({ keys: [oct, ed] }));
    expect(hits.map((hit) => hit.note)).toEqual(['JSON Web Key (oct): a symmetric key', 'JSON Web Key (OKP Ed25519) with its private part']);
  });

  it('placeholders and a d of the wrong length for its curve are not findings', () => {
    const { privateJwk } = pair('ec', 'prime256v1');
    expect(jwkHits(JSON.stringify({ ...privateJwk, d: 'REPLACE_WITH_YOUR_PRIVATE_KEY_VALUE' }))).toEqual([]);
    expect(jwkHits(JSON.stringify({ ...privateJwk, d: 'A'.repeat(43) }))).toEqual([]);
    expect(jwkHits(JSON.stringify({ ...privateJwk, d: randomBytes(20).toString('base64url') }))).toEqual([]);
  });

  it('`scan` of a folder holding an OIDC provider key file exits 4 naming it', async () => {
    const dir = await tempDir();
    await mkdir(path.join(dir, 'secrets'));
    await writeFile(path.join(dir, 'secrets/oidc-jwks.json'), JSON.stringify({ keys: [pair('rsa').privateJwk] }, null, 2));
    await writeFile(path.join(dir, 'public-jwks.json'), JSON.stringify({ keys: [pair('ec', 'prime256v1').publicJwk] }));
    const result = await runCli(['scan', '--no-operator-secrets', dir]);
    expect(result.code).toBe(4);
    expect(result.stdout).toMatch(/FOUND\s+private-key in secrets\/oidc-jwks\.json:\d+\s+\[jwk-private-key:/);
    expect(result.stdout).not.toMatch(/public-jwks/);
  });
});
