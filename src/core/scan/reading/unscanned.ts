/**
 * `unscanned` findings: bytes the gate could not read completely (a compression it does not know, a
 * corrupt or truncated container, an encrypted member, a limit, a read error). The gate cannot vouch
 * for them, so they block like a credential; the fingerprint depends only on where and why, so a
 * known one can be allowlisted with a reason.
 */
import type { Finding } from '../../types.js';
import type { UnscannedReason } from '../formats/types.js';
import { fingerprint } from '../rules/fingerprint.js';

/** Where bytes are: the file, and the member chain inside it. */
export interface Place {
  path: string;
  inner?: string;
  chain?: string[];
}

/** The chain of a place: given, or its one inner path. */
export function chainOf(place: Place): string[] | undefined {
  return place.chain ?? (place.inner !== undefined ? [place.inner] : undefined);
}

/** The finding for bytes at `place` that were not scanned, and why. */
export function unscannedFinding(place: Place, reason: UnscannedReason, message: string): Finding {
  const rule = `unscanned-${reason}`;
  const chain = chainOf(place);
  return {
    path: place.path,
    ...(place.inner !== undefined ? { inner: place.inner } : {}),
    ...(chain ? { chain } : {}),
    kind: 'unscanned',
    rule,
    fingerprint: fingerprint(rule, `${place.path}\0${place.inner ?? ''}\0${reason}`),
    note: `not scanned (${reason}): ${message}`,
  };
}
