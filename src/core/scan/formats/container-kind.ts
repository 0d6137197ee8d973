/**
 * Whether bytes are a container (any format of the registry), for the paths that look at every file:
 * a file in a larger shared buffer is looked at where it lies.
 */
import { detectFormat } from './index.js';

/**
 * The name of the container format `bytes` (from `start` to `end`) start with, or undefined. Content
 * only, never names: every format of the registry, every compression.
 */
export function detectContainer(bytes: Buffer, start = 0, end = bytes.length): string | undefined {
  if (end - start < 2) return undefined;
  return detectFormat(bytes.subarray(start, end), end - start)?.name;
}
