/**
 * Profiles: YAML files validated by a schema, then by semantic checks. Defaults < profile < flags.
 * Relative paths in a profile are relative to the profile file's folder; `~` is the home folder.
 */
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { z } from 'zod';
import { UsageError } from './errors.js';

const relativeOrAbsolutePath = z.string().min(1, 'must not be empty');

export const profileSchema = z
  .object({
    description: z.string().optional(),
    source: z
      .object({
        repo: relativeOrAbsolutePath,
        includeUntracked: z.boolean().optional(),
        plainFolder: z.boolean().optional(),
        submodules: z.enum(['include', 'refuse']).optional(),
        name: z.string().regex(/^[A-Za-z0-9._-]+$/, 'use letters, digits, dot, dash and underscore').optional(),
        /** Flake inputs to carry on the seed whatever their URL (lock node names or attribute paths like a/b), or `all`. */
        carryInputs: z.union([z.literal('all'), z.array(z.string().min(1))]).optional(),
        /** Local clones (or folders) of carried inputs that are not in the Nix store, by input name. */
        inputClones: z.record(z.string().min(1), relativeOrAbsolutePath).optional(),
        /** Where to look for input store paths: `/` (this machine's /nix/store) or a chroot store folder. */
        nixStore: relativeOrAbsolutePath.optional(),
        /** The nixosConfigurations name seed-install.sh puts in its `nixos-install --flake` line. */
        flakeHost: z.string().regex(/^[A-Za-z0-9._-]+$/, 'a nixosConfigurations attribute name: letters, digits, dot, dash, underscore').optional(),
      })
      .strict()
      .optional(),
    models: z
      .array(
        z
          .object({
            path: relativeOrAbsolutePath,
            revision: z.string().min(1).optional(),
            name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'a folder name: letters, digits, dot, dash, underscore; no leading dot').optional(),
          })
          .strict(),
      )
      .optional(),
    /** Folders the wizard searches for model bundles (besides the Hugging Face cache). */
    modelFolders: z.array(relativeOrAbsolutePath).optional(),
    target: z
      .object({
        folder: relativeOrAbsolutePath.optional(),
        device: z.string().startsWith('/dev/', 'must be a /dev/ path').optional(),
        image: relativeOrAbsolutePath.optional(),
        label: z.string().min(1).max(16, 'no filesystem allows a label longer than 16 characters').optional(),
        filesystem: z.enum(['ext4', 'exfat', 'fat']).optional(),
        size: z.string().regex(/^\d+(\.\d+)?\s*([KMGT]i?B?)?$/i, 'a size such as 8G or 512MiB').optional(),
      })
      .strict()
      .optional(),
    modelStore: z
      .string()
      .regex(/^\/[A-Za-z0-9._/-]*$/, 'must be an absolute path of letters, digits, dot, dash, underscore and slash')
      .refine((value) => !value.split('/').includes('..'), 'must not contain ".."')
      .optional(),
    verify: z.boolean().optional(),
    /** Sign the seed's manifest with this SSH key (private key file, or a .pub whose private half is in ssh-agent). */
    sign: z.object({ key: relativeOrAbsolutePath }).strict().optional(),
    scan: z
      .object({
        operatorSecrets: z.boolean().optional(),
        allow: z
          .array(z.object({ fingerprint: z.string().min(8), reason: z.string().min(3, 'say why this finding is acceptable') }).strict())
          .optional(),
        // Bounds on container expansion (README "Fail closed"): raise one when real media hit it.
        limits: z
          .object({
            maxDepth: z.number().int().min(1).max(1000).optional(),
            maxExpandedBytes: z.number().int().min(1).optional(),
            maxRatio: z.number().min(1).optional(),
          })
          .strict()
          .optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

export type ProfileData = z.infer<typeof profileSchema>;

export interface LoadedProfile {
  name: string;
  file: string;
  data: ProfileData;
}

/** The shipped profiles folder (next to package.json). */
export const PACKAGE_PROFILES = fileURLToPath(new URL('../profiles/', import.meta.url));

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    (info) => info.isFile(),
    () => false,
  );
}

/** `NAME` resolves to ./profiles/NAME.yaml, then to the shipped profiles/NAME.yaml; anything with a slash or .yaml is a file. */
export async function resolveProfilePath(nameOrFile: string, cwd = process.cwd()): Promise<string> {
  const looksLikeFile = nameOrFile.includes('/') || /\.ya?ml$/i.test(nameOrFile);
  if (looksLikeFile) {
    const file = path.resolve(cwd, nameOrFile);
    if (!(await exists(file))) throw new UsageError(`Profile file ${file} does not exist; pass --profile with a profile name or an existing YAML file.`);
    return file;
  }
  if (!/^[A-Za-z0-9._-]+$/.test(nameOrFile)) throw new UsageError(`Profile name ${JSON.stringify(nameOrFile)} is not valid; use letters, digits, dot, dash and underscore.`);
  for (const candidate of [path.join(cwd, 'profiles', `${nameOrFile}.yaml`), path.join(PACKAGE_PROFILES, `${nameOrFile}.yaml`)]) {
    if (await exists(candidate)) return candidate;
  }
  throw new UsageError(`No profile named ${nameOrFile}: looked for profiles/${nameOrFile}.yaml here and in ${PACKAGE_PROFILES}. Pass a profile file path instead.`);
}

/** Formats zod issues as `path: message` lines. */
function issuesToLines(file: string, issues: readonly z.core.$ZodIssue[]): string[] {
  return issues.map((issue) => `${issue.path.length > 0 ? issue.path.join('.') : '(top level)'}: ${issue.message}`);
}

export function parseProfile(text: string, file: string): ProfileData {
  let data: unknown;
  try {
    data = parseYaml(text, { prettyErrors: true }) ?? {};
  } catch (error) {
    const position = error instanceof YAMLParseError && error.linePos ? ` (line ${error.linePos[0].line})` : '';
    throw new UsageError(`Profile ${file} is not valid YAML${position}: ${(error as Error).message.split('\n')[0]}`);
  }
  const result = profileSchema.safeParse(data);
  if (!result.success) {
    const lines = issuesToLines(file, result.error.issues);
    throw new UsageError(`Profile ${file} is invalid: ${lines[0]}`, lines.slice(1));
  }
  return result.data;
}

export async function loadProfile(nameOrFile: string, cwd = process.cwd()): Promise<LoadedProfile> {
  const file = await resolveProfilePath(nameOrFile, cwd);
  const data = parseProfile(await readFile(file, 'utf8'), file);
  return { name: path.basename(file).replace(/\.ya?ml$/i, ''), file, data };
}

export { resolvePath } from './util/resolve-path.js';
