/**
 * Generators for model bundles, broken variants and Hugging Face cache layouts, shared by the
 * tests and the benchmark. Everything is deterministic: the same arguments give the same bytes.
 * Large shards are streamed in 4 MiB chunks of an AES-CTR keystream, so memory stays flat
 * whatever the shard size (and the bytes do not compress or deduplicate).
 */
import { createCipheriv, createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, mkdir, open, readdir, readFile, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { SAFETENSORS_DTYPE_BITS } from '../../src/core/safetensors.js';

/** One tensor to write. `data` (exact byte length) overrides the generated pattern. */
export interface TensorSpec {
  name: string;
  dtype: string;
  shape: number[];
  data?: Buffer;
}

const CHUNK_BYTES = 4 * 1024 * 1024;
const ZEROS = Buffer.alloc(CHUNK_BYTES);

function tensorBytes(spec: Pick<TensorSpec, 'dtype' | 'shape'>): number {
  const bits = SAFETENSORS_DTYPE_BITS[spec.dtype as keyof typeof SAFETENSORS_DTYPE_BITS];
  if (bits === undefined) throw new Error(`test helper: unknown dtype ${spec.dtype}`);
  const elements = spec.shape.reduce((product, dimension) => product * dimension, 1);
  return Math.ceil((elements * bits) / 8);
}

/** A deterministic pseudo-random byte stream for `seed` (AES-128-CTR keystream). */
export function patternStream(seed: string): (length: number) => Buffer {
  const key = createHash('sha256').update(seed).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  return (length) => cipher.update(length <= ZEROS.length ? ZEROS.subarray(0, length) : Buffer.alloc(length));
}

/**
 * The 8 + N header bytes for `tensors`, laid out one after another in order. The JSON is
 * space-padded to a multiple of 8 (as the reference writer does) or to exactly `headerLength`.
 */
export function safetensorsHeader(
  tensors: Pick<TensorSpec, 'name' | 'dtype' | 'shape'>[],
  options: { metadata?: Record<string, string>; headerLength?: number } = {},
): { header: Buffer; dataLength: number } {
  const json: Record<string, unknown> = {};
  if (options.metadata) json.__metadata__ = options.metadata;
  let offset = 0;
  for (const tensor of tensors) {
    const length = tensorBytes(tensor);
    json[tensor.name] = { dtype: tensor.dtype, shape: tensor.shape, data_offsets: [offset, offset + length] };
    offset += length;
  }
  const text = Buffer.from(JSON.stringify(json), 'utf8');
  const target = options.headerLength ?? Math.ceil(text.length / 8) * 8;
  if (target < text.length) throw new Error(`test helper: header needs ${text.length} bytes, more than ${target}`);
  const header = Buffer.alloc(8 + target, 0x20);
  header.writeBigUInt64LE(BigInt(target), 0);
  text.copy(header, 8);
  return { header, dataLength: offset };
}

/** A complete, valid safetensors file in memory (for small tensors). */
export function makeSafetensors(
  tensors: TensorSpec[],
  options: { metadata?: Record<string, string>; seed?: string } = {},
): Buffer {
  const { header } = safetensorsHeader(tensors, options);
  const next = patternStream(options.seed ?? 'makeSafetensors');
  const parts = [header];
  for (const tensor of tensors) {
    const length = tensorBytes(tensor);
    if (tensor.data && tensor.data.length !== length) throw new Error(`test helper: ${tensor.name} data is ${tensor.data.length} bytes, needs ${length}`);
    parts.push(tensor.data ?? next(length));
  }
  return Buffer.concat(parts);
}

/** A safetensors file from a raw header text (or bytes) and `dataLength` pattern bytes, any length field. */
export function rawSafetensors(headerJson: string | Buffer, dataLength: number, lengthField?: bigint): Buffer {
  const json = typeof headerJson === 'string' ? Buffer.from(headerJson, 'utf8') : headerJson;
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(lengthField ?? BigInt(json.length));
  return Buffer.concat([prefix, json, patternStream('raw')(dataLength)]);
}

/**
 * Writes a safetensors file streaming its data (tensors without `data` get pattern bytes), so a
 * multi-GiB file needs only one 4 MiB chunk in memory. Returns the file size.
 */
export async function writeSafetensors(
  file: string,
  tensors: TensorSpec[],
  options: { metadata?: Record<string, string>; seed?: string; headerLength?: number } = {},
): Promise<number> {
  const { header, dataLength } = safetensorsHeader(tensors, options);
  const next = patternStream(options.seed ?? file);
  await mkdir(path.dirname(file), { recursive: true });
  const handle = await open(file, 'w');
  try {
    await handle.write(header);
    for (const tensor of tensors) {
      if (tensor.data) {
        await handle.write(tensor.data);
        continue;
      }
      let remaining = tensorBytes(tensor);
      while (remaining > 0) {
        const chunk = next(Math.min(CHUNK_BYTES, remaining));
        await handle.write(chunk);
        remaining -= chunk.length;
      }
    }
  } finally {
    await handle.close();
  }
  return header.length + dataLength;
}

/** What {@link writeBundle} should produce. */
export interface BundleSpec {
  /** Number of safetensors shards (default 2). */
  shards?: number;
  /** Small tensors per shard (default 3). */
  tensorsPerShard?: number;
  /** Exact size of each shard file in bytes: one large U8 tensor per shard fills what the small ones leave. */
  shardBytes?: number;
  /** Write model.safetensors.index.json (default: when shards > 1). */
  withIndex?: boolean;
  /** More files (relative path → content), written last, so they can replace the defaults. */
  extraFiles?: Record<string, string | Buffer>;
  /** Seed for the tensor bytes (default: the folder name). */
  seed?: string;
}

/** What {@link writeBundle} wrote. */
export interface WrittenBundle {
  dir: string;
  /** Shard file names, in order. */
  shards: string[];
  /** tensor → shard file name. */
  weightMap: Record<string, string>;
  /** Every file written, relative, sorted. */
  files: string[];
  totalBytes: number;
}

/** A small llama-like config.json. */
export function llamaConfig(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: 32,
    intermediate_size: 64,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: 8,
    vocab_size: 258,
    max_position_embeddings: 512,
    rms_norm_eps: 1e-5,
    rope_theta: 10000.0,
    hidden_act: 'silu',
    tie_word_embeddings: true,
    bos_token_id: 256,
    eos_token_id: 257,
    torch_dtype: 'bfloat16',
    transformers_version: '4.46.0',
    ...overrides,
  };
}

const json = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`;

/**
 * Writes a bundle folder: config.json, tokenizer.json, tokenizer_config.json,
 * generation_config.json, sharded safetensors and (optionally) the index.
 */
export async function writeBundle(dir: string, spec: BundleSpec = {}): Promise<WrittenBundle> {
  const shardCount = spec.shards ?? 2;
  const perShard = spec.tensorsPerShard ?? 3;
  const withIndex = spec.withIndex ?? shardCount > 1;
  const seed = spec.seed ?? path.basename(dir);
  await mkdir(dir, { recursive: true });

  const files = new Map<string, string | Buffer>([
    ['config.json', json(llamaConfig())],
    ['generation_config.json', json({ bos_token_id: 256, eos_token_id: 257, do_sample: false, transformers_version: '4.46.0' })],
    ['tokenizer.json', json(byteLevelTokenizer())],
    ['tokenizer_config.json', json(tokenizerConfig())],
  ]);
  for (const [relative, content] of files) await writeFile(path.join(dir, relative), content);

  const shards: string[] = [];
  const weightMap: Record<string, string> = {};
  let totalBytes = [...files.values()].reduce((sum, content) => sum + Buffer.byteLength(content), 0);
  let tensorBytesTotal = 0;
  for (let index = 1; index <= shardCount; index++) {
    const shardName =
      withIndex || shardCount > 1
        ? `model-${String(index).padStart(5, '0')}-of-${String(shardCount).padStart(5, '0')}.safetensors`
        : 'model.safetensors';
    const tensors: TensorSpec[] = [];
    for (let j = 0; j < perShard; j++) tensors.push({ name: `model.layers.${index - 1}.block_${j}.weight`, dtype: 'F16', shape: [16, 8] });
    let headerLength: number | undefined;
    if (spec.shardBytes !== undefined) {
      const big = { name: `model.layers.${index - 1}.large.weight`, dtype: 'U8', shape: [spec.shardBytes] };
      // The header's length depends on the digits of the large tensor's size: size it with an
      // upper bound, then pad the real header to that length so the file is exactly shardBytes.
      headerLength = safetensorsHeader([big, ...tensors], { metadata: { format: 'pt' } }).header.length - 8;
      const small = tensors.reduce((sum, tensor) => sum + tensorBytes(tensor), 0);
      const largeBytes = spec.shardBytes - 8 - headerLength - small;
      if (largeBytes < 0) throw new Error(`test helper: shardBytes ${spec.shardBytes} is too small for the header`);
      tensors.unshift({ ...big, shape: [largeBytes] });
    }
    const size = await writeSafetensors(path.join(dir, shardName), tensors, {
      metadata: { format: 'pt' },
      seed: `${seed}/${shardName}`,
      ...(headerLength === undefined ? {} : { headerLength }),
    });
    shards.push(shardName);
    totalBytes += size;
    for (const tensor of tensors) {
      weightMap[tensor.name] = shardName;
      tensorBytesTotal += tensorBytes(tensor);
    }
  }
  const written = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', ...shards];
  if (withIndex) {
    const sortedMap = Object.fromEntries(Object.entries(weightMap).sort(([left], [right]) => (left < right ? -1 : 1)));
    const index = json({ metadata: { total_size: tensorBytesTotal }, weight_map: sortedMap });
    await writeFile(path.join(dir, 'model.safetensors.index.json'), index);
    totalBytes += Buffer.byteLength(index);
    written.push('model.safetensors.index.json');
  }
  for (const [relative, content] of Object.entries(spec.extraFiles ?? {})) {
    const full = path.join(dir, relative);
    await mkdir(path.dirname(full), { recursive: true });
    await writeFile(full, content);
    if (!written.includes(relative)) written.push(relative);
  }
  written.sort();
  return { dir, shards, weightMap, files: written, totalBytes };
}

/** Broken single-file variants: each is a complete file whose header breaks one rule. */
export const brokenSafetensors = {
  /** Fewer than the 8 bytes of the length field. */
  'too-short': () => Buffer.from([1, 2, 3, 4]),
  /** The length field points past the end of the file. */
  'header-length-past-end': () => rawSafetensors('{}', 0, 4096n),
  /** The length field is above the 100 MB limit. */
  'header-length-over-limit': () => rawSafetensors('{}', 0, 1n << 40n),
  /** The header is not JSON. */
  'non-json-header': () => rawSafetensors('this is not json', 0),
  /** The header is not UTF-8. */
  'non-utf8-header': () => rawSafetensors(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), 0),
  /** The header is a JSON array. */
  'header-not-object': () => rawSafetensors('[1,2,3]', 0),
  'unknown-dtype': () => rawSafetensors('{"a":{"dtype":"F12","shape":[2],"data_offsets":[0,4]}}', 4),
  'bad-shape': () => rawSafetensors('{"a":{"dtype":"U8","shape":[-2],"data_offsets":[0,2]}}', 2),
  'bad-offsets': () => rawSafetensors('{"a":{"dtype":"U8","shape":[2],"data_offsets":[0]}}', 2),
  'bad-metadata': () => rawSafetensors('{"__metadata__":{"format":1},"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}', 2),
  /** Bytes 4..8 belong to no tensor. */
  'offset-gap': () =>
    rawSafetensors('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}', 12),
  'offset-overlap': () =>
    rawSafetensors('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', 8),
  /** data_offsets span 6 bytes for a 2×F32 (8-byte) tensor. */
  'size-mismatch': () => rawSafetensors('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,6]}}', 6),
  /** Three F4 elements are 12 bits: not a whole number of bytes. */
  'misaligned-subbyte': () => rawSafetensors('{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}', 2),
  /** The last tensor's data is cut short. */
  truncated: () => makeSafetensors([{ name: 'a', dtype: 'F32', shape: [4, 4] }]).subarray(0, -5),
  /** Bytes after the last tensor. */
  'trailing-bytes': () => Buffer.concat([makeSafetensors([{ name: 'a', dtype: 'F32', shape: [4, 4] }]), Buffer.from('extra')]),
} as const;
export type BrokenSafetensorsKind = keyof typeof brokenSafetensors;

/** Ways {@link breakBundle} can break a bundle written by {@link writeBundle}. */
export type BrokenBundleKind =
  | 'corrupt-shard-header'
  | 'truncated-shard'
  | 'index-missing-shard'
  | 'index-names-unknown-shard'
  | 'index-missing-tensor'
  | 'tensor-not-in-index'
  | 'tensor-in-wrong-shard'
  | 'unreferenced-shard'
  | 'config-missing'
  | 'config-invalid'
  | 'config-not-object'
  | 'tokenizer-invalid'
  | 'no-safetensors';

/**
 * Breaks a bundle written by {@link writeBundle} (with an index, 2+ shards) in place, touching
 * only small files or a shard's first bytes, so it works on multi-GiB bundles too. Returns the
 * relative path of the file the validation error must name.
 */
export async function breakBundle(bundle: WrittenBundle, kind: BrokenBundleKind): Promise<string> {
  const { dir, shards } = bundle;
  const first = shards[0]!;
  const last = shards[shards.length - 1]!;
  const indexPath = path.join(dir, 'model.safetensors.index.json');
  const editIndex = async (edit: (weightMap: Record<string, string>) => void) => {
    const index = JSON.parse(await readFile(indexPath, 'utf8')) as { weight_map: Record<string, string> };
    edit(index.weight_map);
    await writeFile(indexPath, json(index));
  };
  switch (kind) {
    case 'corrupt-shard-header': {
      const handle = await open(path.join(dir, first), 'r+');
      const field = Buffer.alloc(8);
      field.writeBigUInt64LE(1n << 33n);
      await handle.write(field, 0, 8, 0);
      await handle.close();
      return first;
    }
    case 'truncated-shard': {
      const handle = await open(path.join(dir, first), 'r');
      const { size } = await handle.stat();
      await handle.close();
      await truncate(path.join(dir, first), size - 1);
      return first;
    }
    case 'index-missing-shard':
      await rm(path.join(dir, last));
      return 'model.safetensors.index.json';
    case 'index-names-unknown-shard':
      await editIndex((map) => void (map['lm_head.weight'] = 'model-00099-of-00099.safetensors'));
      return 'model.safetensors.index.json';
    case 'index-missing-tensor':
      await editIndex((map) => void (map['model.extra.weight'] = first));
      return 'model.safetensors.index.json';
    case 'tensor-not-in-index':
      await editIndex((map) => void delete map[Object.keys(map).find((name) => map[name] === first)!]);
      return first;
    case 'tensor-in-wrong-shard':
      await editIndex((map) => void (map[Object.keys(map).find((name) => map[name] === first)!] = last));
      return first;
    case 'unreferenced-shard': {
      const name = `model-${String(shards.length + 1).padStart(5, '0')}-of-${String(shards.length + 1).padStart(5, '0')}.safetensors`;
      await writeFile(path.join(dir, name), makeSafetensors([{ name: 'stray.weight', dtype: 'F16', shape: [4] }]));
      return name;
    }
    case 'config-missing':
      await rm(path.join(dir, 'config.json'));
      return 'config.json';
    case 'config-invalid':
      await writeFile(path.join(dir, 'config.json'), '{"model_type": "llama",');
      return 'config.json';
    case 'config-not-object':
      await writeFile(path.join(dir, 'config.json'), '["llama"]\n');
      return 'config.json';
    case 'tokenizer-invalid':
      await writeFile(path.join(dir, 'tokenizer.json'), '{"version": "1.0", ');
      return 'tokenizer.json';
    case 'no-safetensors':
      for (const shard of shards) await rm(path.join(dir, shard));
      await rm(indexPath, { force: true });
      await writeFile(path.join(dir, 'pytorch_model.bin'), 'PK\x03\x04 pickle stand-in');
      return 'pytorch_model.bin';
  }
}

/** Options of {@link writeHfCache}. */
export interface HfCacheOptions {
  /** The snapshot's commit hash (default: derived from the content). */
  revision?: string;
  /** The ref to point at the revision (default `main`); `null` writes no ref. */
  refName?: string | null;
  /** Whether a file is stored as an LFS blob (named by sha256); default: weights, and files of 10 MiB or more. */
  lfs?: (relPath: string, size: number) => boolean;
}

/** What {@link writeHfCache} wrote. */
export interface WrittenHfCache {
  repoDir: string;
  snapshotDir: string;
  revision: string;
  /** relPath → blob name and the algorithm that named it. */
  blobs: Record<string, { blob: string; algorithm: 'sha256' | 'git-sha1' }>;
}

const LFS_EXTENSIONS = /\.(safetensors|bin|pt|pth|gguf|h5|msgpack|onnx)$/;

async function hashFile(file: string, algorithm: 'sha256' | 'git-sha1', size: number): Promise<string> {
  const hash = createHash(algorithm === 'sha256' ? 'sha256' : 'sha1');
  if (algorithm === 'git-sha1') hash.update(`blob ${size}\0`);
  for await (const chunk of createReadStream(file, { highWaterMark: CHUNK_BYTES })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function listFiles(root: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(path.join(root, prefix), { withFileTypes: true })) {
    const relative = prefix === '' ? entry.name : `${prefix}/${entry.name}`;
    if (entry.isDirectory()) out.push(...(await listFiles(root, relative)));
    else if (entry.isFile()) out.push(relative);
  }
  return out.sort();
}

/**
 * Writes one revision of `repoId` into a hub cache at `cacheRoot`, as huggingface_hub does:
 * `models--org--name/blobs/<digest>`, `snapshots/<revision>/<file>` → relative `../../blobs/<digest>`
 * symlinks, and `refs/<refName>`. `source` is files in memory, or a folder to copy (streamed).
 * Call again with another revision to add one.
 */
export async function writeHfCache(
  cacheRoot: string,
  repoId: string,
  source: Record<string, string | Buffer> | string,
  options: HfCacheOptions = {},
): Promise<WrittenHfCache> {
  const repoDir = path.join(cacheRoot, `models--${repoId.split('/').join('--')}`);
  const blobsDir = path.join(repoDir, 'blobs');
  await mkdir(blobsDir, { recursive: true });
  const isLfs = options.lfs ?? ((relPath: string, size: number) => LFS_EXTENSIONS.test(relPath) || size >= 10 * 1024 * 1024);

  const staged: { relPath: string; blob: string; algorithm: 'sha256' | 'git-sha1' }[] = [];
  const entries =
    typeof source === 'string'
      ? (await listFiles(source)).map((relPath) => ({ relPath, file: path.join(source, relPath) }))
      : Object.entries(source)
          .sort(([left], [right]) => (left < right ? -1 : 1))
          .map(([relPath, content]) => ({ relPath, content: Buffer.from(content) }));
  for (const entry of entries) {
    let blob: string;
    let algorithm: 'sha256' | 'git-sha1';
    if ('content' in entry) {
      algorithm = isLfs(entry.relPath, entry.content.length) ? 'sha256' : 'git-sha1';
      const hash = createHash(algorithm === 'sha256' ? 'sha256' : 'sha1');
      if (algorithm === 'git-sha1') hash.update(`blob ${entry.content.length}\0`);
      blob = hash.update(entry.content).digest('hex');
      await writeFile(path.join(blobsDir, blob), entry.content);
    } else {
      const handle = await open(entry.file, 'r');
      const { size } = await handle.stat();
      await handle.close();
      algorithm = isLfs(entry.relPath, size) ? 'sha256' : 'git-sha1';
      blob = await hashFile(entry.file, algorithm, size);
      await copyFile(entry.file, path.join(blobsDir, blob));
    }
    staged.push({ relPath: entry.relPath, blob, algorithm });
  }

  const revision =
    options.revision ??
    createHash('sha1')
      .update(staged.map((file) => `${file.relPath} ${file.blob}\n`).join(''))
      .digest('hex');
  const snapshotDir = path.join(repoDir, 'snapshots', revision);
  const blobs: WrittenHfCache['blobs'] = {};
  for (const file of staged) {
    const link = path.join(snapshotDir, ...file.relPath.split('/'));
    await mkdir(path.dirname(link), { recursive: true });
    const depth = file.relPath.split('/').length;
    await symlink(`${'../'.repeat(depth + 1)}blobs/${file.blob}`, link);
    blobs[file.relPath] = { blob: file.blob, algorithm: file.algorithm };
  }
  const refName = options.refName === undefined ? 'main' : options.refName;
  if (refName !== null) {
    const refFile = path.join(repoDir, 'refs', ...refName.split('/'));
    await mkdir(path.dirname(refFile), { recursive: true });
    await writeFile(refFile, revision); // huggingface_hub writes the bare hash, no newline
  }
  return { repoDir, snapshotDir, revision, blobs };
}

// ---------------------------------------------------------------------------------------------
// The committed demo bundle (fixtures/models/tiny-demo): regenerate with writeTinyDemo; a test
// checks that the committed bytes still equal what this code produces.

/** GPT-2's byte → printable character table, which byte-level BPE vocabularies use. */
function byteLevelAlphabet(): string[] {
  const printable: number[] = [];
  for (let byte = 0x21; byte <= 0x7e; byte++) printable.push(byte);
  for (let byte = 0xa1; byte <= 0xac; byte++) printable.push(byte);
  for (let byte = 0xae; byte <= 0xff; byte++) printable.push(byte);
  const table: string[] = [];
  let extra = 0;
  for (let byte = 0; byte < 256; byte++) {
    table[byte] = printable.includes(byte) ? String.fromCodePoint(byte) : String.fromCodePoint(256 + extra++);
  }
  return table;
}

/** A minimal, loadable byte-level BPE tokenizer.json: 256 byte tokens, two special tokens, no merges. */
export function byteLevelTokenizer(): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  byteLevelAlphabet().forEach((char, id) => (vocab[char] = id));
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(256, '<|begin_of_text|>'), special(257, '<|end_of_text|>')],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { Sequence: { id: 'B', type_id: 1 } },
      ],
      special_tokens: { '<|begin_of_text|>': { id: '<|begin_of_text|>', ids: [256], tokens: ['<|begin_of_text|>'] } },
    },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: [],
    },
  };
}

function tokenizerConfig(): Record<string, unknown> {
  return {
    add_bos_token: true,
    add_eos_token: false,
    bos_token: '<|begin_of_text|>',
    eos_token: '<|end_of_text|>',
    pad_token: '<|end_of_text|>',
    clean_up_tokenization_spaces: false,
    model_max_length: 512,
    tokenizer_class: 'PreTrainedTokenizerFast',
    chat_template:
      "{{ bos_token }}{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}",
  };
}

/** Small BF16 values from a fixed-seed PRNG (mulberry32), so the weights look like weights. */
function bf16Weights(count: number, seed: number, scale: number): Buffer {
  let state = seed >>> 0;
  const random = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = Buffer.alloc(count * 2);
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  for (let index = 0; index < count; index++) {
    f32[0] = (random() * 2 - 1) * scale;
    out.writeUInt16LE(u32[0]! >>> 16, index * 2); // truncating f32 → bf16 keeps it exact and portable
  }
  return out;
}

function onesBf16(count: number): Buffer {
  const out = Buffer.alloc(count * 2);
  for (let index = 0; index < count; index++) out.writeUInt16LE(0x3f80, index * 2);
  return out;
}

/**
 * Writes the tiny demo bundle: a 2-layer llama-like model (hidden 32, vocab 258) with random
 * BF16 weights in two shards plus index, a byte-level tokenizer and a model card. ~60 KB.
 * Deterministic: fixtures/models/tiny-demo holds exactly these bytes.
 */
export async function writeTinyDemo(dir: string): Promise<string[]> {
  const config = llamaConfig();
  const hidden = config.hidden_size as number;
  const intermediate = config.intermediate_size as number;
  const vocab = config.vocab_size as number;
  const kvDim = (config.num_key_value_heads as number) * (config.head_dim as number);
  let seed = 1;
  const weight = (name: string, shape: number[]): TensorSpec => ({
    name,
    dtype: 'BF16',
    shape,
    data: bf16Weights(shape.reduce((product, dimension) => product * dimension, 1), seed++, 0.05),
  });
  const norm = (name: string): TensorSpec => ({ name, dtype: 'BF16', shape: [hidden], data: onesBf16(hidden) });
  const layer = (index: number): TensorSpec[] => [
    norm(`model.layers.${index}.input_layernorm.weight`),
    weight(`model.layers.${index}.mlp.down_proj.weight`, [hidden, intermediate]),
    weight(`model.layers.${index}.mlp.gate_proj.weight`, [intermediate, hidden]),
    weight(`model.layers.${index}.mlp.up_proj.weight`, [intermediate, hidden]),
    norm(`model.layers.${index}.post_attention_layernorm.weight`),
    weight(`model.layers.${index}.self_attn.k_proj.weight`, [kvDim, hidden]),
    weight(`model.layers.${index}.self_attn.o_proj.weight`, [hidden, hidden]),
    weight(`model.layers.${index}.self_attn.q_proj.weight`, [hidden, hidden]),
    weight(`model.layers.${index}.self_attn.v_proj.weight`, [kvDim, hidden]),
  ];
  const shardTensors = [
    [weight('model.embed_tokens.weight', [vocab, hidden]), ...layer(0)],
    [...layer(1), norm('model.norm.weight')],
  ];
  await mkdir(dir, { recursive: true });
  const shardNames = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
  const weightMap: Record<string, string> = {};
  let totalSize = 0;
  for (const [index, tensors] of shardTensors.entries()) {
    await writeFile(path.join(dir, shardNames[index]!), makeSafetensors(tensors, { metadata: { format: 'pt' } }));
    for (const tensor of tensors) {
      weightMap[tensor.name] = shardNames[index]!;
      totalSize += tensor.data!.length;
    }
  }
  const sortedMap = Object.fromEntries(Object.entries(weightMap).sort(([left], [right]) => (left < right ? -1 : 1)));
  const files: Record<string, string> = {
    'README.md': [
      '# tiny-demo',
      '',
      'A demonstration model bundle for dubnium-seed: a 2-layer llama-like model with random BF16',
      'weights (hidden size 32, 258-token byte-level vocabulary). It loads, but it generates noise.',
      'It exists so that `npm run demo` and the tests have a real, valid bundle to copy.',
      '',
      'Generated by `writeTinyDemo` in test/helpers/bundles.ts; do not edit by hand.',
      '',
    ].join('\n'),
    'config.json': json(config),
    'generation_config.json': json({ bos_token_id: 256, eos_token_id: 257, do_sample: false, transformers_version: '4.46.0' }),
    'model.safetensors.index.json': json({ metadata: { total_size: totalSize }, weight_map: sortedMap }),
    'special_tokens_map.json': json({ bos_token: '<|begin_of_text|>', eos_token: '<|end_of_text|>', pad_token: '<|end_of_text|>' }),
    'tokenizer.json': json(byteLevelTokenizer()),
    'tokenizer_config.json': json(tokenizerConfig()),
  };
  for (const [relative, content] of Object.entries(files)) await writeFile(path.join(dir, relative), content);
  return [...Object.keys(files), ...shardNames].sort();
}
