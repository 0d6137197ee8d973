/**
 * Model bundles: resolve what the user passed to `--model` (a bundle folder, or a Hugging Face
 * cache repository) into a sorted list of real files, and validate the whole bundle before a
 * single byte is copied.
 */
import { createReadStream } from 'node:fs';
import { readFile, readdir, lstat, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from '../errors.js';
import { readSafetensorsHeader, type SafetensorsHeader } from './safetensors.js';
import {
  expectedDigestFromBlobName,
  hfRepoOfSnapshot,
  isHfCacheRepo,
  listHfCacheRepos,
  repoIdFromFolderName,
  resolveHfSnapshot,
  type ExpectedDigest,
} from './hf-cache.js';

export type { ExpectedDigest } from './hf-cache.js';

/** One file of a bundle. */
export interface BundleFile {
  /** Posix path relative to the bundle root: where the file goes under `models/<name>/`. */
  relPath: string;
  /** The real file to read (symlinks dereferenced). */
  sourcePath: string;
  size: number;
  /** The digest the HF cache names the blob by; the copy must match it. */
  expected?: ExpectedDigest;
}

/** A resolved, validated model bundle. */
export interface ModelBundle {
  /** Folder name on the seed under `models/`. */
  name: string;
  /** What the user passed, made absolute. */
  input: string;
  kind: 'folder' | 'hf-cache';
  /** `org/name` for an HF cache repository. */
  repoId?: string;
  /** The snapshot's commit hash for an HF cache repository. */
  revision?: string;
  /** The resolved folder whose files are copied (the snapshot folder for HF caches). */
  root: string;
  /** Sorted by relPath. */
  files: BundleFile[];
  /** Entries left out on purpose (`.git`, `.cache`, other hidden entries), with why. */
  excluded: { relPath: string; reason: string }[];
  totalBytes: number;
  /** relPaths of all `*.safetensors` files. */
  shards: string[];
  /** Number of tensors across all safetensors files. */
  tensors: number;
}

/** Options of {@link resolveModelBundle}. */
export interface ResolveBundleOptions {
  /** HF cache only: a ref name (`main`, `pr/1`), a commit hash, or a unique prefix of one. */
  revision?: string;
  /** The bundle's folder name on the seed; default: the repo name (HF) or the folder's basename. */
  name?: string;
}

/** JSON files that loaders read at startup: if present they must parse. */
const KNOWN_JSON_FILES = [
  'config.json',
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'preprocessor_config.json',
  'added_tokens.json',
] as const;

/** Shard names written by transformers' `save_pretrained` (`model-00001-of-00004.safetensors`). */
const SHARD_NAME = /-\d{5}-of-\d{5}\.safetensors$/;

const SAFE_NAME = /^[A-Za-z0-9_][A-Za-z0-9._+-]{0,127}$/;

/**
 * Resolves and fully validates a bundle before anything is copied.
 *
 * `input` is one of: a bundle folder (files as vLLM loads them: config.json, *.safetensors,
 * tokenizer files...); a Hugging Face cache repository folder (`models--org--name`, resolved
 * through `refs/main` or `options.revision` to `snapshots/<commit>`); or one snapshot folder of
 * such a repository. A hub cache root holding several repositories is refused with the list.
 *
 * Checks: config.json exists and is a JSON object; the tokenizer/generation JSON files parse when
 * present; every `*.safetensors` header is valid (see safetensors.ts); every `*.safetensors.index.json`
 * maps each tensor to an existing shard that holds it, and every tensor of those shards appears in
 * the index under that shard; a `*-NNNNN-of-NNNNN.safetensors` file next to an index that does not
 * list it is an error (a stale or mixed download), while other unlisted safetensors files (such as
 * Mistral's `consolidated.safetensors` next to the transformers shards) are copied as they are.
 *
 * Pickle-only bundles (`pytorch_model.bin`, `*.pt`, no safetensors at all) are refused: loading a
 * pickle executes code, and Dubnium serves safetensors only. A `.bin` next to safetensors is copied.
 *
 * Hidden entries (`.git/`, `.cache/` from `huggingface-cli download --local-dir`, `.huggingface/`,
 * dotfiles) are left out and listed in `excluded`. Symlinks to files are followed (the copy holds
 * real files); dangling symlinks, symlinks to folders and special files are errors.
 *
 * @throws UsageError (exit 2) naming the file and the problem
 */
export async function resolveModelBundle(input: string, options: ResolveBundleOptions = {}): Promise<ModelBundle> {
  const absolute = path.resolve(input);
  let info;
  try {
    info = await stat(absolute);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new UsageError(
      code === 'ENOENT'
        ? `Model bundle ${absolute} does not exist. Pass --model a bundle folder or a Hugging Face cache folder (models--org--name).`
        : `Cannot read model bundle ${absolute}: ${code ?? (error as Error).message}.`,
      [],
      { cause: error },
    );
  }
  if (!info.isDirectory()) {
    throw new UsageError(
      `Model bundle ${absolute} is not a folder. Pass --model the folder that holds config.json and the *.safetensors files, not a single file.`,
    );
  }

  let kind: ModelBundle['kind'] = 'folder';
  let root = absolute;
  let repoId: string | undefined;
  let revision: string | undefined;
  let blobsDir: string | undefined;
  let defaultName = path.basename(absolute);

  const snapshotRepo = await hfRepoOfSnapshot(absolute);
  if (await isHfCacheRepo(absolute)) {
    const snapshot = await resolveHfSnapshot(absolute, options.revision);
    kind = 'hf-cache';
    root = snapshot.snapshotDir;
    repoId = snapshot.repoId;
    revision = snapshot.revision;
    blobsDir = snapshot.blobsDir;
  } else if (snapshotRepo !== undefined) {
    const commit = path.basename(absolute);
    if (options.revision !== undefined && !commit.startsWith(options.revision.toLowerCase())) {
      throw new UsageError(
        `--revision ${options.revision} does not match the snapshot folder ${absolute} that was passed. Pass the repository folder ${snapshotRepo} to choose a revision.`,
      );
    }
    kind = 'hf-cache';
    repoId = repoIdFromFolderName(path.basename(snapshotRepo));
    revision = commit;
    blobsDir = path.join(snapshotRepo, 'blobs');
  } else {
    const repos = await listHfCacheRepos(absolute);
    if (repos.length > 0 && !(await exists(path.join(absolute, 'config.json')))) {
      throw new UsageError(
        `${absolute} is a Hugging Face hub cache with ${repos.length} model(s), not one model. Pass one of them to --model: ${repos.map((repo) => path.join(absolute, repo)).join(', ')}.`,
      );
    }
    if (options.revision !== undefined) {
      throw new UsageError(
        `--revision only applies to a Hugging Face cache folder (models--org--name), and ${absolute} is a plain bundle folder. Drop --revision or pass the cache folder.`,
      );
    }
  }
  if (repoId !== undefined) defaultName = repoId.split('/').pop()!;

  const name = options.name ?? defaultName;
  if (!SAFE_NAME.test(name) || name.includes('..')) {
    throw new UsageError(
      `Bundle name "${name}" cannot be a folder name on the seed: use letters, digits, '.', '_', '-' and '+', not starting with '.' or '-', no '..', at most 128 characters. Set another name for ${absolute}.`,
    );
  }

  const { files, excluded } = await listBundleFiles(root, blobsDir);
  const display = (relPath: string) => path.join(root, ...relPath.split('/'));
  const { shards, tensors } = await validateBundle(root, files, display);

  const bundle: ModelBundle = {
    name,
    input: absolute,
    kind,
    root,
    files,
    excluded,
    totalBytes: files.reduce((sum, file) => sum + file.size, 0),
    shards,
    tensors,
  };
  if (repoId !== undefined) bundle.repoId = repoId;
  if (revision !== undefined) bundle.revision = revision;
  return bundle;
}

async function exists(candidate: string): Promise<boolean> {
  try {
    await lstat(candidate);
    return true;
  } catch {
    return false;
  }
}

function exclusionReason(name: string, isDirectory: boolean): string {
  switch (name) {
    case '.git':
      return 'git metadata';
    case '.cache':
      return 'download cache metadata (huggingface-cli --local-dir)';
    case '.huggingface':
      return 'Hugging Face metadata';
    default:
      return isDirectory ? 'hidden folder' : 'hidden file';
  }
}

/** Compares like a byte-wise sort, so the order never depends on the locale. */
function byPath(left: string, right: string): number {
  return left < right ? -1 : left > right ? 1 : 0;
}

/** Every regular file under `root` (recursively, symlinks to files followed), sorted, plus the excluded entries. */
async function listBundleFiles(
  root: string,
  blobsDir: string | undefined,
): Promise<{ files: BundleFile[]; excluded: { relPath: string; reason: string }[] }> {
  const files: BundleFile[] = [];
  const excluded: { relPath: string; reason: string }[] = [];
  const realBlobsDir = blobsDir === undefined ? undefined : await realpath(blobsDir).catch(() => undefined);

  const walk = async (dir: string, prefix: string): Promise<void> => {
    const entries = (await readdir(dir, { withFileTypes: true })).sort((left, right) => byPath(left.name, right.name));
    for (const entry of entries) {
      const relPath = prefix === '' ? entry.name : `${prefix}/${entry.name}`;
      const full = path.join(dir, entry.name);
      if (entry.name.startsWith('.')) {
        excluded.push({ relPath, reason: exclusionReason(entry.name, entry.isDirectory()) });
        continue;
      }
      if (entry.isDirectory()) {
        await walk(full, relPath);
        continue;
      }
      if (entry.isFile()) {
        files.push({ relPath, sourcePath: full, size: (await stat(full)).size });
        continue;
      }
      if (entry.isSymbolicLink()) {
        let target;
        try {
          target = await stat(full);
        } catch {
          throw new UsageError(
            `${full} is a dangling symlink: its target does not exist (an incomplete download?). Fix or remove it, then build again.`,
          );
        }
        if (!target.isFile()) {
          throw new UsageError(
            `${full} is a symlink to ${target.isDirectory() ? 'a folder' : 'a special file'}; a bundle may only link to regular files. Replace it with the files themselves.`,
          );
        }
        const sourcePath = await realpath(full);
        const file: BundleFile = { relPath, sourcePath, size: target.size };
        if (realBlobsDir !== undefined && path.dirname(sourcePath) === realBlobsDir) {
          const expected = expectedDigestFromBlobName(path.basename(sourcePath));
          if (expected !== undefined) file.expected = expected;
        }
        files.push(file);
        continue;
      }
      throw new UsageError(`${full} is not a regular file (a FIFO, socket or device); a bundle holds regular files only. Remove it.`);
    }
  };
  await walk(root, '');
  files.sort((left, right) => byPath(left.relPath, right.relPath));
  return { files, excluded };
}

async function readJson(file: BundleFile, display: (relPath: string) => string): Promise<unknown> {
  const text = await readFile(file.sourcePath, 'utf8');
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new UsageError(`${display(file.relPath)} is not valid JSON (${(error as Error).message}). Fix the file or download it again.`);
  }
}

/** Above this size a loader JSON file is checked by streaming instead of parsed into the heap. */
const JSON_PARSE_LIMIT = 8 * 1024 * 1024;

async function checkJson(file: BundleFile, display: (relPath: string) => string): Promise<void> {
  if (file.size <= JSON_PARSE_LIMIT) {
    await readJson(file, display);
    return;
  }
  const checker = new JsonSyntaxChecker();
  try {
    for await (const chunk of createReadStream(file.sourcePath, { highWaterMark: 1024 * 1024 })) checker.update(chunk as Buffer);
    checker.end();
  } catch (error) {
    if (!(error instanceof SyntaxError)) throw error;
    throw new UsageError(`${display(file.relPath)} is not valid JSON (${error.message}). Fix the file or download it again.`);
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function posixJoin(dir: string, relative: string): string {
  return path.posix.normalize(dir === '.' ? relative : `${dir}/${relative}`);
}

async function validateBundle(
  root: string,
  files: BundleFile[],
  display: (relPath: string) => string,
): Promise<{ shards: string[]; tensors: number }> {
  const byRelPath = new Map(files.map((file) => [file.relPath, file]));

  const config = byRelPath.get('config.json');
  if (config === undefined) {
    throw new UsageError(`${root} has no config.json, so it is not a model bundle. Pass the folder that holds config.json and the *.safetensors files.`);
  }
  for (const name of KNOWN_JSON_FILES) {
    const file = byRelPath.get(name);
    if (file === undefined) continue;
    if (name !== 'config.json') {
      await checkJson(file, display);
      continue;
    }
    if (!isPlainObject(await readJson(file, display))) {
      throw new UsageError(`${display(name)} is not a JSON object. Fix the file or download it again.`);
    }
  }

  const shards = files.filter((file) => file.relPath.endsWith('.safetensors')).map((file) => file.relPath);
  if (shards.length === 0) {
    const pickles = files.filter((file) => /\.(bin|pt|pth|ckpt)$/.test(file.relPath)).map((file) => file.relPath);
    throw new UsageError(
      pickles.length > 0
        ? `${root} has only pickle weights (${pickles.join(', ')}) and no *.safetensors; pickle files run code when loaded, so they are not accepted. Download the safetensors version of the model or convert it.`
        : `${root} has no *.safetensors weights. Pass a bundle folder with the model's safetensors files.`,
    );
  }

  const headers = new Map<string, SafetensorsHeader>();
  let tensors = 0;
  for (const relPath of shards) {
    const header = await readSafetensorsHeader(byRelPath.get(relPath)!.sourcePath, display(relPath));
    headers.set(relPath, header);
    tensors += Object.keys(header.tensors).length;
  }

  const indexed = new Set<string>();
  const indexes = files.filter((file) => file.relPath.endsWith('.safetensors.index.json'));
  for (const indexFile of indexes) {
    const indexPath = display(indexFile.relPath);
    const indexDir = path.posix.dirname(indexFile.relPath);
    const parsed = await readJson(indexFile, display);
    if (!isPlainObject(parsed) || !isPlainObject(parsed.weight_map)) {
      throw new UsageError(`${indexPath} has no "weight_map" object. Fix the index or download it again.`);
    }
    const expectedByShard = new Map<string, Set<string>>();
    for (const [tensor, shard] of Object.entries(parsed.weight_map)) {
      if (typeof shard !== 'string' || shard === '' || path.posix.isAbsolute(shard) || shard.split('/').includes('..')) {
        throw new UsageError(`${indexPath} maps tensor "${tensor}" to an invalid shard name ${JSON.stringify(shard)}. Fix the index or download it again.`);
      }
      const shardRel = posixJoin(indexDir, shard);
      let set = expectedByShard.get(shardRel);
      if (set === undefined) expectedByShard.set(shardRel, (set = new Set()));
      set.add(tensor);
    }
    for (const [shardRel, names] of [...expectedByShard].sort(([left], [right]) => byPath(left, right))) {
      const header = headers.get(shardRel);
      if (header === undefined) {
        throw new UsageError(
          `${indexPath} names shard ${shardRel}, which is missing from ${root} (${names.size} tensors expected there). Download the missing shard or pass a complete bundle.`,
        );
      }
      indexed.add(shardRel);
      for (const name of names) {
        if (!Object.hasOwn(header.tensors, name)) {
          throw new UsageError(
            `${indexPath} maps tensor "${name}" to ${shardRel}, but that shard does not contain it. The index and shards come from different downloads; download the model again.`,
          );
        }
      }
      for (const name of Object.keys(header.tensors)) {
        if (names.has(name)) continue;
        const elsewhere = (parsed.weight_map as Record<string, unknown>)[name];
        throw new UsageError(
          elsewhere === undefined
            ? `${display(shardRel)} holds tensor "${name}", which ${indexPath} does not list. The index and shards come from different downloads; download the model again.`
            : `${display(shardRel)} holds tensor "${name}", which ${indexPath} maps to ${String(elsewhere)}. The index and shards come from different downloads; download the model again.`,
        );
      }
    }
  }

  // A save_pretrained-style shard that no index lists is left over from another download.
  const indexDirs = new Set(indexes.map((file) => path.posix.dirname(file.relPath)));
  for (const relPath of shards) {
    if (indexed.has(relPath) || !SHARD_NAME.test(relPath) || !indexDirs.has(path.posix.dirname(relPath))) continue;
    throw new UsageError(
      `${display(relPath)} is not listed in the safetensors index next to it; it is probably left over from another download. Remove it or download the model again.`,
    );
  }

  return { shards, tensors };
}

const S = {
  value: 0,
  arrayFirst: 1,
  objectFirst: 2,
  key: 3,
  colon: 4,
  after: 5,
  string: 6,
  escape: 7,
  hex: 8,
  literal: 9,
  minus: 10,
  zero: 11,
  integer: 12,
  dot: 13,
  fraction: 14,
  exponentMark: 15,
  exponentSign: 16,
  exponent: 17,
} as const;
const NUMBER_ACCEPTING = new Set<number>([S.zero, S.integer, S.fraction, S.exponent]);

/**
 * A streaming JSON well-formedness check (RFC 8259 grammar, bytes in any chunking) that builds
 * nothing: used for loader JSON files too large to parse cheaply (a 33 MB tokenizer.json turns
 * into far more heap than the copy itself needs). `update` and `end` throw a SyntaxError naming
 * the byte offset of the first problem.
 */
export class JsonSyntaxChecker {
  private state: number = S.value;
  private readonly stack: number[] = [];
  private stringIsKey = false;
  private pending = ''; // the rest of a literal (true/false/null)
  private hexLeft = 0;
  private offset = 0;

  update(chunk: Uint8Array): void {
    for (let index = 0; index < chunk.length; index++) {
      const byte = chunk[index]!;
      if (this.state === S.string) {
        // Hot loop: most bytes of a tokenizer file are string content.
        if (byte === 0x22) this.state = this.stringIsKey ? S.colon : S.after;
        else if (byte === 0x5c) this.state = S.escape;
        else if (byte < 0x20) this.fail(byte, this.offset + index);
        continue;
      }
      this.step(byte, this.offset + index);
    }
    this.offset += chunk.length;
  }

  end(): void {
    if (NUMBER_ACCEPTING.has(this.state)) this.state = S.after;
    if (this.state !== S.after || this.stack.length > 0) {
      throw new SyntaxError(`unexpected end of input at offset ${this.offset}`);
    }
  }

  private fail(byte: number, at: number): never {
    const shown = byte >= 0x20 && byte < 0x7f ? `'${String.fromCharCode(byte)}'` : `0x${byte.toString(16).padStart(2, '0')}`;
    throw new SyntaxError(`unexpected byte ${shown} at offset ${at}`);
  }

  private step(byte: number, at: number): void {
    const isSpace = byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09;
    const isDigit = byte >= 0x30 && byte <= 0x39;
    switch (this.state) {
      case S.arrayFirst:
        if (isSpace) return;
        if (byte === 0x5d) return this.close(0x5b, byte, at);
        this.state = S.value;
        return this.step(byte, at);
      case S.value:
        if (isSpace) return;
        if (byte === 0x7b) {
          this.stack.push(0x7b);
          this.state = S.objectFirst;
        } else if (byte === 0x5b) {
          this.stack.push(0x5b);
          this.state = S.arrayFirst;
        } else if (byte === 0x22) {
          this.stringIsKey = false;
          this.state = S.string;
        } else if (byte === 0x2d) this.state = S.minus;
        else if (byte === 0x30) this.state = S.zero;
        else if (isDigit) this.state = S.integer;
        else if (byte === 0x74) this.literal('rue');
        else if (byte === 0x66) this.literal('alse');
        else if (byte === 0x6e) this.literal('ull');
        else this.fail(byte, at);
        return;
      case S.literal:
        if (byte !== this.pending.charCodeAt(0)) this.fail(byte, at);
        this.pending = this.pending.slice(1);
        if (this.pending === '') this.state = S.after;
        return;
      case S.objectFirst:
      case S.key:
        if (isSpace) return;
        if (byte === 0x22) {
          this.stringIsKey = true;
          this.state = S.string;
        } else if (byte === 0x7d && this.state === S.objectFirst) this.close(0x7b, byte, at);
        else this.fail(byte, at);
        return;
      case S.colon:
        if (isSpace) return;
        if (byte !== 0x3a) this.fail(byte, at);
        this.state = S.value;
        return;
      case S.after: {
        if (isSpace) return;
        const top = this.stack[this.stack.length - 1];
        if (top === undefined) this.fail(byte, at);
        if (byte === 0x2c) this.state = top === 0x7b ? S.key : S.value;
        else if (byte === 0x7d || byte === 0x5d) this.close(byte === 0x7d ? 0x7b : 0x5b, byte, at);
        else this.fail(byte, at);
        return;
      }
      case S.escape:
        if (byte === 0x75) {
          this.hexLeft = 4;
          this.state = S.hex;
        } else if ([0x22, 0x5c, 0x2f, 0x62, 0x66, 0x6e, 0x72, 0x74].includes(byte)) this.state = S.string;
        else this.fail(byte, at);
        return;
      case S.hex:
        if (!(isDigit || (byte >= 0x41 && byte <= 0x46) || (byte >= 0x61 && byte <= 0x66))) this.fail(byte, at);
        if (--this.hexLeft === 0) this.state = S.string;
        return;
      case S.minus:
        if (byte === 0x30) this.state = S.zero;
        else if (isDigit) this.state = S.integer;
        else this.fail(byte, at);
        return;
      case S.zero:
      case S.integer:
        if (isDigit && this.state === S.integer) return;
        if (byte === 0x2e) this.state = S.dot;
        else if (byte === 0x65 || byte === 0x45) this.state = S.exponentMark;
        else return this.endNumber(byte, at);
        return;
      case S.dot:
        if (!isDigit) this.fail(byte, at);
        this.state = S.fraction;
        return;
      case S.fraction:
        if (isDigit) return;
        if (byte === 0x65 || byte === 0x45) this.state = S.exponentMark;
        else this.endNumber(byte, at);
        return;
      case S.exponentMark:
        if (byte === 0x2b || byte === 0x2d) this.state = S.exponentSign;
        else if (isDigit) this.state = S.exponent;
        else this.fail(byte, at);
        return;
      case S.exponentSign:
        if (!isDigit) this.fail(byte, at);
        this.state = S.exponent;
        return;
      case S.exponent:
        if (isDigit) return;
        this.endNumber(byte, at);
        return;
      default:
        this.fail(byte, at);
    }
  }

  private literal(rest: string): void {
    this.pending = rest;
    this.state = S.literal;
  }

  private endNumber(byte: number, at: number): void {
    this.state = S.after;
    this.step(byte, at);
  }

  private close(opener: number, byte: number, at: number): void {
    if (this.stack.pop() !== opener) this.fail(byte, at);
    this.state = S.after;
  }
}
