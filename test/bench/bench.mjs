#!/usr/bin/env node
/**
 * `npm run bench`: the speed and memory targets of the issues, measured against named baselines.
 *
 *   build   onto a loop-mounted ext4 filesystem  vs  `cp -r` + `sync` of the same bundle  (target <= 1.15x)
 *   verify  of the same seed (hash + leak scan)  vs  `sha256sum -c SHA256SUMS`            (target <= 0.25x)
 *   scan    cost inside verify                   vs  verify --no-scan (hashing alone)     (target <= 1.15x)
 *   scan    cost in the build's copy pass        vs  the same pass hashing alone          (target <= 1.15x)
 *   peak RSS of build and verify                                                         (target <= 150 MB)
 *   scan    of 20,000 small Nix files            vs  secretlint 13 recommended preset      (target >= 10x faster)
 *   scan    time at 5k / 10k / 20k files (linear growth)
 *
 * Page caches are dropped before every timed run where the machine allows (root), runs are
 * interleaved, and the median of BENCH_RUNS (default 3) is reported. BENCH_GIB sets the bundle size
 * (default 4), BENCH_SKIP_SECRETLINT=1 skips installing secretlint.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, openSync, writeSync, closeSync, writeFileSync, rmSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLI = path.join(ROOT, 'dist/cli.js');
const GIB = Number(process.env.BENCH_GIB ?? 4);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const SHARDS = Math.max(2, Math.round(GIB));
const work = mkdtempSync(path.join(process.env.BENCH_DIR ?? tmpdir(), 'dubnium-seed-bench-'));
const cleanups = [];
process.on('exit', () => {
  for (const cleanup of cleanups.reverse()) {
    try {
      cleanup();
    } catch {
      /* best effort */
    }
  }
  rmSync(work, { recursive: true, force: true });
});
process.on('SIGINT', () => process.exit(130));

const log = (line) => process.stderr.write(`${line}\n`);
const sh = (command, args, options = {}) => execFileSync(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });

function dropCaches() {
  try {
    sh('sync', []);
    writeFileSync('/proc/sys/vm/drop_caches', '3\n');
    return true;
  } catch {
    return false;
  }
}

/** Runs a command under /usr/bin/time (when present) and returns seconds and peak RSS in MB. */
function timed(command, args, options = {}) {
  const useTime = existsSync('/usr/bin/time');
  const started = process.hrtime.bigint();
  const result = useTime
    ? spawnSync('/usr/bin/time', ['-f', '%M', command, ...args], { encoding: 'utf8', maxBuffer: 1 << 28, ...options })
    : spawnSync(command, args, { encoding: 'utf8', maxBuffer: 1 << 28, ...options });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} exited ${result.status}: ${(result.stderr ?? '').slice(-800)}`);
  const rssKb = useTime ? Number((result.stderr.trim().split('\n').pop() ?? '').trim()) : NaN;
  return { seconds, rssMb: rssKb / 1024, stdout: result.stdout };
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

// --- a multi-GiB bundle: valid safetensors shards written in 8 MiB chunks ------------------------
function writeShard(file, bytes, seed) {
  let json = '';
  let padded;
  // One U8 tensor fills the shard; the header is padded with spaces to a multiple of 8.
  for (let dataLength = bytes - 8 - 256; ; ) {
    json = JSON.stringify({ __metadata__: { format: 'pt' }, [`layers.${seed}.weight`]: { dtype: 'U8', shape: [dataLength], data_offsets: [0, dataLength] } });
    const headerLength = Math.ceil(json.length / 8) * 8;
    if (8 + headerLength + dataLength === bytes) {
      padded = Buffer.from(json.padEnd(headerLength, ' '));
      break;
    }
    dataLength = bytes - 8 - headerLength;
  }
  const fd = openSync(file, 'w');
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(padded.length));
  writeSync(fd, length);
  writeSync(fd, padded);
  let remaining = bytes - 8 - padded.length;
  const block = randomBytes(8 * 1024 * 1024);
  while (remaining > 0) {
    const n = Math.min(remaining, block.length);
    block[0] = (block[0] + 1) & 0xff; // no two blocks alike
    writeSync(fd, block, 0, n);
    remaining -= n;
  }
  closeSync(fd);
}

function makeBundle(dir) {
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ architectures: ['LlamaForCausalLM'], model_type: 'llama' }, null, 2));
  writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ model_max_length: 4096 }));
  writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify({ do_sample: false }));
  const shardBytes = Math.floor((GIB * 1024 ** 3) / SHARDS);
  const weightMap = {};
  for (let index = 1; index <= SHARDS; index += 1) {
    const name = `model-${String(index).padStart(5, '0')}-of-${String(SHARDS).padStart(5, '0')}.safetensors`;
    writeShard(path.join(dir, name), shardBytes, index);
    weightMap[`layers.${index}.weight`] = name;
  }
  writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: shardBytes * SHARDS }, weight_map: weightMap }, null, 2));
}

function mountExt4(sizeBytes) {
  const image = path.join(work, 'stick.img');
  sh('truncate', ['-s', String(sizeBytes), image]);
  sh('mkfs.ext4', ['-q', '-F', '-m', '0', '-L', 'DUBNIUM-SEED', image]);
  const mount = path.join(work, 'stick');
  mkdirSync(mount);
  sh('mount', ['-o', 'loop', image, mount]);
  cleanups.push(() => sh('umount', [mount]));
  return mount;
}

function emptyMount(mount) {
  for (const name of readdirSync(mount)) if (name !== 'lost+found') rmSync(path.join(mount, name), { recursive: true, force: true });
  sh('sync', []);
}

function gitRepo(dir, files) {
  mkdirSync(dir, { recursive: true });
  for (const [rel, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    writeFileSync(path.join(dir, rel), content);
  }
  const env = { ...process.env, GIT_AUTHOR_NAME: 'bench', GIT_AUTHOR_EMAIL: 'bench@example.invalid', GIT_COMMITTER_NAME: 'bench', GIT_COMMITTER_EMAIL: 'bench@example.invalid' };
  sh('git', ['init', '-q', dir], { env });
  sh('git', ['add', '-A'], { cwd: dir, env });
  sh('git', ['commit', '-q', '-m', 'bench'], { cwd: dir, env });
}

function nixTree(dir, count) {
  mkdirSync(dir, { recursive: true });
  for (let index = 0; index < count; index += 1) {
    const sub = path.join(dir, `hosts/h${index % 200}`);
    mkdirSync(sub, { recursive: true });
    writeFileSync(
      path.join(sub, `module-${index}.nix`),
      `{ config, lib, pkgs, ... }:\n{\n  # module ${index}\n  services.example${index} = {\n    enable = true;\n    port = ${1024 + (index % 50000)};\n    description = "${createHash('sha256').update(String(index)).digest('hex')}";\n    environmentFile = config.sops.secrets."svc-${index}".path;\n  };\n}\n`,
    );
  }
}

// --- run -------------------------------------------------------------------------------------------
const results = [];
const report = (name, ratio, target, detail) => {
  const pass = target.op === '<=' ? ratio <= target.value : ratio >= target.value;
  results.push({ name, ratio, target, pass, detail });
  log(`  ${name}: ${ratio.toFixed(3)}x (target ${target.op} ${target.value}x) ${pass ? 'PASS' : 'MISS'}  ${detail}`);
};

log(`dubnium-seed bench: ${GIB} GiB bundle in ${SHARDS} shards, ${RUNS} interleaved runs, work dir ${work}`);
const cold = dropCaches();
log(`page cache: ${cold ? 'dropped before every timed run (cold)' : 'cannot be dropped here (warm runs; ratios are optimistic for the baselines)'}`);

const bundle = path.join(work, 'bundle');
makeBundle(bundle);
const repo = path.join(work, 'repo');
gitRepo(repo, { 'flake.nix': '{ outputs = _: { }; }\n', 'configuration.nix': '{ ... }: { }\n' });
const mount = mountExt4(Math.ceil(GIB * 1.25 * 1024 ** 3) + 256 * 1024 ** 2);

const times = { cp: [], build: [], sums: [], verify: [], verifyNoScan: [] };
let buildRss = 0;
let verifyRss = 0;
for (let run = 1; run <= RUNS; run += 1) {
  emptyMount(mount);
  dropCaches();
  times.cp.push(timed('sh', ['-c', 'cp -r "$1" "$2" && sync', 'sh', bundle, path.join(mount, 'bundle')]).seconds);

  emptyMount(mount);
  dropCaches();
  const build = timed('node', [CLI, 'build', '--repo', repo, '--model', bundle, '--target', mount, '--no-verify', '--json', '--no-operator-secrets'], { env: { ...process.env, CI: 'true' } });
  times.build.push(build.seconds);
  buildRss = Math.max(buildRss, build.rssMb);

  dropCaches();
  times.sums.push(timed('sha256sum', ['-c', '--quiet', 'SHA256SUMS'], { cwd: mount }).seconds);

  dropCaches();
  const verify = timed('node', [CLI, 'verify', mount, '--json', '--no-operator-secrets']);
  times.verify.push(verify.seconds);
  verifyRss = Math.max(verifyRss, verify.rssMb);

  dropCaches();
  times.verifyNoScan.push(timed('node', [CLI, 'verify', mount, '--json', '--no-scan']).seconds);
  log(`run ${run}: cp+sync ${times.cp.at(-1).toFixed(2)}s, build ${times.build.at(-1).toFixed(2)}s, sha256sum -c ${times.sums.at(-1).toFixed(2)}s, verify ${times.verify.at(-1).toFixed(2)}s, verify --no-scan ${times.verifyNoScan.at(-1).toFixed(2)}s`);
}
// The build's copy pass on the same stick, in-process: hash + write, then hash + scan + write.
const { writeSeedFile, readFileChunks } = await import(path.join(ROOT, 'dist/core/seed-writer.js'));
const { createLeakGate } = await import(path.join(ROOT, 'dist/core/scan/index.js'));
const gate = await createLeakGate({ operatorSecrets: false });
const shards = readdirSync(bundle).filter((name) => name.endsWith('.safetensors')).map((name) => path.join(bundle, name));
async function copyPass(scan) {
  emptyMount(mount);
  dropCaches();
  const started = process.hrtime.bigint();
  for (const shard of shards) {
    const scanner = scan ? gate.open({ path: path.basename(shard), size: statSync(shard).size }) : undefined;
    const written = await writeSeedFile({ destination: path.join(mount, path.basename(shard)), displayPath: shard, chunks: readFileChunks(shard), scanner });
    await written.commit();
    if (scanner) await scanner.finish();
  }
  return Number(process.hrtime.bigint() - started) / 1e9;
}
times.copyHash = [];
times.copyHashScan = [];
for (let run = 1; run <= RUNS; run += 1) {
  times.copyHash.push(await copyPass(false));
  times.copyHashScan.push(await copyPass(true));
  log(`copy pass ${run}: hash ${times.copyHash.at(-1).toFixed(2)}s, hash + scan ${times.copyHashScan.at(-1).toFixed(2)}s`);
}

const m = Object.fromEntries(Object.entries(times).map(([key, values]) => [key, median(values)]));
log('\nresults (medians):');
report('build vs cp -r + sync', m.build / m.cp, { op: '<=', value: 1.15 }, `${m.build.toFixed(2)}s vs ${m.cp.toFixed(2)}s`);
report('verify vs sha256sum -c', m.verify / m.sums, { op: '<=', value: 0.25 }, `${m.verify.toFixed(2)}s vs ${m.sums.toFixed(2)}s`);
report('scan cost in verify (with scan / hashing alone)', m.verify / m.verifyNoScan, { op: '<=', value: 1.15 }, `${m.verify.toFixed(2)}s vs ${m.verifyNoScan.toFixed(2)}s`);
report('scan cost in the build copy pass (with scan / hashing alone)', m.copyHashScan / m.copyHash, { op: '<=', value: 1.15 }, `${m.copyHashScan.toFixed(2)}s vs ${m.copyHash.toFixed(2)}s`);
report('peak RSS build / 150 MB', buildRss / 150, { op: '<=', value: 1 }, `${buildRss.toFixed(0)} MB`);
report('peak RSS verify / 150 MB', verifyRss / 150, { op: '<=', value: 1 }, `${verifyRss.toFixed(0)} MB`);
emptyMount(mount);

// --- scanner on many small files ---------------------------------------------------------------------
// Let the multi-GiB writeback above settle first: it would otherwise be timed as part of the scans.
sh('sync', []);
const scanTimes = {};
for (const count of [5000, 10000, 20000]) {
  const tree = path.join(work, `nix-${count}`);
  nixTree(tree, count);
  sh('sync', []);
  const samples = [];
  for (let run = 0; run < RUNS; run += 1) samples.push(timed('node', [CLI, 'scan', tree, '--json', '--no-operator-secrets']).seconds);
  scanTimes[count] = median(samples);
  log(`scan of ${count} files: ${scanTimes[count].toFixed(2)}s`);
}
report('scan growth 20k / 5k files (linear = 4)', scanTimes[20000] / scanTimes[5000] / 4, { op: '<=', value: 1.25 }, `${scanTimes[5000].toFixed(2)}s -> ${scanTimes[20000].toFixed(2)}s`);

if (!process.env.BENCH_SKIP_SECRETLINT) {
  const prefix = path.join(ROOT, '.bench/secretlint');
  try {
    if (!existsSync(path.join(prefix, 'node_modules/.bin/secretlint'))) {
      log('installing secretlint 13 with its recommended preset into .bench/secretlint (once)...');
      sh('npm', ['install', '--prefix', prefix, '--no-audit', '--no-fund', 'secretlint@13', '@secretlint/secretlint-rule-preset-recommend@13']);
    }
    const tree = path.join(work, 'nix-20000');
    writeFileSync(path.join(work, '.secretlintrc.json'), JSON.stringify({ rules: [{ id: '@secretlint/secretlint-rule-preset-recommend' }] }));
    // Timed like our scan: the median of the same number of runs on the same warm tree.
    const samples = [];
    for (let run = 0; run < RUNS; run += 1) {
      samples.push(timed(path.join(prefix, 'node_modules/.bin/secretlint'), ['--secretlintrc', path.join(work, '.secretlintrc.json'), `${tree}/**/*`], { cwd: work }).seconds);
    }
    const secretlint = median(samples);
    log(`secretlint on 20000 files: ${samples.map((value) => value.toFixed(2)).join('s, ')}s`);
    report('secretlint time / our scan time (20k files)', secretlint / scanTimes[20000], { op: '>=', value: 10 }, `${secretlint.toFixed(2)}s vs ${scanTimes[20000].toFixed(2)}s`);
  } catch (error) {
    log(`secretlint comparison skipped: ${String(error.message).split('\n')[0]}`);
  }
}

const missed = results.filter((result) => !result.pass);
log(`\n${results.length - missed.length} of ${results.length} targets met${missed.length ? `; missed: ${missed.map((r) => r.name).join('; ')}` : ''}.`);
process.stdout.write(`${JSON.stringify({ gib: GIB, runs: RUNS, coldCache: cold, medians: m, buildRssMb: buildRss, verifyRssMb: verifyRss, scanTimes, results }, null, 2)}\n`);
