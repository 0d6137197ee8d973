/**
 * Real `.sops.yaml` files declare their key groups with anchors such as `- &users:`: the YAML library
 * warns that such an anchor is ambiguous. The scan must read them quietly (nothing on stderr in the
 * middle of the wizard's output) and still get their creation_rules right.
 */
import { describe, expect, it } from 'vitest';
import { mustBeEncrypted, parseSopsConfig } from '../../../../src/core/scan/rules/sops.js';
import { runCli } from '../../../helpers/cli.js';
import { tempDir, writeTree } from '../../../helpers/tmp.js';

const SOPS_YAML = `keys:
  # Users
  - &users:
    - &operator 7088C7421873E0DB97FF17C2245CAB70B4C225E9
  # Hosts
  - &hosts:
    - &atlas age1hm5lf4qk84r4wh00atn6hpts7mpdx80adq26wht2e5qh9ewvhyaszfv82d
creation_rules:
  - path_regex: hosts/atlas/secrets.ya?ml$
    key_groups:
    - age:
      - *atlas
      pgp:
      - *operator
  - path_regex: hosts/common/secrets.ya?ml$
    key_groups:
    - age:
      - *atlas
`;

describe('.sops.yaml with `&name:` anchors', () => {
  it('parses to the right rules', () => {
    const config = parseSopsConfig(SOPS_YAML);
    expect(config.rules).toHaveLength(2);
    expect(mustBeEncrypted(config, 'hosts/atlas/secrets.yaml')).toBe(true);
    expect(mustBeEncrypted(config, 'hosts/common/secrets.yml')).toBe(true);
    expect(mustBeEncrypted(config, 'hosts/atlas/default.nix')).toBe(false);
  });

  it('prints nothing on stderr during a scan, and still applies the rules', async () => {
    const root = await tempDir();
    await writeTree(root, {
      '.sops.yaml': SOPS_YAML,
      'hosts/atlas/secrets.yaml': 'wifi:\n  psk_home: a-decrypted-secrets-file\n',
      'hosts/atlas/default.nix': '{ ... }: { networking.hostName = "atlas"; }\n',
    });
    const result = await runCli(['scan', root, '--json', '--no-operator-secrets']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(4);
    const report = JSON.parse(result.stdout) as { findings: { path: string; kind: string }[] };
    expect(report.findings.map((finding) => [finding.path, finding.kind])).toEqual([['hosts/atlas/secrets.yaml', 'sops-unencrypted-file']]);
  });
});
