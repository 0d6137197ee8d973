/**
 * SOPS awareness. A file with SOPS metadata must hold only `ENC[...]` values (except keys its own
 * metadata leaves unencrypted); a file that `.sops.yaml` creation_rules say must be encrypted but has
 * no SOPS metadata is a decrypted secrets file, whatever its values look like.
 */
import { createRequire } from 'node:module';
import type * as Yaml from 'yaml';
import { fingerprint } from './fingerprint.js';

// yaml costs tens of milliseconds to load and most scans never parse YAML: load it (synchronously,
// its CommonJS build) the first time a `.sops.yaml` or a SOPS-looking file needs it.
let yamlModule: typeof Yaml | undefined;
function yaml(): typeof Yaml {
  yamlModule ??= createRequire(import.meta.url)('yaml') as typeof Yaml;
  return yamlModule;
}

export interface CreationRule {
  pathRegex?: RegExp;
}

export interface SopsConfig {
  rules: CreationRule[];
}

/** Parses `.sops.yaml` text; throws with a one-line reason when it is not valid YAML or has bad regexes. */
export function parseSopsConfig(text: string): SopsConfig {
  // Quietly: real files declare anchors as `- &users:`, and yaml's warnings would otherwise land on
  // stderr in the middle of the wizard's output. Errors still throw.
  const document = yaml().parse(text, { logLevel: 'error' }) as { creation_rules?: unknown } | null;
  const rules: CreationRule[] = [];
  const list = document && Array.isArray(document.creation_rules) ? document.creation_rules : [];
  for (const entry of list as Record<string, unknown>[]) {
    if (!entry || typeof entry !== 'object') continue;
    const pathRegex = typeof entry.path_regex === 'string' ? new RegExp(entry.path_regex) : undefined;
    rules.push(pathRegex ? { pathRegex } : {});
  }
  return { rules };
}

/** True when `repoPath` (relative to the folder holding `.sops.yaml`) falls under a path_regex rule. */
export function mustBeEncrypted(config: SopsConfig, repoPath: string): boolean {
  const normalized = repoPath.replace(/\\/g, '/').replace(/^\.\//, '');
  if (/(^|\/)\.sops\.ya?ml$/.test(normalized)) return false;
  // sops uses the first rule whose path_regex matches; a catch-all rule without path_regex applies to
  // `sops` invocations, not to which files must be encrypted, so it is not used here.
  return config.rules.some((rule) => rule.pathRegex?.test(normalized) ?? false);
}

interface SopsMetadata {
  unencryptedSuffix?: string;
  encryptedSuffix?: string;
  unencryptedRegex?: RegExp;
  encryptedRegex?: RegExp;
  unencryptedCommentRegex?: RegExp;
}

export interface PlaintextValue {
  keyPath: string;
  value: string;
}

export interface SopsAnalysis {
  /** The content carries SOPS metadata (a `sops` block, `sops_*` dotenv keys or an `[sops]` section). */
  hasMetadata: boolean;
  plaintext: PlaintextValue[];
}

const ENC = /^ENC\[[A-Z0-9_]+,data:[A-Za-z0-9+/=]*,iv:[A-Za-z0-9+/=]*,tag:[A-Za-z0-9+/=]*,type:[a-z]+\]$/;

function toRegex(value: unknown): RegExp | undefined {
  if (typeof value !== 'string' || value === '') return undefined;
  try {
    return new RegExp(value);
  } catch {
    return undefined;
  }
}

function metadataFrom(block: Record<string, unknown>): SopsMetadata {
  return {
    unencryptedSuffix: typeof block.unencrypted_suffix === 'string' ? block.unencrypted_suffix : undefined,
    encryptedSuffix: typeof block.encrypted_suffix === 'string' ? block.encrypted_suffix : undefined,
    unencryptedRegex: toRegex(block.unencrypted_regex),
    encryptedRegex: toRegex(block.encrypted_regex),
  };
}

/** Mirrors sops' rule for which keys it leaves in clear (and so are not findings). */
function keyIsEncrypted(key: string, meta: SopsMetadata): boolean {
  if (meta.unencryptedSuffix !== undefined) return !key.endsWith(meta.unencryptedSuffix);
  if (meta.encryptedSuffix !== undefined) return key.endsWith(meta.encryptedSuffix);
  if (meta.unencryptedRegex) return !meta.unencryptedRegex.test(key);
  if (meta.encryptedRegex) return meta.encryptedRegex.test(key);
  return !key.endsWith('_unencrypted');
}

function walkTree(node: unknown, path: string[], meta: SopsMetadata, parentEncrypted: boolean, out: PlaintextValue[]): void {
  if (Array.isArray(node)) {
    node.forEach((item, index) => walkTree(item, [...path, String(index)], meta, parentEncrypted, out));
    return;
  }
  if (node && typeof node === 'object') {
    for (const [key, value] of Object.entries(node as Record<string, unknown>)) {
      if (path.length === 0 && key === 'sops') continue;
      // Once a key is left in clear, everything under it is too (sops walks the tree this way).
      walkTree(value, [...path, key], meta, parentEncrypted && keyIsEncrypted(key, meta), out);
    }
    return;
  }
  if (!parentEncrypted || node === null || node === undefined) return;
  const value = String(node);
  // SOPS writes an empty string as it is: there is nothing in it to encrypt.
  if (value !== '' && !ENC.test(value)) out.push({ keyPath: path.join('/'), value });
}

function analyzeTree(tree: unknown): SopsAnalysis | undefined {
  if (!tree || typeof tree !== 'object' || Array.isArray(tree)) return undefined;
  const block = (tree as Record<string, unknown>).sops;
  if (!block || typeof block !== 'object' || !('mac' in block || 'lastmodified' in block || 'version' in block)) {
    return { hasMetadata: false, plaintext: [] };
  }
  const plaintext: PlaintextValue[] = [];
  walkTree(tree, [], metadataFrom(block as Record<string, unknown>), true, plaintext);
  return { hasMetadata: true, plaintext };
}

function analyzeDotenv(text: string): SopsAnalysis {
  const lines = text.split(/\r?\n/);
  const entries = lines.map((line) => /^\s*(?:export\s+)?([A-Za-z_][\w.-]*)\s*=\s*(.*)$/.exec(line)).filter((m): m is RegExpExecArray => m !== null);
  const hasMetadata = entries.some((m) => m[1] === 'sops_mac' || m[1] === 'sops_version' || m[1] === 'sops_lastmodified');
  if (!hasMetadata) return { hasMetadata, plaintext: [] };
  const meta: SopsMetadata = {};
  for (const m of entries) {
    if (m[1] === 'sops_unencrypted_suffix') meta.unencryptedSuffix = m[2]!.trim();
    if (m[1] === 'sops_encrypted_suffix') meta.encryptedSuffix = m[2]!.trim();
    if (m[1] === 'sops_unencrypted_regex') meta.unencryptedRegex = toRegex(m[2]!.trim());
    if (m[1] === 'sops_encrypted_regex') meta.encryptedRegex = toRegex(m[2]!.trim());
  }
  const plaintext: PlaintextValue[] = [];
  for (const m of entries) {
    const key = m[1]!;
    if (key.startsWith('sops_')) continue;
    const value = m[2]!.trim().replace(/^(["'])(.*)\1$/, '$2');
    if (keyIsEncrypted(key, meta) && value !== '' && !ENC.test(value)) plaintext.push({ keyPath: key, value });
  }
  return { hasMetadata, plaintext };
}

function analyzeIni(text: string): SopsAnalysis {
  if (!/^\[sops\]\s*$/m.test(text)) return { hasMetadata: false, plaintext: [] };
  const plaintext: PlaintextValue[] = [];
  const meta: SopsMetadata = {};
  let section = '';
  const values: { key: string; value: string; section: string }[] = [];
  for (const line of text.split(/\r?\n/)) {
    const header = /^\s*\[([^\]]+)\]\s*$/.exec(line);
    if (header) {
      section = header[1]!;
      continue;
    }
    const entry = /^\s*([^=;#\s][^=]*?)\s*=\s*(.*)$/.exec(line);
    if (!entry) continue;
    if (section === 'sops') {
      if (entry[1] === 'unencrypted_suffix') meta.unencryptedSuffix = entry[2]!;
      if (entry[1] === 'encrypted_suffix') meta.encryptedSuffix = entry[2]!;
      if (entry[1] === 'unencrypted_regex') meta.unencryptedRegex = toRegex(entry[2]);
      if (entry[1] === 'encrypted_regex') meta.encryptedRegex = toRegex(entry[2]);
      continue;
    }
    values.push({ key: entry[1]!, value: entry[2]!.trim(), section });
  }
  for (const { key, value, section: name } of values) {
    if (keyIsEncrypted(key, meta) && value !== '' && !ENC.test(value)) plaintext.push({ keyPath: `${name}/${key}`, value });
  }
  return { hasMetadata: true, plaintext };
}

/**
 * A cheap superset of the metadata checks of `analyzeSops`: each of them needs `sops` followed by
 * `_`, `]`, a quote, `:`, whitespace or a non-ASCII character (Unicode whitespace). Nix files that only
 * say `config.sops.secrets` fail it without a regex. Works on a latin1 or a decoded view alike.
 */
export function mayHoldSopsMetadata(text: string): boolean {
  for (let index = text.indexOf('sops'); index !== -1; index = text.indexOf('sops', index + 1)) {
    const next = text.charCodeAt(index + 4);
    // NaN (end of text) compares false everywhere: no metadata form ends right after `sops`.
    if (next <= 0x20 || next >= 0x7f || next === 0x5f || next === 0x5d || next === 0x22 || next === 0x27 || next === 0x3a) return true;
  }
  return false;
}

/**
 * Looks at one text file as SOPS would: YAML/JSON trees with a `sops` block, dotenv with `sops_*`
 * keys, INI with a `[sops]` section. Returns undefined when the content is none of these.
 */
export function analyzeSops(text: string): SopsAnalysis | undefined {
  if (!mayHoldSopsMetadata(text)) return { hasMetadata: false, plaintext: [] };
  if (/^\s*sops_(?:mac|version|lastmodified)=/m.test(text)) return analyzeDotenv(text);
  if (/^\[sops\]\s*$/m.test(text)) return analyzeIni(text);
  // Only a top-level YAML `sops:` key or a JSON `"sops": {` can carry metadata; Nix files that
  // merely mention config.sops are not parsed as YAML (that dominated scans of Nix trees).
  if (!/^(?:sops|"sops"|'sops')\s*:/m.test(text) && !/"sops"\s*:\s*\{/.test(text)) return { hasMetadata: false, plaintext: [] };
  try {
    const documents = yaml().parseAllDocuments(text, { logLevel: 'error' });
    const list = Array.isArray(documents) ? documents : [documents];
    let combined: SopsAnalysis | undefined;
    for (const document of list) {
      if (document.errors.length > 0) return undefined;
      const result = analyzeTree(document.toJS({ maxAliasCount: 1000 }));
      if (!result) continue;
      combined = combined
        ? { hasMetadata: combined.hasMetadata || result.hasMetadata, plaintext: [...combined.plaintext, ...result.plaintext] }
        : result;
    }
    return combined;
  } catch {
    return undefined;
  }
}

/** True for age ciphertext (agenix `.age` files, binary or armored): encrypted, not a finding. */
export function isAgeCiphertext(head: Buffer): boolean {
  const start = head.toString('latin1', 0, 64);
  return start.startsWith('age-encryption.org/v1\n') || start.startsWith('-----BEGIN AGE ENCRYPTED FILE-----');
}

/** Fingerprint of a plaintext value in a SOPS file, so one can be allowlisted. */
export function sopsValueFingerprint(value: PlaintextValue): string {
  return fingerprint('sops-plaintext-value', `${value.keyPath}\0${value.value}`);
}
