/** Profile and flag paths: `~` expanded, relative paths resolved. Apart from profile.ts, which loads yaml and zod. */
import { homedir } from 'node:os';
import path from 'node:path';

/** Expands `~` and resolves relative paths against `base` (the profile's folder, or the cwd for flags). */
export function resolvePath(value: string, base: string): string {
  if (value === '~') return homedir();
  if (value.startsWith('~/')) return path.join(homedir(), value.slice(2));
  return path.resolve(base, value);
}
