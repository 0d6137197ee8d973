/**
 * The operator's own secrets, matched exactly wherever they appear: the identities that decrypt this
 * repository and the values of token variables in the environment. Held in memory only; the report
 * names what was loaded, never a value.
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseOpenSshKey, type OperatorSecret } from './rules.js';

/** Environment variables whose values are credentials. */
export const TOKEN_VARIABLES = [
  'HF_TOKEN',
  'HUGGINGFACE_HUB_TOKEN',
  'HUGGING_FACE_HUB_TOKEN',
  'OPENAI_API_KEY',
  'ANTHROPIC_API_KEY',
  'OPENROUTER_API_KEY',
  'GITHUB_TOKEN',
  'GH_TOKEN',
  'GH_ENTERPRISE_TOKEN',
  'GITHUB_PAT',
  'TS_AUTHKEY',
  'TAILSCALE_AUTHKEY',
  'TS_API_KEY',
  'AWS_SECRET_ACCESS_KEY',
  'AWS_SESSION_TOKEN',
  'SLACK_TOKEN',
  'SLACK_BOT_TOKEN',
  'CACHIX_AUTH_TOKEN',
  'CACHIX_SIGNING_KEY',
  'SOPS_AGE_KEY',
] as const;

/** Shorter values would match by accident (a `1`, a `true`). */
const MIN_VALUE_LENGTH = 8;

export interface OperatorSecretSources {
  env: NodeJS.ProcessEnv;
  home: string | undefined;
  /** Prefix for system paths (/etc/ssh, /var/lib/sops-nix); tests point it at a temp folder. */
  systemRoot: string;
  identityFiles: readonly string[];
}

/** The exact strings to look for in one identity or key file: age identities, key body lines. */
export function secretsInKeyText(text: string): string[] {
  const values = new Set<string>();
  for (const match of text.matchAll(/AGE-(?:SECRET-KEY-(?:PQ-)?|PLUGIN-[A-Z0-9+._-]+?-)1[02-9AC-HJ-NP-Z]+/g)) values.add(match[0]);
  // Armored keys: each body line (not the armor, which every key shares) is matched exactly.
  const armored = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----([\s\S]*?)-----END/g;
  for (const match of text.matchAll(armored)) {
    for (const line of match[1]!.split(/\r?\n/)) {
      const trimmed = line.trim();
      if (trimmed.length >= 24 && /^[A-Za-z0-9+/=]+$/.test(trimmed)) values.add(trimmed);
    }
  }
  return [...values];
}

/**
 * An identity that can decrypt SOPS files: an age identity (`AGE-SECRET-KEY-1...`, post-quantum too)
 * or the text of an unencrypted OpenSSH ed25519 key (converted the way ssh-to-age does, on use).
 */
export interface DecryptionIdentity {
  label: string;
  kind: 'age' | 'ssh-ed25519';
  text: string;
}

/** The decrypting identities in one key file's text (cheap: no conversion yet). */
export function identitiesInKeyText(text: string, label: string): DecryptionIdentity[] {
  const out: DecryptionIdentity[] = [];
  for (const match of text.matchAll(/AGE-SECRET-KEY-(?:PQ-)?1[02-9AC-HJ-NP-Z]+/g)) out.push({ label, kind: 'age', text: match[0] });
  for (const match of text.matchAll(/-----BEGIN OPENSSH PRIVATE KEY-----[\s\S]*?-----END OPENSSH PRIVATE KEY-----/g)) {
    const body = match[0].replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, '');
    const parsed = parseOpenSshKey(Buffer.from(body, 'base64'));
    if (parsed?.type === 'ssh-ed25519' && !parsed.encrypted) out.push({ label, kind: 'ssh-ed25519', text: match[0] });
  }
  return out;
}

async function readIfPresent(file: string): Promise<string | undefined> {
  try {
    const text = await readFile(file, 'utf8');
    return text.length > 1024 * 1024 ? undefined : text;
  } catch {
    return undefined; // absent or unreadable: nothing to load
  }
}

async function listMatching(dir: string, pattern: RegExp): Promise<string[]> {
  try {
    return (await readdir(dir)).filter((name) => pattern.test(name)).sort().map((name) => path.join(dir, name));
  } catch {
    return [];
  }
}

/** Loads what is present and readable; returns the values and the human labels of their sources. */
export async function loadOperatorSecrets(
  sources: OperatorSecretSources,
): Promise<{ secrets: OperatorSecret[]; loaded: string[]; identities: DecryptionIdentity[] }> {
  const secrets: OperatorSecret[] = [];
  const loaded: string[] = [];
  const identities: DecryptionIdentity[] = [];
  const files: { file: string; label: string }[] = [];
  if (sources.env.SOPS_AGE_KEY_FILE) files.push({ file: sources.env.SOPS_AGE_KEY_FILE, label: `SOPS_AGE_KEY_FILE (${sources.env.SOPS_AGE_KEY_FILE})` });
  if (sources.home) {
    files.push({ file: path.join(sources.home, '.config/sops/age/keys.txt'), label: '' });
    for (const file of await listMatching(path.join(sources.home, '.ssh'), /^id_[\w-]+$/)) files.push({ file, label: '' });
  }
  files.push({ file: path.join(sources.systemRoot, 'var/lib/sops-nix/key.txt'), label: '' });
  for (const file of await listMatching(path.join(sources.systemRoot, 'etc/ssh'), /^ssh_host_\w+_key$/)) files.push({ file, label: '' });
  for (const file of sources.identityFiles) files.push({ file, label: '' });

  const seen = new Set<string>();
  for (const { file, label } of files) {
    if (seen.has(file)) continue;
    seen.add(file);
    const text = await readIfPresent(file);
    if (text === undefined) continue;
    const values = secretsInKeyText(text);
    if (values.length === 0) continue;
    const name = label || file;
    for (const value of values) secrets.push({ value, label: name });
    identities.push(...identitiesInKeyText(text, name));
    loaded.push(name);
  }
  for (const variable of TOKEN_VARIABLES) {
    const value = sources.env[variable]?.trim();
    if (!value || value.length < MIN_VALUE_LENGTH) continue;
    const label = `env ${variable}`;
    const values = variable === 'SOPS_AGE_KEY' ? secretsInKeyText(value) : [value];
    for (const item of values) secrets.push({ value: item, label });
    if (variable === 'SOPS_AGE_KEY') identities.push(...identitiesInKeyText(value, label));
    if (values.length > 0) loaded.push(label);
  }
  return { secrets, loaded, identities };
}
