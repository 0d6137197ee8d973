import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, realpath, stat, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.js';
import { JsonSyntaxChecker, resolveModelBundle } from '../../src/core/model-bundle.js';
import { breakBundle, makeSafetensors, writeBundle, writeHfCache, writeTinyDemo, type BrokenBundleKind } from '../helpers/bundles.js';
import { tempDir } from '../helpers/tmp.js';

const FIXTURE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../fixtures/models/tiny-demo');

async function rejection(promise: Promise<unknown>): Promise<UsageError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(UsageError);
  return error as UsageError;
}

async function bundleDir(name = 'my-model'): Promise<string> {
  return path.join(await tempDir(), name);
}

describe('resolveModelBundle on a folder', () => {
  it('resolves a valid sharded bundle with its files sorted', async () => {
    const written = await writeBundle(await bundleDir(), { shards: 3, tensorsPerShard: 4 });
    const bundle = await resolveModelBundle(written.dir);
    expect(bundle).toMatchObject({ name: 'my-model', input: written.dir, kind: 'folder', root: written.dir, excluded: [], tensors: 12 });
    expect(bundle.repoId).toBeUndefined();
    expect(bundle.revision).toBeUndefined();
    expect(bundle.files.map((file) => file.relPath)).toEqual(written.files);
    expect(bundle.shards).toEqual(written.shards);
    expect(bundle.totalBytes).toBe(written.totalBytes);
    for (const file of bundle.files) {
      expect(file.sourcePath).toBe(path.join(written.dir, file.relPath));
      expect(file.size).toBe((await stat(file.sourcePath)).size);
      expect(file.expected).toBeUndefined();
    }
  });

  it('accepts a relative path and a single unsharded model.safetensors without index', async () => {
    const written = await writeBundle(await bundleDir('single'), { shards: 1 });
    expect(written.shards).toEqual(['model.safetensors']);
    const relative = path.relative(process.cwd(), written.dir);
    const bundle = await resolveModelBundle(relative);
    expect(bundle.input).toBe(written.dir);
    expect(bundle.shards).toEqual(['model.safetensors']);
  });

  it('writes shards of an exact size, streamed, and validates them', async () => {
    const shardBytes = 24 * 1024 * 1024 + 13;
    const written = await writeBundle(await bundleDir('large'), { shards: 2, shardBytes });
    for (const shard of written.shards) expect((await stat(path.join(written.dir, shard))).size).toBe(shardBytes);
    const bundle = await resolveModelBundle(written.dir);
    expect(bundle.tensors).toBe(8);
    expect(bundle.totalBytes).toBeGreaterThan(2 * shardBytes);
  });

  it('produces the same bytes twice (deterministic generator)', async () => {
    const first = await writeBundle(await bundleDir('same'), { shards: 2 });
    const second = await writeBundle(await bundleDir('same'), { shards: 2 });
    for (const file of first.files) {
      expect(await readFile(path.join(second.dir, file)), file).toEqual(await readFile(path.join(first.dir, file)));
    }
  });

  const broken: BrokenBundleKind[] = [
    'corrupt-shard-header',
    'truncated-shard',
    'index-missing-shard',
    'index-names-unknown-shard',
    'index-missing-tensor',
    'tensor-not-in-index',
    'tensor-in-wrong-shard',
    'unreferenced-shard',
    'config-missing',
    'config-invalid',
    'config-not-object',
    'tokenizer-invalid',
    'no-safetensors',
  ];
  const expectations: Record<BrokenBundleKind, RegExp> = {
    'corrupt-shard-header': /Invalid safetensors file .*header length field says 8589934592 bytes/,
    'truncated-shard': /Invalid safetensors file .*truncated/,
    'index-missing-shard': /names shard model-00002-of-00002\.safetensors, which is missing/,
    'index-names-unknown-shard': /names shard model-00099-of-00099\.safetensors, which is missing/,
    'index-missing-tensor': /maps tensor "model\.extra\.weight" to model-00001-of-00002\.safetensors, but that shard does not contain it/,
    'tensor-not-in-index': /holds tensor "model\.layers\.0\.block_0\.weight", which .* does not list/,
    'tensor-in-wrong-shard': /holds tensor "model\.layers\.0\.block_0\.weight", which .* maps to model-00002-of-00002\.safetensors/,
    'unreferenced-shard': /is not listed in the safetensors index next to it/,
    'config-missing': /has no config\.json/,
    'config-invalid': /config\.json is not valid JSON/,
    'config-not-object': /config\.json is not a JSON object/,
    'tokenizer-invalid': /tokenizer\.json is not valid JSON/,
    'no-safetensors': /only pickle weights \(pytorch_model\.bin\).*not accepted/,
  };

  it.each(broken)('rejects %s with a UsageError naming the file', async (kind) => {
    const written = await writeBundle(await bundleDir(), { shards: 2 });
    const named = await breakBundle(written, kind);
    const error = await rejection(resolveModelBundle(written.dir));
    expect(error.exitCode).toBe(2);
    expect(error.message).toMatch(expectations[kind]);
    // config-missing and no-safetensors name the folder: the missing thing has no path of its own.
    const expectedPath = kind === 'config-missing' || kind === 'no-safetensors' ? written.dir : path.join(written.dir, named);
    expect(error.message).toContain(expectedPath);
  });

  it('rejects a folder with no weights at all', async () => {
    const dir = await bundleDir();
    await mkdir(dir);
    await writeFile(path.join(dir, 'config.json'), '{}');
    await expect(resolveModelBundle(dir)).rejects.toThrow(/has no \*\.safetensors weights/);
  });

  it('copies a .bin and an unlisted consolidated.safetensors next to the indexed shards', async () => {
    const written = await writeBundle(await bundleDir(), {
      extraFiles: {
        'pytorch_model.bin': 'legacy',
        'consolidated.safetensors': makeSafetensors([{ name: 'tok_embeddings.weight', dtype: 'BF16', shape: [8, 4] }]),
        'original/params.json': '{"dim": 32}',
      },
    });
    const bundle = await resolveModelBundle(written.dir);
    expect(bundle.files.map((file) => file.relPath)).toEqual(written.files);
    expect(bundle.files.map((file) => file.relPath)).toContain('original/params.json');
    expect(bundle.shards).toContain('consolidated.safetensors');
    expect(bundle.tensors).toBe(7);
  });

  it('validates an index in a subfolder against shards beside it', async () => {
    const written = await writeBundle(await bundleDir());
    const sub = await writeBundle(path.join(written.dir, 'draft'), { shards: 2 });
    await writeFile(path.join(sub.dir, 'tokenizer.json'), '{'); // only top-level loader JSON must parse
    const bundle = await resolveModelBundle(written.dir);
    expect(bundle.shards).toEqual(['draft/model-00001-of-00002.safetensors', 'draft/model-00002-of-00002.safetensors', ...written.shards]);
    await breakBundle(sub, 'index-missing-tensor');
    const error = await rejection(resolveModelBundle(written.dir));
    expect(error.message).toContain(path.join(written.dir, 'draft', 'model.safetensors.index.json'));
    expect(error.message).toContain('to draft/model-00001-of-00002.safetensors');
  });

  it('excludes .git, .cache, .huggingface and hidden files, and lists them', async () => {
    const written = await writeBundle(await bundleDir());
    execFileSync('git', ['init', '-q'], { cwd: written.dir });
    await mkdir(path.join(written.dir, '.cache', 'huggingface', 'download'), { recursive: true });
    await writeFile(path.join(written.dir, '.cache', 'huggingface', 'download', 'config.json.metadata'), 'x');
    await mkdir(path.join(written.dir, '.huggingface'));
    await writeFile(path.join(written.dir, '.DS_Store'), 'x');
    await writeFile(path.join(written.dir, '.gitattributes'), '*.safetensors filter=lfs\n');
    await mkdir(path.join(written.dir, 'sub'));
    await writeFile(path.join(written.dir, 'sub', '.hidden'), 'x');
    await writeFile(path.join(written.dir, 'sub', 'kept.txt'), 'x');
    const bundle = await resolveModelBundle(written.dir);
    expect(bundle.excluded).toEqual([
      { relPath: '.DS_Store', reason: 'hidden file' },
      { relPath: '.cache', reason: 'download cache metadata (huggingface-cli --local-dir)' },
      { relPath: '.git', reason: 'git metadata' },
      { relPath: '.gitattributes', reason: 'hidden file' },
      { relPath: '.huggingface', reason: 'Hugging Face metadata' },
      { relPath: 'sub/.hidden', reason: 'hidden file' },
    ]);
    expect(bundle.files.map((file) => file.relPath)).toEqual([...written.files, 'sub/kept.txt'].sort());
  });

  it('follows symlinks to files and refuses dangling, folder and special entries', async () => {
    const written = await writeBundle(await bundleDir());
    const elsewhere = path.join(await tempDir(), 'README.md');
    await writeFile(elsewhere, '# card\n');
    await symlink(elsewhere, path.join(written.dir, 'README.md'));
    const bundle = await resolveModelBundle(written.dir);
    const readme = bundle.files.find((file) => file.relPath === 'README.md')!;
    expect(readme).toEqual({ relPath: 'README.md', sourcePath: await realpath(elsewhere), size: 7 });

    await symlink(path.join(written.dir, 'missing'), path.join(written.dir, 'dangling.txt'));
    await expect(resolveModelBundle(written.dir)).rejects.toThrow(new RegExp(`${path.join(written.dir, 'dangling.txt')} is a dangling symlink`));
    execFileSync('rm', [path.join(written.dir, 'dangling.txt')]);

    await symlink(await tempDir(), path.join(written.dir, 'linked-folder'));
    await expect(resolveModelBundle(written.dir)).rejects.toThrow(/linked-folder is a symlink to a folder/);
    execFileSync('rm', [path.join(written.dir, 'linked-folder')]);

    execFileSync('mkfifo', [path.join(written.dir, 'pipe')]);
    await expect(resolveModelBundle(written.dir)).rejects.toThrow(/pipe is not a regular file/);
  });

  it('names the bundle after the folder, or options.name, and refuses unsafe names', async () => {
    const written = await writeBundle(await bundleDir('Qwen2.5-0.5B'));
    expect((await resolveModelBundle(written.dir)).name).toBe('Qwen2.5-0.5B');
    expect((await resolveModelBundle(written.dir, { name: 'assistant_v2' })).name).toBe('assistant_v2');
    for (const name of ['..', '.hidden', 'a/b', 'a..b', '-flag', '', 'x'.repeat(129)]) {
      await expect(resolveModelBundle(written.dir, { name }), name).rejects.toThrow(/cannot be a folder name on the seed/);
    }
    const spaced = await writeBundle(await bundleDir('my model'));
    await expect(resolveModelBundle(spaced.dir)).rejects.toThrow(/Bundle name "my model"/);
    expect((await resolveModelBundle(spaced.dir, { name: 'my-model' })).name).toBe('my-model');
  });

  it('refuses missing paths, single files and --revision on a plain folder', async () => {
    const written = await writeBundle(await bundleDir());
    await expect(resolveModelBundle(path.join(written.dir, 'nope'))).rejects.toThrow(/does not exist\. Pass --model/);
    await expect(resolveModelBundle(path.join(written.dir, written.shards[0]!))).rejects.toThrow(/is not a folder/);
    await expect(resolveModelBundle(written.dir, { revision: 'main' })).rejects.toThrow(/--revision only applies to a Hugging Face cache folder/);
  });
});

describe('resolveModelBundle on a Hugging Face cache', () => {
  const OLD = '1111111111111111111111111111111111111111';

  async function cacheWithTwoRevisions() {
    const source = await writeBundle(await bundleDir('src'), { shards: 2 });
    const cache = await tempDir();
    await writeHfCache(cache, 'acme/tiny-model', { 'config.json': '{"old":true}', 'model.safetensors': makeSafetensors([{ name: 'w', dtype: 'F16', shape: [2] }]) }, {
      revision: OLD,
      refName: null,
    });
    const main = await writeHfCache(cache, 'acme/tiny-model', source.dir);
    return { cache, source, main };
  }

  it('resolves refs/main to its snapshot and dereferences the blobs, with expected digests', async () => {
    const { source, main } = await cacheWithTwoRevisions();
    const bundle = await resolveModelBundle(main.repoDir);
    expect(bundle).toMatchObject({ name: 'tiny-model', kind: 'hf-cache', repoId: 'acme/tiny-model', revision: main.revision, root: main.snapshotDir, input: main.repoDir });
    expect(bundle.files.map((file) => file.relPath)).toEqual(source.files);
    expect(bundle.totalBytes).toBe(source.totalBytes);
    const blobs = await realpath(path.join(main.repoDir, 'blobs'));
    for (const file of bundle.files) {
      expect(path.dirname(file.sourcePath)).toBe(blobs);
      const content = await readFile(file.sourcePath);
      expect(content).toEqual(await readFile(path.join(source.dir, file.relPath)));
      // Independent digests: sha256 of the content, or git's blob hash of it.
      const expected = file.relPath.endsWith('.safetensors')
        ? { algorithm: 'sha256', hex: createHash('sha256').update(content).digest('hex') }
        : { algorithm: 'git-sha1', hex: execFileSync('git', ['hash-object', '--no-filters', file.sourcePath], { encoding: 'utf8' }).trim() };
      expect(file.expected, file.relPath).toEqual(expected);
      expect(path.basename(file.sourcePath)).toBe(expected.hex);
    }
  });

  it('picks another snapshot with a revision hash or prefix, and lists revisions when missing', async () => {
    const { main } = await cacheWithTwoRevisions();
    const old = await resolveModelBundle(main.repoDir, { revision: OLD });
    expect(old.revision).toBe(OLD);
    expect(old.files.map((file) => file.relPath)).toEqual(['config.json', 'model.safetensors']);
    expect((await resolveModelBundle(main.repoDir, { revision: '1111111' })).revision).toBe(OLD);
    expect((await resolveModelBundle(main.repoDir, { revision: 'main' })).revision).toBe(main.revision);
    const error = await rejection(resolveModelBundle(main.repoDir, { revision: 'v2.0' }));
    expect(error.message).toContain(`main -> ${main.revision}`);
    expect(error.message).toContain(OLD);
  });

  it('accepts a snapshot folder passed directly', async () => {
    const { main } = await cacheWithTwoRevisions();
    const bundle = await resolveModelBundle(main.snapshotDir);
    expect(bundle).toMatchObject({ kind: 'hf-cache', repoId: 'acme/tiny-model', revision: main.revision, name: 'tiny-model', root: main.snapshotDir });
    expect(bundle.files.every((file) => file.expected !== undefined)).toBe(true);
    await expect(resolveModelBundle(main.snapshotDir, { revision: OLD })).rejects.toThrow(/does not match the snapshot folder/);
  });

  it('refuses a hub cache root and lists its repositories', async () => {
    const { cache, main } = await cacheWithTwoRevisions();
    await writeHfCache(cache, 'other/model', { 'config.json': '{}' });
    const error = await rejection(resolveModelBundle(cache));
    expect(error.message).toContain('is a Hugging Face hub cache with 2 model(s)');
    expect(error.message).toContain(main.repoDir);
    expect(error.message).toContain(path.join(cache, 'models--other--model'));
  });

  it('validates the snapshot: a broken shard blob is named by its snapshot path', async () => {
    const source = await writeBundle(await bundleDir('src'));
    await breakBundle(source, 'truncated-shard');
    const cache = await tempDir();
    const main = await writeHfCache(cache, 'acme/broken', source.dir);
    const error = await rejection(resolveModelBundle(main.repoDir));
    expect(error.message).toContain(path.join(main.snapshotDir, source.shards[0]!));
  });
});

describe('fixtures/models/tiny-demo', () => {
  it('is a valid bundle under 200 KB', async () => {
    const bundle = await resolveModelBundle(FIXTURE);
    expect(bundle.name).toBe('tiny-demo');
    expect(bundle.shards).toEqual(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
    expect(bundle.tensors).toBe(20); // embeddings, 9 per layer x 2, final norm (lm_head is tied)
    expect(bundle.totalBytes).toBeLessThan(200 * 1024);
    const config = JSON.parse(await readFile(path.join(FIXTURE, 'config.json'), 'utf8'));
    expect(config.model_type).toBe('llama');
  });

  it('matches what writeTinyDemo generates, byte for byte', async () => {
    const dir = await bundleDir('tiny-demo');
    const files = await writeTinyDemo(dir);
    expect((await readdir(FIXTURE)).sort()).toEqual(files);
    for (const file of files) expect(await readFile(path.join(FIXTURE, file)), file).toEqual(await readFile(path.join(dir, file)));
  });
});

describe('JsonSyntaxChecker', () => {
  const verdict = (text: string, split?: number): boolean => {
    const bytes = Buffer.from(text, 'utf8');
    const checker = new JsonSyntaxChecker();
    try {
      if (split === undefined) checker.update(bytes);
      else {
        checker.update(bytes.subarray(0, split));
        checker.update(bytes.subarray(split));
      }
      checker.end();
      return true;
    } catch (error) {
      expect(error).toBeInstanceOf(SyntaxError);
      return false;
    }
  };
  const parses = (text: string): boolean => {
    try {
      JSON.parse(text);
      return true;
    } catch {
      return false;
    }
  };
  const corpus = [
    '{}', '[]', ' { "a" : [1, -0, 0.5, 1e5, -2.5E-3, 1E+2, true, false, null, "x\\u00e9\\n\\"", {}] } ', '"str"', '0', '-1', '12',
    '"é漢字🙂"', '{"a":{"b":{"c":[[[]]]}}}', '', ' ', '{', '}', '[1,]', '{"a":1,}', '{"a" 1}', '{1:2}', '01', '-', '1.', '.5', '1e', '1e+',
    '+1', 'tru', 'truex', 'nul', '[1 2]', '"abc', '"a\\x"', '"\\u12g4"', '"tab\there"', '{"a":1}}', '[]]', '[}', '{]', '"a"b', '1 2',
    'NaN', '[-]', '{"a":[1,{"b":null}],"c":"d"}', '[0e0, 0.0e-0]', '[00]', '{"a"}', '{"a":}', '[,1]', '\u00a0{}',
  ];

  it('agrees with JSON.parse on valid and invalid documents, however the bytes are chunked', () => {
    for (const text of corpus) {
      const expected = parses(text);
      expect(verdict(text), JSON.stringify(text)).toBe(expected);
      for (let split = 0; split <= Buffer.byteLength(text); split++) expect(verdict(text, split), `${JSON.stringify(text)} @${split}`).toBe(expected);
    }
  });

  it('agrees with JSON.parse on mutated tokenizer files', () => {
    const base = JSON.stringify({ a: [1, 2.5, -3e-2, true, null], b: { c: 'd\n\u00e9"q' }, e: [] });
    const alphabet = ['{', '}', '[', ']', ',', ':', '"', '\\', '0', '1', '-', '.', 'e', 't', 'n', ' ', 'x', '\n'];
    const outcomes = { valid: 0, invalid: 0 };
    let state = 7;
    const random = (n: number) => (state = (state * 1103515245 + 12345) % 2147483648) % n;
    for (let round = 0; round < 3000; round++) {
      const position = random(base.length);
      const action = random(3);
      const char = alphabet[random(alphabet.length)]!;
      const text =
        action === 0
          ? base.slice(0, position) + base.slice(position + 1)
          : action === 1
            ? base.slice(0, position) + char + base.slice(position)
            : base.slice(0, position) + char + base.slice(position + 1);
      const expected = parses(text);
      outcomes[expected ? 'valid' : 'invalid']++;
      expect(verdict(text), text).toBe(expected);
    }
    expect(outcomes.valid).toBeGreaterThan(100);
    expect(outcomes.invalid).toBeGreaterThan(100);
  });

  it('checks a large tokenizer.json by streaming and names it when broken', async () => {
    const vocab: Record<string, number> = {};
    for (let id = 0; id < 400_000; id++) vocab[`token_${id}_${'x'.repeat(id % 17)}`] = id;
    const tokenizer = JSON.stringify({ version: '1.0', model: { type: 'BPE', vocab, merges: [] } });
    expect(tokenizer.length).toBeGreaterThan(8 * 1024 * 1024);
    const written = await writeBundle(await bundleDir(), { extraFiles: { 'tokenizer.json': tokenizer } });
    await expect(resolveModelBundle(written.dir)).resolves.toMatchObject({ name: 'my-model' });
    await writeFile(path.join(written.dir, 'tokenizer.json'), `${tokenizer.slice(0, -2)},}`);
    await expect(resolveModelBundle(written.dir)).rejects.toThrow(
      new RegExp(`${path.join(written.dir, 'tokenizer.json')} is not valid JSON \\(unexpected byte '}' at offset ${tokenizer.length - 1}\\)`),
    );
  });
});
