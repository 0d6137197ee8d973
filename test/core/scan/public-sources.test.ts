/**
 * Findings in the copy of nixpkgs an installer carries (its channel, or a flake's nixpkgs input):
 * they stay findings, and the report and the build's refusal say where they come from and what to
 * change. The image is a zstd squashfs inside an xorriso ISO, with a snakeoil-style key in the
 * channel's nixos/tests and, in one case, the operator's own host key beside it.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatVerifyReport } from '../../../src/commands/verify.js';
import { SecretsFoundError } from '../../../src/errors.js';
import { formatScanReport, scanPaths } from '../../../src/core/scan/index.js';
import { inNixpkgsCopy } from '../../../src/core/scan/public-sources.js';
import { scanInstallerImage } from '../../../src/media/device-build.js';
import { sshKey } from '../../helpers/credentials.js';
import { makeInstallerIso } from '../../helpers/installer-image.js';
import { mksquashfs, storeHash } from '../../helpers/squashfs-image.js';
import { tempDir, writeTree } from '../../helpers/tmp.js';

describe('inNixpkgsCopy', () => {
  it("knows the channel copy and the test folders of a nixpkgs source tree, not the operator's own paths", () => {
    const hash = storeHash();
    const yes = [
      `/nix/store/${hash}-nixos-25.05.20260101.abcdef0/nixos/nixos/tests/ssh-keys.nix`,
      `/nix/store/${hash}-nixos-25.05pre1234/nixos/pkgs/by-name/xy/xyz/test.pem`,
      `/nix/store/${hash}-source/nixos/tests/wireguard/snakeoil-keys.nix`,
      `/nix/store/${hash}-source/lib/tests/modules/secret.nix`,
    ];
    const no = [
      `/nix/store/${hash}-etc/etc/ssh/ssh_host_ed25519_key`,
      `/nix/store/${hash}-source/hosts/workstation/secrets.nix`,
      `/nix/store/${hash}-source/pkgs/my-tool/key.pem`,
      `/nixos/tests/ssh-keys.nix`,
    ];
    for (const inner of yes) expect(inNixpkgsCopy({ inner }), inner).toBe(true);
    for (const inner of no) expect(inNixpkgsCopy({ inner }), inner).toBe(false);
    expect(inNixpkgsCopy({ chain: ['/nix-store.squashfs', yes[0]!] })).toBe(true);
  });
});

describe('an installer image carrying the nixpkgs channel', () => {
  it("reports the channel's test key as a finding, and says where it comes from and what to change", async () => {
    const dir = await tempDir();
    const tree = path.join(dir, 'store');
    const channel = `nix/store/${storeHash()}-nixos-25.05.20260101.abcdef0/nixos`;
    const hostKey = `nix/store/${storeHash()}-etc/etc/ssh/ssh_host_ed25519_key`;
    await writeTree(tree, {
      [`${channel}/nixos/tests/ssh-keys.nix`]: `{ snakeOilPrivateKey = ''\n${sshKey('ed25519').privateKey}''; }\n`,
      [`${channel}/default.nix`]: 'import ./pkgs/top-level/impure.nix\n',
    });
    const store = path.join(dir, 'nix-store.squashfs');
    mksquashfs(tree, store, ['-comp', 'zstd']);
    const initrd = execFileSync('sh', ['-c', 'mkdir -p i/etc && echo dubnium > i/etc/hostname && cd i && find . | cpio -o -H newc --quiet | zstd -q -c'], { cwd: dir });
    const { iso } = await makeInstallerIso(dir, { store, initrd });
    const report = await scanPaths([iso], { operatorSecrets: false });
    expect(report.findings.map((finding) => finding.rule)).toEqual(['openssh-private-key']);
    const human = formatScanReport(report);
    expect(human).toContain('1 of the findings lie in a copy of the nixpkgs sources in the image');
    expect(human).toContain('system.installer.channel.enable = false;');
    // The build refuses the image all the same, with the same advice among its details.
    const refusal = await scanInstallerImage(iso, { build: { scan: { allowlist: [], operatorSecrets: false } } as never }).catch((error: unknown) => error);
    expect(refusal).toBeInstanceOf(SecretsFoundError);
    expect((refusal as SecretsFoundError).details.at(-1)).toContain('system.installer.channel.enable = false;');

    // With the operator's own key beside it, only the channel's is counted in the advice.
    await writeTree(tree, { [hostKey]: sshKey('ed25519').privateKey });
    mksquashfs(tree, store, ['-comp', 'zstd']);
    const both = await makeInstallerIso(path.join(dir, 'again'), { store, initrd });
    const second = await scanPaths([both.iso], { operatorSecrets: false });
    expect(second.findings).toHaveLength(2);
    expect(formatScanReport(second)).toContain('1 of the findings lie in a copy of the nixpkgs sources');
    // verify's report of a stick whose installer region holds them says the same.
    const verifyReport = { ok: false, findings: second.findings, allowed: [], problems: [], checked: [] } as unknown as Parameters<typeof formatVerifyReport>[0];
    expect(formatVerifyReport(verifyReport)).toContain('NOTE    1 of the findings lie in a copy of the nixpkgs sources');
  });
});
