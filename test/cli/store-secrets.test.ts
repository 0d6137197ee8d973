/**
 * Secrets in the shapes NixOS writes into the store of an installer image when an option is given a
 * literal: users-groups.json (users.users.*.initialPassword), a unit's Environment= line
 * (systemd.services.*.environment), the wireguard module's script (privateKey), the OpenVPN
 * credentials file (authUserPass), a unit whose ExecStart= gives a token to a flag
 * (serviceConfig.ExecStart written with a literal). Each is found inside a zstd squashfs inside an ISO and named
 * through the chain; the same image without them is clean. Values are drawn at test time.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Finding } from '../../src/core/types.js';
import { cliEnv, runCli } from '../helpers/cli.js';
import { makeIso } from '../helpers/installer-image.js';
import { mksquashfs, storeHash } from '../helpers/squashfs-image.js';
import { tempDir } from '../helpers/tmp.js';

function password(): string {
  // Letters and digits, both present: a password, not a word.
  for (;;) {
    const value = randomBytes(18).toString('base64').replace(/[+/=]/g, '').slice(0, 16);
    if (/\d/.test(value) && /[a-z]/.test(value) && /[A-Z]/.test(value)) return value;
  }
}

async function storeImage(files: Record<string, string>): Promise<string> {
  const root = await tempDir('dubnium-seed-store-');
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(root, 'store', name)), { recursive: true });
    writeFileSync(path.join(root, 'store', name), content);
  }
  mkdirSync(path.join(root, 'iso'));
  mksquashfs(path.join(root, 'store'), path.join(root, 'iso', 'nix-store.squashfs'), ['-comp', 'zstd']);
  return makeIso(path.join(root, 'iso'), path.join(root, 'nixos.iso'));
}

describe('secrets NixOS writes into an installer image when options are given literals', () => {
  it('are found inside the ISO › squashfs and named by store path; the same store without them is clean', async () => {
    const [initial, borg, vpn] = [password(), password(), password()];
    const wgKey = randomBytes(32).toString('base64');
    const agentToken = `t${randomBytes(24).toString('base64url')}9a`;
    const agent = `/nix/store/${storeHash()}-unit-tunnel-agent.service/tunnel-agent.service`;
    const users = `/nix/store/${storeHash()}-users-groups.json`;
    const unit = `/nix/store/${storeHash()}-unit-borgbackup-job-home.service/borgbackup-job-home.service`;
    const wg = `/nix/store/${storeHash()}-unit-script-wireguard-wg0-start/bin/wireguard-wg0-start`;
    const ovpn = `/nix/store/${storeHash()}-openvpn-credentials-office`;
    const clean = {
      [users]: JSON.stringify({ users: [{ name: 'nixos', initialHashedPassword: '', hashedPassword: null, initialPassword: null, password: null }], mutableUsers: true }),
      [unit]: '[Service]\nEnvironment="BORG_REPO=ssh://backup@nas/./home" "LOCALE_ARCHIVE=/nix/store/x-glibc-locales/lib/locale/locale-archive"\nExecStart=/nix/store/x-borg/bin/borg create\n',
      [wg]: '#!/bin/sh\nwg set wg0 private-key /run/secrets/wg0 listen-port 51820\n',
      [agent]: '[Service]\nExecStart=/nix/store/x-agent/bin/agent --token-file /run/secrets/agent --listen 127.0.0.1:7000\n',
    };
    const leaking = {
      [users]: JSON.stringify({ users: [{ name: 'nixos', initialHashedPassword: null, hashedPassword: null, initialPassword: initial, password: null }], mutableUsers: true }),
      [unit]: `[Service]\nEnvironment="BORG_PASSPHRASE=${borg}" "BORG_REPO=ssh://backup@nas/./home"\nExecStart=/nix/store/x-borg/bin/borg create\n`,
      [wg]: `#!/bin/sh\nwg set wg0 private-key <(echo "${wgKey}") listen-port 51820\n`,
      [ovpn]: `alice\n${vpn}\n`,
      [agent]: `[Service]\nExecStart=/nix/store/x-agent/bin/agent --token ${agentToken} --listen 127.0.0.1:7000\n`,
    };
    const env = cliEnv({ HOME: await tempDir('dubnium-seed-home-') });
    const scan = async (iso: string) => {
      const result = await runCli(['scan', '--json', '--no-operator-secrets', iso], { env });
      return { code: result.code, findings: (JSON.parse(result.stdout) as { findings: Finding[] }).findings, output: result.stdout + result.stderr };
    };
    expect(await scan(await storeImage(clean))).toMatchObject({ code: 0, findings: [] });
    const found = await scan(await storeImage(leaking));
    expect(found.code).toBe(4);
    expect(found.findings.map((finding) => [finding.rule, finding.chain?.join(' › ')]).sort()).toEqual(
      [
        ['config-password', `/nix-store.squashfs › ${users}`],
        ['env-password', `/nix-store.squashfs › ${unit}`],
        ['wireguard-private-key', `/nix-store.squashfs › ${wg}`],
        ['openvpn-credentials', `/nix-store.squashfs › ${ovpn}`],
        ['cli-token', `/nix-store.squashfs › ${agent}`],
      ].sort(),
    );
    for (const secret of [initial, borg, vpn, wgKey, agentToken]) expect(found.output).not.toContain(secret);
  });
});
