/**
 * Which rule families a text can trigger, found in one cheap sweep. Every rule needs a literal (a
 * token prefix, an option name, `://`); most texts hold none, and those that do hold few. A regex
 * alternation of all the literals runs at a few hundred MB/s, because its alternatives start on
 * common letters, and one `includes` per literal is thirty passes. Instead each literal is anchored
 * on a character that is rare in configuration text (`_`, `-`, `:`, `A`, `k`, `K`, `w`, `J`), the
 * text is swept for those eight characters with `indexOf` (a vectorized search), and each
 * occurrence is checked against the few literals around it. The result is a bit mask of families.
 *
 * The mask is a superset: a family's bit is set whenever its rule's pattern could match (the
 * pattern needs the literal), never the reverse. test/core/scan/rules/literals.test.ts holds the
 * old literal guards as the oracle.
 */

export const AGE = 1 << 0;
export const ARMOR = 1 << 1;
export const PUTTY = 1 << 2;
export const GITHUB = 1 << 3;
export const HUGGINGFACE = 1 << 4;
/** `sk-`: OpenAI, OpenRouter (`sk-or-`), Anthropic (`sk-ant-`). */
export const SK = 1 << 5;
export const TAILSCALE = 1 << 6;
export const SLACK = 1 << 7;
/** `secret_access_key` in any case, with or without underscores. */
export const AWS_SECRET = 1 << 8;
export const NIX_ACCESS_TOKENS = 1 << 9;
/** `AKIA` / `ASIA` key ids. */
export const AWS_KEY_ID = 1 << 10;
export const URL = 1 << 11;
/** `name:` followed by 86 base64 characters and `==`. */
export const NIX_CACHE_KEY = 1 << 12;
/** `private key` in any case, joined by nothing, `_` or `-`. */
export const PRIVATE_KEY = 1 << 13;
/**
 * `assword` (also what a `.netrc` entry needs), `assphrase`, `pass` after `-` or `_`
 * (`restic-passphrase`, `luks_pass`: a store file's name), `:{PLAIN}`/`:{CLEARTEXT}` (htpasswd), and
 * `-requirepass` (`redis-server --requirepass`).
 */
export const PASSWORD = 1 << 14;
export const NPM = 1 << 15;
export const PYPI = 1 << 16;
export const GOOGLE = 1 << 17;
export const TELEGRAM = 1 << 18;
export const JWT = 1 << 19;
/** `"auth":` (Docker `config.json`) and `"TunnelSecret":` (a Cloudflare tunnel's credentials file). */
export const DOCKER_AUTH = 1 << 20;
export const AZURE = 1 << 21;
/** `psk` (Wi-Fi) and `PSK` (IPsec). */
export const PSK = 1 << 22;
export const PRESHARED = 1 << 23;
/**
 * Environment-file names: `PASSWORD`, `PASSPHRASE`, `_PASS`, `ACCOUNT_KEY`, and the token names
 * `TOKEN`, `_KEY`, `APIKEY`, `_SECRET`.
 */
export const ENV_PASSWORD = 1 << 24;
export const GITLAB = 1 << 25;
/**
 * `gsk_` (Groq), `r8_` (Replicate), `sk_live_`/`rk_live_` (Stripe), `glsa_`/`glc_` (Grafana), `do?_v1_`
 * (DigitalOcean), `ops_` (1Password), `rubygems_`, `dckr_` (Docker Hub), `syt_` (Matrix), `lsv2_`
 * (LangSmith), `fo1_` (Fly.io); and the prefixes with a PROVIDER bit of their own (below).
 */
export const PROVIDER_UNDERSCORE = 1 << 26;
/** `pplx-` (Perplexity), `xai-` (xAI), `nvapi-` (NVIDIA); and the prefixes with a PROVIDER bit of their own (below). */
export const PROVIDER_DASH = 1 << 27;
/** `K10<hash>::server:` / `::node:` (k3s join tokens). */
export const K3S = 1 << 28;
/** `privkey:` / `nlpriv:` (Tailscale node and tailnet-lock private keys). */
export const TAILSCALE_PRIVATE = 1 << 29;
/** `"kty"`: a JSON Web Key, whose private part (`d`, or `k` for a symmetric one) may be there. */
export const JWK = 1 << 30;
/**
 * A configuration key named for a token, an API key or a secret: `[Tt]oken`/`TOKEN`,
 * `[Aa]pi[_-]?[Kk]ey`/`API[_-]?KEY`, `[Ss]ecret[_-]?[Kk]ey`/`SECRET[_-]?KEY`, `[_-][Ss]ecret`/`[_-]SECRET`,
 * and an HTTP `[Aa]uthorization` header (`["']?[ \t]*:` after it); also a flag's `-api`, `-auth`,
 * `-master`, `-encryption` (`--authkey`, `--master-key`: cli-flags.ts), `hmac-` (a DNS TSIG key's
 * algorithm, beside its secret), and `redis-cli`/`valkey-cli` (whose `-a` takes the password). The
 * sign bit: the mask is a 32-bit integer.
 */
export const CONFIG_TOKEN = 1 << 31;

/**
 * Vendor prefixes that share a family (PROVIDER_UNDERSCORE, PROVIDER_DASH) but each have a bit of
 * their own in `swept.providers`, so that a text holding one prefix runs that vendor's pattern only.
 */
export const PROVIDER = {
  shopify: 1 << 0, // shpat_, shpca_, shppa_, shpss_
  linear: 1 << 1, // lin_api_
  sentry: 1 << 2, // sntryu_, sntrys_
  planetscale: 1 << 3, // pscale_
  notion: 1 << 4, // ntn_
  sourcegraph: 1 << 5, // sgp_
  supabase: 1 << 6, // sbp_, sb_secret_
  googleOauth: 1 << 7, // GOCSPX-
  postman: 1 << 8, // PMAK-
  pulumi: 1 << 9, // pul-
  heroku: 1 << 10, // HRKU-
  tavily: 1 << 11, // tvly-
  brevo: 1 << 12, // xkeysib-
  infracost: 1 << 13, // ico-
  artifactory: 1 << 14, // AKCp
  langfuse: 1 << 15, // sk-lf-
  cerebras: 1 << 16, // csk-
} as const;

const lower = (code: number): number => code | 0x20;

/** Whether `text` holds `word` (lowercase letters) at `at`, in any case. */
function wordAt(text: string, at: number, word: string): boolean {
  if (at < 0 || at + word.length > text.length) return false;
  for (let index = 0; index < word.length; index++) if (lower(text.charCodeAt(at + index)) !== word.charCodeAt(index)) return false;
  return true;
}

/** Where a word ending at `end` starts when the word before it may be joined by nothing, `_` or `-`. */
function joined(text: string, end: number): number {
  const code = text.charCodeAt(end - 1);
  return code === 0x5f || code === 0x2d ? end - 1 : end;
}

const GITLAB_PREFIXES = ['glpat', 'gldt', 'glrt', 'glptt', 'glft', 'glcbt', 'glsoat', 'glagent'];

function atUnderscore(text: string, at: number): number {
  let mask = 0;
  if (text.charCodeAt(at + 1) === 0x53 && text.startsWith('SECRET', at + 1)) mask |= ENV_PASSWORD | CONFIG_TOKEN; // _SECRET
  else if (secretAfter(text, at)) mask |= CONFIG_TOKEN; // _secret, _Secret
  else if (text.startsWith('pass', at + 1)) mask |= PASSWORD; // _pass
  const b1 = text.charCodeAt(at - 1);
  const b2 = text.charCodeAt(at - 2);
  const b3 = text.charCodeAt(at - 3);
  // gh[pousr]_
  if (b3 === 0x67 && b2 === 0x68 && (b1 === 0x70 || b1 === 0x6f || b1 === 0x75 || b1 === 0x73 || b1 === 0x72)) mask |= GITHUB;
  else if (b1 === 0x62 && text.startsWith('github', at - 6)) mask |= GITHUB; // github_pat_
  if (b2 === 0x68 && b1 === 0x66) mask |= HUGGINGFACE; // hf_
  if (b3 === 0x6e && b2 === 0x70 && b1 === 0x6d) mask |= NPM; // npm_
  if (
    (b3 === 0x67 && b2 === 0x73 && b1 === 0x6b) || // gsk_
    (b2 === 0x72 && b1 === 0x38) || // r8_
    (b1 === 0x6b && (b2 === 0x73 || b2 === 0x72) && text.startsWith('live_', at + 1)) || // sk_live_, rk_live_
    (b1 === 0x61 && text.startsWith('gls', at - 4)) || // glsa_
    (b3 === 0x67 && b2 === 0x6c && b1 === 0x63) || // glc_
    (b3 === 0x6f && b2 === 0x70 && b1 === 0x73) || // ops_
    (b3 === 0x64 && b2 === 0x6f && (b1 === 0x6f || b1 === 0x70 || b1 === 0x72) && text.startsWith('v1_', at + 1)) || // dop_v1_
    (b1 === 0x73 && text.startsWith('rubygems', at - 8)) || // rubygems_
    (b1 === 0x72 && text.startsWith('dckr', at - 4)) || // dckr_pat_, dckr_oat_
    (b3 === 0x73 && b2 === 0x79 && b1 === 0x74) || // syt_
    (b1 === 0x32 && text.startsWith('lsv2', at - 4)) || // lsv2_
    (b3 === 0x66 && b2 === 0x6f && b1 === 0x31) // fo1_
  ) {
    mask |= PROVIDER_UNDERSCORE;
  }
  const provider = underscoreProvider(text, at, b1, b2, b3);
  if (provider !== 0) mask |= provided(provider, PROVIDER_UNDERSCORE);
  return mask;
}

/** The PROVIDER bit of the prefix ending at the `_` at `at` (b1-b3: the three characters before it). */
function underscoreProvider(text: string, at: number, b1: number, b2: number, b3: number): number {
  if (b3 === 0x70 && text.startsWith('sh', at - 5)) return PROVIDER.shopify; // shp??_
  if (b3 === 0x6c && b2 === 0x69 && b1 === 0x6e && text.startsWith('api_', at + 1)) return PROVIDER.linear; // lin_api_
  if (b2 === 0x79 && b3 === 0x72 && text.startsWith('snt', at - 6)) return PROVIDER.sentry; // sntry?_
  if (b1 === 0x65 && b2 === 0x6c && text.startsWith('psca', at - 6)) return PROVIDER.planetscale; // pscale_
  if (b3 === 0x6e && b2 === 0x74 && b1 === 0x6e) return PROVIDER.notion; // ntn_
  if (b3 === 0x73 && b2 === 0x67 && b1 === 0x70) return PROVIDER.sourcegraph; // sgp_
  if ((b3 === 0x73 && b2 === 0x62 && b1 === 0x70) || (b2 === 0x73 && b1 === 0x62 && text.startsWith('secret_', at + 1))) return PROVIDER.supabase; // sbp_, sb_secret_
  return 0;
}

/** `[Ss]ecret` or `SECRET` right after the `_` or `-` at `at`. */
function secretAfter(text: string, at: number): boolean {
  const first = text.charCodeAt(at + 1);
  if (first === 0x53) return text.startsWith('ecret', at + 2) || text.startsWith('ECRET', at + 2);
  return first === 0x73 && text.startsWith('ecret', at + 2);
}

/**
 * What the last sweep saw beyond its mask, which has no bit to spare, for the rules that would
 * otherwise search the whole text again (valid while `swept.text` is the text they read):
 * - `credentialDashes`: where a `-` comes before `pass`, `token`, `secret`, `api`, `auth`, `master`,
 *   `encryption` or `requirepass`, or before `u` or `user` and a blank, `=` or a quote (curl's `-u
 *   user:password`, also as a list's `"-u", "…"`), or before `a` and a blank or a quote (redis-cli's `-a password`),
 *   where a command-line flag can name a credential (`--password=…`; cli-flags.ts);
 * - `plainScheme`: `:{PLAIN}` or `:{CLEARTEXT}` occurs (an htpasswd line);
 * - `hmac`: `hmac-` occurs (a DNS TSIG key's algorithm);
 * - `providers`: the PROVIDER bits of the vendor prefixes that occur.
 */
export const swept: { text: string | undefined; credentialDashes: number[]; plainScheme: boolean; hmac: boolean; providers: number } = {
  text: undefined,
  credentialDashes: [],
  plainScheme: false,
  hmac: false,
  providers: 0,
};

/** The sweep's notes for `text`: the last sweep's when it read `text` (as scanText's did), else a sweep's of it now. */
export function sweptFor(text: string): typeof swept {
  if (swept.text !== text) ruleLiterals(text);
  return swept;
}

/** Notes a PROVIDER bit the sweep saw; returns `family`, the one its rule runs under. */
function provided(provider: number, family: number): number {
  swept.providers |= provider;
  return family;
}

function atDash(text: string, at: number): number {
  const b1 = text.charCodeAt(at - 1);
  let mask = 0;
  // The family a credential word after the dash sets: a flag's word that is no family's literal
  // (`-token`, `-auth`, `-master`) sets CONFIG_TOKEN, whose rules run on a superset anyway, so that
  // the literal rules run for the flag.
  let word = 0;
  switch (text.charCodeAt(at + 1)) {
    case 0x73: // s
      if (secretAfter(text, at)) word = CONFIG_TOKEN;
      break;
    case 0x70: // p
      if (text.startsWith('pass', at + 1)) word = PASSWORD;
      break;
    case 0x74: // t
      if (text.startsWith('token', at + 1)) word = CONFIG_TOKEN;
      break;
    case 0x61: // a
      if (text.startsWith('api', at + 1) || text.startsWith('auth', at + 1)) word = CONFIG_TOKEN;
      // redis-cli's `-a PASSWORD`: the place only, like `-u` (`ls -a`, `cp -a` are everywhere); `redis-cli` sets the family.
      else if (text.charCodeAt(at + 2) === 0x20 || text.charCodeAt(at + 2) === 0x22 || text.charCodeAt(at + 2) === 0x27) swept.credentialDashes.push(at);
      break;
    case 0x6d: // m
      if (text.startsWith('master', at + 1)) word = CONFIG_TOKEN;
      break;
    case 0x72: // r
      if (text.startsWith('requirepass', at + 1)) word = PASSWORD;
      break;
    case 0x75: {
      // u: curl's `-u user:password`, `--user user:password`. The place only: a `-u` sets no family
      // (`sudo -u`, `docker run -u` are everywhere); a curl line holds a URL, whose family runs the rules.
      const after = text.charCodeAt(text.startsWith('user', at + 1) ? at + 5 : at + 2);
      if (after === 0x20 || after === 0x3d || after === 0x22 || after === 0x27) swept.credentialDashes.push(at);
      break;
    }
    case 0x65: // e
      if (text.startsWith('encryption', at + 1)) word = CONFIG_TOKEN;
      break;
    case 0x53: // S
      if (secretAfter(text, at)) mask = CONFIG_TOKEN;
      break;
    default:
  }
  if (word !== 0) {
    mask = word;
    swept.credentialDashes.push(at);
  }
  switch (b1) {
    case 0x45: // E
      if (text.startsWith('AGE', at - 3)) mask |= AGE;
      break;
    case 0x2d: // -
      if (text.startsWith('-----BEGIN ', at - 1) || text.startsWith('---- BEGIN SSH2 ', at - 3)) mask |= ARMOR;
      break;
    case 0x59: // Y
      if (text.startsWith('PuTTY', at - 5)) mask |= PUTTY;
      break;
    case 0x6b: // k
      if (text.charCodeAt(at - 2) === 0x73) mask |= SK;
      break;
    case 0x79: // y
      if (text.startsWith('tskey', at - 5)) mask |= TAILSCALE;
      break;
    case 0x69: // i
      if (text.startsWith('pypi', at - 4)) mask |= PYPI;
      else if (text.startsWith('xai', at - 3) || text.startsWith('nvapi', at - 5)) mask |= PROVIDER_DASH;
      break;
    case 0x78: // x
      if (text.startsWith('pplx', at - 4)) mask |= PROVIDER_DASH;
      break;
    case 0x74: // t: every GitLab prefix ends in it
      for (const prefix of GITLAB_PREFIXES) {
        if (text.startsWith(prefix, at - prefix.length)) {
          mask |= GITLAB;
          break;
        }
      }
      break;
    case 0x73: // s
      if (text.startsWith('access', at - 6) && text.startsWith('tokens', at + 1)) mask |= NIX_ACCESS_TOKENS;
      break;
    case 0x63: // c: `hmac-`, a DNS TSIG key's algorithm, whose `secret` is the key
      if (text.startsWith('hmac', at - 4)) {
        mask |= CONFIG_TOKEN;
        swept.hmac = true;
      }
      break;
    default:
  }
  // xox[abposr]-
  if ((b1 === 0x61 || b1 === 0x62 || b1 === 0x70 || b1 === 0x6f || b1 === 0x73 || b1 === 0x72) && text.startsWith('xox', at - 4)) mask |= SLACK;
  if (DASH_PREFIX_END[b1] === 1) mask |= atDashPrefix(text, at, b1);
  return mask;
}

/** The last characters of the prefixes atDashPrefix reads (a table: atDash runs at every `-`, and must stay small enough to inline). */
const DASH_PREFIX_END = new Uint8Array(256);
for (const char of 'XKlUboysk') DASH_PREFIX_END[char.charCodeAt(0)] = 1;

/**
 * The vendor prefixes with a PROVIDER bit that end at the `-` at `at` (`b1`: the character before
 * it), and `redis-cli`/`valkey-cli`, whose `-a` takes the password (CONFIG_TOKEN, as `-token` sets).
 * Kept out of atDash: with these in its switch it grew past what V8 inlines, and the image scan took
 * a seventh longer.
 */
function atDashPrefix(text: string, at: number, b1: number): number {
  const b2 = text.charCodeAt(at - 2);
  switch (b1) {
    case 0x58: // X
      return b2 === 0x50 && text.startsWith('GOCS', at - 6) ? provided(PROVIDER.googleOauth, PROVIDER_DASH) : 0;
    case 0x4b: // K
      return b2 === 0x41 && text.startsWith('PM', at - 4) ? provided(PROVIDER.postman, PROVIDER_DASH) : 0;
    case 0x6c: // l
      return b2 === 0x75 && text.charCodeAt(at - 3) === 0x70 ? provided(PROVIDER.pulumi, PROVIDER_DASH) : 0; // pul-
    case 0x55: // U
      return b2 === 0x4b && text.startsWith('HR', at - 4) ? provided(PROVIDER.heroku, PROVIDER_DASH) : 0;
    case 0x62: // b
      return b2 === 0x69 && text.startsWith('xkeys', at - 7) ? provided(PROVIDER.brevo, PROVIDER_DASH) : 0;
    case 0x6f: // o
      return b2 === 0x63 && text.charCodeAt(at - 3) === 0x69 ? provided(PROVIDER.infracost, PROVIDER_DASH) : 0; // ico-
    case 0x79: // y
      if (b2 === 0x6c && text.startsWith('tv', at - 4)) return provided(PROVIDER.tavily, PROVIDER_DASH); // tvly-
      return text.charCodeAt(at + 1) === 0x63 && text.startsWith('cli', at + 1) && text.startsWith('valkey', at - 6) ? CONFIG_TOKEN : 0;
    case 0x73: // s
      return text.charCodeAt(at + 1) === 0x63 && text.startsWith('cli', at + 1) && text.startsWith('redis', at - 5) ? CONFIG_TOKEN : 0;
    case 0x6b: {
      // k: csk-, sk-lf- (both `sk-`, the SK family's literal)
      if (b2 !== 0x73) return 0;
      let mask = 0;
      if (text.charCodeAt(at - 3) === 0x63) mask |= provided(PROVIDER.cerebras, SK);
      if (text.charCodeAt(at + 1) === 0x6c && text.charCodeAt(at + 2) === 0x66 && text.charCodeAt(at + 3) === 0x2d) mask |= provided(PROVIDER.langfuse, SK);
      return mask;
    }
    default:
      return 0;
  }
}

/** What `\s` matches in a latin1 view (the rules' patterns allow it where this is asked). */
export function isRegexSpace(code: number): boolean {
  return code === 0x20 || (code >= 0x09 && code <= 0x0d) || code === 0xa0;
}

/** `[Aa]uthorization["']?[ \t]*` right before the `:` at `at`. */
function authorizationBefore(text: string, at: number): boolean {
  let end = at;
  while (end > 0 && (text.charCodeAt(end - 1) === 0x20 || text.charCodeAt(end - 1) === 0x09)) end--;
  if (text.charCodeAt(end - 1) === 0x22 || text.charCodeAt(end - 1) === 0x27) end--;
  return text.charCodeAt(end - 1) === 0x6e && text.startsWith('uthorization', end - 12) && (text.charCodeAt(end - 13) | 0x20) === 0x61;
}

function atColon(text: string, at: number): number {
  let mask = 0;
  const next = text.charCodeAt(at + 1);
  if (next === 0x2f && text.charCodeAt(at + 2) === 0x2f) mask |= URL;
  else if (next === 0x41 && text.charCodeAt(at + 2) === 0x41) mask |= TELEGRAM;
  // `user:{PLAIN}…` (an htpasswd file from nginx's basicAuth, a Dovecot passwd-file): a password as it is.
  else if (next === 0x7b && (text.startsWith('{PLAIN}', at + 1) || text.startsWith('{CLEARTEXT}', at + 1))) {
    mask |= PASSWORD;
    swept.plainScheme = true;
  }
  if (text.charCodeAt(at + 87) === 0x3d && text.charCodeAt(at + 88) === 0x3d) mask |= NIX_CACHE_KEY;
  if (next === 0x3a && at >= 67 && text.startsWith('K10', at - 67)) mask |= K3S;
  if (text.startsWith('privkey', at - 7) || text.startsWith('nlpriv', at - 6)) mask |= TAILSCALE_PRIVATE;
  if (authorizationBefore(text, at)) mask |= CONFIG_TOKEN;
  // "auth" : (the docker rule's pattern allows whitespace before the colon)
  let end = at;
  while (end > 0 && isRegexSpace(text.charCodeAt(end - 1))) end--;
  if (text.charCodeAt(end - 1) === 0x22 && (text.startsWith('"auth"', end - 6) || text.startsWith('"TunnelSecret"', end - 14))) mask |= DOCKER_AUTH;
  return mask;
}

function atCapitalA(text: string, at: number): number {
  const next = text.charCodeAt(at + 1);
  switch (next) {
    case 0x4b: // K
      if (text.startsWith('AKIA', at)) return AWS_KEY_ID;
      return text.charCodeAt(at + 2) === 0x43 && text.charCodeAt(at + 3) === 0x70 ? provided(PROVIDER.artifactory, PROVIDER_DASH) : 0; // AKCp
    case 0x53: // S
      if (text.startsWith('ASIA', at)) return AWS_KEY_ID;
      if (text.startsWith('ASSWORD', at) || text.startsWith('ASSPHRASE', at) || text.startsWith('ASSWD', at)) return ENV_PASSWORD;
      return text.startsWith('_PASS', at - 2) ? ENV_PASSWORD : 0;
    case 0x49: // I
      return text.startsWith('AIza', at) ? GOOGLE : 0;
    case 0x43: // C
      return text.startsWith('ACCOUNT_KEY', at) ? ENV_PASSWORD : 0;
    default:
      return 0;
  }
}

/** At a `k` or `K`: `key` in any case after `private` or `secret_access` (each joined any way), `psk`, `"kty"`, and the two `…Key` names. */
function atK(text: string, at: number): number {
  let mask = 0;
  if (text.charCodeAt(at) === 0x4b && text.charCodeAt(at - 1) === 0x53 && text.charCodeAt(at - 2) === 0x50) mask |= PSK; // PSK (ipsec.secrets)
  if (text.charCodeAt(at) === 0x6b) {
    if (text.charCodeAt(at - 1) === 0x73 && text.charCodeAt(at - 2) === 0x70) mask |= PSK;
    else if (text.charCodeAt(at - 1) === 0x22 && text.startsWith('kty"', at)) mask |= JWK;
  }
  mask |= configTokenAt(text, at);
  if (lower(text.charCodeAt(at + 1)) !== 0x65 || lower(text.charCodeAt(at + 2)) !== 0x79) return mask;
  const end = joined(text, at);
  if (wordAt(text, end - 7, 'private')) mask |= PRIVATE_KEY;
  if (wordAt(text, end - 6, 'access') && wordAt(text, joined(text, end - 6) - 6, 'secret')) mask |= AWS_SECRET;
  if (text.charCodeAt(at) === 0x4b) {
    if (text.startsWith('Account', at - 7)) mask |= AZURE;
    else if (text.startsWith('reshared', at - 8)) mask |= PRESHARED;
  }
  return mask;
}

/** At a `k` or `K`: the CONFIG_TOKEN names `[Tt]oken`, `TOKEN`, and `key`/`KEY` after `api`/`secret` (see there). */
function configTokenAt(text: string, at: number): number {
  const code = text.charCodeAt(at);
  if (code === 0x6b) {
    // [Tt]o|ken
    if (text.charCodeAt(at - 1) === 0x6f && (text.charCodeAt(at - 2) | 0x20) === 0x74 && text.startsWith('en', at + 1)) return CONFIG_TOKEN;
    if (!text.startsWith('ey', at + 1)) return 0;
  } else if (text.startsWith('OKEN', at - 1) && text.charCodeAt(at - 2) === 0x54) {
    return CONFIG_TOKEN; // TO|KEN
  } else if (text.startsWith('EY', at + 1)) {
    // API[_-]?KEY, SECRET[_-]?KEY
    const end = joined(text, at);
    return text.startsWith('API', end - 3) || text.startsWith('SECRET', end - 6) ? CONFIG_TOKEN : 0;
  } else if (!text.startsWith('ey', at + 1)) {
    return 0;
  }
  // [Aa]pi[_-]?[Kk]ey, [Ss]ecret[_-]?[Kk]ey
  const end = joined(text, at);
  if (text.startsWith('pi', end - 2) && (text.charCodeAt(end - 3) | 0x20) === 0x61) return CONFIG_TOKEN;
  return text.startsWith('ecret', end - 5) && (text.charCodeAt(end - 6) | 0x20) === 0x73 ? CONFIG_TOKEN : 0;
}

/** At a `K`: the environment-file token names `TOKEN`, `_KEY` and `APIKEY`. */
function atEnvK(text: string, at: number): number {
  const before = text.charCodeAt(at - 1);
  if (before === 0x4f) return text.startsWith('TOKEN', at - 2) ? ENV_PASSWORD : 0; // TO|KEN
  if (before === 0x5f) return text.startsWith('KEY', at) ? ENV_PASSWORD : 0; // _|KEY
  return before === 0x49 && text.startsWith('APIKEY', at - 3) ? ENV_PASSWORD : 0; // API|KEY
}

/** The rule families `text` may trigger (0 for most texts): a bit per family, see the constants above. */
export function ruleLiterals(text: string): number {
  let mask = 0;
  swept.text = text;
  swept.credentialDashes.length = 0;
  swept.plainScheme = false;
  swept.hmac = false;
  swept.providers = 0;
  for (let at = text.indexOf('_'); at !== -1; at = text.indexOf('_', at + 1)) mask |= atUnderscore(text, at);
  for (let at = text.indexOf('-'); at !== -1; at = text.indexOf('-', at + 1)) mask |= atDash(text, at);
  for (let at = text.indexOf(':'); at !== -1; at = text.indexOf(':', at + 1)) mask |= atColon(text, at);
  for (let at = text.indexOf('A'); at !== -1; at = text.indexOf('A', at + 1)) mask |= atCapitalA(text, at);
  for (let at = text.indexOf('k'); at !== -1; at = text.indexOf('k', at + 1)) mask |= atK(text, at);
  for (let at = text.indexOf('K'); at !== -1; at = text.indexOf('K', at + 1)) mask |= atK(text, at) | atEnvK(text, at);
  // `assword` (password, Password): the rarest of its letters is the w.
  for (let at = text.indexOf('w'); at !== -1; at = text.indexOf('w', at + 1)) {
    if (text.startsWith('ass', at - 3) && text.startsWith('ord', at + 1)) {
      mask |= PASSWORD;
      break;
    }
  }
  // `passphrase` (iwd's `Passphrase=`, a YAML `passphrase:`), rarer than `assword`: one search when nothing else set the family.
  if ((mask & PASSWORD) === 0 && text.includes('assphrase')) mask |= PASSWORD;
  // eyJ (a JWT's header)
  for (let at = text.indexOf('J'); at !== -1; at = text.indexOf('J', at + 1)) {
    if (text.charCodeAt(at - 1) === 0x79 && text.charCodeAt(at - 2) === 0x65) {
      mask |= JWT;
      break;
    }
  }
  return mask;
}
