/**
 * A realistic sops-nix configuration made at test time: SOPS-encrypted files in every form (YAML,
 * JSON, dotenv, INI) with made-up ENC[...] values, `.sops.yaml` with fresh age recipients, SSH public
 * keys, known_hosts, flake.lock, an agenix file and placeholder docs. None of it is a finding.
 */
import { randomBytes } from 'node:crypto';
import { ageKeyFile, sshKey } from './credentials.js';

/** A value as SOPS encrypts it (random bytes; nothing decrypts it). */
export function encValue(): string {
  return `ENC[AES256_GCM,data:${randomBytes(18).toString('base64')},iv:${randomBytes(32).toString('base64')},tag:${randomBytes(16).toString('base64')},type:str]`;
}

/** The `sops:` metadata block SOPS appends to an encrypted YAML file. */
export function sopsYamlBlock(recipient: string): string {
  return [
    'sops:',
    '    age:',
    `        - recipient: ${recipient}`,
    '          enc: |',
    '            -----BEGIN AGE ENCRYPTED FILE-----',
    `            ${randomBytes(48).toString('base64')}`,
    '            -----END AGE ENCRYPTED FILE-----',
    '    lastmodified: "2024-01-02T03:04:05Z"',
    `    mac: ${encValue()}`,
    '    unencrypted_suffix: _unencrypted',
    '    version: 3.9.0',
    '',
  ].join('\n');
}

/** `.sops.yaml` whose creation rule makes every file under secrets/ encrypted for `recipient`. */
export const sopsConfig = (recipient: string) =>
  `keys:\n  - &host ${recipient}\ncreation_rules:\n  - path_regex: secrets/.*\\.(yaml|json|env|ini)$\n    key_groups:\n      - age:\n          - *host\n`;

/** A realistic sops-nix configuration: encrypted SOPS files of every form, public keys, placeholder docs. */
export function sopsNixFiles(): Record<string, string> {
  const { recipient } = ageKeyFile();
  const admin = ageKeyFile().recipient;
  const host = sshKey('ed25519');
  const user = sshKey('rsa');
  return {
    '.sops.yaml': sopsConfig(recipient).replace('  - &host', `  - &admin ${admin}\n  - &host`).replace('          - *host', '          - *host\n          - *admin'),
    'secrets/hosts/workstation.yaml': `model_provider:\n    token: ${encValue()}\nservice_name:\n    token: ${encValue()}\n    port_unencrypted: 8080\n${sopsYamlBlock(recipient)}`,
    'secrets/user.yaml': `github_token: ${encValue()}\nopenai_api_key: ${encValue()}\nlist:\n    - ${encValue()}\n${sopsYamlBlock(recipient)}`,
    'secrets/app.json': `${JSON.stringify({ db: { password: encValue() }, sops: { age: [{ recipient, enc: '-----BEGIN AGE ENCRYPTED FILE-----\nabc\n-----END AGE ENCRYPTED FILE-----\n' }], lastmodified: '2024-01-02T03:04:05Z', mac: encValue(), version: '3.9.0' } }, null, 2)}\n`,
    'secrets/vllm.env': `HF_TOKEN=${encValue()}\nsops_age__list_0__map_recipient=${recipient}\nsops_lastmodified=2024-01-02T03:04:05Z\nsops_mac=${encValue()}\nsops_version=3.9.0\n`,
    'secrets/app.ini': `[db]\npassword = ${encValue()}\n[sops]\nmac = ${encValue()}\nversion = 3.9.0\n`,
    'secrets/wifi.age': Buffer.concat([Buffer.from('age-encryption.org/v1\n-> X25519 abc\n'), randomBytes(200)]).toString('base64'),
    'hosts/workstation/default.nix': [
      '{ config, ... }: {',
      '  sops.defaultSopsFile = ../../secrets/hosts/workstation.yaml;',
      '  sops.age.keyFile = "/var/lib/sops-nix/key.txt";',
      '  sops.age.sshKeyPaths = [ "/etc/ssh/ssh_host_ed25519_key" ];',
      '  sops.secrets.model-provider-token.key = "model_provider/token";',
      '  sops.templates."vllm.env".content = \'\'',
      '    HF_TOKEN=${config.sops.placeholder.model-provider-token}',
      "  '';",
      '  users.users.alice.hashedPasswordFile = config.sops.secrets.alice.path;',
      `  users.users.alice.openssh.authorizedKeys.keys = [ "${host.publicKey.trim()}" "${user.publicKey.trim()}" ];`,
      '}',
    ].join('\n'),
    'keys/hosts/workstation.pub': host.publicKey,
    'keys/known_hosts': `workstation.example.invalid ${host.publicKey}`,
    'flake.lock': `${JSON.stringify({ nodes: { nixpkgs: { locked: { narHash: `sha256-${randomBytes(32).toString('base64')}`, rev: randomBytes(20).toString('hex'), type: 'github' } }, 'sops-nix': { locked: { narHash: `sha256-${randomBytes(32).toString('base64')}`, rev: randomBytes(20).toString('hex') } } }, version: 7 }, null, 2)}\n`,
    'docs/secrets.md': [
      '# Secrets',
      'Edit with `sops secrets/user.yaml` and put:',
      '',
      '    github_token: ghp_example',
      '    openai_api_key: sk-example',
      '    hf_token: hf_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx',
      '    aws_access_key_id: AKIAIOSFODNN7EXAMPLE',
      '',
      'Or `ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx`; never commit the real one.',
      '',
    ].join('\n'),
  };
}
