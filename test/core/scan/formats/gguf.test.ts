/**
 * GGUF model files, written here by a small writer that follows the GGUF v2/v3 layout: a token in a
 * metadata string (a source URL with credentials, a chat template, an element of a string array) is
 * found under `(metadata)`; bytes in the tensor data under `(tensor data)`; a file cut inside its
 * key/values is unscanned (truncated).
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { scanPaths } from '../../../../src/core/scan/index.js';
import { detectContainer } from '../../../../src/core/scan/formats/container-kind.js';
import { fakeTokens, githubToken } from '../../../helpers/credentials.js';
import { tempDir } from '../../../helpers/tmp.js';

const quiet = { operatorSecrets: false } as const;

type Value = string | number | boolean | string[] | number[];

function u32(value: number): Buffer {
  const out = Buffer.alloc(4);
  out.writeUInt32LE(value);
  return out;
}
function u64(value: number): Buffer {
  const out = Buffer.alloc(8);
  out.writeBigUInt64LE(BigInt(value));
  return out;
}
function str(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  return Buffer.concat([u64(bytes.length), bytes]);
}
function value(item: Value): Buffer {
  if (typeof item === 'string') return Buffer.concat([u32(8), str(item)]);
  if (typeof item === 'boolean') return Buffer.concat([u32(7), Buffer.from([item ? 1 : 0])]);
  if (typeof item === 'number') return Buffer.concat([u32(4), u32(item)]);
  if (item.every((element) => typeof element === 'string')) return Buffer.concat([u32(9), u32(8), u64(item.length), ...(item as string[]).map(str)]);
  const floats = Buffer.alloc(item.length * 4);
  (item as number[]).forEach((element, index) => floats.writeFloatLE(element, index * 4));
  return Buffer.concat([u32(9), u32(6), u64(item.length), floats]);
}

/** A GGUF file of `version` with `metadata` and one F32 tensor holding `tensor` (padded to 4 bytes). */
function ggufFile(metadata: Record<string, Value>, tensor: Buffer, version = 3, alignment = 32): Buffer {
  const data = Buffer.concat([tensor, Buffer.alloc((4 - (tensor.length % 4)) % 4)]);
  const entries = Object.entries(metadata);
  const head = Buffer.concat([
    Buffer.from('GGUF'),
    u32(version),
    u64(1),
    u64(entries.length),
    ...entries.map(([key, item]) => Buffer.concat([str(key), value(item)])),
    str('token_embd.weight'),
    u32(1),
    u64(data.length / 4),
    u32(0),
    u64(0),
  ]);
  const padding = Buffer.alloc((alignment - (head.length % alignment)) % alignment);
  return Buffer.concat([head, padding, data]);
}

describe('GGUF model files', () => {
  it('finds tokens in metadata strings and string arrays under (metadata), and in tensor data under (tensor data)', async () => {
    const root = await tempDir();
    const hf = fakeTokens().huggingFace;
    const gh = githubToken('ghp');
    const inData = githubToken('ghp');
    const vocabulary = Array.from({ length: 5000 }, (_, index) => `tok${index}`);
    vocabulary[4321] = gh;
    const file = path.join(root, 'model.gguf');
    const bytes = ggufFile(
      {
        'general.architecture': 'llama',
        'general.alignment': 64,
        'general.source.url': `https://user:${hf}@huggingface.co/org/model`,
        'llama.context_length': 4096,
        'tokenizer.ggml.add_bos_token': true,
        'tokenizer.ggml.scores': Array.from({ length: 100 }, (_, index) => index / 10),
        'tokenizer.ggml.tokens': vocabulary,
        'tokenizer.chat_template': '{% for message in messages %}{{ message.content }}{% endfor %}',
      },
      Buffer.concat([randomBytes(4096), Buffer.from(`\nGITHUB_TOKEN=${inData}\n`), randomBytes(4096)]),
      3,
      64,
    );
    writeFileSync(file, bytes);
    expect(detectContainer(bytes)).toBe('gguf');
    const report = await scanPaths([file], quiet);
    const found = report.findings.map((f) => `${(f.chain ?? []).join(' › ')}|${f.rule}`).sort();
    // The Hugging Face token in the source URL is reported once, by its vendor's rule.
    expect(found).toEqual(['(metadata)|github-token', '(metadata)|huggingface-token', '(tensor data)|github-token'].sort());
  });

  it('reads version 2; a file cut inside its key/values is unscanned (truncated); a clean model has no findings', async () => {
    const root = await tempDir();
    const v2 = path.join(root, 'v2.gguf');
    writeFileSync(v2, ggufFile({ 'general.name': 'tiny', 'general.source.url': `https://x:${fakeTokens().huggingFace}@huggingface.co/m` }, randomBytes(256), 2));
    expect((await scanPaths([v2], quiet)).findings.map((f) => `${f.chain?.[0]}|${f.rule}`)).toEqual(['(metadata)|huggingface-token']);

    const clean = path.join(root, 'clean.gguf');
    writeFileSync(clean, ggufFile({ 'general.name': 'tiny', 'tokenizer.ggml.tokens': ['a', 'b', 'c'] }, Buffer.alloc(1024)));
    expect((await scanPaths([clean], quiet)).findings).toEqual([]);

    const cut = path.join(root, 'cut.gguf');
    const whole = ggufFile({ 'general.name': 'tiny', 'tokenizer.ggml.tokens': Array.from({ length: 1000 }, (_, i) => `t${i}`) }, Buffer.alloc(64));
    writeFileSync(cut, whole.subarray(0, 2000));
    expect((await scanPaths([cut], quiet)).findings.map((f) => f.rule)).toEqual(['unscanned-truncated']);
  });
});
