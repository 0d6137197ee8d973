/**
 * `docker save` image tarballs, built by hand with the real tar, gzip and zstd in both layouts docker
 * writes: the legacy one (`<id>/layer.tar`, `manifest.json`, `repositories`) and the OCI one (docker
 * 25+: `blobs/sha256/<digest>`, layers plain, gzip or zstd, with no suffix to tell). A key in a layer
 * is found under the layer's path and its path inside the layer, whatever the layer's compression,
 * and in a `docker save | gzip` of the whole image.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { scanPaths } from '../../../../src/core/scan/index.js';
import { githubToken, sshKey } from '../../../helpers/credentials.js';
import { tempDir, writeTree } from '../../../helpers/tmp.js';

const quiet = { operatorSecrets: false } as const;

function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

function located(findings: { path: string; chain?: string[]; rule: string }[]): string[] {
  return findings.map((f) => `${path.basename(f.path)} › ${(f.chain ?? []).join(' › ')}|${f.rule.replace(/^(?:openssh|ssh)[-\w]*$/, 'private-key')}`).sort();
}

/** Two layers: a base with nothing secret, and one with a host key and a token. Returns their tars. */
async function layers(work: string, key: string, token: string): Promise<{ base: string; top: string }> {
  const base = path.join(work, 'base');
  const top = path.join(work, 'top');
  await writeTree(base, { 'etc/os-release': 'ID=nixos\n', 'bin/sh': randomBytes(2048) });
  await writeTree(top, { 'etc/ssh/ssh_host_ed25519_key': key, 'app/.env': `GITHUB_TOKEN=${token}\n`, 'etc/.wh.os-release': '' });
  execFileSync('tar', ['-cf', path.join(work, 'base.tar'), '-C', base, '.']);
  execFileSync('tar', ['-cf', path.join(work, 'top.tar'), '-C', top, '.']);
  return { base: path.join(work, 'base.tar'), top: path.join(work, 'top.tar') };
}

describe('docker save image tarballs', () => {
  it('legacy layout: the finding names <id>/layer.tar and the path inside it; also in a gzipped save', async () => {
    const work = await tempDir();
    const out = await tempDir();
    const key = sshKey('ed25519').privateKey;
    const { base, top } = await layers(work, key, githubToken('ghp'));
    const image = path.join(work, 'image');
    const ids = [sha256(base), sha256(top)];
    for (const [index, layer] of [base, top].entries()) {
      mkdirSync(path.join(image, ids[index]!), { recursive: true });
      renameSync(layer, path.join(image, ids[index]!, 'layer.tar'));
      writeFileSync(path.join(image, ids[index]!, 'VERSION'), '1.0');
      writeFileSync(path.join(image, ids[index]!, 'json'), JSON.stringify({ id: ids[index], created: '2026-01-01T00:00:00Z' }));
    }
    writeFileSync(path.join(image, 'manifest.json'), JSON.stringify([{ Config: 'config.json', RepoTags: ['app:latest'], Layers: ids.map((id) => `${id}/layer.tar`) }]));
    writeFileSync(path.join(image, 'config.json'), JSON.stringify({ architecture: 'amd64', os: 'linux' }));
    writeFileSync(path.join(image, 'repositories'), JSON.stringify({ app: { latest: ids[1] } }));
    execFileSync('tar', ['-cf', path.join(out, 'app.tar'), '-C', image, '.']);
    execFileSync('sh', ['-c', 'gzip -c app.tar > app.tar.gz'], { cwd: out });
    const report = await scanPaths([path.join(out, 'app.tar'), path.join(out, 'app.tar.gz')], quiet);
    const layer = `${ids[1]}/layer.tar`;
    expect(located(report.findings)).toEqual(
      [
        `app.tar › ${layer} › app/.env|github-token`,
        `app.tar › ${layer} › etc/ssh/ssh_host_ed25519_key|private-key`,
        `app.tar.gz › ${layer} › app/.env|github-token`,
        `app.tar.gz › ${layer} › etc/ssh/ssh_host_ed25519_key|private-key`,
      ].sort(),
    );
  });

  it('OCI layout: layers under blobs/sha256/ read whether plain, gzip or zstd (no suffix)', async () => {
    const work = await tempDir();
    const out = await tempDir();
    const key = sshKey('ed25519').privateKey;
    const { base, top } = await layers(work, key, githubToken('ghp'));
    const blobs = path.join(work, 'oci/blobs/sha256');
    mkdirSync(blobs, { recursive: true });
    const put = (file: string): string => {
      const digest = sha256(file);
      renameSync(file, path.join(blobs, digest));
      return digest;
    };
    execFileSync('cp', [top, `${top}.copy`]);
    execFileSync('cp', [top, `${top}.copy2`]);
    execFileSync('gzip', ['-n', `${top}.copy`]);
    execFileSync('zstd', ['-q', '--rm', `${top}.copy2`]);
    const digests = { base: put(base), plain: put(top), gzip: put(`${top}.copy.gz`), zstd: put(`${top}.copy2.zst`) };
    writeFileSync(path.join(work, 'oci/oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
    writeFileSync(path.join(work, 'oci/index.json'), JSON.stringify({ schemaVersion: 2, manifests: [] }));
    writeFileSync(path.join(work, 'oci/manifest.json'), JSON.stringify([{ Layers: Object.values(digests).map((digest) => `blobs/sha256/${digest}`) }]));
    execFileSync('tar', ['-cf', path.join(out, 'oci.tar'), '-C', path.join(work, 'oci'), '.']);
    const report = await scanPaths([path.join(out, 'oci.tar')], quiet);
    const expected = [digests.plain, digests.gzip, digests.zstd].flatMap((digest) => [
      `oci.tar › blobs/sha256/${digest} › app/.env|github-token`,
      `oci.tar › blobs/sha256/${digest} › etc/ssh/ssh_host_ed25519_key|private-key`,
    ]);
    expect(located(report.findings)).toEqual(expected.sort());
  });
});
