/**
 * `scan` on an installer ISO compressed the way real NixOS installers are: `nix-store.squashfs` made
 * with `mksquashfs -comp xz -Xbcj x86` and an initrd compressed with `xz --check=crc32 --x86 --lzma2`,
 * both holding machine code (so the x86 filter is really used) and a host key. The key must be found in
 * both, each with its chain, and nothing reported unscanned. Real mksquashfs, xz, cpio and xorriso.
 */
import { copyFileSync, mkdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.js';
import { sshKey } from '../helpers/credentials.js';
import { makeInstallerIso, writeTree } from '../helpers/installer-image.js';
import { mksquashfs, storeHash } from '../helpers/squashfs-image.js';
import { tempDir } from '../helpers/tmp.js';

interface JsonFinding {
  path: string;
  chain?: string[];
  rule: string;
}

const KEY_NAME = 'etc/ssh/ssh_host_ed25519_key';
const MACHINE_CODE = ['/usr/bin/ls', '/usr/bin/cp', '/usr/bin/tar', '/usr/lib/x86_64-linux-gnu/libc.so.6'];

function cpioOf(root: string): Buffer {
  const names = execFileSync('find', ['.', '-mindepth', '1'], { cwd: root, encoding: 'utf8' });
  return execFileSync('cpio', ['-o', '-H', 'newc', '--quiet'], { cwd: root, input: names, maxBuffer: 64 * 1024 * 1024 });
}

describe('scan an installer ISO with x86-filtered xz', () => {
  it('finds a host key in the -Xbcj x86 squashfs store and in the --x86 xz initrd, naming each chain', async () => {
    const work = await tempDir('dubnium-bcj-iso-');
    const key = sshKey('ed25519').privateKey;
    const store = `/nix/store/${storeHash()}-etc`;
    const bins = `/nix/store/${storeHash()}-coreutils/bin`;

    const storeRoot = path.join(work, 'store-root');
    await writeTree(storeRoot, { [`${store.slice(1)}/${KEY_NAME}`]: key, [`${store.slice(1)}/etc/hostname`]: 'nixos\n' });
    mkdirSync(path.join(storeRoot, bins), { recursive: true });
    for (const file of MACHINE_CODE) copyFileSync(file, path.join(storeRoot, bins, path.basename(file)));
    const image = path.join(work, 'nix-store.squashfs');
    mksquashfs(storeRoot, image, ['-comp', 'xz', '-Xdict-size', '100%', '-Xbcj', 'x86']);

    const initrdRoot = path.join(work, 'initrd-root');
    await writeTree(initrdRoot, { [KEY_NAME]: key, init: '#!/bin/sh\n' });
    mkdirSync(path.join(initrdRoot, 'bin'));
    for (const file of MACHINE_CODE) copyFileSync(file, path.join(initrdRoot, 'bin', path.basename(file)));
    const initrd = execFileSync('xz', ['--check=crc32', '--x86', '--lzma2', '-c'], { input: cpioOf(initrdRoot), maxBuffer: 1 << 28 });
    expect(initrd.subarray(12, 16)[2]).toBe(0x04); // the first block's first filter is x86

    const { iso } = await makeInstallerIso(work, { store: image, initrd });
    const result = await runCli(['scan', '--json', iso]);
    const findings = (JSON.parse(result.stdout) as { findings: JsonFinding[] }).findings;
    expect(result.code).toBe(4);
    expect(findings.filter((finding) => finding.rule.startsWith('unscanned'))).toEqual([]);
    const chains = findings.filter((finding) => finding.rule === 'openssh-private-key').map((finding) => finding.chain);
    expect(chains).toContainEqual(['/nix-store.squashfs', `${store}/${KEY_NAME}`]);
    expect(chains.some((chain) => chain?.[0] === '/boot/initrd' && chain.at(-1) === `/${KEY_NAME}`)).toBe(true);
    expect(result.stdout + result.stderr).not.toContain(key.split('\n')[1]!);
  }, 240_000);
});
