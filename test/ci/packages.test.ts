/**
 * CI must pass on a fresh Debian 12 machine: every program the tool and its tests run comes from a
 * package named in .ci/packages.txt (which .ci/run installs) or from the base image (listed there too).
 * These tests fail with the package to install when a program is missing, and fail when code starts
 * spawning a program the list does not name.
 */
import { accessSync, constants, existsSync, readdirSync, readFileSync, realpathSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const listFile = path.join(root, '.ci/packages.txt');

interface PackageEntry {
  name: string;
  optional: boolean;
  /** Program names looked up on PATH, or absolute file paths. */
  provides: string[];
}

function readPackageList(): PackageEntry[] {
  return readFileSync(listFile, 'utf8')
    .split('\n')
    .map((line) => line.replace(/#.*/, '').trim())
    .filter(Boolean)
    .map((line) => {
      const colon = line.indexOf(':');
      if (colon < 0) throw new Error(`.ci/packages.txt: "${line}" is not "package: program..."`);
      const head = line.slice(0, colon).trim();
      return {
        name: head.replace(/\s*\(optional\)$/, ''),
        optional: /\(optional\)$/.test(head),
        provides: line.slice(colon + 1).trim().split(/\s+/).filter(Boolean),
      };
    });
}

/** The directories a root shell on Debian searches, whatever PATH the test runner was given. */
const searchPath = [...(process.env.PATH ?? '').split(':'), '/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'].filter(Boolean);

function locate(program: string): string | undefined {
  if (program.startsWith('/')) return existsSync(program) ? program : undefined;
  for (const dir of searchPath) {
    const candidate = path.join(dir, program);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/** Debian packages that own `file`, through symlinks and the /usr merge (dpkg records /bin/sh, not /usr/bin/sh). */
function owners(file: string): string[] {
  const paths = new Set<string>();
  for (const candidate of [file, realpathSync(file)]) {
    paths.add(candidate);
    paths.add(candidate.replace(/^\/usr(?=\/s?bin\/|\/lib\/)/, ''));
  }
  const result = spawnSync('dpkg', ['-S', ...paths], { encoding: 'utf8' });
  return result.stdout
    .split('\n')
    .filter((line) => line && !line.startsWith('diversion'))
    .flatMap((line) => line.slice(0, line.indexOf(': ')).split(', ').map((owner) => owner.split(':')[0]!));
}

function installed(name: string): boolean {
  const result = spawnSync('dpkg-query', ['-W', '-f=${Status}', name], { encoding: 'utf8' });
  return result.status === 0 && result.stdout.trim() === 'install ok installed';
}

function missingMessage(program: string, name: string): string {
  return `${program} not found: install the Debian package ${name} (listed in .ci/packages.txt; .ci/run installs it)`;
}

/** Program names spawned with a literal first argument anywhere in src/ and test/. */
function spawnedPrograms(): Map<string, string> {
  const callPattern = /\b(?:sh|run|execFileSync|execFile|execSync|spawnSync|spawn|execa|execaSync|hasCommand)\(\s*(['"`])([^'"`$\s]+)\1/g;
  const found = new Map<string, string>();
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (/\.(ts|mts|js|mjs)$/.test(entry.name)) {
        for (const match of readFileSync(full, 'utf8').matchAll(callPattern)) {
          const program = path.basename(match[2]!);
          if (!program.startsWith('-') && !found.has(program)) found.set(program, path.relative(root, full));
        }
      }
    }
  };
  walk(path.join(root, 'src'));
  walk(path.join(root, 'test'));
  return found;
}

const packages = readPackageList();
const required = packages.filter((entry) => !entry.optional);

describe('.ci/packages.txt: the Debian packages CI installs', () => {
  it('names each package once, and .ci/run installs from it', () => {
    const names = packages.map((entry) => entry.name);
    expect(names.filter((name, index) => names.indexOf(name) !== index)).toEqual([]);
    expect(readFileSync(path.join(root, '.ci/run'), 'utf8')).toContain('.ci/packages.txt');
  });

  it.each(required.map((entry) => [entry.name, entry] as const))('%s is installed and provides what the list says', (name, entry) => {
    const problems: string[] = [];
    if (!installed(name)) problems.push(`${name} is not installed: run \`bash .ci/run\` (or apt-get install ${name})`);
    for (const program of entry.provides) {
      const found = locate(program);
      if (!found) {
        problems.push(missingMessage(program, name));
        continue;
      }
      // Keeps the list honest: a program filed under the wrong package would not be installed by it.
      const owning = owners(found);
      if (!owning.includes(name)) problems.push(`${program} (${found}) belongs to ${owning.join(', ') || 'no Debian package'}, not ${name}: fix .ci/packages.txt`);
    }
    expect(problems).toEqual([]);
  });

  it('covers every program src/ and test/ spawn by name', () => {
    const listed = new Set(packages.flatMap((entry) => entry.provides.map((program) => path.basename(program))));
    const uncovered = [...spawnedPrograms()]
      .filter(([program]) => !listed.has(program))
      .map(([program, file]) => {
        const found = locate(program);
        const owning = found ? owners(found) : [];
        return `${file} runs ${program}, which .ci/packages.txt does not list${owning.length ? ` (add it under ${owning.join(' or ')})` : ''}`;
      });
    expect(uncovered).toEqual([]);
  });

  it('finds the spawned programs it checks (the scan itself works)', () => {
    const spawned = spawnedPrograms();
    expect(spawned.has('mksquashfs')).toBe(true);
    expect(spawned.has('losetup')).toBe(true);
  });

  it('runs the fault filesystem on a Python that has fusepy', () => {
    // A pyenv python3 on PATH has no Debian modules: the harness must use /usr/bin/python3.
    const result = spawnSync('/usr/bin/python3', ['-c', 'import fusepy'], { encoding: 'utf8' });
    expect(result.status, result.stderr || missingMessage('fusepy (python module)', 'python3-fusepy')).toBe(0);
  });
});
