#!/usr/bin/env node
/**
 * `npm run bench`: the speed and memory goals of issues 14 and 15, measured side by side against
 * named baselines in one run. Exits non-zero when a goal is missed.
 *
 *   build --no-verify + sync       vs  `cp -r` + `sync` of the same bundle                    (goal <= 1.10x)
 *   build (with its read-back)     vs  `cp -r` + `sync` + `dd iflag=direct` read of the copy  (goal <= 1.10x)
 *   verify (hash + leak scan)      vs  `sha256sum -c SHA256SUMS`                              (goal <= 0.20x)
 *   build --no-verify on a 40 MB/s stick (FUSE fault device)  vs  `dd` writing the same bytes  (goal <= 1.05x)
 *   peak RSS of build and verify, 4 GiB shards included                                      (goal <= 150 MB)
 *   scan of 20,000 small Nix files and of 20,000 realistic ones (2-6 KB)  vs  secretlint 13  (goal >= 10x faster)
 *   scan cost inside verify and inside the build's copy pass (with scan / hashing alone)     (goal <= 1.15x)
 *
 * The stick is a loop-mounted ext4 filesystem on a fully written image file, made without lazy
 * initialisation: a sparse image would charge block allocation to whichever command writes a region
 * first. Page caches are dropped before every timed run where the machine allows (root), runs are
 * interleaved, and medians are compared. The spread of the `cp` baseline is printed; runs that
 * disagree by more than 15% are flagged, as the ratios are then noise.
 *
 * Env: BENCH_GIB bundle size (default 4), BENCH_RUNS (default 3), BENCH_DIR work folder,
 * BENCH_BIG_SHARD_GIB size of the one-shard memory check (default 4, 0 skips),
 * BENCH_SLOW_MIB bundle for the slow stick (default 1024, 0 skips), BENCH_SLOW_BPS (default 40e6),
 * BENCH_SKIP_SECRETLINT=1 skips installing and running secretlint.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, openSync, writeSync, closeSync, writeFileSync, rmSync, readdirSync, statSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
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
// Stopped by Ctrl-C, `timeout` (SIGTERM) or a closed terminal, the bench still unmounts its sticks.
process.on('SIGINT', () => process.exit(130));
process.on('SIGTERM', () => process.exit(143));
process.on('SIGHUP', () => process.exit(129));

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

function makeBundle(dir, gib = GIB, shards = SHARDS) {
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ architectures: ['LlamaForCausalLM'], model_type: 'llama' }, null, 2));
  writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ model_max_length: 4096 }));
  writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify({ do_sample: false }));
  const shardBytes = Math.floor((gib * 1024 ** 3) / shards);
  const weightMap = {};
  for (let index = 1; index <= shards; index += 1) {
    const name = `model-${String(index).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
    writeShard(path.join(dir, name), shardBytes, index);
    weightMap[`layers.${index}.weight`] = name;
  }
  writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: shardBytes * shards }, weight_map: weightMap }, null, 2));
}

/**
 * A loop-mounted ext4 on a fully written image, initialised up front (no lazy inode tables or
 * journal): every command then writes to blocks that already exist, as on a real stick.
 */
function mountExt4(sizeBytes, name = 'stick') {
  const image = path.join(work, `${name}.img`);
  const mib = Math.ceil(sizeBytes / 1024 ** 2);
  sh('dd', ['if=/dev/zero', `of=${image}`, 'bs=1M', `count=${mib}`, 'conv=fsync', 'status=none']);
  sh('mkfs.ext4', ['-q', '-F', '-m', '0', '-E', 'lazy_itable_init=0,lazy_journal_init=0', '-L', 'DUBNIUM-SEED', image]);
  const mount = path.join(work, name);
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

/**
 * 20,000 module-like Nix files of realistic size (40-120 lines, 2-6 KB, about 80 MB in all), each
 * different: options, services, packages, attribute sets, strings and hashes.
 */
function realisticNixTree(dir, count) {
  mkdirSync(dir, { recursive: true });
  const words = ['nginx', 'postgresql', 'grafana', 'prometheus', 'redis', 'gitea', 'caddy', 'openssh', 'tailscale', 'borgbackup', 'restic', 'syncthing', 'jellyfin', 'minio', 'loki', 'vector'];
  let total = 0;
  for (let index = 0; index < count; index += 1) {
    const sub = path.join(dir, `modules/m${index % 250}`);
    mkdirSync(sub, { recursive: true });
    const digest = (salt) => createHash('sha256').update(`${index}:${salt}`).digest('hex');
    const service = `${words[index % words.length]}${index}`;
    const targetLines = 40 + ((index * 7919) % 81);
    const lines = [
      '{ config, lib, pkgs, ... }:',
      '',
      'let',
      `  cfg = config.services.${service};`,
      `  port = ${1024 + (index % 50000)};`,
      'in',
      '{',
      `  options.services.${service} = {`,
      `    enable = lib.mkEnableOption "the ${service} service";`,
      `    package = lib.mkPackageOption pkgs "${words[(index + 3) % words.length]}" { };`,
      '  };',
      '',
      '  config = lib.mkIf cfg.enable {',
    ];
    let chars = lines.join('\n').length;
    // Stop at the line count drawn for this file, or before the file grows past ~6 KB.
    for (let line = 0; lines.length < targetLines - 4 && chars < 5600; line += 1) {
      const before = lines.length;
      switch (line % 8) {
        case 0:
          lines.push(`    systemd.services.${service}-${line} = {`, `      description = "${service} worker ${line} (${digest(line).slice(0, 24)})";`, '      wantedBy = [ "multi-user.target" ];', `      after = [ "network-online.target" "${words[line % words.length]}.service" ];`, '    };');
          break;
        case 1:
          lines.push(`    networking.firewall.allowedTCPPorts = [ port ${2000 + ((index + line) % 60000)} ];`);
          break;
        case 2:
          lines.push(`    environment.etc."${service}/conf-${line}.toml".text = ''`, `      listen = "127.0.0.1:${3000 + (line % 1000)}"`, `      data_dir = "/var/lib/${service}/${line}"`, `      checksum = "${digest(`c${line}`)}"`, "    '';");
          break;
        case 3:
          lines.push(`    users.users.${service}${line} = { isSystemUser = true; group = "${service}"; home = "/var/lib/${service}"; };`);
          break;
        case 4:
          lines.push(`    sops.secrets."${service}/token-${line}" = { owner = "${service}"; restartUnits = [ "${service}.service" ]; };`);
          break;
        case 5:
          lines.push(`    environment.systemPackages = with pkgs; [ ${words[line % words.length]} ${words[(line + 5) % words.length]} jq curl ];`);
          break;
        case 6:
          lines.push(`    # ${service}: keep ${line} generations; see https://example.invalid/docs/${digest(`d${line}`).slice(0, 12)}`);
          break;
        default:
          lines.push(`    fileSystems."/srv/${service}/${line}" = { device = "/dev/disk/by-uuid/${digest(`u${line}`).slice(0, 8)}-${digest(`v${line}`).slice(0, 4)}"; fsType = "ext4"; options = [ "noatime" ]; };`);
      }
      for (const added of lines.slice(before)) chars += added.length + 1;
    }
    // Short files get a documented default block, so every file is at least ~2 KB.
    for (let extra = 0; chars < 2100; extra += 1) {
      const added = `    # default ${extra}: ${service} falls back to ${words[extra % words.length]} (${digest(`e${extra}`).slice(0, 32)})`;
      lines.push(added);
      chars += added.length + 1;
    }
    lines.push('  };', '}', '');
    const text = lines.join('\n');
    total += text.length;
    writeFileSync(path.join(sub, `module-${index}.nix`), text);
  }
  return total;
}

function filesUnder(dir) {
  const out = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...filesUnder(full));
    else if (entry.isFile()) out.push(full);
  }
  return out;
}

/** Reads every file under `dir` once with O_DIRECT (what the device really holds), like a read-back. */
const directReadScript = 'for f in "$@"; do dd if="$f" of=/dev/null bs=4M iflag=direct status=none || exit 1; done';

const spread = (values) => (values.length > 1 ? (Math.max(...values) - Math.min(...values)) / median(values) : 0);

// --- run -------------------------------------------------------------------------------------------
const results = [];
const report = (name, ratio, target, detail) => {
  const pass = target.op === '<=' ? ratio <= target.value : ratio >= target.value;
  results.push({ name, ratio, target, pass, detail });
  log(`  ${name}: ${ratio.toFixed(3)}x (goal ${target.op} ${target.value}x) ${pass ? 'PASS' : 'MISS'}  ${detail}`);
};
const skipped = [];

const cores = availableParallelism();
log(`dubnium-seed bench: ${GIB} GiB bundle in ${SHARDS} shards, ${RUNS} interleaved runs, work dir ${work}`);
log(`machine: ${cores} cores, load average ${loadavg().map((value) => value.toFixed(2)).join(' ')} at start`);
const cold = dropCaches();
log(`page cache: ${cold ? 'dropped before every timed run (cold)' : 'cannot be dropped here (warm runs; ratios are optimistic for the baselines)'}`);

const bundle = path.join(work, 'bundle');
makeBundle(bundle);
const repo = path.join(work, 'repo');
gitRepo(repo, { 'flake.nix': '{ outputs = _: { }; }\n', 'configuration.nix': '{ ... }: { }\n' });
const mount = mountExt4(Math.ceil(GIB * 1.25 * 1024 ** 3) + 256 * 1024 ** 2);
const buildArgs = (target, verify) => [CLI, 'build', '--repo', repo, '--model', bundle, '--target', target, ...(verify ? [] : ['--no-verify']), '--json', '--no-operator-secrets'];
const buildEnv = { env: { ...process.env, CI: 'true' } };

const times = { cp: [], cpRead: [], buildNoVerify: [], build: [], sums: [], verify: [], verifyNoScan: [] };
let buildRss = 0;
let verifyRss = 0;
for (let run = 1; run <= RUNS; run += 1) {
  emptyMount(mount);
  dropCaches();
  times.cp.push(timed('sh', ['-c', 'cp -r "$1" "$2" && sync', 'sh', bundle, path.join(mount, 'bundle')]).seconds);
  dropCaches();
  times.cpRead.push(timed('sh', ['-c', directReadScript, 'sh', ...filesUnder(path.join(mount, 'bundle'))]).seconds);

  emptyMount(mount);
  dropCaches();
  // The build syncs its own files; the trailing sync matches the baseline's.
  const build = timed('sh', ['-c', '"$@" && sync', 'sh', 'node', ...buildArgs(mount, false)], buildEnv);
  times.buildNoVerify.push(build.seconds);
  buildRss = Math.max(buildRss, build.rssMb);

  dropCaches();
  times.sums.push(timed('sha256sum', ['-c', '--quiet', 'SHA256SUMS'], { cwd: mount }).seconds);

  dropCaches();
  const verify = timed('node', [CLI, 'verify', mount, '--json', '--no-operator-secrets']);
  times.verify.push(verify.seconds);
  verifyRss = Math.max(verifyRss, verify.rssMb);

  dropCaches();
  times.verifyNoScan.push(timed('node', [CLI, 'verify', mount, '--json', '--no-scan']).seconds);

  emptyMount(mount);
  dropCaches();
  const full = timed('node', buildArgs(mount, true), buildEnv);
  times.build.push(full.seconds);
  buildRss = Math.max(buildRss, full.rssMb);
  log(
    `run ${run}: cp+sync ${times.cp.at(-1).toFixed(2)}s, O_DIRECT read ${times.cpRead.at(-1).toFixed(2)}s, build --no-verify+sync ${times.buildNoVerify.at(-1).toFixed(2)}s, build ${times.build.at(-1).toFixed(2)}s, sha256sum -c ${times.sums.at(-1).toFixed(2)}s, verify ${times.verify.at(-1).toFixed(2)}s, verify --no-scan ${times.verifyNoScan.at(-1).toFixed(2)}s (load ${loadavg()[0].toFixed(2)})`,
  );
}
const cpSpread = spread(times.cp);
log(`cp -r + sync runs: ${times.cp.map((value) => value.toFixed(2)).join('s, ')}s (spread ${(cpSpread * 100).toFixed(0)}%)`);
// verify's and the O_DIRECT read's runs are bound by the cold read of the stick: their spread says
// how much of a ratio near its goal is the device's own variation.
for (const [label, values] of [['verify', times.verify], ['O_DIRECT read', times.cpRead]]) {
  log(`${label} runs: ${values.map((value) => value.toFixed(2)).join('s, ')}s (spread ${(spread(values) * 100).toFixed(0)}%)`);
}
if (cpSpread > 0.15) {
  log('');
  log('!!! WARNING: the cp baseline runs disagree by more than 15%: the device or the machine is not steady');
  log('!!! (other load, writeback of earlier runs). The ratios below are noise; rerun on a quiet machine.');
  log('');
}

// The build's copy pass on the same stick, in-process: hash + write, then hash + scan + write.
const { writeSeedFile, readFileChunks, copyPool } = await import(path.join(ROOT, 'dist/core/seed-writer.js'));
const { createLeakGate } = await import(path.join(ROOT, 'dist/core/scan/index.js'));
const gate = await createLeakGate({ operatorSecrets: false });
const shards = readdirSync(bundle).filter((name) => name.endsWith('.safetensors')).map((name) => path.join(bundle, name));
async function copyPass(scan) {
  emptyMount(mount);
  dropCaches();
  const started = process.hrtime.bigint();
  for (const shard of shards) {
    const scanner = scan ? gate.open({ path: path.basename(shard), size: statSync(shard).size }) : undefined;
    // As the build copies a model file: O_DIRECT reads and writes through the shared I/O blocks.
    const pool = copyPool();
    const written = await writeSeedFile({ destination: path.join(mount, path.basename(shard)), displayPath: shard, chunks: readFileChunks(shard, { pool, direct: true }), pool, scanner });
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
emptyMount(mount);

const m = Object.fromEntries(Object.entries(times).map(([key, values]) => [key, median(values)]));
log('\nresults (medians):');
report('build --no-verify + sync vs cp -r + sync', m.buildNoVerify / m.cp, { op: '<=', value: 1.1 }, `${m.buildNoVerify.toFixed(2)}s vs ${m.cp.toFixed(2)}s`);
report('build (with read-back) vs cp -r + sync + O_DIRECT dd read', m.build / (m.cp + m.cpRead), { op: '<=', value: 1.1 }, `${m.build.toFixed(2)}s vs ${(m.cp + m.cpRead).toFixed(2)}s`);
report('verify vs sha256sum -c', m.verify / m.sums, { op: '<=', value: 0.2 }, `${m.verify.toFixed(2)}s vs ${m.sums.toFixed(2)}s`);
report('scan cost in verify (with scan / hashing alone)', m.verify / m.verifyNoScan, { op: '<=', value: 1.15 }, `${m.verify.toFixed(2)}s vs ${m.verifyNoScan.toFixed(2)}s`);
report('scan cost in the build copy pass (with scan / hashing alone)', m.copyHashScan / m.copyHash, { op: '<=', value: 1.15 }, `${m.copyHashScan.toFixed(2)}s vs ${m.copyHash.toFixed(2)}s`);

// --- memory with the largest shards ---------------------------------------------------------------
const BIG = Number(process.env.BENCH_BIG_SHARD_GIB ?? 4);
if (BIG > 0) {
  const bigBundle = path.join(work, 'bundle-big');
  makeBundle(bigBundle, BIG, 1);
  const bigMount = mountExt4(Math.ceil(BIG * 1.1 * 1024 ** 3) + 256 * 1024 ** 2, 'stick-big');
  dropCaches();
  const big = timed('node', [CLI, 'build', '--repo', repo, '--model', bigBundle, '--target', bigMount, '--json', '--no-operator-secrets'], buildEnv);
  buildRss = Math.max(buildRss, big.rssMb);
  dropCaches();
  const bigVerify = timed('node', [CLI, 'verify', bigMount, '--json', '--no-operator-secrets']);
  verifyRss = Math.max(verifyRss, bigVerify.rssMb);
  log(`one ${BIG} GiB shard: build ${big.seconds.toFixed(2)}s (${big.rssMb.toFixed(0)} MB), verify ${bigVerify.seconds.toFixed(2)}s (${bigVerify.rssMb.toFixed(0)} MB)`);
  rmSync(bigBundle, { recursive: true, force: true });
} else skipped.push('4 GiB shard memory check (BENCH_BIG_SHARD_GIB=0)');
report('peak RSS build / 150 MB', buildRss / 150, { op: '<=', value: 1 }, `${buildRss.toFixed(0)} MB`);
report('peak RSS verify / 150 MB', verifyRss / 150, { op: '<=', value: 1 }, `${verifyRss.toFixed(0)} MB`);

// --- a slow stick: the device must never wait for the tool ----------------------------------------
// 1 GiB: about the smallest real model bundle (a 0.5B-parameter model in bf16). The tool's fixed
// start-up (node, its modules, the git planning: ~0.5 s cold) is printed beside the ratio, which at
// this size measures what the goal is about: whether the device ever waits for the tool mid-copy.
const SLOW_MIB = Number(process.env.BENCH_SLOW_MIB ?? 1024);
const SLOW_BPS = Number(process.env.BENCH_SLOW_BPS ?? 40e6);
if (SLOW_MIB > 0 && existsSync('/dev/fuse')) {
  try {
    const slow = await slowStick(Math.ceil(SLOW_MIB * 1.5) + 128);
    const slowBundle = path.join(work, 'bundle-slow');
    makeBundle(slowBundle, SLOW_MIB / 1024, 2);
    const slowFiles = readdirSync(slowBundle).map((name) => path.join(slowBundle, name));
    const ddScript = 'mkdir -p "$0" && for f in "$@"; do dd if="$f" of="$0/$(basename "$f")" bs=4M status=none || exit 1; done && sync';
    const samples = { dd: [], build: [] };
    for (let run = 1; run <= Math.min(RUNS, 2); run += 1) {
      emptyMount(slow.root);
      dropCaches();
      samples.dd.push(timed('sh', ['-c', ddScript, path.join(slow.root, 'dd'), ...slowFiles]).seconds);
      emptyMount(slow.root);
      dropCaches();
      samples.build.push(timed('sh', ['-c', '"$@" && sync', 'sh', 'node', CLI, 'build', '--repo', repo, '--model', slowBundle, '--target', slow.root, '--no-verify', '--json', '--no-operator-secrets'], buildEnv).seconds);
      log(`slow stick run ${run}: dd ${samples.dd.at(-1).toFixed(2)}s, build --no-verify ${samples.build.at(-1).toFixed(2)}s`);
    }
    slow.stop();
    report(`build --no-verify vs dd on a ${(SLOW_BPS / 1e6).toFixed(0)} MB/s stick`, median(samples.build) / median(samples.dd), { op: '<=', value: 1.05 }, `${median(samples.build).toFixed(2)}s vs ${median(samples.dd).toFixed(2)}s (${SLOW_MIB} MiB; ${median(samples.build) >= median(samples.dd) ? '+' : ''}${(median(samples.build) - median(samples.dd)).toFixed(2)}s against dd, start-up included)`);
  } catch (error) {
    skipped.push(`slow stick: ${String(error.message).split('\n')[0]}`);
  }
} else skipped.push(SLOW_MIB > 0 ? 'slow stick: no /dev/fuse' : 'slow stick (BENCH_SLOW_MIB=0)');

/** The FUSE fault device of the tests (test/helpers/fault-fs), bandwidth-limited, with ext4 on it. */
async function slowStick(sizeMiB) {
  const dir = path.join(work, 'slow');
  const fuse = path.join(dir, 'fuse');
  const root = path.join(dir, 'mnt');
  mkdirSync(fuse, { recursive: true });
  mkdirSync(root, { recursive: true });
  const backing = path.join(dir, 'backing.img');
  sh('dd', ['if=/dev/zero', `of=${backing}`, 'bs=1M', `count=${sizeMiB}`, 'status=none']);
  const child = spawn('/usr/bin/python3', [path.join(ROOT, 'test/helpers/fault-fs/fault_fs.py'), backing, fuse], { stdio: 'ignore' });
  const mounted = () => execFileSync('cat', ['/proc/self/mounts'], { encoding: 'utf8' }).split('\n').some((line) => line.split(' ')[1] === fuse);
  for (let tries = 0; !mounted(); tries += 1) {
    if (child.exitCode !== null || tries > 100) throw new Error('fault-fs did not mount');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const device = sh('losetup', ['-f', '--show', '--direct-io=off', path.join(fuse, 'disk.img')], { encoding: 'utf8' }).trim();
  sh('mkfs.ext4', ['-q', '-F', '-m', '0', '-E', 'lazy_itable_init=0,lazy_journal_init=0', '-L', 'SLOW', device]);
  sh('mount', [device, root]);
  writeFileSync(path.join(fuse, 'control'), `write_bps=${Math.round(SLOW_BPS)} read_bps=${Math.round(SLOW_BPS)}\n`);
  let stopped = false;
  // Synchronous, so that it also runs from the exit handler.
  const stop = () => {
    if (stopped) return;
    stopped = true;
    for (const step of [() => writeFileSync(path.join(fuse, 'control'), 'clear\n'), () => sh('umount', [root]), () => sh('losetup', ['-d', device])]) {
      try {
        step();
      } catch {
        /* best effort */
      }
    }
    // The loop device lets go of the FUSE file asynchronously: umount retries while it is busy.
    for (let tries = 0; mounted() && tries < 50; tries += 1) {
      if (spawnSync('umount', [fuse]).status !== 0) spawnSync('sleep', ['0.1']);
    }
    if (mounted()) spawnSync('umount', ['-l', fuse]);
    child.kill();
  };
  cleanups.push(stop);
  return { root, stop };
}

// --- scanner on many Nix files -------------------------------------------------------------------------
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
  log(`scan of ${count} small files: ${scanTimes[count].toFixed(2)}s`);
}
report('scan growth 20k / 5k files (linear = 4)', scanTimes[20000] / scanTimes[5000] / 4, { op: '<=', value: 1.25 }, `${scanTimes[5000].toFixed(2)}s -> ${scanTimes[20000].toFixed(2)}s`);
const realistic = path.join(work, 'nix-realistic-20000');
const realisticBytes = realisticNixTree(realistic, 20000);
sh('sync', []);
{
  const samples = [];
  for (let run = 0; run < RUNS; run += 1) samples.push(timed('node', [CLI, 'scan', realistic, '--json', '--no-operator-secrets']).seconds);
  scanTimes.realistic20000 = median(samples);
  log(`scan of 20000 realistic files (${(realisticBytes / 1e6).toFixed(0)} MB): ${scanTimes.realistic20000.toFixed(2)}s`);
}

const secretlintTimes = {};
if (!process.env.BENCH_SKIP_SECRETLINT) {
  const prefix = path.join(ROOT, '.bench/secretlint');
  try {
    if (!existsSync(path.join(prefix, 'node_modules/.bin/secretlint'))) {
      log('installing secretlint 13 with its recommended preset into .bench/secretlint (once)...');
      sh('npm', ['install', '--prefix', prefix, '--no-audit', '--no-fund', 'secretlint@13', '@secretlint/secretlint-rule-preset-recommend@13']);
    }
    writeFileSync(path.join(work, '.secretlintrc.json'), JSON.stringify({ rules: [{ id: '@secretlint/secretlint-rule-preset-recommend' }] }));
    for (const [key, tree, ours, label] of [
      ['small20000', path.join(work, 'nix-20000'), scanTimes[20000], '20k small files'],
      ['realistic20000', realistic, scanTimes.realistic20000, `20k realistic files, ${(realisticBytes / 1e6).toFixed(0)} MB`],
    ]) {
      // Timed like our scan: the median of the same number of runs on the same warm tree.
      const samples = [];
      for (let run = 0; run < RUNS; run += 1) {
        // secretlint exits 1 when it finds something; only its time matters here.
        const started = process.hrtime.bigint();
        spawnSync(path.join(prefix, 'node_modules/.bin/secretlint'), ['--secretlintrc', path.join(work, '.secretlintrc.json'), `${tree}/**/*`], { cwd: work, stdio: 'ignore' });
        samples.push(Number(process.hrtime.bigint() - started) / 1e9);
      }
      secretlintTimes[key] = median(samples);
      log(`secretlint on ${label}: ${samples.map((value) => value.toFixed(2)).join('s, ')}s`);
      report(`secretlint time / our scan time (${label})`, secretlintTimes[key] / ours, { op: '>=', value: 10 }, `${secretlintTimes[key].toFixed(2)}s vs ${ours.toFixed(2)}s`);
    }
  } catch (error) {
    skipped.push(`secretlint comparison: ${String(error.message).split('\n')[0]}`);
  }
} else skipped.push('secretlint comparison (BENCH_SKIP_SECRETLINT=1)');

const missed = results.filter((result) => !result.pass);
log(`\n${cores} cores, load average ${loadavg().map((value) => value.toFixed(2)).join(' ')} at the end.`);
if (skipped.length > 0) log(`not measured: ${skipped.join('; ')}`);
log(`${results.length - missed.length} of ${results.length} goals met${missed.length ? `; missed: ${missed.map((r) => r.name).join('; ')}` : ''}.`);
process.stdout.write(
  `${JSON.stringify({ date: new Date().toISOString(), cores, gib: GIB, runs: RUNS, coldCache: cold, samples: times, cpSpread, medians: m, buildRssMb: buildRss, verifyRssMb: verifyRss, scanTimes, secretlintTimes, skipped, results }, null, 2)}\n`,
);
process.exitCode = missed.length > 0 ? 1 : 0;
