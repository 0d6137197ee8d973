/**
 * Fingerprints name a secret without revealing it: the rule id, then the first 16 hex digits of
 * the SHA-256 of the secret's bytes. Stable across runs and machines, so an allowlist can name one.
 */
import { createHash } from 'node:crypto';

/** `rule:0123456789abcdef`, from the secret's bytes (text is hashed as UTF-8). */
export function fingerprint(rule: string, secret: string | Buffer): string {
  return `${rule}:${createHash('sha256').update(secret).digest('hex').slice(0, 16)}`;
}
