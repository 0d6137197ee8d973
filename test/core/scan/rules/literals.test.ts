/**
 * The literal sweep that decides which rule families run: each family's bit must be set exactly when
 * the text holds the literal its rule's pattern cannot match without (the regular expressions below
 * are that oracle). A bit missing would skip a rule; a bit too many costs time, and is tested too.
 * The URL rule, rewritten around `indexOf('://')`, must find what its old single pattern found.
 */
import { randomBytes, randomInt } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import * as L from '../../../../src/core/scan/rules/literals.js';
import { base64Run, scanText } from '../../../../src/core/scan/rules/rules.js';
import { looksLikeToken } from '../../../../src/core/scan/rules/service-rules.js';

const ORACLE: [string, number, RegExp][] = [
  ['AGE', L.AGE, /AGE-/],
  ['ARMOR', L.ARMOR, /-----BEGIN |---- BEGIN SSH2 /],
  ['PUTTY', L.PUTTY, /PuTTY-/],
  ['GITHUB', L.GITHUB, /gh[pousr]_|github_/],
  ['HUGGINGFACE', L.HUGGINGFACE, /hf_/],
  ['SK', L.SK, /sk-/],
  ['TAILSCALE', L.TAILSCALE, /tskey-/],
  ['SLACK', L.SLACK, /xox[abposr]-/],
  ['AWS_SECRET', L.AWS_SECRET, /secret[_-]?access[_-]?key/i],
  ['NIX_ACCESS_TOKENS', L.NIX_ACCESS_TOKENS, /access-tokens/],
  ['AWS_KEY_ID', L.AWS_KEY_ID, /AKIA|ASIA/],
  ['URL', L.URL, /:\/\//],
  ['NIX_CACHE_KEY', L.NIX_CACHE_KEY, /:[^]{86}==/],
  ['PRIVATE_KEY', L.PRIVATE_KEY, /private[_-]?key/i],
  ['PASSWORD', L.PASSWORD, /assword|assphrase|[_-]pass|:\{(?:PLAIN|CLEARTEXT)\}|-requirepass/],
  ['NPM', L.NPM, /npm_/],
  ['PYPI', L.PYPI, /pypi-/],
  ['GOOGLE', L.GOOGLE, /AIza/],
  ['TELEGRAM', L.TELEGRAM, /:AA/],
  ['JWT', L.JWT, /eyJ/],
  ['DOCKER_AUTH', L.DOCKER_AUTH, /"auth"\s*:|"TunnelSecret"\s*:/],
  ['AZURE', L.AZURE, /AccountKey/],
  ['PSK', L.PSK, /psk|PSK/],
  ['PRESHARED', L.PRESHARED, /resharedKey/],
  ['ENV_PASSWORD', L.ENV_PASSWORD, /ASSWORD|ASSPHRASE|ASSWD|_PASS|ACCOUNT_KEY|TOKEN|_KEY|APIKEY|_SECRET/],
  ['GITLAB', L.GITLAB, /gl(?:pat|dt|rt|ptt|ft|cbt|soat|agent)-/],
  ['PROVIDER_UNDERSCORE', L.PROVIDER_UNDERSCORE, /gsk_|r8_|[sr]k_live_|glsa_|glc_|do[opr]_v1_|ops_|rubygems_|dckr_|syt_|lsv2_|fo1_|shp[^]{2}_|lin_api_|sntry[^]_|pscale_|ntn_|sgp_|sbp_|sb_secret_/],
  [
    'PROVIDER_DASH',
    L.PROVIDER_DASH,
    /pplx-|xai-|nvapi-|GOCSPX-|PMAK-|pul-|HRKU-|tvly-|xkeysib-|ico-|AKCp/,
  ],
  ['K3S', L.K3S, /K10[^]{64}::/],
  ['TAILSCALE_PRIVATE', L.TAILSCALE_PRIVATE, /privkey:|nlpriv:/],
  ['JWK', L.JWK, /"kty"/],
  ['CONFIG_TOKEN', L.CONFIG_TOKEN, /[Tt]oken|TOKEN|[Aa]pi[_-]?[Kk]ey|API[_-]?KEY|[Ss]ecret[_-]?[Kk]ey|SECRET[_-]?KEY|[_-](?:[Ss]ecret|SECRET)|[Aa]uthorization["']?[ \t]*:|-(?:api|auth|master|encryption)|hmac-|(?:redis|valkey)-cli/],
];

/** The vendor prefixes with a bit of their own in the sweep's notes (L.PROVIDER). */
const PROVIDERS: [number, RegExp][] = [
  [L.PROVIDER.shopify, /shp[^]{2}_/],
  [L.PROVIDER.linear, /lin_api_/],
  [L.PROVIDER.sentry, /sntry[^]_/],
  [L.PROVIDER.planetscale, /pscale_/],
  [L.PROVIDER.notion, /ntn_/],
  [L.PROVIDER.sourcegraph, /sgp_/],
  [L.PROVIDER.supabase, /sbp_|sb_secret_/],
  [L.PROVIDER.googleOauth, /GOCSPX-/],
  [L.PROVIDER.postman, /PMAK-/],
  [L.PROVIDER.pulumi, /pul-/],
  [L.PROVIDER.heroku, /HRKU-/],
  [L.PROVIDER.tavily, /tvly-/],
  [L.PROVIDER.brevo, /xkeysib-/],
  [L.PROVIDER.infracost, /ico-/],
  [L.PROVIDER.artifactory, /AKCp/],
  [L.PROVIDER.langfuse, /sk-lf-/],
  [L.PROVIDER.cerebras, /csk-/],
];

/** Each literal, near misses of it, and the characters the sweep anchors on. */
const FRAGMENTS = [
  'AGE-', 'AGE', 'GE-', '-----BEGIN ', '----BEGIN ', '-----BEGIN', 'PuTTY-', 'PuTTY', 'uTTY-', 'ghp_', 'gho_', 'ghu_', 'ghs_', 'ghr_', 'ghx_', 'gh_',
  'github_', 'github', 'ithub_', 'hf_', 'h_', 'f_', 'sk-', 's-', 'k-', 'tskey-', 'skey-', 'xoxb-', 'xoxa-', 'xoxp-', 'xoxo-', 'xoxs-', 'xoxr-', 'xoxz-',
  'xox-', 'secret_access_key', 'SECRET_ACCESS_KEY', 'SecretAccessKey', 'secretaccesskey', 'secret-access-key', 'secret__access_key', 'secretaccess',
  'access_key', 'access-tokens', 'access-token', 'ccess-tokens', 'AKIA', 'ASIA', 'AKI', 'SIA', '://', ':/', ':', '//', '==', '=', 'private_key',
  'PRIVATE-KEY', 'PrivateKey', 'privatekey', 'private__key', 'rivatekey', 'privatek', 'assword', 'Password', 'PASSWORD', 'asswor', 'ssword', 'assphrase', 'Passphrase', 'assphras', 'ssphrase',
  'npm_', 'np_', 'pm_', 'pypi-', 'ypi-', 'AIza', 'AIz', ':AA', ':A', 'AA', 'eyJ', 'ey', 'yJ', '"auth"', '"auth" :', '"auth"\t\n:', '"auth"\u00a0:',
  'auth":', '"auth', 'AccountKey', 'ccountKey', 'Accountkey', 'psk', 'ps', 'sk', 'resharedKey', 'esharedKey', 'resharedkey', 'PASSPHRASE',
  'ASSPHRAS', 'PASSWD', 'ASSW', '_PASS', '_PAS', 'ACCOUNT_KEY', 'CCOUNT_KEY', 'glpat-', 'gldt-', 'glrt-', 'glptt-', 'glft-', 'glcbt-', 'glsoat-', 'glxx-', 'gl-',
  'gsk_', 'sk_', 'r8_', 'r_', 'sk_live_', 'rk_live_', 'sk_test_', 'k_live_', 'glsa_', 'lsa_', 'glc_', 'dop_v1_', 'doo_v1_', 'dor_v1_', 'dox_v1_',
  'do_v1_', 'pplx-', 'plx-', 'xai-', 'ai-', 'K10', `K10${'a'.repeat(64)}::`, `K10${'b'.repeat(63)}::`, '::', 'privkey:', 'rivkey:', 'nlpriv:', 'nodekey:', '"kty"', 'kty"', '"kty', '"ktY"', 'psk"kty"', 'ops_', 'ps_', 'op_', 'PSK', 'PS', 'SK', 'pSK', '"TunnelSecret"', '"TunnelSecret" :', 'TunnelSecret"', '"unnelSecret"', 'TOKEN', 'OKEN', 'TOKE', '_KEY', '_KE', 'APIKEY', 'PIKEY', '_SECRET', 'SECRET', '_SECRE', 'O', 'I',
  '-u ', '-u=', '-u', '--user ', '-user=', '-use ', 'rubygems_', 'ubygems_', 'dckr_', 'ckr_', 'syt_', 'yt_', 'lsv2_', 'sv2_', 'fo1_', 'o1_', 'nvapi-', 'vapi-', '---- BEGIN SSH2 ', '--- BEGIN SSH2 ', '---- BEGIN SSH2', '---- BEGIN ', 'hmac-', 'hmac', 'mac-', '-requirepass', '-requirepas', '-pass', '-secret', '-Secret', '-token', '-tok', 'requirepass', ':{PLAIN}', '{PLAIN}', ':{PLAI', ':{CLEARTEXT}', '{CLEARTEXT}', ':{CLEAR',
  'GOCSPX-', 'OCSPX-', 'PMAK-', 'MAK-', 'pul-', 'ul-', 'HRKU-', 'RKU-', 'tvly-', 'vly-', 'xkeysib-', 'keysib-', 'ico-', 'co-', 'AKCp', 'AKC', 'KCp',
  'hvs.', 'hvb.', 'hvr.', 'hvx.', 'vs.', 'hv', 'dp.', 'dp.pt.', 'dp.st.', 'dp.sa.', 'dp.ct.', 'dp.scim.', 'dp.audit.', 'dp.xx.', 'p.pt.', 'pt.', 'SG.', 'G.',
  '.atlasv1.', 'atlasv1.', '.atlasv1', 'dt0c01.', 't0c01.', '.', '..', 'M', 'N', 'O', `M${'a'.repeat(23)}.`, `N${'b'.repeat(27)}.`, `O${'c'.repeat(22)}.`,
  `M${'d'.repeat(28)}.`, `${'e'.repeat(20)}.`, '.abcdef.', '.abcde.', 'abcdef.', 'shpat_', 'shpxx_', 'hpat_', 'lin_api_', 'in_api_', 'lin_ap', 'sntryu_',
  'sntrys_', 'ntryu_', 'pscale_', 'scale_', 'ntn_', 'tn_', 'sgp_', 'gp_', 'sbp_', 'bp_', 'sb_secret_', 'b_secret_', 'glagent-', 'lagent-',
  'csk-', 'sk-lf-', 'sk-lf', 'sk-l', 'xsk-', 'atlasv1.', 'tlasv1.', 'atlasv2.', 'v1.', 'v.', 'hv.', 'hvx.', 'xhvs.', 'vs.', 'v',
  '-a ', '-a', '-ab', '-a"', "-a'", '-u"', "--user'", 'redis-cli', 'valkey-cli', 'edis-cli', 'alkey-cli', 'redis-cl', 'redis-',
  '-auth', '-aut', 'auth', '-master', '-maste', '-encryption', '-encryptio', '--api', '-ap', 'api',
  'token', 'Token', 'tOken', 'toKen', 'oken', 'TOKEn', 'apikey', 'api_key', 'Api-Key', 'apiKey', 'APIKey', 'API_KEY', 'API-key', 'ApI_key', 'pi_key', 'secret_key',
  'Authorization:', 'authorization: ', '"Authorization":', "'authorization' :", 'Authorization\t:', 'AUTHORIZATION:', 'uthorization:', 'Authorization"\':',
  'secretKey', 'SecretKey', 'SECRETKEY', 'SECRET-KEY', 'Secret_KEY', 'ecret_key', '_secret', '-Secret', '-SECRET', '_sECRET', 'secret', 'Secret', 'ecret', 'ey', 'EY', 'Ke',
  '-pass', '_pass', 'pass', '-pas', '_Pass', '-passphrase', '_', '-', 'A', 'k', 'K', 'w', 'J', 'y', 'Y', 'e', 's', 't', 'x', 'i', ' ', '\n', 'a', 'b', 'p', 'o', 'r', 'E', 'S', 'C', 'I', 'P', '"',
];

function randomText(): string {
  let out = '';
  const pieces = randomInt(1, 14);
  for (let piece = 0; piece < pieces; piece++) {
    const roll = randomInt(10);
    if (roll < 7) out += FRAGMENTS[randomInt(FRAGMENTS.length)];
    else if (roll < 9) out += String.fromCharCode(randomInt(0x20, 0x7f)).repeat(randomInt(1, 4));
    else out += 'x'.repeat(randomInt(80, 95)); // puts a `:` and a later `==` at every distance around 86
  }
  return out;
}

function names(mask: number): string[] {
  return ORACLE.filter(([, bit]) => mask & bit).map(([name]) => name);
}

describe('ruleLiterals', () => {
  it('sets a family exactly when the text holds its literal, on random texts', () => {
    for (let trial = 0; trial < 40_000; trial++) {
      const text = randomText();
      const expected = ORACLE.filter(([, , pattern]) => pattern.test(text)).reduce((mask, [, bit]) => mask | bit, 0);
      const actual = L.ruleLiterals(text);
      if (actual !== expected) expect(names(actual), JSON.stringify(text)).toEqual(names(expected));
      // What the sweep notes beside its mask, for the rules that would search the text again.
      const dashes = [...text.matchAll(/-(?=pass|token|secret|api|auth|master|encryption|requirepass|u[ ="']|user[ ="']|a[ "'])/g)].map((match) => match.index);
      const providers = PROVIDERS.filter(([, pattern]) => pattern.test(text)).reduce((bits, [bit]) => bits | bit, 0);
      const notes = { text, credentialDashes: dashes, plainScheme: /:\{(?:PLAIN|CLEARTEXT)\}/.test(text), hmac: text.includes('hmac-'), providers };
      if (JSON.stringify(L.swept) !== JSON.stringify(notes)) expect(L.swept, JSON.stringify(text)).toEqual(notes);
    }
  });

  it('finds each literal at the very start and the very end of a text', () => {
    const samples: [number, string][] = [
      [L.AGE, 'AGE-'], [L.ARMOR, '-----BEGIN '], [L.GITHUB, 'ghp_'], [L.GITHUB, 'github_'], [L.HUGGINGFACE, 'hf_'], [L.SK, 'sk-'],
      [L.SLACK, 'xoxb-'], [L.AWS_SECRET, 'SECRET_ACCESS_KEY'], [L.URL, '://'], [L.PRIVATE_KEY, 'privatekey'], [L.PASSWORD, 'assword'],
      [L.JWT, 'eyJ'], [L.PSK, 'psk'], [L.ENV_PASSWORD, '_PASS'], [L.DOCKER_AUTH, '"auth":'], [L.TELEGRAM, ':AA'], [L.AZURE, 'AccountKey'],
    ];
    for (const [bit, literal] of samples) {
      expect(L.ruleLiterals(literal) & bit, literal).toBe(bit);
      expect(L.ruleLiterals(`some text before ${literal}`) & bit, literal).toBe(bit);
    }
    expect(L.ruleLiterals(`{ config, lib, pkgs, ... }:\n{\n  services.nginx.enable = true;\n}\n`)).toBe(0);
  });
});

/** The URL rule as it was: one pattern over the whole text. */
function oldUrlStarts(text: string): number[] {
  const pattern = /\b[a-z][a-z0-9+.-]{1,15}:\/\/([^\s:@/"'`<>(){}[\]\\]{1,128}):([^\s@/"'`<>(){}[\]\\]{3,256})@([A-Za-z0-9._-]+)/gi;
  const starts: number[] = [];
  for (let match = pattern.exec(text); match; match = pattern.exec(text)) {
    if (/(?:^|\.)(?:example\.(?:com|net|org)|example|invalid)$/i.test(match[3]!.replace(/\.$/, ''))) continue;
    starts.push(match.index + match[0].indexOf(':', match[0].indexOf('://') + 3) + 1);
  }
  return starts;
}

describe('url-credentials', () => {
  // Passwords none of the rule's placeholder checks drop, so the old pattern alone is the oracle.
  const SCHEMES = ['https', 'postgres', 'redis', 'git+ssh', 'x', 'H2', '1http', '_https', 'a.b-c+d', 'averyveryverylongscheme', 'fifteencharsxyz', 'sixteencharsxyzw'];
  const BEFORE = ['', ' ', '"', '.', 'x', '9', '_', '=', '\n', '(', '-'];
  it('finds what the single pattern found, at the same offsets', () => {
    for (let trial = 0; trial < 20_000; trial++) {
      const user = ['u', 'admin', '', 'a b', 'user@x'][randomInt(5)];
      const password = ['Tq9vLm2Kx8Rw', 'ab', 's3cr3t:more', 'p/q', 'Zk2-mQ9.x_7', 'hunter-2-horse'][randomInt(6)];
      const host = ['db.internal', 'example.com', '10.0.0.1', '', 'h'][randomInt(5)];
      const text = `${BEFORE[randomInt(BEFORE.length)]}${SCHEMES[randomInt(SCHEMES.length)]}://${user}:${password}@${host}/path ${randomInt(2) ? 'and ftp://x:y@z' : ''}`;
      const found = scanText(text, { operatorSecrets: [] }).filter((hit) => hit.rule === 'url-credentials').map((hit) => hit.start);
      expect(found, JSON.stringify(text)).toEqual(oldUrlStarts(text));
    }
  });

  it("finds a token given as the URL's whole userinfo, once; not a user name, a Sentry DSN or a documentation host", () => {
    // Fresh random bodies, drawn again in the rare case one holds a placeholder word (`xXxX`, `yOuR`).
    const draw = (prefix: string, length: number) => {
      for (;;) {
        const value = `${prefix}${randomBytes(length).toString('base64url').replace(/[-_]/g, '').slice(0, length)}`;
        if (value.length === prefix.length + length && looksLikeToken(value)) return value;
      }
    };
    const token = draw('ghp_', 36);
    const hits = scanText(`git clone https://${token}@github.com/org/private.git\n`, { operatorSecrets: [] });
    expect(hits.map((hit) => [hit.rule, hit.note])).toEqual([['url-credentials', "a token as the URL's user"]]);
    expect(hits[0]!.secret).toBe(token);
    const glpat = draw('glpat-', 20);
    expect(scanText(`https://oauth2:${glpat}@gitlab.com/org/r.git`, { operatorSecrets: [] }).map((hit) => hit.rule)).toEqual(['gitlab-token']);
    for (const text of [
      'ssh://git@github.com/org/repo.git',
      'https://firstname.lastname.contractor@git.lan/repo',
      `https://${randomBytes(16).toString('hex')}@o450000.ingest.sentry.io/5044000`,
      `https://${token}@github.example/org/repo`,
    ]) {
      expect(scanText(text, { operatorSecrets: [] }), text).toEqual([]);
    }
  });
});


/** Random texts around a needle: identifier characters, dots, spaces, quotes, `=`, `:` and base64. */
function around(needles: string[]): string {
  const pieces = ['a', 'b.', 'c-d', '_x', '.', ' ', '\t', '\n', '"', '=', ' = ', ';', ':', '9', '$', '\\', '+', '/', '==', 'Z'.repeat(randomInt(1, 90))];
  let out = '';
  const count = randomInt(1, 16);
  for (let index = 0; index < count; index++) out += randomInt(3) === 0 ? needles[randomInt(needles.length)] : pieces[randomInt(pieces.length)];
  return out;
}

describe('rules anchored on their literal find what their single patterns found', () => {
  it('nix-plaintext-password', () => {
    // The path starts after a character that cannot be in it, or after a lone dot that follows a
    // quoted attribute name (`profiles.vpn."vpn-secrets".password`).
    const old = /(?:(?<![\w.-])|(?<=(?:^|[^\w.-])\.))((?:[\w-]+\.)*([A-Za-z_]*[Pp]assword))\s*=\s*"([^"\\$]*)"\s*;/g;
    const values = ['Tq9vLm2Kx8Rw', 'correct horse', 'multi\nline value', 'a$b', ''];
    for (let trial = 0; trial < 20_000; trial++) {
      const text = around(['password', 'Password', 'users.users.x.initialPassword', 'passwordpassword', `password = "${values[randomInt(values.length)]}";`, `x.y.Password="${values[randomInt(values.length)]}" ;`]);
      const matches = [...text.matchAll(old)].map((match) => ({ value: match[3]!, start: match.index + match[0].lastIndexOf(`"${match[3]}"`) + 1 }));
      // Values the rule reports whatever their surroundings; the random pieces also make values of
      // their own (`"9a"`), which the rule's placeholder checks judge: those may or may not be found.
      const expected = matches.filter((match) => ['Tq9vLm2Kx8Rw', 'correct horse', 'multi\nline value'].includes(match.value)).map((match) => match.start);
      const found = scanText(text, { operatorSecrets: [] }).filter((hit) => hit.rule === 'nix-plaintext-password').map((hit) => hit.start);
      expect(found.filter((start) => expected.includes(start)), JSON.stringify(text)).toEqual(expected);
      // ...and nothing is found where the single pattern found nothing.
      for (const start of found) expect(matches.map((match) => match.start), JSON.stringify(text)).toContain(start);
    }
  });

  it('base64 runs: the skip search enumerates what the pattern matched', () => {
    const old = /(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{80,}={0,2}/g;
    for (let trial = 0; trial < 5000; trial++) {
      const text = around(['A'.repeat(randomInt(70, 100)), 'QUJD'.repeat(randomInt(15, 30)), '==', '=']);
      const expected = [...text.matchAll(old)].map((match) => [match.index, match.index + match[0].replace(/=+$/, '').length]);
      const found: number[][] = [];
      for (let run = base64Run(text, 0, 80); run; ) {
        found.push([run.start, run.end]);
        let end = run.end;
        if (text.charCodeAt(end) === 0x3d) end++;
        if (text.charCodeAt(end) === 0x3d) end++;
        run = base64Run(text, end, 80);
      }
      expect(found, JSON.stringify(text)).toEqual(expected);
    }
  });
});
