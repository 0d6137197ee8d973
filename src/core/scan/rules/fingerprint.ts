/**
 * Fingerprints name a secret without revealing it: the rule id, then the first 16 hex digits of
 * the SHA-256 of the secret's bytes. Stable across runs and machines, so an allowlist can name one.
 */
import { createRequire } from 'node:module';

let crypto: typeof import('node:crypto') | undefined;

/**
 * node:crypto, loaded on first use: a clean scan of a tree of small files never needs it, and its
 * load is a measurable part of a short scan's start-up.
 */
export function nodeCrypto(): typeof import('node:crypto') {
  crypto ??= createRequire(import.meta.url)('node:crypto') as typeof import('node:crypto');
  return crypto;
}

/** `rule:0123456789abcdef`, from the secret's bytes (text is hashed as UTF-8). */
export function fingerprint(rule: string, secret: string | Buffer): string {
  return `${rule}:${sha256Hex(secret).slice(0, 16)}`;
}

/**
 * The SHA-256 of `data` (text as UTF-8) in hex: one call (`crypto.hash`, Node 20.12 and later)
 * where there is one, no Hash object per file: every member of an image is fingerprinted.
 */
export function sha256Hex(data: string | Buffer): string {
  const crypto = nodeCrypto() as typeof import('node:crypto') & { hash?: (algorithm: string, data: string | Buffer, encoding: 'hex') => string };
  return crypto.hash ? crypto.hash('sha256', data, 'hex') : crypto.createHash('sha256').update(data).digest('hex');
}
