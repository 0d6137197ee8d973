/**
 * The seed manifest (`dubnium-seed.json`, format 1) and `SHA256SUMS`: their schema, rendering and
 * parsing. The manifest is written last; a seed without it is incomplete.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';

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

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits');

/** A payload path: relative, POSIX, no `..`, no empty or dot segments, no control characters or backslashes. */
export const seedRelativePath = z
  .string()
  .min(1)
  .max(4096)
  .refine((value) => isSafeRelativePath(value), 'must be a relative path inside the seed (no "..", no absolute path)');

export function isSafeRelativePath(value: string): boolean {
  if (value.startsWith('/') || value.includes('\\') || /[\u0000-\u001f\u007f]/.test(value)) return false;
  return value.split('/').every((segment) => segment !== '' && segment !== '.' && segment !== '..');
}

export const manifestFileSchema = z.object({
  path: seedRelativePath,
  size: z.number().int().nonnegative(),
  sha256: sha256Hex,
});

/**
 * One locked flake input (manifest key `flake`, added after format 1 shipped: optional, so seeds
 * without it still parse, and readers that predate it strip it as an unknown key). Carried inputs
 * also name their file under `inputs/`, its sha256 and the store path the narHash determines.
 */
export const manifestFlakeInputSchema = z.object({
  /** The shortest attribute path from the flake's root (`secrets`, `hardware/util`). */
  name: z.string().min(1),
  /** The lock's node key. */
  node: z.string().min(1),
  paths: z.array(z.string()),
  type: z.string(),
  /** The input's URL with any credentials removed. */
  url: z.string(),
  class: z.enum(['carried', 'fetched', 'in-repo']),
  reason: z.string(),
  rev: z.string().optional(),
  narHash: z.string().optional(),
  storePath: z.string().regex(/^\/nix\/store\/[0-9a-df-np-sv-z]{32}-source$/, 'must be a /nix/store/<hash>-source path').optional(),
  file: seedRelativePath.optional(),
  sha256: sha256Hex.optional(),
  size: z.number().int().nonnegative().optional(),
  /** Where the bytes were found at build time. */
  from: z.enum(['store', 'clone', 'folder']).optional(),
});

export const manifestFlakeSchema = z.object({
  /** flake.lock inside the source archive's top folder. */
  lock: z.string(),
  lockVersion: z.number().int(),
  /** The nixosConfigurations attribute to install, when the profile names it. */
  host: z.string().nullable(),
  inputs: z.array(manifestFlakeInputSchema),
});

/**
 * The installer image at the start of the stick (manifest key `installer`, added after format 1
 * shipped: optional, so seeds without it still parse, and older readers strip it as an unknown key).
 * `length` is the ISO's own length from its primary volume descriptor (volume space size × logical
 * block size); `sha256` covers those bytes from offset 0 of the whole disk with MBR partition entries
 * 3 and 4 (bytes 478-509, where the seed partition is added) read as zeros.
 */
export const manifestInstallerSchema = z.object({
  volumeId: z.string(),
  length: z.number().int().positive(),
  sha256: sha256Hex,
});

export type ManifestInstaller = z.infer<typeof manifestInstallerSchema>;

export const manifestSchema = z.object({
  format: z.literal(FORMAT_VERSION),
  tool: z.object({ name: z.literal('dubnium-seed'), version: z.string() }),
  createdAt: z.string(),
  profile: z.string().nullable(),
  modelStore: z.string().regex(/^\/[A-Za-z0-9._/-]*$/, 'must be an absolute path of safe characters').refine((p) => !p.split('/').includes('..'), 'must not contain ".."'),
  source: z.object({
    file: seedRelativePath,
    name: z.string(),
    commit: z.string().nullable(),
    shortRev: z.string(),
    topFolder: z.string(),
    dirty: z.boolean(),
    changedPaths: z.array(z.string()),
    untrackedIncluded: z.array(z.string()),
    submodules: z.array(z.string()),
    plainFolder: z.boolean(),
    mtime: z.number().int(),
    entries: z.number().int().nonnegative(),
  }),
  bundles: z.array(
    z.object({
      name: z.string(),
      dir: seedRelativePath,
      kind: z.enum(['folder', 'hf-cache']),
      repoId: z.string().optional(),
      revision: z.string().optional(),
      files: z.number().int().nonnegative(),
      bytes: z.number().int().nonnegative(),
      shards: z.number().int().nonnegative(),
      tensors: z.number().int().nonnegative(),
    }),
  ),
  files: z.array(manifestFileSchema),
  checksums: z.object({ file: z.literal(CHECKSUMS_NAME), sha256: sha256Hex }),
  /** sha256 of this file's bytes with this value replaced by 64 zeros: any changed byte shows. */
  selfSha256: sha256Hex,
  totals: z.object({ files: z.number().int().nonnegative(), bytes: z.number().int().nonnegative() }),
  flake: manifestFlakeSchema.optional(),
  installer: manifestInstallerSchema.optional(),
});

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

/** Parses and validates a manifest; returns readable `path: message` problems instead of throwing. */
export function parseManifest(text: string): { manifest?: Manifest; problems: string[] } {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    return { problems: [`${MANIFEST_NAME} is not valid JSON (${(error as Error).message})`] };
  }
  if (typeof data === 'object' && data !== null && 'format' in data && (data as { format: unknown }).format !== FORMAT_VERSION) {
    return { problems: [`${MANIFEST_NAME} has format ${JSON.stringify((data as { format: unknown }).format)}; this tool reads format ${FORMAT_VERSION}`] };
  }
  const self = manifestSelfDigest(text);
  const recorded = (data as { selfSha256?: unknown } | null)?.selfSha256;
  if (self !== undefined && typeof recorded === 'string' && self !== recorded) {
    return { problems: [`${MANIFEST_NAME} was changed after it was written (its selfSha256 does not match its bytes)`] };
  }
  const result = manifestSchema.safeParse(data);
  if (!result.success) {
    return { problems: result.error.issues.slice(0, 20).map((issue) => `${MANIFEST_NAME}: ${issue.path.join('.') || '(root)'}: ${issue.message}`) };
  }
  return { manifest: result.data, problems: [] };
}
