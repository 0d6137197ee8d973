/**
 * The common case in a tree of small files, decided without a scanner: plain ASCII text, not a
 * container, not named like a key or `.sops.yaml`, with nothing a rule, an operator secret or a SOPS
 * check could act on, in a file no `.sops.yaml` governs. For such a file the full scan finds nothing.
 * Imports only the rules (no format handlers, no scanner), so the read-ahead worker can load it and
 * decide most files where it read them.
 */
import { isAscii } from 'node:buffer';
import { ruleLiterals } from './rules/literals.js';
import { hasBase64Run, holdsOperatorSecret, literalRulesHit, nixSourceRulesHit, type OperatorSecret } from './rules/rules.js';
import { mayHoldSopsMetadata } from './rules/sops.js';

/**
 * Plain text for the rules: ASCII without NUL. One vectorized check each; a regex for "any byte
 * outside tab, LF, CR and printable ASCII" costs ten times more. Other control bytes (a form feed,
 * an escape sequence) leave a file text: it is still read whole by every rule.
 */
export function isPlainText(bytes: Buffer): boolean {
  return isAscii(bytes) && bytes.indexOf(0) === -1;
}

/**
 * A path whose basename may be an SSH, WireGuard or LUKS key file's, a `.pgpass` or `.sops.yaml`, or
 * a file named for the secret it holds (`restic-password`, `hf.token`; named-secrets.ts): a superset
 * of these, trailing slash allowed.
 */
export const SPECIAL_NAME_END = /(?:key(?:file)?(?:\.bin)?|id_[a-z0-9_]+|pgpass|rclone\.conf|npmrc|msmtprc|mbsyncrc|isyncrc|offlineimaprc|offlineimap\.conf|fetchmailrc|ssmtp\.conf|(?:redis|valkey|sentinel)[^/\\]*\.conf|openvpn-credentials(?:-[^/\\]*)?|\.sops\.ya?ml|(?:pass|pw|psk|token|secret|apikey)[^/\\]*)[/\\]?$/i;

/**
 * Whether the file `bytes[start, end)` (path or inner path `name`) is quiet: see the module comment.
 * ASCII without NUL can still be a container: of the known magics only bzip2's (`BZh91AY&SY`),
 * zlib's (`x^`, `x\x01`), cpio's (`070701...`), lz4's (`\x04"M\x18`) and zip's (`PK\x03\x04`) can
 * be (every other format has a NUL in its first bytes). A file that starts like one is quiet only
 * when `isContainer` says it is none; without `isContainer` (a thread without the format
 * registry) it is not quiet, and the caller's caller decides. Nothing is allocated but the text view.
 */
export function isQuietText(
  bytes: Buffer,
  start: number,
  end: number,
  name: string,
  sopsGoverned: boolean | undefined,
  operatorSecrets: readonly OperatorSecret[],
  isContainer?: (bytes: Buffer, start: number, end: number) => boolean,
): boolean {
  if (sopsGoverned !== false || SPECIAL_NAME_END.test(name)) return false;
  if (!isAscii(bytes.subarray(start, end))) return false;
  const text = bytes.toString('latin1', start, end);
  // The NUL search on the string: Buffer#indexOf's argument handling costs more than the search.
  if (text.indexOf('\0') !== -1) return false;
  const first = bytes[start];
  if ((first === 0x42 || first === 0x78 || first === 0x30 || first === 0x04 || first === 0x50) && (!isContainer || isContainer(bytes, start, end))) return false;
  if (mayHoldSopsMetadata(text) || hasBase64Run(text)) return false;
  const families = ruleLiterals(text);
  if (literalRulesHit(text, families)) return false;
  if (name.endsWith('.nix') && nixSourceRulesHit(text, families)) return false;
  return !(operatorSecrets.length > 0 && holdsOperatorSecret(text, operatorSecrets));
}
