/**
 * VPN secrets an operator's configuration can hold beside WireGuard's `PrivateKey =`: OpenVPN static
 * keys (`ta.key`, inline `<tls-auth>`), IPsec pre-shared keys in `ipsec.secrets`, and a WireGuard
 * private key file that is nothing but the key (`wg genkey > privatekey`). Made at test time; their
 * public halves, stubs and references are not findings.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { scanText } from '../../../../src/core/scan/rules/rules.js';
import { runCli } from '../../../helpers/cli.js';
import { tempDir } from '../../../helpers/tmp.js';

const rulesIn = (text: string) => scanText(text, { operatorSecrets: [] }).map((hit) => hit.rule);

/** An OpenVPN static key as `openvpn --genkey secret` writes it: 256 bytes in 16 lines of hex. */
function staticKey(): string {
  const hex = randomBytes(256).toString('hex').match(/.{32}/g)!.join('\n');
  return ['#', '# 2048 bit OpenVPN static key', '#', '-----BEGIN OpenVPN Static key V1-----', hex, '-----END OpenVPN Static key V1-----', ''].join('\n');
}

describe('VPN secrets', () => {
  it('an OpenVPN static key, alone and inline in an .ovpn profile', () => {
    expect(rulesIn(staticKey())).toEqual(['openvpn-static-key']);
    expect(rulesIn(`client\nremote vpn.lan 1194\nkey-direction 1\n<tls-auth>\n${staticKey()}</tls-auth>\n`)).toEqual(['openvpn-static-key']);
    // The documentation's shape with no key in it is not.
    expect(rulesIn('-----BEGIN OpenVPN Static key V1-----\n...\n-----END OpenVPN Static key V1-----\n')).toEqual([]);
  });

  it('an IPsec PSK in ipsec.secrets, quoted, hex and base64; a prompt is not one', () => {
    expect(rulesIn(`# ipsec.secrets\n: PSK "${randomBytes(18).toString('base64')}"\n`)).toEqual(['ipsec-psk']);
    expect(rulesIn(`moon.lan sun.lan : PSK 0x${randomBytes(24).toString('hex')}\n`)).toEqual(['ipsec-psk']);
    expect(rulesIn(`@carol : PSK 0s${randomBytes(24).toString('base64')}\n`)).toEqual(['ipsec-psk']);
    expect(rulesIn(': PSK %prompt\n')).toEqual([]);
    expect(rulesIn(': PSK "your-pre-shared-key"\n')).toEqual([]);
  });

  it('`scan` finds a WireGuard private key file by its name and shape; the public key beside it is not a finding', async () => {
    const dir = await tempDir();
    await mkdir(path.join(dir, 'wireguard'));
    const key = randomBytes(32);
    key[0]! &= 248; // clamped, as wg genkey writes it
    await writeFile(path.join(dir, 'wireguard/privatekey'), `${key.toString('base64')}\n`);
    await writeFile(path.join(dir, 'wireguard/wg0-private.key'), `${randomBytes(32).toString('base64')}\n`);
    await writeFile(path.join(dir, 'wireguard/publickey'), `${randomBytes(32).toString('base64')}\n`);
    await writeFile(path.join(dir, 'wireguard/wg0-public.key'), `${randomBytes(32).toString('base64')}\n`);
    await writeFile(path.join(dir, 'wireguard/notes.txt'), `${randomBytes(32).toString('base64')}\n`);
    const result = await runCli(['scan', '--no-operator-secrets', '--json', dir]);
    expect(result.code).toBe(4);
    const findings = (JSON.parse(result.stdout) as { findings: { path: string; rule: string }[] }).findings;
    expect(findings.map((finding) => `${path.basename(finding.path)} ${finding.rule}`).sort()).toEqual(['privatekey wireguard-private-key-file', 'wg0-private.key wireguard-private-key-file']);
  });
});

describe('WireGuard keys fed to wg set in a script (NixOS writes privateKey into its service script)', () => {
  const key = () => randomBytes(32).toString('base64');
  it('finds private-key <(echo "…") and preshared-key <(echo …), quoted or not, and printf; not a variable', () => {
    const [a, b, c] = [key(), key(), key()];
    const script = `#!/bin/sh\nwg set wg0 private-key <(echo "${a}") listen-port 51820\nwg set wg0 peer X preshared-key <(echo ${b}) allowed-ips 10.0.0.2/32\nwg set wg1 private-key <(printf '%s' "${c}")\nwg set wg2 private-key <(echo "$WG_PRIVATE_KEY")\n`;
    const hits = scanText(script, { operatorSecrets: [] });
    expect(hits.map((hit) => [hit.rule, script.slice(hit.start, hit.end)]).sort()).toEqual(
      [['wireguard-private-key', a], ['wireguard-preshared-key', b], ['wireguard-private-key', c]].sort(),
    );
  });
});
