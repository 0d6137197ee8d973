/**
 * Unified kernel images: systemd's real EFI stub (linuxx64.efi.stub) with `.osrel`, `.cmdline`,
 * `.linux` and a zstd `.initrd` added by objcopy, the way UKIs were assembled before ukify. A host key
 * in the initrd is found through the section, also when the UKI sits in an ESP (FAT, mtools); a
 * plain PE file is not opened; a section that runs past the file is reported.
 */
import { execFileSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { fileSource } from '../../../../src/core/scan/formats/byte-source.js';
import { HEAD_BYTES } from '../../../../src/core/scan/formats/types.js';
import { uki } from '../../../../src/core/scan/formats/uki.js';
import { scanPaths } from '../../../../src/core/scan/index.js';
import { sshKey } from '../../../helpers/credentials.js';
import { makeFatImage } from '../../../helpers/installer-image.js';
import { tempDir, writeTree } from '../../../helpers/tmp.js';

const STUB = '/usr/lib/systemd/boot/efi/linuxx64.efi.stub';
const KEY_NAME = 'etc/ssh/ssh_host_ed25519_key';
const quiet = { operatorSecrets: false } as const;

/** A UKI made from systemd's stub, with a zstd initrd holding `initrdFiles`. */
async function makeUki(dir: string, initrdFiles: Record<string, string>): Promise<string> {
  const root = path.join(dir, 'initrd-root');
  await writeTree(root, initrdFiles);
  const names = execFileSync('find', ['.', '-mindepth', '1'], { cwd: root, encoding: 'utf8' });
  const cpio = execFileSync('cpio', ['-o', '-H', 'newc', '--quiet'], { cwd: root, input: names });
  await writeFile(path.join(dir, 'initrd'), execFileSync('zstd', ['-q', '-c', '-19'], { input: cpio }));
  await writeFile(path.join(dir, 'osrel'), 'ID=nixos\nVERSION_ID="25.05"\n');
  await writeFile(path.join(dir, 'cmdline'), 'init=/nix/store/0000000000000000000000000000000-nixos-system/init\n');
  // A kernel image only by its setup header: the stub does not look further here.
  await writeFile(path.join(dir, 'bzImage'), Buffer.concat([Buffer.alloc(0x202), Buffer.from('HdrS'), Buffer.alloc(8000, 0x90)]));
  const out = path.join(dir, 'nixos-uki.efi');
  const sections: [string, string, string][] = [
    ['.osrel', 'osrel', '0x20000'],
    ['.cmdline', 'cmdline', '0x30000'],
    ['.linux', 'bzImage', '0x2000000'],
    ['.initrd', 'initrd', '0x3000000'],
  ];
  const args = sections.flatMap(([name, file, vma]) => ['--add-section', `${name}=${path.join(dir, file)}`, '--change-section-vma', `${name}=${vma}`]);
  execFileSync('objcopy', [...args, STUB, out]);
  return out;
}

function located(findings: { path: string; chain?: string[]; rule: string }[]): string[] {
  return findings.map((finding) => `${finding.path}|${(finding.chain ?? []).join(' › ')}|${finding.rule}`).sort();
}

describe('unified kernel images', () => {
  it('finds a host key in the compressed .initrd section, alone and inside an ESP', async () => {
    const dir = await tempDir();
    const efi = await makeUki(dir, { [KEY_NAME]: sshKey('ed25519').privateKey, 'etc/hostname': 'nixos\n' });
    const source = await fileSource(efi);
    try {
      expect(uki.detect(await source.read(0, HEAD_BYTES), source.size)).toBe(true);
    } finally {
      await source.close();
    }
    const esp = path.join(dir, 'esp.img');
    await makeFatImage(esp, { 'EFI/Linux/nixos-uki.efi': await readFile(efi) }, { sizeKiB: 8192 });
    const report = await scanPaths([efi, esp], quiet);
    expect(located(report.findings)).toEqual(
      ['esp.img|/EFI/Linux/nixos-uki.efi › .initrd › /etc/ssh/ssh_host_ed25519_key|openssh-private-key', `nixos-uki.efi|.initrd › /${KEY_NAME}|openssh-private-key`].sort(),
    );
  });

  it('reads the stub itself (no kernel or initrd section) as its own bytes, and reports a cut-off section', async () => {
    const dir = await tempDir();
    const stub = await fileSource(STUB);
    try {
      expect(uki.detect(await stub.read(0, HEAD_BYTES), stub.size)).toBe(false);
    } finally {
      await stub.close();
    }
    const efi = await makeUki(dir, { 'etc/hostname': 'nixos\n' });
    expect((await scanPaths([efi], quiet)).findings).toEqual([]);
    const whole = await readFile(efi);
    const cut = path.join(dir, 'cut.efi');
    // objcopy leaves a COFF symbol table after the sections: cut inside the initrd itself.
    const initrd = await readFile(path.join(dir, 'initrd'));
    await writeFile(cut, whole.subarray(0, whole.indexOf(initrd) + initrd.length - 100));
    const report = await scanPaths([cut], quiet);
    expect(located(report.findings)).toEqual(['cut.efi|.initrd|unscanned-truncated']);
  });
});
