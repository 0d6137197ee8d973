/**
 * Nix store paths of locked flake inputs, computed the way Nix does, so the seed can look for an
 * input's bytes in a local store and `seed-install.sh` can check what `nix-store --add-fixed` printed.
 *
 * A locked input's tree is a fixed-output path: ingestion method "recursive" (NAR) with a sha256,
 * named `source`. For that combination Nix's `makeFixedOutputPath` takes the short form
 * `makeStorePath("source", narHash, name)`: the fingerprint
 * `source:sha256:<hex>:<storeDir>:<name>` is hashed with sha256, folded to 20 bytes by XOR and
 * written in Nix's base-32 alphabet.
 */
import { createHash } from 'node:crypto';

export const DEFAULT_STORE_DIR = '/nix/store';

/** Nix's base-32 alphabet: digits and lowercase letters without e, o, u and t. */
const NIX_BASE32 = '0123456789abcdfghijklmnpqrsvwxyz';

/** Nix's base-32 encoding (least significant 5-bit group last, as printed in store paths). */
export function nixBase32(bytes: Uint8Array): string {
  const length = Math.floor((bytes.length * 8 - 1) / 5) + 1;
  let out = '';
  for (let n = length - 1; n >= 0; n -= 1) {
    const bit = n * 5;
    const index = Math.floor(bit / 8);
    const shift = bit % 8;
    const low = bytes[index]! >> shift;
    const high = index + 1 < bytes.length ? bytes[index + 1]! << (8 - shift) : 0;
    out += NIX_BASE32[(low | high) & 0x1f];
  }
  return out;
}

/** Nix's `compressHash`: XOR-folds a digest to `size` bytes. */
export function compressHash(digest: Uint8Array, size: number): Buffer {
  const out = Buffer.alloc(size);
  digest.forEach((byte, index) => {
    out[index % size]! ^= byte;
  });
  return out;
}

/** Parses an SRI sha256 (`sha256-<base64>`, as flake.lock writes narHash); returns the 32 digest bytes, or undefined. */
export function parseSriSha256(sri: string): Buffer | undefined {
  const match = /^sha256-([A-Za-z0-9+/]{43}=)$/.exec(sri);
  if (!match) return undefined;
  const bytes = Buffer.from(match[1]!, 'base64');
  return bytes.length === 32 ? bytes : undefined;
}

/** The SRI form Nix writes in flake.lock for a sha256 digest. */
export function toSriSha256(digest: Uint8Array): string {
  return `sha256-${Buffer.from(digest).toString('base64')}`;
}

/**
 * The store path Nix gives a tree whose NAR serialization has sha256 `narHash` (SRI), added as a
 * fixed-output, recursive sha256 path named `name` (flake inputs: `source`).
 */
export function fixedOutputSourcePath(narHash: string, options: { name?: string; storeDir?: string } = {}): string {
  const digest = parseSriSha256(narHash);
  if (!digest) throw new Error(`not an SRI sha256 hash: ${JSON.stringify(narHash)}`);
  const name = options.name ?? 'source';
  const storeDir = options.storeDir ?? DEFAULT_STORE_DIR;
  const fingerprint = `source:sha256:${digest.toString('hex')}:${storeDir}:${name}`;
  const hashPart = nixBase32(compressHash(createHash('sha256').update(fingerprint).digest(), 20));
  return `${storeDir}/${hashPart}-${name}`;
}
