/**
 * The manifest's zod schema and its parser. Kept apart from manifest.ts so that only code that reads a
 * manifest (verify, a build resuming or finishing) loads zod.
 */
import { z } from 'zod';
import { CHECKSUMS_NAME, FORMAT_VERSION, MANIFEST_NAME, isSafeRelativePath, manifestSelfDigest, type Manifest } from './manifest.js';

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits');

/** A payload path: relative, POSIX, no `..`, no empty or dot segments, no control characters or backslashes. */
export const seedRelativePath = z
  .string()
  .min(1)
  .max(4096)
  .refine((value) => isSafeRelativePath(value), 'must be a relative path inside the seed (no "..", no absolute path)');

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
