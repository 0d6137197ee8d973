/**
 * Secrets in a file of their own, found by the file's name: the operator's policy's first example of
 * a leak, `environment.etc."restic-password".text = "…";`, in Nix source and as the store file
 * it becomes, in a folder and in a zstd squashfs inside an installer ISO (made with mksquashfs and
 * xorriso). Values are drawn fresh each run.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { scanPaths } from '../../../../src/core/scan/index.js';
import { looksLikeSecretValue, secretFileKind } from '../../../../src/core/scan/rules/named-secrets.js';
import { scanText } from '../../../../src/core/scan/rules/rules.js';
import { looksLikeToken } from '../../../../src/core/scan/rules/service-rules.js';
import { makeInstallerIso } from '../../../helpers/installer-image.js';
import { compressibleText, mksquashfs, storeHash } from '../../../helpers/squashfs-image.js';
import { tempDir, writeTree } from '../../../helpers/tmp.js';

const quiet = { operatorSecrets: false } as const;

/** A random password of letters and digits (no placeholder words: drawn again in the rare case). */
function password(length = 14): string {
  for (;;) {
    const value = randomBytes(length).toString('base64').replace(/[+/=]/g, '').slice(0, length);
    if (value.length === length && looksLikeSecretValue(value, 'plaintext-password') && /\d/.test(value)) return value;
  }
}

function token(prefix = '', length = 40): string {
  for (;;) {
    const value = `${prefix}${randomBytes(length).toString('base64url').replace(/[-_]/g, '').slice(0, length)}`;
    if (value.length === prefix.length + length && looksLikeToken(value)) return value;
  }
}

/** The rules over `text` as a `.nix` file's (the Nix store rule reads only those). */
function rules(text: string): [string, string][] {
  return scanText(text, { operatorSecrets: [], nixSource: true }).map((hit) => [hit.rule, String(hit.secret)]);
}

describe('secretFileKind', () => {
  it('reads what a name says the file holds', () => {
    const cases: [string, string | undefined][] = [
      ['restic-password', 'plaintext-password'],
      ['db_password.txt', 'plaintext-password'],
      ['borg/passphrase', 'plaintext-password'],
      ['luks.pass', 'plaintext-password'],
      ['wifi-psk', 'plaintext-password'],
      ['dbPassword', 'plaintext-password'],
      ['0a1b2c3d4f5g6h7i8j9k0l1m2n3p4q5r-etc-restic-password', 'plaintext-password'],
      ['hf-token', 'service-token'],
      ['cookie_secret', 'service-token'],
      ['openai.apikey', 'service-token'],
      ['api-key', 'service-token'],
      ['.config/gh/token', 'service-token'],
      // Names about a secret, not of one, and files that are not a secret's.
      ['password-policy', undefined],
      ['token-file', undefined],
      ['200-disable-password-auth.conf', undefined],
      ['passwd.conf', undefined],
      ['passwd', undefined],
      ['api-token-id', undefined],
      ['dialog-password-symbolic.symbolic.png', undefined],
      ['tokenizer.json', undefined],
      ['compass', undefined],
      ['passes', undefined],
      ['nixpkgs-pin', undefined],
      ['README', undefined],
    ];
    for (const [name, kind] of cases) expect(secretFileKind(name), name).toBe(kind);
  });

  it('takes a password, not a path, reference, hash, placeholder or config line', () => {
    for (const value of ['hunter2', password(), 'correct horse battery staple', 'Tr0ub4dor&3']) expect(looksLikeSecretValue(value, 'plaintext-password'), value).toBe(true);
    const not = [
      '/run/secrets/restic', '${config.sops.placeholder.db}', '$6$salt$3Yk8mQ2v', 'changeme', 'password', 'my-password', 'xxxxxxxx',
      'Module: unix', 'base-passwd: no-debconf-config', 'user = alice', 'ENC[AES256_GCM,data:abc,type:str]', 'true', '#secret', 'short',
      'HEADER.SIMULATED_JWT_PAYLOAD.SIGNATURE',
    ];
    for (const value of not) expect(looksLikeSecretValue(value, value.includes('JWT') ? 'service-token' : 'plaintext-password'), value).toBe(false);
    expect(looksLikeSecretValue(token(), 'service-token')).toBe(true);
    expect(looksLikeSecretValue('not a token at all', 'service-token')).toBe(false);
  });
});

describe('nix-store-secret', () => {
  it('finds a literal written to a store file named like a secret, in each way Nix writes one', () => {
    const [p1, p2, p3] = [password(), password(), password()];
    const [t1, t2] = [token(), token()];
    const text = `{ pkgs, config, ... }: {
  environment.etc."restic-password".text = "${p1}";
  environment.etc."borg/passphrase" = {
    mode = "0400";
    text = ''
      ${p2}
    '';
  };
  services.a.passwordFile = pkgs.writeText "luks-password" "${p3}";
  services.b.tokenFile = builtins.toFile "cookie-secret" ''${t1}'';
  home.file.".config/app/api-token".text = "${t2}";
}
`;
    const found = rules(text).filter(([rule]) => rule === 'nix-store-secret');
    expect(found.map(([, secret]) => secret).sort()).toEqual([p1, p2, p3, t1, t2].sort());
    const hits = scanText(text, { operatorSecrets: [], nixSource: true }).filter((hit) => hit.rule === 'nix-store-secret');
    // Only in Nix source: the same text in another file is not read for it.
    expect(scanText(text, { operatorSecrets: [] }).filter((hit) => hit.rule === 'nix-store-secret')).toEqual([]);
    for (const hit of hits) expect(text.slice(hit.start, hit.end)).toBe(String(hit.secret));
    expect(hits.find((hit) => hit.secret === p1)?.kind).toBe('plaintext-password');
    expect(hits.find((hit) => hit.secret === t1)?.note).toBe('builtins.toFile "cookie-secret": a world-readable file in the Nix store');
  });

  it('leaves interpolations, placeholders, config files and other names alone', () => {
    const text = `{ pkgs, config, ... }: {
  environment.etc."app/db-password".text = "\${config.sops.placeholder.db}";
  environment.etc."ssh/sshd_config.d/200-disable-password-auth.conf".text = ''
    PasswordAuthentication no
  '';
  services.bar.passwordFile = pkgs.writeText "luks-password" "changeme";
  environment.etc."motd".text = "${password()}";
  environment.etc."restic-password".source = "/run/secrets/restic";
  environment.etc."token-expiry".text = "${token()}";
  users.users.alice.description = "password: see the vault";
}
`;
    expect(rules(text).filter(([rule]) => rule === 'nix-store-secret')).toEqual([]);
  });
});

describe('secret-named-file', () => {
  it('finds a one-line secret in a file named for it, and nothing in look-alikes', async () => {
    const root = await tempDir();
    const [p1, p2] = [password(), password()];
    const t1 = token('', 48);
    await writeTree(root, {
      [`nix/store/${storeHash()}-etc-restic-password`]: p1,
      [`nix/store/${storeHash()}-etc/etc/borg/passphrase`]: `${p2}\n`,
      [`nix/store/${storeHash()}-hf-token`]: `${t1}\n`,
      // Not findings: several lines, a hash, a path, a placeholder, a name about passwords, a long file.
      'etc/pam.d/passwd': '@include common-password\n',
      'etc/pam.d/db-password': '@include common-password\n',
      'initrd/etc/passwd': 'root:x:0:0:root:/root:/bin/ash\n',
      'initrd/etc/root-password': 'root:x:0:0:root:/root:/bin/ash\n',
      'var/lib/pam/password': 'Module: unix\n[success=end default=ignore]\tpam_unix.so obscure yescrypt\n',
      'etc/hashed-password': '$6$rounds=5000$saltsalt$Zm9vYmFyYmF6cXV4\n',
      'etc/restic/password-file-path': '/run/secrets/restic\n',
      'etc/app/password': 'changeme\n',
      'share/tokenizer.json': '{"model":"bpe"}\n',
      'share/doc/password': compressibleText(4096, 'doc').toString(),
    });
    const report = await scanPaths([root], quiet);
    const found = report.findings.map((f) => [f.path.replace(/[0-9a-z]{32}-/, 'HASH-'), f.rule, f.kind]).sort();
    expect(found).toEqual([
      ['nix/store/HASH-etc-restic-password', 'secret-named-file', 'plaintext-password'],
      ['nix/store/HASH-etc/etc/borg/passphrase', 'secret-named-file', 'plaintext-password'],
      ['nix/store/HASH-hf-token', 'secret-named-file', 'service-token'],
    ]);
    expect(JSON.stringify(report)).not.toContain(p1);
  });

  it('finds it in a zstd squashfs inside an installer ISO, naming the store path', async () => {
    const dir = await tempDir();
    const tree = path.join(dir, 'store-root');
    const secret = password();
    const storePath = `nix/store/${storeHash()}-etc/etc/restic-password`;
    await writeTree(tree, {
      [storePath]: `${secret}\n`,
      [`nix/store/${storeHash()}-doc/share/doc/big.txt`]: compressibleText(512 * 1024, 'filler').toString(),
    });
    const store = path.join(dir, 'nix-store.squashfs');
    mksquashfs(tree, store, ['-comp', 'zstd']);
    const initrd = execFileSync('sh', ['-c', 'mkdir -p i/etc && echo dubnium > i/etc/hostname && cd i && find . | cpio -o -H newc --quiet | zstd -q -c'], { cwd: dir });
    const { iso } = await makeInstallerIso(dir, { store, initrd });
    const report = await scanPaths([iso], quiet);
    expect(report.findings.map((f) => [f.rule, f.chain])).toEqual([['secret-named-file', ['/nix-store.squashfs', `/${storePath}`]]]);
  });
});
