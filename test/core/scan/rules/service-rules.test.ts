/**
 * The credentials of an AI workstation and homelab, made fresh each run, are found in the places
 * they are written; their public counterparts, stubs without the vendor's structure, and templates
 * filled in later are not.
 */
import { execFileSync } from 'node:child_process';
import { createHmac, randomBytes, randomInt } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { scanPaths } from '../../../../src/core/scan/index.js';
import { scanText } from '../../../../src/core/scan/rules/rules.js';
import { serviceCredentials } from '../../../helpers/service-credentials.js';
import { fakeTokens, githubToken, randomString, randomString as randomText } from '../../../helpers/credentials.js';
import { entropy, isDescriptivePlaceholder, looksLikePlaceholder } from '../../../../src/core/scan/rules/text-util.js';
import { tempDir } from '../../../helpers/tmp.js';

const rulesIn = (text: string) => scanText(text, { operatorSecrets: [] }).map((hit) => hit.rule);

/**
 * A random value the name-based token rules must take: letters and digits, and none of the
 * placeholder words a random string holds once in about ten thousand draws (`XxXx`, `yOUr`, `FaKe`).
 */
const tokenShaped = (value: string) => /[0-9]/.test(value) && /[A-Za-z]/.test(value) && !looksLikePlaceholder(value, 3.5) && !isDescriptivePlaceholder(value);

describe('credentials of an AI workstation and homelab', () => {
  const fresh = serviceCredentials();
  const cases: [string, string, string][] = [
    ['OpenRouter API key', `OPENROUTER_API_KEY=${fresh.openrouter}\n`, 'openrouter-key'],
    ['Anthropic API key', `{"anthropic_api_key": "${fresh.anthropic}"}`, 'anthropic-key'],
    ['GitLab personal access token', `git remote add origin https://gitlab.com/o/r.git # token ${fresh.gitlab}\n`, 'gitlab-token'],
    ['npm token', `//registry.npmjs.org/:_authToken=${fresh.npm}\n`, 'npm-token'],
    ['PyPI token', `[pypi]\nusername = __token__\npassword = ${fresh.pypi}\n`, 'pypi-token'],
    ['Docker config.json auths', fresh.dockerConfig, 'docker-registry-auth'],
    ['.netrc password', `machine api.example.net login operator password ${fresh.netrcPassword}\n`, 'netrc-password'],
    ['.netrc over several lines', `machine git.internal.lan\n  login operator\n  password ${fresh.netrcPassword}\n`, 'netrc-password'],
    ['Telegram bot token', `services.alerts.telegramToken = "${fresh.telegram}";\n`, 'telegram-bot-token'],
    ['Google API key', `GOOGLE_API_KEY: ${fresh.google}\n`, 'google-api-key'],
    ['Cachix auth token', `export CACHIX_AUTH_TOKEN=${fresh.cachix}\n`, 'cachix-auth-token'],
    ['Azure storage account key', `DefaultEndpointsProtocol=https;AccountName=backups;AccountKey=${fresh.azureKey};EndpointSuffix=core.windows.net`, 'azure-storage-key'],
    ['Wi-Fi PSK in Nix', `networking.wireless.networks."Home".psk = "${fresh.wifiPsk}";\n`, 'wifi-psk'],
    ['raw Wi-Fi PSK in Nix', `networking.wireless.networks.Lab.pskRaw = "${fresh.wifiPskRaw}";\n`, 'wifi-psk'],
    ['Wi-Fi PSK in a NetworkManager profile', `[wifi-security]\nkey-mgmt=wpa-psk\npsk=${fresh.wifiPsk}\n`, 'wifi-psk'],
    ['WireGuard preshared key in Nix', `peers = [ { publicKey = "x"; presharedKey = "${fresh.wireguardPreshared}"; } ];\n`, 'wireguard-preshared-key'],
    ['restic password in an environment file', `RESTIC_REPOSITORY=s3:s3.amazonaws.com/bucket\nRESTIC_PASSWORD=${fresh.resticPassword}\n`, 'env-password'],
    ['borg passphrase, exported and quoted', `export BORG_PASSPHRASE="${fresh.resticPassword}"\n`, 'env-password'],
    ['a service password given to a Nix environment', `environment = {\n  MAIL_PASSWORD = "${fresh.resticPassword}";\n};\n`, 'env-password'],
  ];
  for (const [name, text, rule] of cases) {
    it(`finds a ${name}`, () => {
      expect(rulesIn(text)).toContain(rule);
    });
  }

  it('finds a DeepSeek key whose random hex happens to repeat digits, not a placeholder of one digit or one word', () => {
    // About one key in 250 has 3.2 bits of entropy or less: drawn until one does.
    let body = randomBytes(16).toString('hex');
    while (entropy(body) > 3.2) body = randomBytes(16).toString('hex');
    expect(rulesIn(`deepseek_api_key = "sk-${body}"\n`)).toContain('deepseek-key');
    expect(rulesIn(`deepseek_api_key = "sk-${'0'.repeat(32)}"\n`)).not.toContain('deepseek-key');
    expect(rulesIn(`deepseek_api_key = "sk-${'deadbeef'.repeat(4)}"\n`)).not.toContain('deepseek-key');
  });

  it('never reports the value itself: hits carry it only as the secret to fingerprint', () => {
    const hits = scanText(`RESTIC_PASSWORD=${fresh.resticPassword}\n`, { operatorSecrets: [] });
    expect(hits[0]?.note).not.toContain(fresh.resticPassword);
  });
});

describe('more providers and cluster credentials', () => {
  const alnum = (length: number) => randomString(length);
  const hex = (length: number) => randomBytes(length / 2).toString('hex');
  const jwt = (header: object, payload: object) =>
    `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${randomBytes(256).toString('base64url')}`;
  const grafanaCloud = `glc_${Buffer.from(JSON.stringify({ o: '123456', n: 'stack-123-deploy', k: alnum(24), m: { r: 'prod-eu-west-0' } })).toString('base64')}`;
  const cases: [string, string, string][] = [
    ['Groq API key', `GROQ_API_KEY=gsk_${alnum(52)}\n`, 'groq-key'],
    ['Replicate API token', `export REPLICATE_API_TOKEN=r8_${alnum(37)}\n`, 'replicate-token'],
    ['Stripe live secret key', `stripe.secretKey = "sk_live_${alnum(99)}";\n`, 'stripe-key'],
    ['Stripe restricted key', `STRIPE_KEY: rk_live_${alnum(24)}\n`, 'stripe-key'],
    ['Grafana service account token', `GF_TOKEN=glsa_${alnum(32)}_${hex(8)}\n`, 'grafana-token'],
    ['Grafana Cloud token', `grafana_cloud_token: ${grafanaCloud}\n`, 'grafana-token'],
    ['DigitalOcean personal access token', `DIGITALOCEAN_TOKEN=dop_v1_${hex(64)}\n`, 'digitalocean-token'],
    ['Perplexity API key', `{"perplexity": "pplx-${alnum(48)}"}`, 'perplexity-key'],
    ['xAI API key', `XAI_API_KEY=xai-${alnum(80)}\n`, 'xai-key'],
    ['DeepSeek API key', `deepseek_api_key = "sk-${hex(32)}"\n`, 'deepseek-key'],
    ['k3s join token in Nix', `services.k3s.token = "K10${hex(64)}::server:${hex(32)}";\n`, 'k3s-token'],
    ['Tailscale node private key (tailscaled state)', `{"_machinekey":"x","PrivateNodeKey":"privkey:${hex(64)}"}`, 'tailscale-private-key'],
    ['Tailscale tailnet-lock key', `nlpriv:${hex(64)}`, 'tailscale-private-key'],
    [
      'Kubernetes service account token in a kubeconfig',
      `users:\n- name: ci\n  user:\n    token: ${jwt({ alg: 'RS256', kid: alnum(43) }, { iss: 'kubernetes/serviceaccount', 'kubernetes.io/serviceaccount/namespace': 'default', sub: 'system:serviceaccount:default:ci' })}\n`,
      'kubernetes-token',
    ],
    [
      'bound Kubernetes service account token',
      `token: ${jwt({ alg: 'RS256' }, { aud: ['https://kubernetes.default.svc'], iss: 'https://kubernetes.default.svc.cluster.local', sub: 'system:serviceaccount:kube-system:deployer', 'kubernetes.io': { namespace: 'kube-system' } })}`,
      'kubernetes-token',
    ],
  ];
  for (const [name, text, rule] of cases) {
    it(`finds a ${name}`, () => {
      expect(rulesIn(text)).toContain(rule);
    });
  }

  it('finds a DeepSeek key whose random hex happens to repeat digits, not a placeholder of one digit or one word', () => {
    // About one key in 250 has 3.2 bits of entropy or less: drawn until one does.
    let body = randomBytes(16).toString('hex');
    while (entropy(body) > 3.2) body = randomBytes(16).toString('hex');
    expect(rulesIn(`deepseek_api_key = "sk-${body}"\n`)).toContain('deepseek-key');
    expect(rulesIn(`deepseek_api_key = "sk-${'0'.repeat(32)}"\n`)).not.toContain('deepseek-key');
    expect(rulesIn(`deepseek_api_key = "sk-${'deadbeef'.repeat(4)}"\n`)).not.toContain('deepseek-key');
  });

  const notFound: [string, string][] = [
    ['a Stripe test key from the documentation', 'sk_test_4eC39HqLyjWDarjtT1zdp7dc'],
    ['a Tailscale node public key', `nodekey:${hex(64)}`],
    ['a tailnet-lock public key', `nlpub:${hex(64)}`],
    ['a k3s token that is a placeholder', `services.k3s.token = "K10${hex(64)}::server:xxxxxxxxxxxx";`],
    ['a JWT of another issuer', jwt({ alg: 'RS256' }, { iss: 'https://accounts.example.invalid', sub: 'user-1' })],
    ['a Groq-shaped row of letters', `gsk_${'a'.repeat(52)}`],
    ['a DigitalOcean-shaped row of zeros', `dop_v1_${'0'.repeat(64)}`],
  ];
  for (const [name, text] of notFound) {
    it(`does not report ${name}`, () => {
      expect(rulesIn(text)).toEqual([]);
    });
  }
});

describe('what only looks like a vendor token', () => {
  const fresh = serviceCredentials();
  const stubs: [string, string][] = [
    ['an npm token whose checksum fails', `npm_${fresh.npm.slice(4, 34)}${fresh.npm.slice(34) === 'AAAAAA' ? 'BBBBBB' : 'AAAAAA'}`],
    ['a PyPI-shaped token for another index', `pypi-AgE${Buffer.from('\u0001\u0008example.org and more bytes here to be long enough ok').toString('base64url')}`],
    ['a Slack stub in a test script', `printf 'xoxp-0-stub-token\\n' >"$token_file"`],
    ['a GitLab token that is a row of letters', 'glpat-xxxxxxxxxxxxxxxxxxxx'],
    ['a JWT that is not a Cachix token', `${Buffer.from('{"alg":"RS256"}').toString('base64url')}.${Buffer.from('{"sub":"1234567890","name":"John"}').toString('base64url')}.${'a'.repeat(43)}`],
    ['a Telegram-shaped value without mixed case', `123456789:AA${'b'.repeat(33)}`],
    ['a Google key placeholder', 'AIzaSyXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX'],
  ];
  for (const [name, text] of stubs) {
    it(`does not report ${name}`, () => {
      expect(rulesIn(text)).toEqual([]);
    });
  }
});

describe('public counterparts', () => {
  it('a WireGuard public key in Nix is not a finding', () => {
    const fresh = serviceCredentials();
    expect(rulesIn(`peers = [ { publicKey = "${fresh.wireguardPreshared}"; allowedIPs = [ "10.0.0.2/32" ]; } ];`)).toEqual([]);
  });

  it('a Tailscale node key is not a finding', () => {
    const fresh = serviceCredentials();
    expect(rulesIn(`nodekey:${fresh.wifiPskRaw}\nmachine key: mkey:${fresh.wifiPskRaw}`)).toEqual([]);
  });

  it('an SSH certificate is not a finding', async () => {
    const dir = await tempDir();
    const ca = path.join(dir, 'ca');
    const user = path.join(dir, 'user');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', ca]);
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', user]);
    execFileSync('ssh-keygen', ['-q', '-s', ca, '-I', 'operator', '-n', 'operator', `${user}.pub`]);
    const certificate = readFileSync(`${user}-cert.pub`, 'utf8');
    expect(certificate).toMatch(/^ssh-ed25519-cert-v01@openssh\.com /);
    expect(rulesIn(certificate)).toEqual([]);
    expect(rulesIn(`programs.ssh.knownHosts.ca.publicKey = "${certificate.trim()}";`)).toEqual([]);
  });
});

describe('templates and placeholders are not plaintext credentials', () => {
  const templates = [
    '@LDAP_PASSWORD@',
    '@tsig_key@',
    '%env(KIMAI_LDAP_PASSWORD)%',
    '%kernel.secret%',
    '$__file{/run/secrets/grafana-admin}',
    '$__env{GF_ADMIN_PASSWORD}',
    '${ADMIN_PASSWORD}',
    '$ADMIN_PASSWORD',
    '{{ admin_password }}',
    '<SOPS:0123456789abcdef:PLACEHOLDER>',
    '%(ENV_ADMIN_PASSWORD)s',
    '!secret mqtt_password',
    '!nfty-pass',
    'ENC[AES256_GCM,data:abcd,iv:efgh,tag:ijkl,type:str]',
    'super-secret-password',
    'mynickserv_key',
  ];
  for (const value of templates) {
    it(`${value} in a Nix option, an environment file and a .netrc`, () => {
      expect(rulesIn(`services.x.password = "${value}";`)).toEqual([]);
      expect(rulesIn(`services.x.ldap_bind_password = "${value}";`)).toEqual([]);
      if (!/\s/.test(value)) {
        expect(rulesIn(`DB_PASSWORD=${value}\n`)).toEqual([]);
        expect(rulesIn(`machine db.lan login app password ${value}\n`)).toEqual([]);
      }
    });
  }

  it('while a real literal in the same places is found', () => {
    const literal = 'Tr0ub4dor&3-x9';
    expect(rulesIn(`services.x.password = "${literal}";`)).toEqual(['nix-plaintext-password']);
    expect(rulesIn(`DB_PASSWORD=${literal}\n`)).toEqual(['env-password']);
    expect(rulesIn(`machine db.lan login app password ${literal}\n`)).toEqual(['netrc-password']);
  });

  it('a crypt(3) hash marked encrypted is not a plaintext password; plaintext beside it is', () => {
    // Made at run time, so that this file holds no literal the repository's own scan would flag.
    const des = ['L/b5', 'FCMZ1DUc2'].join('');
    expect(rulesIn(`operator "Mara" {\n  password = "${des}";\n  flags = encrypted;\n};`)).toEqual([]);
    expect(rulesIn(`operator "Mara" {\n  password = "${des}";\n};`)).toEqual(['nix-plaintext-password']);
  });

  it('Nix expressions and command-line arguments are not values', () => {
    expect(rulesIn('  DB_PASSWORD = cfg.database.passwordFile;\n')).toEqual([]);
    expect(rulesIn('  MAIL_PASSWORD = config.sops.secrets.firefly-mail-password.path;\n')).toEqual([]);
    expect(rulesIn('LUKS_PASS=" --disk-encryption-keys /tmp/data.passwordFile /tmp/data.passwordFile"\n')).toEqual([]);
    expect(rulesIn('psk = config.get("wifi-security", "psk", fallback=None)\n')).toEqual([]);
    expect(rulesIn('RESTIC_PASSWORD_FILE=/run/secrets/restic\n')).toEqual([]);
  });
});

describe('service tokens in environment files', () => {
  const token = () => randomString(36);
  it.each([
    ['an environment file', (value: string) => `SERVICE_API_KEY=${value}\n`],
    ['an exported, quoted variable', (value: string) => `export GRAFANA_TOKEN="${value}"\n`],
    ['a secret of a web app', (value: string) => `JWT_SECRET='${value}'\n`],
    ['a Nix environment attribute', (value: string) => `environment.variables.OPENWEBUI_SECRET_KEY = "${value}";\n`],
    ['a systemd Environment file', (value: string) => `[Service]\nPAPERLESS_APIKEY=${value}\n`],
  ])('finds a literal token in %s', (_, write) => {
    let value = token();
    while (!tokenShaped(value)) value = token();
    const hits = scanText(write(value), { operatorSecrets: [] });
    expect(hits.map((hit) => hit.rule)).toEqual(['env-token']);
    expect(hits[0]!.kind).toBe('service-token');
  });

  it("python-social-auth's client secret is reported, its client ID (`…_KEY`) is not", () => {
    let value = token();
    while (!tokenShaped(value)) value = token();
    expect(rulesIn(`SOCIAL_AUTH_GITHUB_KEY = "Ov23liQ8xZr4Tb6Wn2Yk"\nSOCIAL_AUTH_GITHUB_SECRET = "${value}"\n`)).toEqual(['env-token']);
  });

  it('a vendor token under such a name is reported once, by its vendor rule', () => {
    expect(rulesIn(`OPENROUTER_API_KEY=${serviceCredentials().openrouter}\n`)).toEqual(['openrouter-key']);
  });

  it.each([
    ['a path', 'GITHUB_TOKEN_PATH=/run/secrets/github-token-2024\n'],
    ['a Nix reference', '  ANTHROPIC_API_KEY = config.sops.secrets.ANTHROPIC_API_KEY.path;\n'],
    ['a quoted reference', '  RENOVATE_TOKEN = "config.sops.secrets.renovate_token2.path";\n'],
    ['a template', 'HF_TOKEN=${config.sops.placeholder.model-provider-token}\n'],
    ['a placeholder', 'API_TOKEN=your-api-token-goes-here-123\n'],
    ['words', 'SESSION_SECRET="use a long random string of 64 chars here"\n'],
    ['a public key', 'AGE_PUBLIC_KEY=age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq\n'],
    ['a Nix cache public key', 'NIX_CACHE_KEY=cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=\n'],
    ['a short value', 'BOT_TOKEN=a1b2c3d4e5\n'],
    ['letters only', 'FEATURE_TOKEN=abcdefghijklmnopqrstuvwxyzABCDEFGH\n'],
    ['a URL', 'OAUTH_CLIENT_SECRET=https://vault.lan/v1/secret/data/oauth2\n'],
    ['a template of another tool', '  CONTEXT7_API_KEY = "{env:CONTEXT7_API_KEY}";\n'],
    ['an argon2 hash of the token (as Vaultwarden wants it)', 'ADMIN_TOKEN=$argon2id$v=19$m=65540,t=3,p=4$TkZqT1Zpb3dnQ0hKcG10RjZOUFZHWTZFOVhlTFk3bVNNYlM0bFdHb3kzZz0$fzWizVbndJKOqEeuQ9GKNyorXZVe7rloQBKn4VEKiu4\n'],
    ['a GnuPG key fingerprint', '        SIGNING_KEY = "823566455E49DDC6AE5813048CA13817A54AAB38";\n'],
    ['a GnuPG key id', '        SIGNING_KEY = "C9974EDF9932B558";\n'],
    // Public identifiers of GitHub apps; python-social-auth names the OAuth client ID `…_KEY`.
    ['a GitHub OAuth App client ID as python-social-auth names it', '      SOCIAL_AUTH_GITHUB_KEY = "Ov23liQ8xZr4Tb6Wn2Yk"\n'],
    ['a GitLab client ID as python-social-auth names it', 'SOCIAL_AUTH_GITLAB_KEY=4c1e9d0f2b7a8e3d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a3928170615\n'],
    ['a GitHub App client ID', 'GITHUB_APP_CLIENT_KEY=Iv23liZ2mW7qT4xK9pLd\n'],
    ['an older GitHub App client ID', '  GITHUB_OAUTH_KEY = "Iv1.8a61f9b3a7aba766";\n'],
  ])('does not report %s', (_, text) => {
    expect(rulesIn(text)).toEqual([]);
  });
});

describe('webhook URLs', () => {
  const upper = () => randomString(10, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789');
  const hex = (bytes: number) => randomBytes(bytes).toString('hex');
  const uuid = () => [hex(4), hex(2), hex(2), hex(2), hex(6)].join('-');
  it.each([
    ['Slack, in an Alertmanager receiver', () => `slack_configs:\n  - api_url: https://hooks.slack.com/services/T${upper()}/B${upper()}/${randomString(24)}\n`, 'slack-webhook'],
    ['a Slack workflow trigger', () => `SLACK=https://hooks.slack.com/workflows/T${upper()}/A${upper()}/${randomInt(1e11, 1e12)}/${randomString(24)}`, 'slack-webhook'],
    ['Discord, in Nix', () => `  services.uptime.webhook = "https://discord.com/api/webhooks/${randomString(18, "0123456789")}/${randomString(68, 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-')}";\n`, 'discord-webhook'],
    ['Microsoft Teams', () => `url: https://contoso.webhook.office.com/webhookb2/${uuid()}@${uuid()}/IncomingWebhook/${hex(16)}/${uuid()}\n`, 'teams-webhook'],
  ])('finds %s', (_, write, rule) => {
    expect(rulesIn(write())).toEqual([rule]);
  });

  it.each([
    ["Slack's documentation", 'https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX'],
    ['a Discord placeholder', `https://discord.com/api/webhooks/123456789012345678/${'x'.repeat(68)}`],
    ['a Slack URL without its secret', 'https://hooks.slack.com/services/T0123ABCD/B0123ABCD/'],
  ])('does not report %s', (_, text) => {
    expect(rulesIn(text)).toEqual([]);
  });
});

describe('tokens, API keys and secrets in config files and Nix', () => {
  const token = () => {
    let value = randomString(36);
    while (!tokenShaped(value)) value = randomString(36);
    return value;
  };
  it.each([
    ['a decrypted copy of the user SOPS file (YAML)', (value: string) => `github_token: ghp_${value}\nopenai_api_key: sk-${value}\n`, 2],
    ["the GitHub CLI's hosts.yml", (value: string) => `github.com:\n    oauth_token: gho_${value}\n    git_protocol: ssh\n`, 1],
    ['INI, unquoted and in capitals', (value: string) => `[security]\nJWT_SECRET = ${value}\n`, 1],
    ['TOML', (value: string) => `[server]\napi_key = "${value}"\n`, 1],
    ['JSON', (value: string) => `{\n  "access_token": "${value}",\n  "token_type": "bearer"\n}\n`, 1],
    ['a Kubernetes Secret', (value: string) => `kind: Secret\nstringData:\n  client-secret: ${value}\n`, 1],
    ['a Nix string literal', (value: string) => `  services.paperless.settings.apiKey = "${value}";\n`, 1],
    ['a secret key of a web app in Nix', (value: string) => `      security.secret_key = "${value}";\n`, 1],
    ["a Sonarr or Radarr config.xml", (value: string) => `<Config>\n  <Port>8989</Port>\n  <ApiKey>${value}</ApiKey>\n  <AuthenticationMethod>Forms</AuthenticationMethod>\n</Config>\n`, 1],
    ['minified JSON', (value: string) => `{"token_type":"bearer","access_token":"${value}","expires_in":3600}`, 1],
    [
      "rclone's OAuth token",
      (value: string) => `[gdrive]\ntype = drive\ntoken = {"access_token":"ya29.a0${value}","token_type":"Bearer","refresh_token":"1//0g${value}","expiry":"2026-01-01T00:00:00Z"}\n`,
      2,
    ],
  ])('finds a literal token in %s', (_, write, count) => {
    const hits = scanText(write(token()), { operatorSecrets: [] });
    expect(hits.map((hit) => hit.rule)).toEqual(Array(count).fill('config-token'));
    expect(hits.every((hit) => hit.kind === 'service-token')).toBe(true);
  });

  it('takes every spelling of the names, as a YAML key, a JSON key and an XML element', () => {
    const names = ['token', 'Token', 'TOKEN', 'authToken', 'apikey', 'apiKey', 'api_key', 'Api_Key', 'api-key', 'Api-key', 'API_KEY', 'APIKEY', 'API-KEY', 'secretKey', 'SecretKey', 'secret_key', 'SECRET_KEY', 'SECRETKEY', 'app_secret', 'app-Secret', 'APP_SECRET'];
    for (const name of names) {
      const value = token();
      for (const text of [`${name}: ${value}\n`, `{"${name}":"${value}"}`, `<${name}>${value}</${name}>`]) {
        expect(scanText(text, { operatorSecrets: [] }).map((hit) => [hit.rule, hit.secret]), text).toEqual([['config-token', value]]);
      }
    }
  });

  it('a token its vendor rule or the environment-file rule reports is reported once, by that rule', () => {
    expect(rulesIn(`huggingface_token: ${fakeTokens().huggingFace}\n`)).toEqual(['huggingface-token']);
    expect(rulesIn(`    oauth_token: ${githubToken('gho')}\n`)).toEqual(['github-token']);
    expect(rulesIn(`OPENAI_API_KEY=${token()}\n`)).toEqual(['env-token']);
  });

  it.each([
    ['a file holding it', 'github_token_file: /run/secrets/github-token-2024\n'],
    ['a Nix reference', '  apiKey = config.sops.secrets.paperless-api-key2.path;\n'],
    ['a Nix expression', '  secret_key = builtins.readFile ./secret-key-file-2024;\n'],
    ['a Terraform variable', '  secret_key = var.cloudflare_r2_secret_key\n'],
    ['a SOPS value', 'api_key: ENC[AES256_GCM,data:Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5,iv:YWJj,tag:ZGVm,type:str]\n'],
    ['a template', 'client_secret: "{{ .Values.oidc.clientSecret2 }}"\n'],
    ["Home Assistant's !secret", 'api_key: !secret openweathermap_api_key_2\n'],
    ['a placeholder', 'api_key: your-api-key-goes-here-123456\n'],
    ['a public key', 'public_token: pk_4f8a9b2c7d1e6f3a5b8c9d0e1f2a3b4c\n'],
    ['an id', 'token_id: 4f8a9b2c7d1e6f3a5b8c9d0e1f2a3b4c\n'],
    ['a short value', 'token: a1b2c3d4e5\n'],
    ["a tokenizer's special token", '  "pad_token": "<|finetune_right_pad_id|>",\n'],
    ['a count of tokens', 'max_tokens: 4096000000000000000000\n'],
    ['words joined by dashes', 'client_secret: nextcloud-oidc-client-secret2\n'],
    ["an environment variable's name", 'token: GITHUB_TOKEN_FOR_RELEASES_2\n'],
    ["systemd-networkd's IPv6 token", 'Token=prefixstable:2002:da8:1::\nToken=static:::1a:2b:3c:4d\n'],
    ['an SRI hash', 'token: sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n'],
    ['an XML element naming a file', '<TokenFile>/var/lib/app/token-2024-abcdefgh</TokenFile>\n'],
    ['a JSON key naming an id', '{"client_token_id":"4f8a9b2c7d1e6f3a5b8c9d0e1f2a3b4c","x":1}'],
    ['an inline value on a longer line', '{ services.foo.token = "ghp_zdV5Gc3CjeqLQzDfr5jIMIuTG7qeyArI4C9f"; x = 1; }\n'],
  ])('does not report %s', (_, text) => {
    expect(rulesIn(text)).toEqual([]);
  });
});

describe('credentials in an HTTP Authorization header', () => {
  const token = () => {
    let value = randomString(40);
    while (!tokenShaped(value)) value = randomString(40);
    return value;
  };
  it.each([
    ['a curl command', (value: string) => `curl -fsS -H "Authorization: Bearer ${value}" https://api.lan/v1/models\n`],
    ["a Home Assistant rest sensor's headers", (value: string) => `sensor:\n  - platform: rest\n    headers:\n      Authorization: "Bearer ${value}"\n`],
    ['a JSON headers object', (value: string) => `{"headers":{"authorization":"Token ${value}"}}`],
    ['HTTP Basic credentials', () => `curl -H 'Authorization: Basic ${Buffer.from(`admin:${randomString(14)}`).toString('base64')}' http://nas.lan/\n`],
  ])('finds %s', (_, write) => {
    const hits = scanText(write(token()), { operatorSecrets: [] });
    expect(hits.map((hit) => hit.rule)).toEqual(['authorization-header']);
  });

  it('a vendor token in the header is reported once, by its vendor rule', () => {
    expect(rulesIn(`curl -H "Authorization: Bearer ${githubToken()}" https://api.github.com/user\n`)).toEqual(['github-token']);
  });

  it.each([
    ['a variable', 'curl -H "Authorization: Bearer $GITHUB_TOKEN" https://api.github.com\n'],
    ['a template', 'Authorization: "Bearer {{ states(\'input_text.token\') }}"\n'],
    ['a Nix interpolation', '  Authorization: Bearer ${config.sops.placeholder.api-token}\n'],
    ['a placeholder', 'Authorization: Bearer YOUR_TOKEN_HERE\n'],
    ['the scheme alone', 'header = "Authorization: Bearer"\n'],
    ['Basic of a placeholder', `Authorization: Basic ${Buffer.from('user:password').toString('base64')}\n`],
  ])('does not report %s', (_, text) => {
    expect(rulesIn(text)).toEqual([]);
  });
});

describe('1Password service account tokens', () => {
  /** A token of the shape 1Password issues (`ops_` + base64 of the account JSON), made at test time. */
  const token = (account: Record<string, unknown>) => `ops_${Buffer.from(JSON.stringify(account)).toString('base64')}`;
  const account = () => ({
    email: `${randomString(13).toLowerCase()}@1passwordserviceaccounts.lcl`,
    muk: { alg: 'A256GCM', ext: true, k: randomBytes(32).toString('base64url'), key_ops: ['encrypt', 'decrypt'], kty: 'oct', kid: 'mp' },
    secretKey: `A3-${randomString(6)}-${randomString(6)}-${randomString(5)}-${randomString(5)}-${randomString(5)}-${randomString(5)}`,
    srpX: randomBytes(32).toString('hex'),
    signInAddress: 'my.1password.com',
  });

  it('is found in an environment file and in Nix', () => {
    expect(rulesIn(`OP_SERVICE_ACCOUNT_TOKEN=${token(account())}\n`)).toEqual(['1password-service-account']);
    expect(rulesIn(`services.onepassword-secrets.tokenValue = "${token(account())}";\n`)).toContain('1password-service-account');
  });

  it('base64 after ops_ that is not an account is not', () => {
    expect(rulesIn(`x = "${token({ hello: 'world', padding: randomString(120) })}";\n`)).toEqual([]);
  });
});

describe('JWTs of a homelab: Attic and Home Assistant tokens', () => {
  /** An HS256 JWT signed with a fresh key, as the service mints it. */
  const jwt = (payload: Record<string, unknown>) => {
    const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const body = `${encode({ alg: 'HS256', typ: 'JWT' })}.${encode(payload)}`;
    return `${body}.${createHmac('sha256', randomBytes(32)).update(body).digest('base64url')}`;
  };
  const now = Math.floor(Date.now() / 1000);

  it('an Attic token in its client config, with its cache permissions', () => {
    const token = jwt({ sub: 'ci', exp: now + 86400 * 365, 'https://jwt.attic.rs/v1': { caches: { main: { r: 1, w: 1 } } } });
    expect(rulesIn(`[servers.lan]\nendpoint = "https://attic.lan"\ntoken = "${token}"\n`)).toEqual(['attic-token']);
  });

  it('a Home Assistant long-lived access token as a Prometheus bearer token', () => {
    const token = jwt({ iss: randomBytes(16).toString('hex'), iat: now, exp: now + 315360000 });
    expect(rulesIn(`scrape_configs:\n  - job_name: hass\n    bearer_token: "${token}"\n`)).toEqual(['home-assistant-token']);
  });

  it('a JWT with other claims (a session, the jwt.io sample) is not reported by either', () => {
    expect(rulesIn(`token = "${jwt({ sub: '1234567890', name: 'John Doe', iat: 1516239022 })}"\n`)).toEqual([]);
    expect(rulesIn(`token = "${jwt({ iss: 'auth.lan', sub: 'alice', iat: now, exp: now + 60, scope: 'read' })}"\n`)).toEqual([]);
  });
});

describe('passwords in the config formats beside Nix', () => {
  const password = () => `${randomString(10)}-${randomInt(100, 999)}`;
  it.each([
    ['an INI file (grafana.ini)', (value: string) => `[security]\nadmin_user = admin\nadmin_password = ${value}\n`],
    ['TOML', (value: string) => `[database]\nuser = "app"\npassword = "${value}"\n`],
    ['YAML (Home Assistant secrets.yaml)', (value: string) => `mqtt_password: ${value}\ndb_url: sqlite:////config/db\n`],
    ['JSON', (value: string) => `{\n  "username": "app",\n  "password": "${value}",\n  "port": 5432\n}\n`],
    ['a PHP array (Nextcloud config.php)', (value: string) => `<?php\n$CONFIG = array (\n  'dbuser' => 'nextcloud',\n  'dbpassword' => '${value}',\n);\n`],
    ['a YAML list item', (value: string) => `users:\n  - password: '${value}'\n`],
    ['an XML element', (value: string) => `<Config>\n  <UrlBase></UrlBase>\n  <Password>${value}</Password>\n</Config>\n`],
    ["a Kubernetes Secret's data (base64 is no encryption)", (value: string) => `kind: Secret\ndata:\n  bindPassword: ${Buffer.from(value).toString('base64')}\n`],
  ])('finds a literal password in %s', (_, write) => {
    const value = password();
    const hits = scanText(write(value), { operatorSecrets: [] });
    expect(hits.map((hit) => hit.rule)).toEqual(['config-password']);
    expect(hits[0]!.kind).toBe('plaintext-password');
  });

  it.each([
    ['a hash', 'hashed_password = $6$rounds=5000$abcdefgh$0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ\n'],
    ['a hash by its name', '  encryptedHashedPassword = "$2b$05$8s2MJ4z8Ns6U5dQm1bdXkuP0ZgGaNm3Ji3mtIs1xJ9lS8FQKfkmYa";\n'],
    ['a Nix expression', '  age.secrets.kanidm-admin-password = mkRandomSecret;\n'],
    ['a Home Assistant reference', 'mqtt_password: !secret mqtt_password\n'],
    ['a template', 'password: "{{ vault_db_password }}"\n'],
    ['an environment reference', 'password: process.env.DB_PASSWORD,\n'],
    ['a function call', 'password = getpass.getpass("Password: ")\n'],
    ['a file option', 'password_file = /run/secrets/db-password\n'],
    ['a length rule', 'min_password_length = 12345678\n'],
    ['a placeholder', 'admin_password = changeme\n'],
    ['a short value', 'password: abc123\n'],
    ['a boolean', 'require_password: false\n'],
    ['a wpa_supplicant external password', '          password=ext:eduroam\n'],
    ["a bcrypt hash in Syncthing's config.xml", '        <password>$2a$10$8s2MJ4z8Ns6U5dQm1bdXkuP0ZgGaNm3Ji3mtIs1xJ9lS8FQKfkmYa</password>\n'],
    ['an XML password element holding a placeholder', '  <Password>changeme-later</Password>\n'],
  ])('does not report %s', (_, text) => {
    expect(rulesIn(text)).toEqual([]);
  });

  it('a line the environment-file rule reports is reported once', () => {
    expect(rulesIn(`RESTIC_PASSWORD=${password()}\n`)).toEqual(['env-password']);
  });
});

describe('Cloudflare tunnel credentials', () => {
  const account = () => randomBytes(16).toString('hex');
  it('a credentials file (cloudflared tunnel create) and a tunnel token, in an environment file and on a command line', () => {
    const file = JSON.stringify({ AccountTag: account(), TunnelSecret: randomBytes(32).toString('base64'), TunnelID: '6ff42ae2-765d-4adf-8112-31c55c1551ef' });
    expect(rulesIn(file)).toEqual(['cloudflare-tunnel-secret']);
    const token = Buffer.from(JSON.stringify({ a: account(), t: '6ff42ae2-765d-4adf-8112-31c55c1551ef', s: randomBytes(32).toString('base64') })).toString('base64');
    expect(rulesIn(`TUNNEL_TOKEN=${token}\n`)).toEqual(['cloudflare-tunnel-token']);
    expect(rulesIn(`ExecStart=cloudflared tunnel run --token ${token}\n`)).toEqual(['cloudflare-tunnel-token']);
  });

  it('a credentials file with a stub secret, and base64 of other JSON, are not', () => {
    expect(rulesIn(JSON.stringify({ AccountTag: account(), TunnelSecret: 'A'.repeat(44), TunnelID: 'x' }))).toEqual([]);
    expect(rulesIn(`x ${Buffer.from(JSON.stringify({ a: 'b', note: randomString(80) })).toString('base64')}\n`)).toEqual([]);
  });
});

describe('tokens in armor', () => {
  const armor = (label: string, content: Buffer) => `-----BEGIN ${label}-----\n${content.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END ${label}-----\n`;
  it("finds cloudflared's cert.pem token (ARGO TUNNEL TOKEN), not a certificate beside it or a label without content", () => {
    const json = JSON.stringify({ zoneID: randomBytes(16).toString('hex'), accountID: randomBytes(16).toString('hex'), apiToken: randomString(40), serviceKey: `v1.0-${randomBytes(60).toString('hex')}` });
    const text = `${armor('CERTIFICATE', randomBytes(300))}${armor('ARGO TUNNEL TOKEN', Buffer.from(json))}`;
    const hits = scanText(text, { operatorSecrets: [] });
    expect(hits.map((hit) => [hit.rule, hit.kind])).toEqual([['armored-token', 'service-token']]);
    expect(text.slice(hits[0]!.start, hits[0]!.end)).toMatch(/^-----BEGIN ARGO TUNNEL TOKEN-----[\s\S]+-----END ARGO TUNNEL TOKEN-----$/);
    expect(rulesIn('-----BEGIN ARGO TUNNEL TOKEN-----\n...\n-----END ARGO TUNNEL TOKEN-----\n')).toEqual([]);
  });
});

describe("systemd units' Environment= lines (where NixOS puts a service's environment)", () => {
  it('finds tokens and passwords among quoted and unquoted assignments, at their offsets; not references or other variables', () => {
    let token = randomString(36);
    while (!tokenShaped(token)) token = randomString(36);
    const unit = `[Service]\nEnvironment="LANG=C.UTF-8" "MEILI_MASTER_KEY=${token}" "PATH=/run/wrappers/bin"\nEnvironment=DB_PASSWORD=Zq8vLm2Kx7Rw4t PORT=8080\nEnvironment="NOTE=a value with spaces and API_TOKEN=not-one"\nEnvironment="GITHUB_TOKEN_FILE=/run/secrets/gh"\nExecStart=/nix/store/x-app/bin/app\n`;
    const hits = scanText(unit, { operatorSecrets: [] });
    expect(hits.sort((x, y) => x.start - y.start).map((hit) => [hit.rule, unit.slice(hit.start, hit.end)])).toEqual([
      ['env-token', token],
      ['env-password', 'Zq8vLm2Kx7Rw4t'],
    ]);
  });
});

describe('assignments that do not start a line', () => {
  it('finds tokens and passwords in Nix lists and strings, one-line attribute sets, compose lists and an OCI config Env; not other variables', () => {
    const draw = () => {
      let value = randomString(32);
      while (!tokenShaped(value)) value = randomString(32);
      return value;
    };
    const [a, b, c, d] = [draw(), draw(), draw(), draw()];
    const dbPassword = `Zq${randomInt(10)}${randomString(12)}`;
    const text = [
      `systemd.services.app.serviceConfig.Environment = "APP_TOKEN=${a}";`,
      `systemd.services.other.serviceConfig.Environment = [ "LANG=C.UTF-8" "OTHER_API_KEY=${b}" ];`,
      `systemd.services.x.environment = { LANG = "C"; X_SECRET = "${c}"; };`,
      '    environment:',
      `      - "DB_PASSWORD=${dbPassword}"`,
      `{"config":{"Env":["PATH=/usr/bin","REGISTRY_TOKEN=${d}"],"Cmd":["/app"]}}`,
      '[ "GITHUB_TOKEN_FILE=/run/secrets/gh" "HOME=/var/empty" ]',
      '',
    ].join('\n');
    const hits = scanText(text, { operatorSecrets: [] }).sort((x, y) => x.start - y.start);
    expect(hits.map((hit) => [hit.rule, text.slice(hit.start, hit.end)])).toEqual([
      ['env-token', a],
      ['env-token', b],
      ['env-token', c],
      ['env-password', dbPassword],
      ['env-token', d],
    ]);
  });
});

describe('more vendor tokens by their shape: RubyGems, Docker Hub, Matrix (Synapse), LangSmith, Fly.io, NVIDIA', () => {
  const hex = (length: number) => randomBytes(length).toString('hex').slice(0, length);
  const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
  const crc32 = (text: string) => {
    let crc = 0xffffffff;
    for (let index = 0; index < text.length; index++) {
      crc ^= text.charCodeAt(index);
      for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? 0xedb88320 ^ (crc >>> 1) : crc >>> 1;
    }
    return (crc ^ 0xffffffff) >>> 0;
  };
  const base62 = (value: number) => {
    let out = '';
    for (let rest = value; rest > 0; rest = Math.floor(rest / 62)) out = BASE62[rest % 62]! + out;
    return out.padStart(6, '0');
  };
  /** A Synapse access token as synapse.handlers.auth makes one: the localpart in unpadded base64, 20 random characters, base62 CRC-32. */
  const synapseToken = (localpart: string) => {
    const base = `syt_${Buffer.from(localpart).toString('base64').replace(/=+$/, '')}_${randomString(20)}`;
    return `${base}_${base62(crc32(base))}`;
  };

  it('finds each with its vendor rule', () => {
    const cases: [string, string][] = [
      [`:rubygems_api_key: rubygems_${hex(48)}\n`, 'rubygems-token'],
      [`echo dckr_pat_${randomString(27)} | docker login -u me --password-stdin\n`, 'docker-hub-token'],
      [`access_token: ${synapseToken('mautrix-telegram')}\n`, 'matrix-access-token'],
      [`LANGCHAIN_API_KEY=lsv2_pt_${hex(32)}_${hex(10)}\n`, 'langsmith-key'],
      [`fly_token = "fo1_${randomString(43)}"\n`, 'flyio-token'],
      [`"nvapi-${randomString(64)}"`, 'nvidia-api-key'],
    ];
    for (const [text, rule] of cases) expect(rulesIn(text), text).toContain(rule);
  });

  it('does not take stubs, a Synapse token with a wrong checksum, or other prefixes', () => {
    const good = synapseToken('bot');
    const wrong = `${good.slice(0, -6)}${good.slice(-6) === '000000' ? '000001' : '000000'}`;
    const text = [
      `rubygems_${'0'.repeat(48)}`, `dckr_pat_${'x'.repeat(27)}`, wrong, `lsv2_pt_${'a'.repeat(32)}_${'b'.repeat(10)}`,
      `fo1_${'A'.repeat(43)}`, `nvapi-${'x'.repeat(64)}`, `mynvapi-${randomString(64)}`, `xrubygems_${hex(48)}`,
    ].join('\n');
    expect(rulesIn(text).filter((rule) => /rubygems|docker-hub|matrix|langsmith|flyio|nvidia/.test(rule))).toEqual([]);
  });
});

describe('vendor tokens known by a prefix of their own, under any name', () => {
  /** Random values drawn again in the rare case one spells a placeholder word (`fake`, `xxxx`) or falls under the entropy floor. */
  const clean = (draw: () => string, floor: number) => () => {
    for (;;) {
      const value = draw();
      if (!looksLikePlaceholder(value, floor)) return value;
    }
  };
  // The entropy floors are for the lengths the rules judge; a short part (a UUID's group) gets none, since it cannot reach one.
  const randomString = (length: number) => clean(() => randomText(length), length >= 20 ? 3.6 : 0)();
  const hex = (length: number) => clean(() => randomBytes(length).toString('hex').slice(0, length), length >= 24 ? 3.4 : 0)();
  const lowerAlnum = (length: number) => clean(() => Array.from({ length }, () => 'abcdefghijklmnopqrstuvwxyz0123456789'[randomInt(36)]).join(''), 3.6)();
  const uuid = () => `${hex(8)}-${hex(4)}-4${hex(3)}-a${hex(3)}-${hex(12)}`;
  /** A Discord bot token: the bot's id in base64, a timestamp, an HMAC. */
  const discord = (id = `${randomInt(1, 10)}${String(randomInt(10 ** 9)).padStart(9, '0')}${String(randomInt(10 ** 8)).padStart(8, '0')}`) =>
    `${Buffer.from(id).toString('base64url')}.${randomString(6)}.${randomString(38)}`;
  /** A Sentry organization token: base64 of its claims, then 43 random characters. */
  const sentryOrg = () => {
    const claims = Buffer.from(JSON.stringify({ iat: 1_767_225_600.5, url: 'https://sentry.io', region_url: 'https://us.sentry.io', org: 'lab' })).toString('base64');
    return `sntrys_${claims}_${randomBytes(32).toString('base64').slice(0, 43)}`;
  };

  const cases: [string, string][] = [
    // Dotted tokens under a credential's name (Vault, SendGrid, Terraform Cloud, Doppler, Discord): their dots are no reference's.
    [`VAULT_TOKEN=hvs.${randomString(23)}7`, 'env-token'],
    [`vault:\n  token: hvs.CAESI${randomString(86)}\n`, 'config-token'],
    [`token: "dp.pt.${randomString(43)}"\n`, 'config-token'],
    [`DOPPLER_TOKEN=dp.st.prd.${randomString(40)}\n`, 'env-token'],
    [`DISCORD_TOKEN=${discord()}\n`, 'env-token'],
    [`services.mybot.settings.discord_token = "${discord()}";\n`, 'config-token'],
    [`smtp_password = "SG.${randomString(22)}.${randomString(43)}"\n`, 'config-password'],
    [`SENDGRID_API_KEY=SG.${randomString(22)}.${randomString(43)}\n`, 'env-token'],
    [`{"credentials": {"app.terraform.io": {"token": "${randomString(14)}.atlasv1.${randomString(67)}"}}}`, 'config-token'],
    [`clientSecret = "GOCSPX-${randomString(28)}";\n`, 'google-oauth-client-secret'],
    [`PMAK-${hex(24)}-${hex(34)}`, 'postman-key'],
    [`PULUMI_ACCESS_TOKEN=pul-${hex(40)}\n`, 'pulumi-token'],
    [`heroku: HRKU-AA${randomString(58)}`, 'heroku-key'],
    [`search = { key = "tvly-dev-${randomString(32)}"; };\n`, 'tavily-key'],
    [`xkeysib-${hex(64)}-${randomString(16)}`, 'brevo-key'],
    [`ico-${randomString(31)}4`, 'infracost-key'],
    [`password: AKCp${randomString(69)}\n`, 'artifactory-key'],
    [`LANGFUSE_SECRET_KEY=sk-lf-${uuid()}\n`, 'langfuse-secret-key'],
    [`cerebras: csk-${lowerAlnum(48)}\n`, 'cerebras-key'],
    [`shpat_${hex(32)}`, 'shopify-token'],
    [`linear = "lin_api_${randomString(40)}"`, 'linear-key'],
    [`auth.token=sntryu_${hex(64)}\n`, 'sentry-token'],
    [`SENTRY_AUTH=${sentryOrg()}\n`, 'sentry-token'],
    [`DATABASE_URL_PW=pscale_pw_${randomString(43)}\n`, 'planetscale-token'],
    [`notion: ntn_${String(randomInt(10 ** 10, 10 ** 11 - 1))}${randomString(35)}\n`, 'notion-token'],
    [`src: sgp_${hex(16)}_${hex(40)}\n`, 'sourcegraph-token'],
    [`supabase login --token sbp_${hex(40)}\n`, 'supabase-key'],
    [`key: sb_secret_${randomString(32)}\n`, 'supabase-key'],
    [`agent: glagent-${randomString(50)}\n`, 'gitlab-token'],
  ];

  it('finds each: by its vendor rule, or a dotted one by the rule of the name it is given', () => {
    for (const [text, rule] of cases) expect(rulesIn(text), text).toContain(rule);
  });

  it('finds a Vault token in an agent config and a SendGrid key given as an SMTP password in a scanned tree', async () => {
    const dir = await tempDir('dubnium-prefixed-');
    writeFileSync(path.join(dir, 'mail.yaml'), `smtp:\n  host: smtp.sendgrid.net\n  user: apikey\n  password: "SG.${randomString(22)}.${randomString(43)}"\n`);
    writeFileSync(path.join(dir, 'agent.hcl'), `auto_auth {\n  method "token_file" {}\n}\nvault {\n  address = "https://vault.lan:8200"\n}\ntoken = "hvs.${randomString(90)}"\n`);
    const report = await scanPaths([dir], { operatorSecrets: false });
    expect(report.findings.map((finding) => [finding.path, finding.rule]).sort()).toEqual([['agent.hcl', 'config-token'], ['mail.yaml', 'config-password']]);
  });

  it('does not take stubs, documentation shapes, public halves or look-alikes', () => {
    const text = [
      `token: "hvs.${'x'.repeat(24)}"`, 'token: "hvs.EXAMPLE_TOKEN_REPLACE_ME_1234"', 'ico-arrowRightCircleOutlineFilled',
      `token: "dp.pt.${'a'.repeat(43)}"`, `token: "dp.xx.${randomString(43)}"`, `smtp_password: "SG.${'x'.repeat(22)}.${'y'.repeat(43)}"`, `smtp_password: "SG.${randomString(22)}"`,
      `token: "${'a'.repeat(14)}.atlasv1.${'b'.repeat(67)}"`, `GOCSPX-${'X'.repeat(28)}`, `GOCSPX-${randomString(10)}`, `PMAK-${'0'.repeat(24)}-${'0'.repeat(34)}`,
      `pul-${'f'.repeat(40)}`, `tvly-${'Y'.repeat(32)}`, `xkeysib-${'a'.repeat(64)}-${'b'.repeat(16)}`, `pk-lf-${uuid()}`, `sk-lf-00000000-0000-0000-0000-000000000000`,
      `shpat_${'0'.repeat(32)}`, `lin_api_${'x'.repeat(40)}`, `sntryu_${'a'.repeat(64)}`, `pscale_tkn_${'x'.repeat(43)}`, `sb_publishable_${randomString(32)}`,
      // A Discord-shaped triple whose first part is no user id (a dotted identifier, a version), and a real one with a stub HMAC.
      `token: "MozillaFirefoxBrowserAgent.abcdef.${randomString(30)}"`, `token: "${discord().split('.').slice(0, 2).join('.')}.${'A'.repeat(30)}"`,
      `sntrys_${Buffer.from('{"org":"x"}').toString('base64')}_${randomString(43)}`,
      // Names that wake the rules of the dotted tokens found where a credential is named.
      'api_token_file: /run/secrets/api', 'smtp_password_file: /run/secrets/smtp',
    ].join('\n');
    expect(rulesIn(text)).toEqual([]);
  });
});
