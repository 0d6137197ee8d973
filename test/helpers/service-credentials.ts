/**
 * Fresh, structurally valid credentials of the services an AI workstation and homelab use, made at
 * test time (never committed): each has the shape and checksum its vendor gives it.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { BASE62, crc32, randomString } from './credentials.js';

const URLSAFE = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-';

function base62(value: number): string {
  let out = '';
  do {
    out = BASE62[value % 62] + out;
    value = Math.floor(value / 62);
  } while (value > 0);
  return out.padStart(6, '0');
}

/** Random text of `length` from `alphabet` that has at least one digit, one upper and one lower letter. */
function mixed(length: number, alphabet: string): string {
  for (;;) {
    const value = randomString(length, alphabet);
    if (/[0-9]/.test(value) && /[A-Z]/.test(value) && /[a-z]/.test(value)) return value;
  }
}

export function serviceCredentials() {
  const npmBody = mixed(30, BASE62);
  const macaroon = Buffer.concat([Buffer.from([2, 1, 8]), Buffer.from('pypi.org'), Buffer.from([2, 1, 0x25]), Buffer.from('{"version": 1, "permissions": "user"}'), randomBytes(64)]);
  const jwtPart = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const dockerSecret = mixed(24, BASE62);
  return {
    openrouter: `sk-or-v1-${randomBytes(32).toString('hex')}`,
    anthropic: `sk-ant-api03-${mixed(93, URLSAFE)}AA`,
    gitlab: `glpat-${mixed(20, URLSAFE)}`,
    npm: `npm_${npmBody}${base62(crc32(npmBody))}`,
    pypi: `pypi-${macaroon.toString('base64url')}`,
    dockerSecret,
    dockerConfig: JSON.stringify({ auths: { 'ghcr.io': { auth: Buffer.from(`operator:${dockerSecret}`).toString('base64') } } }, null, 2),
    netrcPassword: mixed(24, BASE62),
    telegram: `${randomString(9, '123456789')}:AA${mixed(33, URLSAFE)}`,
    google: `AIza${mixed(35, URLSAFE)}`,
    cachix: `${jwtPart({ alg: 'HS256' })}.${jwtPart({ jti: randomUUID(), scopes: 'cache' })}.${randomBytes(32).toString('base64url')}`,
    azureKey: randomBytes(64).toString('base64'),
    wifiPsk: mixed(20, BASE62),
    wifiPskRaw: randomBytes(32).toString('hex'),
    wireguardPreshared: randomBytes(32).toString('base64'),
    resticPassword: mixed(28, BASE62),
  };
}
