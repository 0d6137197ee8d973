/**
 * Builds small format-1 seed folders by hand (real files, a real `tar -czf` archive, real
 * `sha256sum` output), independent of the builder, so the installer script is tested against
 * the contract rather than against our own build code.
 */
import { copyFile, mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { tempDir, writeTree } from './tmp.js';

/** The installer script as shipped in every seed root. */
export const seedInstallScript = fileURLToPath(new URL('../../src/assets/seed-install.sh', import.meta.url));

/** What goes into a hand-made seed. */
export interface SeedFixtureOptions {
  /** Bundle name -> files (relative path -> content) under models/<bundle>/. */
  bundles?: Record<string, Record<string, string | Buffer>>;
  /** Files of the configuration repository, placed under the archive's single top-level folder. */
  source?: Record<string, string | Buffer>;
  /** The archive's top-level folder, also its file name (`source/<top>.tar.gz`). */
  top?: string;
  /** Top-level `modelStore` written into the manifest; `null` leaves the key out. */
  modelStore?: string | null;
  /** Folder to build the seed in (default: a fresh temp folder). */
  dir?: string;
}

/** Default bundle: a small safetensors-shaped bundle with a subfolder. */
export const defaultBundles: Record<string, Record<string, string | Buffer>> = {
  'qwen-small': {
    'config.json': '{"model_type":"qwen2"}\n',
    'model-00001-of-00002.safetensors': Buffer.alloc(4096, 7),
    'model-00002-of-00002.safetensors': Buffer.alloc(2048, 9),
    'tokenizer/tokenizer.json': '{"version":"1.0"}\n',
  },
  'embed-mini': {
    'config.json': '{"model_type":"bert"}\n',
    'model.safetensors': Buffer.alloc(1024, 3),
  },
};

/** Default configuration repository. */
export const defaultSource: Record<string, string | Buffer> = {
  'flake.nix': '{ outputs = _: { }; }\n',
  'hosts/workstation/default.nix': '{ ... }: { }\n',
  '.sops.yaml': 'creation_rules: []\n',
};

/** Runs `sha256sum` over every payload file in `seedRoot` and writes SHA256SUMS. */
export async function writeSha256Sums(seedRoot: string): Promise<void> {
  const files = (await readdir(seedRoot, { recursive: true, withFileTypes: true }))
    .filter((entry) => entry.isFile() || entry.isSymbolicLink())
    .map((entry) => path.relative(seedRoot, path.join(entry.parentPath, entry.name)))
    .filter((relative) => relative !== 'dubnium-seed.json' && relative !== 'SHA256SUMS')
    .sort();
  const sums = execFileSync('sha256sum', ['--', ...files], { cwd: seedRoot, encoding: 'utf8' });
  await writeFile(path.join(seedRoot, 'SHA256SUMS'), sums);
}

/** Creates a gzip tarball of `files` under one top-level folder `top`, with the real tar. */
export async function makeSourceArchive(
  archivePath: string,
  top: string,
  files: Record<string, string | Buffer>,
): Promise<void> {
  const stage = await tempDir('dubnium-seed-stage-');
  await writeTree(path.join(stage, top), files);
  await mkdir(path.dirname(archivePath), { recursive: true });
  execFileSync('tar', ['-czf', archivePath, '-C', stage, top]);
}

/** Builds a complete seed folder and returns its path; the manifest is written last. */
export async function buildSeedFixture(options: SeedFixtureOptions = {}): Promise<string> {
  const root = options.dir ?? (await tempDir('dubnium-seed-fixture-'));
  const bundles = options.bundles ?? defaultBundles;
  const top = options.top ?? 'dubnium-0123abc';
  for (const [bundle, files] of Object.entries(bundles)) {
    await writeTree(path.join(root, 'models', bundle), files);
  }
  await makeSourceArchive(path.join(root, 'source', `${top}.tar.gz`), top, options.source ?? defaultSource);
  await copyFile(seedInstallScript, path.join(root, 'seed-install.sh'));
  await writeSha256Sums(root);
  const manifest: Record<string, unknown> = {
    format: 1,
    createdAt: '2024-01-02T03:04:05.000Z',
    // A nested key with the same name must not be mistaken for the top-level one.
    models: Object.keys(bundles).map((name) => ({ name, modelStore: '/nested/is/ignored' })),
    source: { archive: `source/${top}.tar.gz` },
  };
  const modelStore = options.modelStore === undefined ? '/var/lib/dubnium/models' : options.modelStore;
  if (modelStore !== null) manifest.modelStore = modelStore;
  await writeFile(path.join(root, 'dubnium-seed.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  return root;
}
