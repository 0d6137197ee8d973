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
  return `${rule}:${nodeCrypto().createHash('sha256').update(secret).digest('hex').slice(0, 16)}`;
}
