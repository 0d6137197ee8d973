/**
 * safetensors files, written as the format says (u64 header length, JSON header, tensor data): a
 * token in `__metadata__` is found under `(header)`, bytes hidden in a tensor under the tensor's
 * name; a header the bundle validation rejects is unscanned, not passed.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createLeakGate, scanPaths } from '../../../../src/core/scan/index.js';
import { detectContainer } from '../../../../src/core/scan/formats/container-kind.js';
import { fakeTokens, githubToken } from '../../../helpers/credentials.js';
import { tempDir } from '../../../helpers/tmp.js';

const quiet = { operatorSecrets: false } as const;

/** A safetensors file of U8 tensors (name → bytes), with `metadata`, the header padded to 8 as writers do. */
function safetensorsFile(tensors: Record<string, Buffer>, metadata?: Record<string, string>): Buffer {
  const header: Record<string, unknown> = metadata ? { __metadata__: metadata } : {};
  let offset = 0;
  for (const [name, bytes] of Object.entries(tensors)) {
    header[name] = { dtype: 'U8', shape: [bytes.length], data_offsets: [offset, offset + bytes.length] };
    offset += bytes.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  return Buffer.concat([length, Buffer.from(json), ...Object.values(tensors)]);
}

describe('safetensors files', () => {
  it('finds a token in __metadata__ under (header) and one hidden in a tensor under its name', async () => {
    const root = await tempDir();
    const file = path.join(root, 'model-00001-of-00002.safetensors');
    const hf = fakeTokens().huggingFace;
    const gh = githubToken('ghp');
    const bytes = safetensorsFile(
      {
        'model.embed_tokens.weight': randomBytes(64 * 1024),
        'model.layers.0.mlp.up_proj.weight': Buffer.concat([randomBytes(10_000), Buffer.from(` GITHUB_TOKEN=${gh} `), randomBytes(10_000)]),
        'model.norm.weight': randomBytes(4096),
      },
      { format: 'pt', note: `pushed with HF_TOKEN=${hf}` },
    );
    writeFileSync(file, bytes);
    expect(detectContainer(bytes)).toBe('safetensors');
    const report = await scanPaths([file], quiet);
    expect(report.findings.map((f) => `${(f.chain ?? []).join(' › ')}|${f.rule}`).sort()).toEqual([
      '(header)|huggingface-token',
      'model.layers.0.mlp.up_proj.weight|github-token',
    ]);
  });

  it('a clean file has no findings; a truncated one is unscanned (truncated); JSON text is not taken for safetensors', async () => {
    const root = await tempDir();
    const clean = path.join(root, 'clean.safetensors');
    writeFileSync(clean, safetensorsFile({ a: randomBytes(1000), b: randomBytes(3000) }, { format: 'pt' }));
    expect((await scanPaths([clean], quiet)).findings).toEqual([]);

    const cut = path.join(root, 'cut.safetensors');
    const whole = safetensorsFile({ a: randomBytes(1000), b: randomBytes(3000) });
    writeFileSync(cut, whole.subarray(0, whole.length - 100));
    expect((await scanPaths([cut], quiet)).findings.map((f) => f.rule)).toEqual(['unscanned-truncated']);

    // Bytes appended after the last tensor are read as one more member.
    const appended = path.join(root, 'appended.safetensors');
    writeFileSync(appended, Buffer.concat([safetensorsFile({ a: randomBytes(1000) }), Buffer.from(`\nGITHUB_TOKEN=${githubToken('ghp')}\n`)]));
    expect((await scanPaths([appended], quiet)).findings.map((f) => `${f.chain?.[0]}|${f.rule}`)).toEqual(['(after the tensors)|github-token']);

    expect(detectContainer(Buffer.from('{"a": 1, "b": [1, 2, 3]}\n'))).toBeUndefined();
    expect(detectContainer(Buffer.from('12345678{"not": "a header"}'))).toBeUndefined();
  });

  it('a large shard: the scan command names the tensor; the push-fed gate (build, verify) finds it flat, without spooling the shard', async () => {
    const root = await tempDir();
    const file = path.join(root, 'model.safetensors');
    const gh = githubToken('ghp');
    const bytes = safetensorsFile({
      'lm_head.weight': randomBytes(6 * 1024 * 1024),
      'model.layers.3.self_attn.q_proj.weight': Buffer.concat([randomBytes(3 * 1024 * 1024), Buffer.from(` GITHUB_TOKEN=${gh} `), randomBytes(3 * 1024 * 1024)]),
    });
    writeFileSync(file, bytes);
    const report = await scanPaths([file], quiet);
    expect(report.findings.map((f) => `${(f.chain ?? []).join(' › ')}|${f.rule}`)).toEqual(['model.layers.3.self_attn.q_proj.weight|github-token']);

    const gate = await createLeakGate(quiet);
    const scanner = gate.open({ path: 'model.safetensors', size: bytes.length });
    for (let offset = 0; offset < bytes.length; offset += 1 << 20) scanner.update(bytes.subarray(offset, offset + (1 << 20)));
    const findings = await scanner.finish();
    expect(findings.map((f) => `${f.path}|${f.inner ?? ''}|${f.rule}`)).toEqual(['model.safetensors||github-token']);
  });
});
