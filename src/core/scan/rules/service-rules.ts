/**
 * The credentials an AI workstation and homelab hold beyond the classic keys: model-provider and
 * package-registry tokens, registry and cluster credentials, backup and network secrets. Each is
 * validated by the structure its vendor gives it (a checksum, a macaroon, a JWT's claims, a decoded
 * length) so that a stub or a word in the same shape is not a finding; the public counterparts
 * (WireGuard public keys, Tailscale node keys, SSH certificates) never match. Pure functions over
 * constant tables: safe inside worker threads.
 */
import * as L from './literals.js';
import type { RawHit } from './rules.js';
import { base62, crc32, entropy, isDescriptivePlaceholder, isPathOrUrl, isTemplateValue, looksLikePlaceholder, matchesOnLines, matchingLines, nameWords, needleLines, overlapsAny } from './text-util.js';

/** GitHub-style checksummed token body: 30 random characters and their CRC-32 in 6 base62 digits. */
function crcTokenValid(body: string): boolean {
  return base62(crc32(body.slice(0, 30))).padStart(6, '0') === body.slice(30, 36);
}

interface ServiceRule {
  rule: string;
  kind: string;
  /** Runs only when the text holds its family's literal (literals.ts). */
  family: number;
  /** And when the sweep saw this vendor's prefix (L.PROVIDER: a bit of its own within the family). */
  provider?: number;
  pattern: RegExp;
  group?: number;
  valid: (secret: string) => boolean;
  note?: string;
}

/** A JWT's header and payload, or undefined when it is not one. */
function jwtClaims(token: string): { header: Record<string, unknown>; payload: Record<string, unknown> } | undefined {
  const parts = token.split('.');
  if (parts.length !== 3) return undefined;
  try {
    const header = JSON.parse(Buffer.from(parts[0]!, 'base64url').toString('utf8')) as unknown;
    const payload = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as unknown;
    if (typeof header !== 'object' || header === null || typeof payload !== 'object' || payload === null) return undefined;
    return { header: header as Record<string, unknown>, payload: payload as Record<string, unknown> };
  } catch {
    return undefined;
  }
}

/** A 1Password service account token's JSON (base64 after `ops_`): it holds the account's secret key and master unlock key. */
function onePasswordAccount(token: string): boolean {
  try {
    const account = JSON.parse(Buffer.from(token.slice(4), 'base64').toString('utf8')) as Record<string, unknown>;
    return typeof account === 'object' && account !== null && (typeof account.secretKey === 'string' || typeof account.muk === 'object');
  } catch {
    return false;
  }
}

const JWT_PATTERN = /(?<![A-Za-z0-9_.-])eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{20,}(?![A-Za-z0-9_.-])/g;

type JwtClaims = NonNullable<ReturnType<typeof jwtClaims>>;

/** The JWTs that are credentials, each known by its claims (one pass over the text, each token decoded once). */
const JWT_KINDS: { rule: string; is: (claims: JwtClaims) => boolean }[] = [
  // Cachix tokens are HS256 JWTs whose claims carry a token id and its scopes.
  { rule: 'cachix-auth-token', is: ({ header, payload }) => header.alg === 'HS256' && typeof payload.jti === 'string' && 'scopes' in payload },
  // Attic (a self-hosted Nix binary cache) tokens: JWTs whose claims carry the cache permissions.
  { rule: 'attic-token', is: ({ payload }) => typeof payload['https://jwt.attic.rs/v1'] === 'object' },
  // Home Assistant long-lived access tokens: HS256 JWTs whose claims are the refresh token's id (`iss`, 32 hex), `iat` and `exp` only.
  {
    rule: 'home-assistant-token',
    is: ({ header, payload }) =>
      header.alg === 'HS256' && Object.keys(payload).sort().join(',') === 'exp,iat,iss' && typeof payload.iss === 'string' && /^[0-9a-f]{32}$/.test(payload.iss),
  },
  // Service account tokens: JWTs a cluster signs, whose claims name it as the issuer.
  {
    rule: 'kubernetes-token',
    is: ({ payload }) => {
      const issuer = payload.iss;
      return 'kubernetes.io' in payload || issuer === 'kubernetes/serviceaccount' || (typeof issuer === 'string' && /kubernetes|k3s|rke2/.test(issuer) && typeof payload.sub === 'string' && payload.sub.startsWith('system:serviceaccount:'));
    },
  },
];

function jwtRule(text: string, hits: RawHit[]): void {
  JWT_PATTERN.lastIndex = 0;
  for (let match = JWT_PATTERN.exec(text); match; match = JWT_PATTERN.exec(text)) {
    const claims = jwtClaims(match[0]);
    if (!claims) continue;
    for (const kind of JWT_KINDS) {
      if (kind.is(claims)) hits.push({ rule: kind.rule, kind: kind.rule, secret: match[0], start: match.index, end: match.index + match[0].length });
    }
  }
}

/** The last path segment of a webhook URL: its secret part. */
const lastSegment = (url: string): string => url.slice(url.lastIndexOf('/') + 1);

/** The token after its prefix: no placeholder, no row of one character, and random-looking. */
const randomAfter = (prefix: number | RegExp, minEntropy = 3.5) => (secret: string): boolean => {
  const body = typeof prefix === 'number' ? secret.slice(prefix) : secret.replace(prefix, '');
  return !looksLikePlaceholder(body, minEntropy);
};

/**
 * A Sentry organization token: `sntrys_`, base64 of a JSON object holding `iat` and the region's
 * URL, `_`, and 43 random characters.
 */
function sentryOrgToken(secret: string): boolean {
  const parts = secret.split('_');
  try {
    const claims = JSON.parse(Buffer.from(parts[1]!, 'base64').toString('utf8')) as Record<string, unknown>;
    return typeof claims === 'object' && claims !== null && 'iat' in claims && ('region_url' in claims || 'url' in claims) && !looksLikePlaceholder(parts[2]!, 3.5);
  } catch {
    return false;
  }
}

/**
 * Vendor tokens known by a prefix of their own, as gitleaks' rules and the vendors' documentation
 * give them: platforms a homelab or an AI workstation is configured with (deployment and developer
 * services, e-mail, observability, model providers and their tools). Each is found in any file,
 * under any name (a `credential:` key), since the prefix names it; each runs only when the sweep saw
 * its own prefix (`provider`). Tokens whose prefix ends in a dot (Vault's `hvs.`, SendGrid's `SG.`)
 * are not looked for here: a sweep for every `.` and the searches for their prefixes made the image
 * scan about a fifth slower. The rules that read a credential's name take them instead, which used
 * to take their dots for a reference's (isDottedVendorToken).
 */
const PREFIXED_TOKENS: ServiceRule[] = [
  {
    rule: 'google-oauth-client-secret',
    kind: 'google-oauth-client-secret',
    family: L.PROVIDER_DASH,
    provider: L.PROVIDER.googleOauth,
    // What oauth2-proxy, Grafana's or Nextcloud's Google login and rclone's own client are given.
    pattern: /(?<![A-Za-z0-9_-])GOCSPX-[A-Za-z0-9_-]{28}(?![A-Za-z0-9_-])/g,
    valid: randomAfter(7),
  },
  {
    rule: 'postman-key',
    kind: 'postman-key',
    family: L.PROVIDER_DASH,
    provider: L.PROVIDER.postman,
    pattern: /(?<![A-Za-z0-9_-])PMAK-[0-9a-f]{24}-[0-9a-f]{34}(?![A-Za-z0-9_-])/gi,
    valid: randomAfter(5, 3.3),
  },
  {
    rule: 'pulumi-token',
    kind: 'pulumi-token',
    family: L.PROVIDER_DASH,
    provider: L.PROVIDER.pulumi,
    pattern: /(?<![A-Za-z0-9_-])pul-[0-9a-f]{40}(?![A-Za-z0-9_-])/g,
    valid: randomAfter(4, 3),
  },
  {
    rule: 'heroku-key',
    kind: 'heroku-key',
    family: L.PROVIDER_DASH,
    provider: L.PROVIDER.heroku,
    pattern: /(?<![A-Za-z0-9_-])HRKU-AA[A-Za-z0-9_-]{58}(?![A-Za-z0-9_-])/g,
    valid: randomAfter(7),
  },
  {
    rule: 'tavily-key',
    kind: 'tavily-key',
    family: L.PROVIDER_DASH,
    provider: L.PROVIDER.tavily,
    // Tavily search (an LLM agent's web tool): `tvly-`, optionally `dev-`/`prod-`, 32 characters.
    pattern: /(?<![A-Za-z0-9_-])tvly-(?:dev-|prod-)?[A-Za-z0-9]{32}(?![A-Za-z0-9_-])/g,
    valid: randomAfter(/^tvly-(?:dev-|prod-)?/),
  },
  {
    rule: 'brevo-key',
    kind: 'brevo-key',
    family: L.PROVIDER_DASH,
    provider: L.PROVIDER.brevo,
    // Brevo (Sendinblue) API and SMTP keys.
    pattern: /(?<![A-Za-z0-9_-])xkeysib-[0-9a-f]{64}-[A-Za-z0-9]{16}(?![A-Za-z0-9_-])/g,
    valid: randomAfter(8, 3.3),
  },
  {
    rule: 'infracost-key',
    kind: 'infracost-key',
    family: L.PROVIDER_DASH,
    provider: L.PROVIDER.infracost,
    pattern: /(?<![A-Za-z0-9_-])ico-[A-Za-z0-9]{32}(?![A-Za-z0-9_-])/g,
    // `ico-` also starts icon names: a key holds a digit.
    valid: (secret) => randomAfter(4)(secret) && /[0-9]/.test(secret),
  },
  {
    rule: 'artifactory-key',
    kind: 'artifactory-key',
    family: L.PROVIDER_DASH,
    provider: L.PROVIDER.artifactory,
    // JFrog Artifactory API keys (what a Nix or Docker substituter behind Artifactory is given).
    pattern: /(?<![A-Za-z0-9_-])AKCp[A-Za-z0-9]{69}(?![A-Za-z0-9_-])/g,
    valid: randomAfter(4),
  },
  {
    rule: 'langfuse-secret-key',
    kind: 'langfuse-secret-key',
    family: L.SK,
    provider: L.PROVIDER.langfuse,
    // Langfuse (LLM tracing) secret keys: `sk-lf-` and a UUID (the public half is `pk-lf-`).
    pattern: /(?<![A-Za-z0-9_-])sk-lf-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?![A-Za-z0-9_-])/g,
    valid: randomAfter(6, 3),
  },
  {
    rule: 'cerebras-key',
    kind: 'cerebras-key',
    family: L.SK,
    provider: L.PROVIDER.cerebras,
    pattern: /(?<![A-Za-z0-9_-])csk-[a-z0-9]{48}(?![A-Za-z0-9_-])/g,
    valid: randomAfter(4),
  },
  {
    rule: 'shopify-token',
    kind: 'shopify-token',
    family: L.PROVIDER_UNDERSCORE,
    provider: L.PROVIDER.shopify,
    pattern: /(?<![A-Za-z0-9_])shp(?:at|ca|pa|ss)_[0-9a-fA-F]{32}(?![A-Za-z0-9_])/g,
    // 32 random hex digits: the floor DeepSeek's keys use (see there).
    valid: randomAfter(6, 2.8),
  },
  {
    rule: 'linear-key',
    kind: 'linear-key',
    family: L.PROVIDER_UNDERSCORE,
    provider: L.PROVIDER.linear,
    pattern: /(?<![A-Za-z0-9_])lin_api_[A-Za-z0-9]{40}(?![A-Za-z0-9_])/g,
    valid: randomAfter(8),
  },
  {
    rule: 'sentry-token',
    kind: 'sentry-token',
    family: L.PROVIDER_UNDERSCORE,
    provider: L.PROVIDER.sentry,
    // User auth tokens (`sntryu_` + 64 hex); organization tokens are matched below.
    pattern: /(?<![A-Za-z0-9_])sntryu_[0-9a-f]{64}(?![A-Za-z0-9_])/g,
    valid: randomAfter(7, 3.3),
  },
  {
    rule: 'sentry-token',
    kind: 'sentry-token',
    family: L.PROVIDER_UNDERSCORE,
    provider: L.PROVIDER.sentry,
    pattern: /(?<![A-Za-z0-9_])sntrys_eyJ[A-Za-z0-9+/]{20,400}={0,2}_[A-Za-z0-9+/]{43}(?![A-Za-z0-9_+/])/g,
    valid: sentryOrgToken,
  },
  {
    rule: 'planetscale-token',
    kind: 'planetscale-token',
    family: L.PROVIDER_UNDERSCORE,
    provider: L.PROVIDER.planetscale,
    // Service tokens, OAuth tokens and database passwords (`pscale_pw_`).
    pattern: /(?<![A-Za-z0-9_])pscale_(?:tkn|oauth|pw)_[A-Za-z0-9_.=-]{32,64}(?![A-Za-z0-9_.=-])/g,
    valid: randomAfter(/^pscale_[a-z]+_/),
  },
  {
    rule: 'notion-token',
    kind: 'notion-token',
    family: L.PROVIDER_UNDERSCORE,
    provider: L.PROVIDER.notion,
    pattern: /(?<![A-Za-z0-9_])ntn_[0-9]{11}[A-Za-z0-9]{35}(?![A-Za-z0-9_])/g,
    valid: randomAfter(15),
  },
  {
    rule: 'sourcegraph-token',
    kind: 'sourcegraph-token',
    family: L.PROVIDER_UNDERSCORE,
    provider: L.PROVIDER.sourcegraph,
    pattern: /(?<![A-Za-z0-9_])sgp_(?:[0-9a-f]{16}_|local_)?[0-9a-f]{40}(?![A-Za-z0-9_])/g,
    valid: (secret) => !looksLikePlaceholder(secret.slice(-40), 3),
  },
  {
    rule: 'supabase-key',
    kind: 'supabase-key',
    family: L.PROVIDER_UNDERSCORE,
    provider: L.PROVIDER.supabase,
    // Personal access tokens (`sbp_` + 40 hex) and the secret API keys (`sb_secret_`); `sb_publishable_` is public.
    pattern: /(?<![A-Za-z0-9_])(?:sbp_[0-9a-f]{40}|sb_secret_[A-Za-z0-9_-]{30,64})(?![A-Za-z0-9_-])/g,
    valid: randomAfter(/^sbp_|^sb_secret_/, 3),
  },
];

const SERVICE_RULES: ServiceRule[] = [
  {
    rule: 'slack-webhook',
    kind: 'slack-token',
    family: L.URL,
    // An incoming webhook (services/T…/B…/secret) or a workflow trigger (workflows/T…/A…/id/secret).
    pattern: /https:\/\/hooks\.slack\.com\/(?:services|workflows|triggers)\/T[A-Z0-9]{8,12}\/[AB][A-Z0-9]{8,12}\/(?:\d{6,20}\/)?[A-Za-z0-9]{23,32}(?![A-Za-z0-9])/g,
    valid: (secret) => !looksLikePlaceholder(lastSegment(secret), 3.3),
    note: 'Slack webhook URL',
  },
  {
    rule: 'discord-webhook',
    kind: 'service-token',
    family: L.URL,
    pattern: /https:\/\/(?:ptb\.|canary\.)?discord(?:app)?\.com\/api\/webhooks\/\d{17,20}\/[A-Za-z0-9_-]{60,68}(?![A-Za-z0-9_-])/g,
    valid: (secret) => !looksLikePlaceholder(lastSegment(secret), 3.5),
    note: 'Discord webhook URL',
  },
  {
    rule: 'teams-webhook',
    kind: 'service-token',
    family: L.URL,
    pattern: /https:\/\/[a-z0-9-]+\.webhook\.office\.com\/webhookb2\/[0-9a-f-]{36}@[0-9a-f-]{36}\/IncomingWebhook\/[0-9a-f]{32}\/[0-9a-f-]{36}(?:\/[A-Za-z0-9_-]{20,})?/g,
    valid: (secret) => entropy(/IncomingWebhook\/([0-9a-f]{32})/.exec(secret)![1]!) > 3,
    note: 'Microsoft Teams webhook URL',
  },
  {
    rule: 'cloudflare-tunnel-token',
    kind: 'cloudflare-tunnel-credentials',
    family: L.JWT,
    // base64 of {"a":"<account tag>","t":"<tunnel id>","s":"<secret>"}: it starts eyJhIjoi.
    pattern: /(?<![A-Za-z0-9+/])eyJhIjoi[A-Za-z0-9+/]{60,}={0,2}(?![A-Za-z0-9+/=])/g,
    valid: cloudflareTunnelToken,
  },
  {
    rule: '1password-service-account',
    kind: '1password-service-account-token',
    family: L.PROVIDER_UNDERSCORE,
    // ops_ + base64 of the account's JSON (`{"email":...,"muk":{...},"secretKey":...}`).
    pattern: /(?<![A-Za-z0-9_])ops_eyJ[A-Za-z0-9+/_-]{100,4000}={0,2}(?![A-Za-z0-9+/=_-])/g,
    valid: onePasswordAccount,
  },
  {
    rule: 'openrouter-key',
    kind: 'openrouter-key',
    family: L.SK,
    pattern: /(?<![A-Za-z0-9_-])sk-or-v1-[0-9a-f]{64}(?![A-Za-z0-9_-])/g,
    valid: (secret) => entropy(secret.slice(9)) > 3.3,
  },
  {
    rule: 'anthropic-key',
    kind: 'anthropic-key',
    family: L.SK,
    // sk-ant-api03-<93 base64url>AA (admin keys: sk-ant-admin01-...).
    pattern: /(?<![A-Za-z0-9_-])sk-ant-(?:api|admin|oat|sid)\d{2}-[A-Za-z0-9_-]{80,100}AA(?![A-Za-z0-9_-])/g,
    valid: (secret) => !looksLikePlaceholder(secret.slice(secret.indexOf('-', 7) + 1), 4),
  },
  {
    rule: 'gitlab-token',
    kind: 'gitlab-token',
    family: L.GITLAB,
    // Legacy: prefix + 20 characters (a cluster agent's `glagent-`: 50); routable (GitLab 17.8+): prefix + base64url payload + `.` + version + `.` + CRC part.
    pattern: /(?<![A-Za-z0-9_-])(?:gl(?:pat|dt|rt|ptt|ft|cbt|soat)-(?:[A-Za-z0-9_-]{20}|[A-Za-z0-9_-]{27,300}\.[0-9a-z]{2}\.[0-9a-z]{7,9})|glagent-[A-Za-z0-9_-]{50})(?![A-Za-z0-9_.-])/g,
    valid: (secret) => {
      const body = secret.slice(secret.indexOf('-') + 1).split('.')[0]!;
      return !looksLikePlaceholder(body, 3.2) && /[0-9]/.test(body) && /[A-Za-z]/.test(body);
    },
  },
  {
    rule: 'npm-token',
    kind: 'npm-token',
    family: L.NPM,
    pattern: /(?<![A-Za-z0-9_])npm_[A-Za-z0-9]{36}(?![A-Za-z0-9_])/g,
    valid: (secret) => crcTokenValid(secret.slice(4)),
  },
  {
    rule: 'pypi-token',
    kind: 'pypi-token',
    family: L.PYPI,
    // A macaroon, base64url: its location field names the index (pypi.org or test.pypi.org).
    pattern: /(?<![A-Za-z0-9_-])pypi-AgE[A-Za-z0-9_-]{50,}(?![A-Za-z0-9_-])/g,
    valid: (secret) => /(?:^|[^a-z])(?:test\.)?pypi\.org/.test(Buffer.from(secret.slice(5), 'base64url').toString('latin1', 0, 64)),
  },
  {
    rule: 'google-api-key',
    kind: 'google-api-key',
    family: L.GOOGLE,
    pattern: /(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])/g,
    valid: (secret) => !looksLikePlaceholder(secret.slice(4), 3.5),
  },
  {
    rule: 'telegram-bot-token',
    kind: 'telegram-bot-token',
    family: L.TELEGRAM,
    // <bot id>:<35 characters, starting AA>.
    pattern: /(?<![A-Za-z0-9_:-])\d{8,10}:AA[A-Za-z0-9_-]{33}(?![A-Za-z0-9_-])/g,
    valid: (secret) => {
      const body = secret.slice(secret.indexOf(':') + 3);
      return !looksLikePlaceholder(body, 3.5) && /[a-z]/.test(body) && /[A-Z]/.test(body);
    },
  },
  {
    rule: 'groq-key',
    kind: 'groq-key',
    family: L.PROVIDER_UNDERSCORE,
    pattern: /(?<![A-Za-z0-9_])gsk_[A-Za-z0-9]{52}(?![A-Za-z0-9_])/g,
    valid: (secret) => !looksLikePlaceholder(secret.slice(4), 3.5),
  },
  {
    rule: 'replicate-token',
    kind: 'replicate-token',
    family: L.PROVIDER_UNDERSCORE,
    pattern: /(?<![A-Za-z0-9_])r8_[A-Za-z0-9]{37}(?![A-Za-z0-9_])/g,
    valid: (secret) => !looksLikePlaceholder(secret.slice(3), 3.5),
  },
  {
    rule: 'stripe-key',
    kind: 'stripe-key',
    family: L.PROVIDER_UNDERSCORE,
    // Live secret and restricted keys; test-mode keys (`sk_test_`) fill Stripe's own documentation.
    pattern: /(?<![A-Za-z0-9_])[sr]k_live_[A-Za-z0-9]{24,247}(?![A-Za-z0-9_])/g,
    valid: (secret) => !looksLikePlaceholder(secret.slice(8), 3.5),
  },
  {
    rule: 'grafana-token',
    kind: 'grafana-token',
    family: L.PROVIDER_UNDERSCORE,
    // Service account tokens (`glsa_` + 32 + `_` + 8 hex) and Grafana Cloud tokens (`glc_` + base64 JSON with a key).
    pattern: /(?<![A-Za-z0-9_])(?:glsa_[A-Za-z0-9]{32}_[0-9a-f]{8}|glc_[A-Za-z0-9+/]{32,400}={0,2})(?![A-Za-z0-9_+/=])/g,
    valid: (secret) => {
      if (secret.startsWith('glsa_')) return !looksLikePlaceholder(secret.slice(5, 37), 3.5);
      try {
        const claims = JSON.parse(Buffer.from(secret.slice(4), 'base64').toString('utf8')) as unknown;
        return typeof claims === 'object' && claims !== null && typeof (claims as Record<string, unknown>).k === 'string';
      } catch {
        return false;
      }
    },
  },
  {
    rule: 'digitalocean-token',
    kind: 'digitalocean-token',
    family: L.PROVIDER_UNDERSCORE,
    pattern: /(?<![A-Za-z0-9_])do[opr]_v1_[0-9a-f]{64}(?![A-Za-z0-9_])/g,
    valid: (secret) => entropy(secret.slice(7)) > 3.3,
  },
  {
    rule: 'rubygems-token',
    kind: 'rubygems-token',
    family: L.PROVIDER_UNDERSCORE,
    pattern: /(?<![A-Za-z0-9_])rubygems_[0-9a-f]{48}(?![A-Za-z0-9_])/g,
    valid: (secret) => entropy(secret.slice(9)) > 3.3,
  },
  {
    rule: 'docker-hub-token',
    kind: 'docker-hub-token',
    family: L.PROVIDER_UNDERSCORE,
    // A Docker Hub personal or organization access token (the password of `docker login`).
    pattern: /(?<![A-Za-z0-9_])dckr_(?:pat|oat)_[A-Za-z0-9_-]{27,}(?![A-Za-z0-9_-])/g,
    valid: randomAfter(9, 3.3),
  },
  {
    rule: 'matrix-access-token',
    kind: 'matrix-access-token',
    family: L.PROVIDER_UNDERSCORE,
    // Synapse's access tokens: `syt_`, the user's localpart in base64, 20 random characters, a 6-character CRC (a bridge's or bot's login).
    pattern: /(?<![A-Za-z0-9_])syt_[A-Za-z0-9+/=-]{2,}_[A-Za-z0-9]{20}_[A-Za-z0-9]{6}(?![A-Za-z0-9_])/g,
    valid: (secret) => {
      const parts = secret.split('_');
      const random = parts[parts.length - 2]!;
      if (looksLikePlaceholder(random, 3.3)) return false;
      const body = parts.slice(0, -1).join('_');
      return base62(crc32(body), 6) === parts[parts.length - 1];
    },
  },
  {
    rule: 'langsmith-key',
    kind: 'langsmith-key',
    family: L.PROVIDER_UNDERSCORE,
    pattern: /(?<![A-Za-z0-9_])lsv2_(?:pt|sk)_[0-9a-f]{32}_[0-9a-f]{10}(?![A-Za-z0-9_])/g,
    // 32 random hex digits: the floor DeepSeek's keys use (see there).
    valid: (secret) => entropy(secret.slice(8, 40)) > 2.8,
  },
  {
    rule: 'flyio-token',
    kind: 'flyio-token',
    family: L.PROVIDER_UNDERSCORE,
    pattern: /(?<![A-Za-z0-9_])fo1_[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])/g,
    valid: randomAfter(4),
  },
  {
    rule: 'nvidia-api-key',
    kind: 'nvidia-api-key',
    family: L.PROVIDER_DASH,
    // NVIDIA's API catalog and NGC keys (NIM endpoints): `nvapi-` and 64 characters.
    pattern: /(?<![A-Za-z0-9_-])nvapi-[A-Za-z0-9_-]{64}(?![A-Za-z0-9_-])/g,
    valid: randomAfter(6),
  },
  ...PREFIXED_TOKENS,
  {
    rule: 'perplexity-key',
    kind: 'perplexity-key',
    family: L.PROVIDER_DASH,
    pattern: /(?<![A-Za-z0-9_-])pplx-[A-Za-z0-9]{48}(?![A-Za-z0-9_-])/g,
    valid: randomAfter(5),
  },
  {
    rule: 'xai-key',
    kind: 'xai-key',
    family: L.PROVIDER_DASH,
    pattern: /(?<![A-Za-z0-9_-])xai-[A-Za-z0-9]{80}(?![A-Za-z0-9_-])/g,
    valid: randomAfter(4),
  },
  {
    rule: 'deepseek-key',
    kind: 'deepseek-key',
    family: L.SK,
    pattern: /(?<![A-Za-z0-9_-])sk-[0-9a-f]{32}(?![A-Za-z0-9_-])/g,
    // 32 random hex digits fall to 3.2 bits or less in about 0.4% of keys, to 2.8 in none of 200,000
    // drawn; a run of one digit or a short repeated word (`deadbeef…`) stays under 2.8.
    valid: (secret) => entropy(secret.slice(3)) > 2.8,
  },
  {
    rule: 'k3s-token',
    kind: 'k3s-token',
    family: L.K3S,
    // K10 + the cluster CA's sha256 + `::server:` or `::node:` + the password.
    pattern: /(?<![A-Za-z0-9])K10[0-9a-f]{64}::(?:server|node):([A-Za-z0-9._~-]{6,})(?![A-Za-z0-9._~-])/g,
    valid: (secret) => !isTemplateValue(secret) && !looksLikePlaceholder(secret.slice(secret.lastIndexOf(':') + 1), 2),
  },
  {
    rule: 'tailscale-private-key',
    kind: 'tailscale-key',
    family: L.TAILSCALE_PRIVATE,
    // Node keys and tailnet-lock keys; their public halves are `nodekey:` and `nlpub:`.
    pattern: /(?<![A-Za-z0-9])(?:privkey|nlpriv):[0-9a-f]{64}(?![0-9a-f])/g,
    valid: (secret) => entropy(secret.slice(secret.indexOf(':') + 1)) > 3.3,
  },
  {
    rule: 'azure-storage-key',
    kind: 'azure-storage-key',
    family: L.AZURE,
    pattern: /AccountKey\s*=\s*([A-Za-z0-9+/]{86}==)/g,
    group: 1,
    valid: (secret) => Buffer.from(secret, 'base64').length === 64 && !looksLikePlaceholder(secret, 4),
  },
  {
    rule: 'wireguard-preshared-key',
    kind: 'wireguard-preshared-key',
    family: L.PRESHARED,
    pattern: /[pP]resharedKey["']?\s*(?:=|:)\s*["']?([A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=)(?![A-Za-z0-9+/=])/g,
    group: 1,
    valid: (secret) => !looksLikePlaceholder(secret, 3.5),
  },
];

/**
 * A Wi-Fi passphrase (8-63 characters) or raw PSK (64 hex digits): quoted in Nix
 * (`psk = "...";`, `pskRaw = "...";`), or a NetworkManager/wpa_supplicant line (`psk=...`).
 */
function wifiPskRule(text: string, hits: RawHit[]): void {
  const pattern = /(?<![\w-])(psk|pskRaw)(?:\s*=\s*"([^"\n]{8,64})"|=([^\s"]{8,64})$)/gm;
  for (let match = pattern.exec(text); match; match = pattern.exec(text)) {
    const raw = match[1] === 'pskRaw';
    const value = match[2] ?? match[3]!;
    if (raw ? !/^[0-9a-fA-F]{64}$/.test(value) : value.length > 63) continue;
    if (isTemplateValue(value) || /^ext:/.test(value) || looksLikePlaceholder(value, 2)) continue;
    const start = match.index + match[0].lastIndexOf(value);
    hits.push({ rule: 'wifi-psk', kind: 'wifi-psk', secret: value, start, end: start + value.length, note: `option ${match[1]}` });
  }
}

/**
 * IPsec pre-shared keys in `ipsec.secrets` (strongSwan, Libreswan): `[ids] : PSK "secret"`, also as
 * `0x` hex or `0s` base64. A reference to another file (`: PSK %prompt`) is not a value.
 */
function ipsecPskRule(text: string, hits: RawHit[]): void {
  const pattern = /(?:^|\s):[ \t]*PSK[ \t]+("([^"\n]{6,256})"|(0x[0-9a-fA-F]{12,512}|0s[A-Za-z0-9+/=]{8,512}))[ \t]*$/gm;
  for (let match = pattern.exec(text); match; match = pattern.exec(text)) {
    const value = match[2] ?? match[3]!;
    if (isTemplateValue(value) || isDescriptivePlaceholder(value) || looksLikePlaceholder(value, 2)) continue;
    const start = match.index + match[0].lastIndexOf(value);
    hits.push({ rule: 'ipsec-psk', kind: 'ipsec-psk', secret: value, start, end: start + value.length });
  }
}

/**
 * Backup and service passwords in environment files: `RESTIC_PASSWORD=...`, `BORG_PASSPHRASE=...`,
 * `export B2_ACCOUNT_KEY="..."`, and the same names given a string literal in Nix
 * (`MAIL_PASSWORD = "...";`). A Nix expression (`cfg.passwordFile;`) is not a value.
 */
function envPasswordRule(text: string, hits: RawHit[], lines: readonly number[]): void {
  const pattern =
    /^[ \t]*(?:export[ \t]+)?([A-Z][A-Z0-9_]*(?:PASSWORD|PASSPHRASE|_PASS|ACCOUNT_KEY))(?:=(["']?)([^\s"'#;]{6,256})\2|[ \t]*=[ \t]*(["'])([^"'\n]{6,256})\4[ \t]*;?)[ \t]*$/gm;
  for (const match of matchesOnLines(text, lines, pattern)) {
    const name = match[1]!;
    const value = match[3] ?? match[5]!;
    if (/_(?:FILE|COMMAND|CMD|PATH)$/.test(name) || isTemplateValue(value) || isDescriptivePlaceholder(value) || looksLikePlaceholder(value, 2)) continue;
    // Paths and command-line arguments (`LUKS_PASS=" --key-file /tmp/x"`) are not passwords.
    if (/^(?:\/|~\/|\.\/|file:|true$|false$|[\s-])/i.test(value) || /\s--?[a-z]/.test(value)) continue;
    const start = match.index + match[0].lastIndexOf(value);
    hits.push({ rule: 'env-password', kind: 'plaintext-password', secret: value, start, end: start + value.length, note: `variable ${name}` });
  }
}

/** What every name envPasswordRule and envTokenRule take holds (`…PASSWORD`, `…_PASS`, `…ACCOUNT_KEY`, `…TOKEN`, `…_KEY`, `…APIKEY`, `…_SECRET`). */
const ENV_NAME_NEEDLES = ['TOKEN', 'KEY', '_SECRET', 'PASS'];

/**
 * A quoted assignment (`"API_TOKEN=…"`, `'API_TOKEN=…'`), one given to a container's `-e`/`--env`
 * (`podman run -e DB_PASSWORD=…`, as the oci-containers module writes its scripts), or a Nix one
 * after `{` or `;` on its line (`{ X_SECRET = "…"; }`).
 */
const QUOTED_ASSIGNMENT =
  /"([A-Z][A-Z0-9_]*=[^"\n]*)"|'([A-Z][A-Z0-9_]*=[^'\n]*)'|(?:^|[ \t])(?:-e|--env)[ \t=]+([A-Z][A-Z0-9_]*=[^\s"';]+)|(?<=[{;][ \t]*)([A-Z][A-Z0-9_]*[ \t]*=[ \t]*"[^"\n]*"[ \t]*;)/gm;

/** fish's `set -gx NAME value` (name, then the blanks before the value) and `$env.NAME =`/`$env:NAME =` (nushell, PowerShell). */
const OTHER_SHELL_ASSIGNMENT = /^[ \t]*set[ \t]+(?:-[A-Za-z-]+[ \t]+)*([A-Z][A-Z0-9_]*)([ \t]+)(?=\S)|\$env[.:]([A-Z][A-Z0-9_]*[ \t]*=)/g;

/**
 * The environment rules over assignments that do not stand at the start of a line, where NixOS and
 * container tooling put them: systemd units' `Environment=` lines (`Environment="MEILI_MASTER_KEY=…"
 * "OTHER=1"`, from `systemd.services.<name>.environment`), quoted assignments in Nix lists and
 * strings (`serviceConfig.Environment = [ "A=b" "API_TOKEN=…" ]`), compose files and JSON
 * (`"Env": ["PATH=…", "API_TOKEN=…"]` in an OCI image config), a container's `-e` (`podman run -e
 * 'DB_PASSWORD=…'` in the scripts of virtualisation.oci-containers), fish's, nushell's and
 * PowerShell's assignments (home-manager's session variables for them), and Nix attribute sets on one line
 * (`environment = { X_SECRET = "…"; };`). Each assignment goes on a line of its own in a copy of the
 * text of the same length (the rest blanked, line breaks around each assignment), so offsets stay
 * the text's own.
 */
function embeddedAssignmentRules(text: string, hits: RawHit[], lines: readonly number[]): void {
  let view: Buffer | undefined;
  /** Where each copied assignment starts: the lines of the copy the rules read. */
  const starts: number[] = [];
  const copy = (from: number, to: number) => {
    view ??= Buffer.alloc(text.length, 0x20);
    starts.push(from);
    // A character beyond latin1 cannot be in a name or a token.
    for (let index = from; index < to; index++) view[index] = Math.min(text.charCodeAt(index), 0xff);
    if (from > 0) view[from - 1] = 0x0a;
    if (to < text.length) view[to] = 0x0a;
  };
  for (let at = text.indexOf('Environment='); at !== -1; at = text.indexOf('Environment=', at + 12)) {
    const lineStart = text.lastIndexOf('\n', at) + 1;
    if (!/^[ \t]*$/.test(text.slice(lineStart, at))) continue;
    let lineEnd = text.indexOf('\n', at);
    if (lineEnd === -1) lineEnd = text.length;
    // Outside quotes a space ends an assignment; inside them it is part of the value.
    let quoted = false;
    let from = at + 12;
    for (let index = from; index <= lineEnd; index++) {
      const code = index < lineEnd ? text.charCodeAt(index) : 0x0a;
      if (code === 0x5c && quoted) index++;
      else if (code === 0x22 || code === 0x0a || (!quoted && (code === 0x20 || code === 0x09))) {
        if (code === 0x22) quoted = !quoted;
        if (index > from) copy(from, index);
        from = index + 1;
      }
    }
  }
  // Other shells' assignments, as home-manager writes `home.sessionVariables` for them: fish's
  // `set -gx NAME value` (read as NAME=value: the blank after the name becomes `=` in the copy),
  // and nushell's and PowerShell's `$env.NAME = "value"`, `$env:NAME = "value"`.
  for (const match of matchesOnLines(text, lines, OTHER_SHELL_ASSIGNMENT)) {
    const from = match[1] !== undefined ? match.index + match[0].length - match[2]!.length - match[1].length : match.index + match[0].length - match[3]!.length;
    let lineEnd = text.indexOf('\n', from);
    if (lineEnd === -1) lineEnd = text.length;
    copy(from, lineEnd);
    if (match[1] !== undefined) (view as Buffer)[from + match[1].length] = 0x3d;
  }
  // Only the lines that hold a name the environment rules take.
  for (const match of matchesOnLines(text, lines, QUOTED_ASSIGNMENT)) {
    const quoted = match[1] ?? match[2];
    // A quoted one starts after its quote, `-e`'s after the flag, a Nix one where the match does.
    const from = quoted !== undefined ? match.index + 1 : match[3] !== undefined ? match.index + match[0].length - match[3].length : match.index;
    copy(from, from + (quoted ?? match[3] ?? match[4]!).length);
  }
  if (!view) return;
  const assignments = (view as Buffer).toString('latin1');
  const more: RawHit[] = [];
  const lineStarts = [...new Set(starts)].sort((a, b) => a - b);
  envPasswordRule(assignments, more, lineStarts);
  envTokenRule(assignments, more, lineStarts);
  for (const hit of more) if (!overlapsAny(hits, hit.start, hit.end)) hits.push(hit);
}

/**
 * Whether a value given to a token's name looks like a token: 20 characters or more (the callers'
 * patterns), letters and digits, high entropy, not a path, reference, placeholder or public key.
 */
/**
 * Tokens with dots that would otherwise pass for a dotted reference (`config.sops.secrets.x.path`),
 * the values of a credential's name (`DOPPLER_TOKEN=…`, a bot's `token:`, `smtp_password: SG.…`):
 * Doppler's (`dp.pt.…`, `dp.st.CONFIG.…`), SendGrid's (`SG.` + 22 + `.` + 43), Terraform Cloud's
 * (14 + `.atlasv1.` + 60 to 70), and Discord bot tokens (the bot's user id, 17 to 20 digits, in
 * base64; 6 characters; the HMAC), and Vault's (`hvs.`, `hvb.`, `hvr.`; unquoted, one dot is a reference's too).
 */
export function isDottedVendorToken(value: string): boolean {
  const random = /^(?:dp\.(?:pt|ct|sa|scim|audit|st(?:\.[A-Za-z0-9_-]{1,40})?)\.([A-Za-z0-9]{40,44})|SG\.[A-Za-z0-9_-]{22}\.([A-Za-z0-9_-]{43})|[A-Za-z0-9]{14}\.atlasv1\.([A-Za-z0-9_=-]{60,70})|hv[sbr]\.([A-Za-z0-9_-]{24,300}))$/.exec(value);
  // A short Vault token (a dev server's root token) must hold a digit: `hvs.` may be a variable before a property's name.
  if (random) return !looksLikePlaceholder(random[1] ?? random[2] ?? random[3] ?? random[4]!, 3.5) && (random[4] === undefined || random[4].length >= 40 || /[0-9]/.test(random[4]));
  const discord = /^([MNO][A-Za-z0-9_-]{23,27})\.[A-Za-z0-9_-]{6}\.([A-Za-z0-9_-]{27,38})$/.exec(value);
  if (!discord) return false;
  return /^[1-9]\d{16,19}$/.test(Buffer.from(discord[1]!, 'base64url').toString('latin1')) && !looksLikePlaceholder(discord[2]!, 3.5);
}

export function looksLikeToken(value: string): boolean {
  if (isDottedVendorToken(value)) return true;
  if (!/[A-Za-z]/.test(value) || !/[0-9]/.test(value)) return false;
  // A token is made of these; anything else is a template (`{env:X}`, `<X>`), a hash (`$argon2id$...`) or prose.
  if (!/^[A-Za-z0-9+/=_.:~-]+$/.test(value)) return false;
  // A GnuPG key id or fingerprint (`SIGNING_KEY = "823566455E49DDC6..."`) names a public key.
  if (/^(?:[0-9A-F]{16}|[0-9A-F]{40})$/.test(value)) return false;
  // A GitHub App's or OAuth App's client ID (`Iv1.` and 16 hex, `Iv23li`/`Ov23li` and 14 more) is
  // public: the page that asks a user to authorize the app shows it.
  if (/^(?:Iv1\.[0-9a-f]{16}|[IO]v2\dli[A-Za-z0-9]{14})$/.test(value)) return false;
  if (isTemplateValue(value) || isDescriptivePlaceholder(value) || looksLikePlaceholder(value, 3.5)) return false;
  // Paths, URLs, references (`config.sops.secrets.x.path`) and a Nix cache's public key are not tokens.
  return !(isPathOrUrl(value) || /^[a-z][\w-]*(?:\.[\w-]+){2,}$/i.test(value) || /:[A-Za-z0-9+/]{43}=$/.test(value));
}

/**
 * Service tokens in environment files and Nix `environment` attributes: `*_TOKEN=`, `*_API_KEY=`,
 * `*_SECRET=`, `*_SECRET_KEY=`, `*APIKEY=` with a literal value. A name says little (a token's id,
 * `GITHUB_TOKEN_PATH`, a public key), so the value must look random: 20 characters or more without
 * spaces, letters and digits, high entropy, not a path, reference, placeholder or public key.
 */
function envTokenRule(text: string, hits: RawHit[], lines: readonly number[]): void {
  const pattern =
    /^[ \t]*(?:export[ \t]+)?(?:[A-Za-z][\w.-]*\.)?([A-Z][A-Z0-9_]*(?:TOKEN|_KEY|APIKEY|_SECRET))(?:=(["']?)([^\s"'#;]{20,512})\2|[ \t]*=[ \t]*(["'])([^\s"']{20,512})\4[ \t]*;?)[ \t]*$/gm;
  for (const match of matchesOnLines(text, lines, pattern)) {
    const name = match[1]!;
    const value = match[3] ?? match[5]!;
    // python-social-auth's `SOCIAL_AUTH_<PROVIDER>_KEY` is the OAuth client ID; its `_SECRET` is the secret.
    if (/PUBLIC|PUB_|PUBKEY|_ID_|VERIFY|TRUSTED/.test(name) || /^SOCIAL_AUTH_\w+_KEY$/.test(name) || !looksLikeToken(value)) continue;
    const start = match.index + match[0].lastIndexOf(value);
    const end = start + value.length;
    // Already a finding of a rule that knows its vendor (a `ghp_` token, an `sk-` key).
    if (overlapsAny(hits, start, end)) continue;
    hits.push({ rule: 'env-token', kind: 'service-token', secret: value, start, end, note: `variable ${name}` });
  }
}

/**
 * Tokens, API keys and secrets in the config formats beside Nix, and in Nix itself: YAML
 * (`github_token: …`, `openai_api_key: …`, a decrypted copy of a SOPS file), INI and TOML
 * (`JWT_SECRET = …`, `api_key = "…"`), JSON (`"access_token": "…"`), PHP arrays, and Nix string
 * literals (`apiKey = "…";`), on a line of their own. The name must end in token, API key, secret
 * key or `_secret`; as for environment files, the value must look random (looksLikeToken).
 */
const CONFIG_TOKEN_LINE =
  /^[ \t-]*["']?((?:[A-Za-z_][\w.-]*?)?(?:[Tt]oken|TOKEN|[Aa]pi[_-]?[Kk]ey|API[_-]?KEY|[Ss]ecret[_-]?[Kk]ey|SECRET[_-]?KEY|[_-](?:[Ss]ecret|SECRET)))["']?[ \t]*(?::|=>|=)[ \t]*(?:"([^"\n]{20,512})"|'([^'\n]{20,512})'|([^\s"'#;,]{20,512}))[ \t]*[,;]?[ \t]*(?:#.*)?$/gm;

/** Words that make a token's name the name of something else: its id, file, lifetime, public half. */
const CONFIG_TOKEN_NOT = new Set(['public', 'pub', 'id', 'ids', 'file', 'files', 'path', 'paths', 'name', 'names', 'ref', 'type', 'url', 'uri', 'endpoint', 'hash', 'hashed', 'length', 'len', 'ttl', 'expiry', 'expires', 'expiration', 'lifetime', 'header', 'env', 'var', 'cmd', 'command', 'checksum', 'fingerprint', 'issuer', 'format', 'kind', 'mode', 'enable', 'enabled', 'dir', 'location', 'prefix', 'scope', 'scopes', 'audience', 'method', 'count', 'size', 'max', 'min', 'timeout', 'version', 'field', 'source', 'limit', 'label', 'pattern', 'regex', 'policy', 'required', 'prompt', 'verify', 'trusted']);

/**
 * The same names as JSON keys anywhere on a line: minified JSON, and JSON inside another format
 * (rclone's `token = {"access_token":"ya29…","refresh_token":"1//0…"}`, a cookie jar, a log line).
 */
const CONFIG_TOKEN_JSON = /"((?:[A-Za-z_][\w.-]*?)?(?:[Tt]oken|TOKEN|[Aa]pi[_-]?[Kk]ey|API[_-]?KEY|[Ss]ecret[_-]?[Kk]ey|SECRET[_-]?KEY|[_-](?:[Ss]ecret|SECRET)))"[ \t]*:[ \t]*"([^"\\\n]{20,512})"/g;

/** What every name the patterns take holds (for matchingLines): each spelling of token, API key and secret. */
const CONFIG_TOKEN_NEEDLES = ['oken', 'OKEN', 'ecret', 'ECRET', 'key', 'Key', 'KEY'];

/** The same names as XML elements on one line (`<ApiKey>…</ApiKey>` in a Sonarr or Radarr `config.xml`). */
const CONFIG_TOKEN_XML = /<((?:[A-Za-z_][\w.-]*?)?(?:[Tt]oken|TOKEN|[Aa]pi[_-]?[Kk]ey|API[_-]?KEY|[Ss]ecret[_-]?[Kk]ey|SECRET[_-]?KEY|[_-](?:[Ss]ecret|SECRET)))>([^<>\s]{20,512})<\/\1>/g;

const lower = (code: number): number => code | 0x20;

/**
 * Whether the needle at `at` can end a name CONFIG_TOKEN_LINE, _JSON or _XML takes: `oken` after a
 * `t`, `ecret` after an `s` and then a `key` or a `_`/`-` before it, `key` after `api` (joined by
 * nothing, `_` or `-`), and then a character that may follow a name in one of them (a quote, a
 * space, `:`, `=`, `>`). Most occurrences in a binary's strings or prose (`broken`, `secretly`,
 * `tokens`, `monkey`) are not.
 */
function tokenNameEnds(text: string, at: number, needle: string): boolean {
  let end = at + needle.length;
  const first = lower(needle.charCodeAt(0));
  if (first === 0x6f) {
    if (lower(text.charCodeAt(at - 1)) !== 0x74) return false; // [Tt]oken
  } else if (first === 0x65) {
    if (lower(text.charCodeAt(at - 1)) !== 0x73) return false; // [Ss]ecret
    let key = end;
    const joiner = text.charCodeAt(key);
    if (joiner === 0x5f || joiner === 0x2d) key++;
    if (lower(text.charCodeAt(key)) === 0x6b && lower(text.charCodeAt(key + 1)) === 0x65 && lower(text.charCodeAt(key + 2)) === 0x79) end = key + 3;
    else if (text.charCodeAt(at - 2) !== 0x5f && text.charCodeAt(at - 2) !== 0x2d) return false;
  } else {
    // [Aa]pi[_-]?[Kk]ey, API[_-]?KEY
    const joiner = text.charCodeAt(at - 1);
    const api = joiner === 0x5f || joiner === 0x2d ? at - 4 : at - 3;
    if (lower(text.charCodeAt(api)) !== 0x61 || lower(text.charCodeAt(api + 1)) !== 0x70 || lower(text.charCodeAt(api + 2)) !== 0x69) return false;
  }
  const next = text.charCodeAt(end);
  return next === 0x22 || next === 0x27 || next === 0x20 || next === 0x09 || next === 0x3a || next === 0x3d || next === 0x3e;
}

/** The config-token searches, for the test that `tokenNameEnds` keeps every line a pattern matches on. */
export const CONFIG_TOKEN_SEARCH = { patterns: [CONFIG_TOKEN_LINE, CONFIG_TOKEN_JSON, CONFIG_TOKEN_XML], needles: CONFIG_TOKEN_NEEDLES, candidate: tokenNameEnds };

function configTokenRule(text: string, hits: RawHit[]): void {
  // The lines a name ends on, found once for the three forms.
  const lines = needleLines(text, CONFIG_TOKEN_NEEDLES, tokenNameEnds);
  for (const match of matchesOnLines(text, lines, CONFIG_TOKEN_LINE)) {
    const value = match[2] ?? match[3] ?? match[4]!;
    // Unquoted: an expression before `;` (Nix), or a dotted name (`var.r2_secret_key` in Terraform).
    if (match[4] !== undefined && (/;[ \t]*(?:#.*)?$/.test(match[0]) || (/^[A-Za-z_][\w-]*(?:\.[\w-]+)+$/.test(value) && !isDottedVendorToken(value)))) continue;
    configToken(match, match[1]!, value, hits);
  }
  if (lines.length > 0 && text.includes('":')) {
    for (const match of matchesOnLines(text, lines, CONFIG_TOKEN_JSON)) configToken(match, match[1]!, match[2]!, hits);
  }
  if (lines.length > 0 && text.includes('</')) {
    for (const match of matchesOnLines(text, lines, CONFIG_TOKEN_XML)) configToken(match, match[1]!, match[2]!, hits);
  }
  if (text.includes('uthorization')) authorizationHeaderRule(text, hits);
}

/**
 * An HTTP Authorization header with its credentials written out: `curl -H "Authorization: Bearer …"`,
 * a Home Assistant `rest` sensor's headers, a Prometheus scrape config. `Bearer` and `Token` take a
 * token (looksLikeToken), `Basic` base64 of `user:password`.
 */
const AUTHORIZATION_HEADER = /[Aa]uthorization["']?[ \t]*:[ \t]*["']?(Bearer|bearer|BEARER|Token|token|Basic|basic)[ \t]+([A-Za-z0-9._~+/-]+=*)/g;

function authorizationHeaderRule(text: string, hits: RawHit[]): void {
  for (const match of matchingLines(text, AUTHORIZATION_HEADER, ['uthorization'])) {
    const scheme = match[1]!.toLowerCase();
    const value = match[2]!;
    let secret = value;
    if (scheme === 'basic') {
      const decoded = Buffer.from(value, 'base64').toString('latin1');
      const colon = decoded.indexOf(':');
      if (value.length < 8 || colon < 1 || !/^[\x20-\x7e]+$/.test(decoded)) continue;
      secret = decoded.slice(colon + 1);
      if (secret.length < 6 || isTemplateValue(secret) || isDescriptivePlaceholder(secret) || looksLikePlaceholder(secret, 2)) continue;
    } else if (value.length < 20 || !looksLikeToken(value)) {
      continue;
    }
    const start = match.index + match[0].lastIndexOf(value);
    const end = start + value.length;
    if (overlapsAny(hits, start, end)) continue;
    hits.push({ rule: 'authorization-header', kind: 'service-token', secret, start, end, note: `${match[1]} credentials in an Authorization header` });
  }
}

function configToken(match: RegExpExecArray, name: string, value: string, hits: RawHit[]): void {
  if (nameWords(name).some((word) => CONFIG_TOKEN_NOT.has(word))) return;
  // An SRI hash, an environment variable's name (`token: GITHUB_TOKEN_2`) and words joined by
  // dashes (`client-secret-name-2`) are not tokens.
  if (/^sha(?:1|256|384|512)-/.test(value) || /^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$/.test(value) || /^(?:[A-Za-z]+[-_]){2,}[A-Za-z0-9]+$/.test(value)) return;
  // systemd-networkd's IPv6 `Token=` (`prefixstable:2002:da8:1::`, `static:::1a:2b`) is an address.
  if (/::|^(?:eui64|static|prefixstable)(?::|$)|^(?:[0-9A-Fa-f]{1,4}:){3,}/.test(value)) return;
  if (!looksLikeToken(value)) return;
  const start = match.index + match[0].lastIndexOf(value);
  const end = start + value.length;
  // Already a finding of a rule that knows its vendor, of the environment-file rules, or of the line form.
  if (overlapsAny(hits, start, end)) return;
  hits.push({ rule: 'config-token', kind: 'service-token', secret: value, start, end, note: `key ${name}` });
}

/** `.netrc` entries: `machine HOST login USER password SECRET` (on one line or several). */
function netrcRule(text: string, hits: RawHit[]): void {
  const pattern = /(?:^|\s)machine\s+(\S+)(?:\s+(?:login|account|port)\s+\S+)*\s+password\s+(\S+)/g;
  for (let match = pattern.exec(text); match; match = pattern.exec(text)) {
    const value = match[2]!;
    if (isTemplateValue(value) || isDescriptivePlaceholder(value) || looksLikePlaceholder(value, 1.5) || value.length < 4) continue;
    const start = match.index + match[0].lastIndexOf(value);
    hits.push({ rule: 'netrc-password', kind: 'netrc-password', secret: value, start, end: start + value.length, note: `machine ${match[1]}` });
  }
}

/** Docker `config.json` auths: `"auth": "<base64 of user:secret>"` (and `identitytoken`). */
function dockerAuthRule(text: string, hits: RawHit[]): void {
  const pattern = /"auth"\s*:\s*"([A-Za-z0-9+/]{8,}={0,2})"/g;
  for (let match = pattern.exec(text); match; match = pattern.exec(text)) {
    const decoded = Buffer.from(match[1]!, 'base64').toString('latin1');
    const colon = decoded.indexOf(':');
    if (colon < 1 || !/^[\x20-\x7e]+$/.test(decoded)) continue;
    const secret = decoded.slice(colon + 1);
    if (secret.length < 4 || isTemplateValue(secret) || isDescriptivePlaceholder(secret) || looksLikePlaceholder(secret, 1.5)) continue;
    const start = match.index + match[0].indexOf(match[1]!);
    hits.push({ rule: 'docker-registry-auth', kind: 'registry-credentials', secret, start, end: start + match[1]!.length, note: `registry login for ${decoded.slice(0, colon)}` });
  }
}

/**
 * A Cloudflare tunnel's credentials file (`cloudflared tunnel create` writes `<id>.json`):
 * `"TunnelSecret": "<base64 of 32 bytes or more>"` beside the account tag and tunnel id.
 */
function cloudflareTunnelRule(text: string, hits: RawHit[]): void {
  const pattern = /"TunnelSecret"\s*:\s*"([A-Za-z0-9+/]{40,}={0,2})"/g;
  for (let match = pattern.exec(text); match; match = pattern.exec(text)) {
    const value = match[1]!;
    if (Buffer.from(value, 'base64').length < 32 || looksLikePlaceholder(value, 3.5)) continue;
    const start = match.index + match[0].lastIndexOf(value);
    hits.push({ rule: 'cloudflare-tunnel-secret', kind: 'cloudflare-tunnel-credentials', secret: value, start, end: start + value.length });
  }
}

/** A tunnel token (`cloudflared tunnel run --token …`): base64 of `{"a": account, "t": tunnel id, "s": secret}`. */
function cloudflareTunnelToken(token: string): boolean {
  try {
    const fields = JSON.parse(Buffer.from(token, 'base64').toString('utf8')) as Record<string, unknown>;
    return typeof fields.a === 'string' && typeof fields.t === 'string' && typeof fields.s === 'string' && Buffer.from(fields.s, 'base64').length >= 32;
  } catch {
    return false;
  }
}

/** The rules of this file, each run only when its family's literal occurs in `text` (see literals.ts). */
/**
 * A DNS TSIG key's shared secret: BIND's `key "name" { algorithm hmac-sha256; secret "…"; };`
 * (`services.bind` puts named.conf into the store), Knot's and NSD's `secret: …` beside
 * `algorithm: hmac-…`. Whoever holds it can update the zone (RFC 2136: ACME DNS-01, dynamic DNS).
 */
const TSIG_SECRET = /\bsecret\b[ \t]*[:=]?[ \t]*["']?([A-Za-z0-9+/]{16,}={0,2})["']?/g;

function tsigSecretRule(text: string, hits: RawHit[]): void {
  for (const match of text.matchAll(TSIG_SECRET)) {
    // The same key block: `hmac-` within a few lines either side.
    const near = text.slice(Math.max(0, match.index - 300), match.index + match[0].length + 300);
    if (!/\bhmac-(?:md5|sha1|sha224|sha256|sha384|sha512)\b/i.test(near)) continue;
    const value = match[1]!;
    if (Buffer.from(value, 'base64').length < 16 || looksLikePlaceholder(value, 3.5)) continue;
    const start = match.index + match[0].lastIndexOf(value);
    if (overlapsAny(hits, start, start + value.length)) continue;
    hits.push({ rule: 'tsig-secret', kind: 'service-token', secret: value, start, end: start + value.length, note: 'a DNS TSIG key (whoever holds it can update the zone)' });
  }
}

export function serviceRules(text: string, hits: RawHit[], families: number): void {
  const providers = families & (L.PROVIDER_UNDERSCORE | L.PROVIDER_DASH | L.SK) ? L.sweptFor(text).providers : 0;
  for (const rule of SERVICE_RULES) {
    if ((families & rule.family) === 0 || (rule.provider !== undefined && (providers & rule.provider) === 0)) continue;
    rule.pattern.lastIndex = 0;
    for (let match = rule.pattern.exec(text); match; match = rule.pattern.exec(text)) {
      const secret = rule.group ? match[rule.group]! : match[0];
      if (!rule.valid(secret)) continue;
      const start = rule.group ? match.index + match[0].lastIndexOf(secret) : match.index;
      hits.push({ rule: rule.rule, kind: rule.kind, secret, start, end: start + secret.length, ...(rule.note ? { note: rule.note } : {}) });
    }
  }
  if (families & L.JWT) jwtRule(text, hits);
  if (families & L.PSK) {
    wifiPskRule(text, hits);
    if (text.includes('PSK')) ipsecPskRule(text, hits);
  }
  if (families & L.ENV_PASSWORD) {
    // The lines holding a name the environment rules take (every name of theirs holds one of these), found once for the three.
    const lines = needleLines(text, ENV_NAME_NEEDLES);
    envPasswordRule(text, hits, lines);
    envTokenRule(text, hits, lines);
    embeddedAssignmentRules(text, hits, lines);
  }
  // A .netrc entry needs `password` (so the PASSWORD family) and `machine`.
  if (families & L.PASSWORD && text.includes('achine ')) netrcRule(text, hits);
  if (families & L.DOCKER_AUTH) {
    dockerAuthRule(text, hits);
    if (text.includes('"TunnelSecret"')) cloudflareTunnelRule(text, hits);
  }
  if (families & L.CONFIG_TOKEN && L.sweptFor(text).hmac) tsigSecretRule(text, hits);
  // Last: a value another rule reported (a vendor's token, a Docker auth) is not reported again.
  if (families & L.CONFIG_TOKEN) configTokenRule(text, hits);
}
