/** `dubnium-seed scan PATH...`: leak-scan folders, files and archives. */
import path from 'node:path';
import { scanPaths, toSarif, formatScanReport } from '../core/scan/index.js';
import { loadProfile } from '../profile.js';
import { UsageError } from '../errors.js';
import { TOOL_VERSION } from '../version.js';
import type { CommandContext } from './context.js';

export interface ScanFlags {
  json?: boolean;
  sarif?: boolean;
  profile?: string;
  operatorSecrets?: boolean;
}

export async function runScan(paths: string[], flags: ScanFlags, context: CommandContext): Promise<number> {
  if (flags.json && flags.sarif) throw new UsageError('Pass only one of --json and --sarif.');
  const profile = flags.profile !== undefined ? await loadProfile(flags.profile, context.cwd) : undefined;
  const report = await scanPaths(
    paths.map((item) => path.resolve(context.cwd, item)),
    { allowlist: profile?.data.scan?.allow ?? [], operatorSecrets: flags.operatorSecrets ?? profile?.data.scan?.operatorSecrets ?? true },
  );
  if (flags.sarif) process.stdout.write(`${JSON.stringify(toSarif(report, TOOL_VERSION), null, 2)}\n`);
  else context.output.result({ command: 'scan', ok: report.findings.length === 0, ...report }, () => formatScanReport(report));
  return report.findings.length > 0 ? 4 : 0;
}
