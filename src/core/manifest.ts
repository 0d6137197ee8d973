/**
 * The seed manifest (`dubnium-seed.json`, format 1) and `SHA256SUMS`: names, types, rendering and
 * the checksum list. The manifest is written last; a seed without it is incomplete. Its zod schema and
 * parser are in manifest-schema.ts, loaded only where a manifest is read: zod is ~100 modules and
 * ~0.13 s of start-up that a build must not spend before its first byte reaches the stick.
 */
import { createHash } from 'node:crypto';
import type { z } from 'zod';
import type { manifestFileSchema, manifestFlakeInputSchema, manifestInstallerSchema, manifestSchema } from './manifest-schema.js';

export const FORMAT_VERSION = 1 as const;
export const MANIFEST_NAME = 'dubnium-seed.json';
export const CHECKSUMS_NAME = 'SHA256SUMS';
export const INSTALLER_NAME = 'seed-install.sh';
export const JOURNAL_NAME = '.dubnium-seed.journal';
/** The manifest's detached SSH signature (`ssh-keygen -Y sign -n dubnium-seed`), written after it; optional. */
export const SIGNATURE_NAME = 'dubnium-seed.json.sig';
export const DEFAULT_MODEL_STORE = '/var/lib/dubnium/models';
/** Files being written carry this suffix until they are complete and flushed. */
export const PARTIAL_SUFFIX = '.dubnium-partial';

export function isSafeRelativePath(value: string): boolean {
  if (value.startsWith('/') || value.includes('\\') || /[\u0000-\u001f\u007f]/.test(value)) return false;
  return value.split('/').every((segment) => segment !== '' && segment !== '.' && segment !== '..');
}

export type ManifestInstaller = z.infer<typeof manifestInstallerSchema>;
export type Manifest = z.infer<typeof manifestSchema>;
export type ManifestFile = z.infer<typeof manifestFileSchema>;
export type ManifestFlakeInput = z.infer<typeof manifestFlakeInputSchema>;

/** `sha256sum` format: `<hex>  <path>`; one line per file, sorted as given. */
export function renderChecksums(files: readonly ManifestFile[]): string {
  return files.map((file) => `${file.sha256}  ${file.path}\n`).join('');
}

export interface ChecksumLine {
  sha256: string;
  path: string;
  line: number;
}

/** Parses `SHA256SUMS`; malformed lines are returned as problems, never thrown. */
export function parseChecksums(text: string): { entries: ChecksumLine[]; problems: { line: number; message: string }[] } {
  const entries: ChecksumLine[] = [];
  const problems: { line: number; message: string }[] = [];
  text.split('\n').forEach((raw, index) => {
    if (raw === '') return;
    const match = /^([0-9a-f]{64}) [ *](.+)$/.exec(raw);
    if (!match) {
      problems.push({ line: index + 1, message: 'not a "<sha256>  <path>" line' });
      return;
    }
    const path = match[2]!;
    if (!isSafeRelativePath(path)) {
      problems.push({ line: index + 1, message: `path ${JSON.stringify(path)} leaves the seed root` });
      return;
    }
    entries.push({ sha256: match[1]!, path, line: index + 1 });
  });
  return { entries, problems };
}

const ZERO_DIGEST = '0'.repeat(64);
const SELF_DIGEST_LINE = /^( {2}"selfSha256": ")([0-9a-f]{64})(",?)$/m;

/** sha256 of the manifest text with its own `selfSha256` value zeroed (undefined without the line). */
export function manifestSelfDigest(text: string): string | undefined {
  if (!SELF_DIGEST_LINE.test(text)) return undefined;
  return createHash('sha256').update(text.replace(SELF_DIGEST_LINE, `$1${ZERO_DIGEST}$3`)).digest('hex');
}

/**
 * Pretty-printed with two spaces (seed-install.sh reads `"modelStore"` from its own line), with
 * `selfSha256` filled in last.
 */
export function renderManifest(manifest: Omit<Manifest, 'selfSha256'>): string {
  const text = `${JSON.stringify({ ...manifest, selfSha256: ZERO_DIGEST }, null, 2)}\n`;
  return text.replace(SELF_DIGEST_LINE, `$1${manifestSelfDigest(text)}$3`);
}
