/** `dubnium-seed drives`: candidate drives for the seed, and the excluded ones with the reason. */
import { classifyDrives, drivesToJson, formatDrives } from '../hardware/drive-safety.js';
import { driveSourceFromEnvironment } from '../hardware/drives.js';
import { resolvePath } from '../util/resolve-path.js';
import path from 'node:path';
import type { CommandContext } from './context.js';

export async function runDrives(flags: { json?: boolean; profile?: string }, context: CommandContext): Promise<number> {
  const profile = flags.profile !== undefined ? await (await import('../profile.js')).loadProfile(flags.profile, context.cwd) : undefined;
  const base = profile ? path.dirname(profile.file) : context.cwd;
  const protectedPaths = [
    ...(profile?.data.source?.repo ? [resolvePath(profile.data.source.repo, base)] : []),
    ...(profile?.data.models ?? []).map((model) => resolvePath(model.path, base)),
  ];
  const drives = await driveSourceFromEnvironment().list();
  const result = await classifyDrives(drives, { protectedPaths });
  context.output.result({ command: 'drives', ...drivesToJson(result) }, () => formatDrives(result));
  return 0;
}
