/**
 * Credentials given on a command line (rules `cli-password`, `cli-token`), as they land in a unit's
 * ExecStart=, a script NixOS writes into the store, or the Nix source that says so; and the flags,
 * manual pages, prose and references that are not credentials. Values are drawn fresh each run.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { cliFlagRule } from '../../../../src/core/scan/rules/cli-flags.js';
import { ruleLiterals, swept as sweep } from '../../../../src/core/scan/rules/literals.js';
import { looksLikeSecretValue } from '../../../../src/core/scan/rules/named-secrets.js';
import type { RawHit } from '../../../../src/core/scan/rules/rules.js';
import { scanText } from '../../../../src/core/scan/rules/rules.js';

function password(): string {
  for (;;) {
    const value = randomBytes(14).toString('base64').replace(/[+/=]/g, '').slice(0, 14);
    if (value.length === 14 && /\d/.test(value) && /[A-Za-z]/.test(value) && looksLikeSecretValue(value, 'plaintext-password')) return value;
  }
}

function token(): string {
  for (;;) {
    const value = randomBytes(30).toString('base64url');
    if (/^[A-Za-z0-9]/.test(value) && /\d/.test(value) && /[A-Za-z]/.test(value) && looksLikeSecretValue(value, 'service-token')) return value;
  }
}

function found(text: string): [string, string][] {
  return scanText(text, { operatorSecrets: [], nixSource: false })
    .filter((hit) => hit.rule.startsWith('cli-'))
    .map((hit) => {
      expect(text.slice(hit.start, hit.end)).toBe(hit.secret);
      return [hit.rule, String(hit.secret)];
    });
}

describe('cli-password and cli-token', () => {
  it('finds a password or token given to a flag: =, blanks, quotes, single dash, openssl pass:, and list forms', () => {
    const [p1, p2, p3, p4, p5] = [password(), password(), password(), password(), password()];
    const [t1, t2, t3, t4] = [token(), token(), token(), token()];
    const text = [
      `ExecStart=/nix/store/${'a'.repeat(32)}-agent/bin/agent --token ${t1} --listen 0.0.0.0:8080`,
      `exec restic --password=${p1} backup /home`,
      `mysqldump --user=root --password '${p2}' --all-databases`,
      `openssl enc -aes-256-cbc -passin pass:${p3} -in a -out b`,
      `ExecStart = "\${pkgs.frpc}/bin/frpc -auth-token=${t2}";`,
      `serviceConfig.ExecStart = [ "\${pkgs.tool}/bin/tool" "--api-key" "${t3}" ];`,
      `"args": ["serve", "--client-secret", "${t4}"],`,
      `curl --proxy-password="${p4}" https://example.net/ && x -password ${p5}`,
    ].join('\n');
    // The literal sweep's dashes (what scanText uses) and every dash of the text find the same.
    const own: RawHit[] = [];
    cliFlagRule(text, own, [...text.matchAll(/-/g)].map((match) => match.index));
    ruleLiterals(text);
    const swept: RawHit[] = [];
    cliFlagRule(text, swept, sweep.credentialDashes);
    const byStart = (a: RawHit, b: RawHit) => a.start - b.start;
    expect(swept.sort(byStart)).toEqual(own.sort(byStart));
    expect(own).toHaveLength(9);
    expect(found(text).sort()).toEqual(
      [
        ['cli-password', p1],
        ['cli-password', p2],
        ['cli-password', p3],
        ['cli-password', p4],
        ['cli-password', p5],
        ['cli-token', t1],
        ['cli-token', t2],
        ['cli-token', t3],
        ['cli-token', t4],
      ].sort(),
    );
  });

  it('finds a flag whose word no other rule anchors on, in a text with nothing else (--authkey, --master-key, --encryption-key, --requirepass)', () => {
    const [t1, t2, t3] = [token(), token(), token()];
    expect(found(`tailscale up --authkey ${t1}\n`)).toEqual([['cli-token', t1]]);
    expect(found(`meilisearch --master-key=${t2}\n`)).toEqual([['cli-token', t2]]);
    expect(found(`restic-server --encryption-key '${t3}'\n`)).toEqual([['cli-token', t3]]);
    const p = password();
    expect(found(`redis-server --port 6379 --requirepass ${p}\n`)).toEqual([['cli-password', p]]);
  });

  it("finds curl's -u user:password and --user, on a line that runs curl; not other commands' -u, variables or an empty password", () => {
    const [p1, p2, p3, p4] = [password(), password(), password(), password()];
    const text = [
      `ExecStart = "\${pkgs.curl}/bin/curl -fsS -u ddns:${p1} https://dyn.example.net/nic/update?hostname=home";`,
      `curl --user 'admin:${p2}' -X POST https://nas.example.net/api/backup`,
      `curl --user=me:${p3} https://example.net/`,
      `test: ["CMD", "curl", "-fsS", "-u", "probe:${p4}", "http://localhost:8080/health"]`,
      `sudo -u postgres psql -c 'SELECT 1' && docker run -u 1000:1000 app && crontab -u backup:${password()} -l`,
      'curl -u "$API_USER:$API_PASSWORD" https://example.net/ && curl -u me: https://example.net/ && curl -u token https://example.net/',
    ].join('\n');
    expect(found(text).sort()).toEqual([['cli-password', p1], ['cli-password', p2], ['cli-password', p3], ['cli-password', p4]].sort());
  });

  it("finds redis-cli's and valkey-cli's -a password, on a line that runs one; not other commands' -a or references", () => {
    const [p1, p2, p3] = [password(), password(), password()];
    const letters = 'hunterTwoLetters';
    const text = [
      `ExecStartPost = "\${pkgs.redis}/bin/redis-cli -h 127.0.0.1 -a ${p1} CONFIG REWRITE";`,
      `healthcheck: ["CMD", "redis-cli", "-a", "${p2}", "ping"]`,
      `valkey-cli -p 6380 -a '${p3}' --no-auth-warning ping && redis-cli -a ${letters} ping`,
      `ls -a ${password()} && cp -a src dst && uname -a && tar -a -cf x.tar.zst dir`,
      'redis-cli -a "$REDIS_PASSWORD" ping && redis-cli -a $(cat /run/secrets/redis) ping && redis-cli --askpass ping',
    ].join('\n');
    expect(found(text).sort()).toEqual([['cli-password', p1], ['cli-password', p2], ['cli-password', p3], ['cli-password', letters]].sort());
  });

  it('does not take switches, files, references, placeholders, examples, manual pages or prose', () => {
    const p = password();
    const text = [
      `agent --token-file /run/secrets/agent --password-file=/run/secrets/pw`,
      `nixos-install --no-root-password ${p} && ansible-playbook --ask-pass site.yml`,
      `tool --token \${config.sops.secrets.tok.path} --password "$DB_PASSWORD" --secret $(cat /run/secrets/s)`,
      `wget --password=PASSWORD --token=<token> --api-key YOUR_API_KEY --passwd USER-ID`,
      `gcloud sql users create --password=password123 --token=${'x'.repeat(30)} && kadmin -l add --password=alice_pw`,
      `\\fB\\-\\-password\\fR=\\fI${p}\\fR and \\-\\-root\\-password=${p}`,
      `Add documentation for the new --password options. The --password flag, respectively.`,
      `openssl rsa -passin env:KEY_PASS -passout file:/run/pw -pass stdin`,
      `a low-pass filter at 4kHz, and per-token ${p} pricing`,
      `secret-tool store --label=x --secret-key ${'a'.repeat(8)}`,
    ].join('\n');
    expect(found(text)).toEqual([]);
  });
});
