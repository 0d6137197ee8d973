#!/bin/sh
# seed-install.sh - installer side of a dubnium seed (seed layout format 1).
#
# Runs on a NixOS live system where dubnium-seed is not installed: POSIX sh, coreutils and tar only
# (GNU or busybox). Everything is verified before anything is written, so a damaged or tampered
# seed changes nothing on the target.

set -u
umask 022

prog=seed-install
default_store=/var/lib/dubnium/models

usage() {
  cat <<'EOF'
Usage: sh seed-install.sh [--root DIR] [--source-to DIR] [--signer SHA256:...] [--force] [--dry-run]
                          [--live-store STORE] [--help]

Verifies this seed (every file against SHA256SUMS), then installs each model bundle
models/<bundle> into <root><modelStore>/<bundle> and unpacks the source archive into
--source-to. Runs from any current directory; the seed is the folder holding this script.

Options:
  --root DIR       target system root (default /mnt, where the NixOS installer mounts it)
  --source-to DIR  where the configuration source goes (default <root>/etc/nixos)
  --signer FP      first check that dubnium-seed.json.sig is a valid signature of the
                   manifest by the SSH key with this fingerprint (SHA256:..., as the build
                   printed it); needs ssh-keygen. Without it, the signature is not checked.
  --force          replace existing entries in --source-to (see below)
  --dry-run        verify the seed and print what would be done; write nothing
  --live-store S   Nix store of the live system to register carried flake inputs in
                   (default: the one nix-store uses; a folder means a chroot store)
  -h, --help       show this help

Model bundles: each bundle is copied to a hidden temporary folder beside its destination,
then renamed into place; an existing bundle of the same name is replaced, never merged.

Source: the archive's single top-level folder is stripped. If --source-to is missing or
empty it is created. If it already holds files (nixos-generate-config leaves
configuration.nix and hardware-configuration.nix there), the archive's entries are
added beside them, and the install is refused if any archive entry would overwrite an
existing one. With --force, --source-to is replaced by the archive's contents; its
hardware-configuration.nix is kept when the archive has none (the previous contents are
otherwise removed).

Carried flake inputs (inputs/*.tar.gz, private inputs of flake.lock): each is
unpacked to a temporary folder and added with `nix-store --add-fixed --recursive
sha256` to the live system's store and to the target's (--store <root>), and the
store path Nix prints must be the one the manifest records. Then nixos-install
--flake finds them without credentials or network. Without nix-store on PATH
they are skipped with a note, and the rest is installed.

Exit codes:
  0  installed (or, with --dry-run, verified)
  1  an install step failed after verification (disk full, I/O error); bundles
     already renamed into place stay, nothing is half-copied under a bundle name
  2  usage error: bad option, --root missing, source target conflicts (use --force)
  3  seed verification failed: missing, corrupt, unlisted or unsafe files, or (with
     --signer) unsigned, a bad signature, or another signer; nothing written
EOF
}

say() { printf '%s\n' "$*"; }
err() { printf '%s: %s\n' "$prog" "$*" >&2; }
die() { code=$1; shift; err "$*"; exit "$code"; }

# --- arguments ---------------------------------------------------------------------------------
root=/mnt
source_to=
live_store=
force=0
dry_run=0
signer=
while [ $# -gt 0 ]; do
  case $1 in
    --root) [ $# -ge 2 ] || die 2 "--root needs a folder; see --help"; root=$2; shift ;;
    --root=*) root=${1#--root=} ;;
    --source-to) [ $# -ge 2 ] || die 2 "--source-to needs a folder; see --help"; source_to=$2; shift ;;
    --source-to=*) source_to=${1#--source-to=} ;;
    --signer) [ $# -ge 2 ] || die 2 "--signer needs a key fingerprint (SHA256:...); see --help"; signer=$2; shift ;;
    --signer=*) signer=${1#--signer=} ;;
    --force) force=1 ;;
    --dry-run) dry_run=1 ;;
    --live-store) [ $# -ge 2 ] || die 2 "--live-store needs a store; see --help"; live_store=$2; shift ;;
    --live-store=*) live_store=${1#--live-store=} ;;
    -h|--help) usage; exit 0 ;;
    *) die 2 "unknown option '$1'; see --help" ;;
  esac
  shift
done

[ -n "$root" ] || die 2 "--root is empty; pass the mounted target root, e.g. --root /mnt"
[ -d "$root" ] || die 2 "target root '$root' is not a folder; mount the target there or pass --root DIR"
# Absolute paths before we cd into the seed; the root must exist, --source-to may not yet.
root=$(cd -- "$root" && pwd -P) || die 2 "cannot enter target root '$root'"
[ -n "$source_to" ] || source_to=${root%/}/etc/nixos
case $source_to in
  /*) ;;
  *) source_to=$(pwd -P)/$source_to ;;
esac
while :; do
  case $source_to in
    ?*/) source_to=${source_to%/} ;;
    *) break ;;
  esac
done
[ "$source_to" != / ] || die 2 "--source-to cannot be /"

# --- locate the seed from $0, whatever the current directory -------------------------------------
case $0 in
  */*) seed_dir=${0%/*} ;;
  *) seed_dir=. ;;
esac
seed=$(cd -- "$seed_dir" 2>/dev/null && pwd -P) || die 3 "cannot find the seed folder from '$0'; run: sh /path/to/seed/seed-install.sh"
cd -- "$seed" || die 3 "cannot enter the seed folder '$seed'"

# --- cleanup of anything half-made, on any exit --------------------------------------------------
partial=
extract_tmp=
sig_tmp=
input_tmp=
cleanup() {
  [ -z "$partial" ] || rm -rf -- "$partial"
  [ -z "$extract_tmp" ] || rm -rf -- "$extract_tmp"
  [ -z "$sig_tmp" ] || rm -rf -- "$sig_tmp"
  [ -z "$input_tmp" ] || rm -rf -- "$input_tmp"
  partial=
  extract_tmp=
  sig_tmp=
  input_tmp=
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM
trap 'cleanup; exit 129' HUP

nl='
'
problems=
problem() { problems=$problems$1$nl; }
fail_problems() {
  err "seed verification failed in $seed; nothing was written:"
  printf '%s' "$problems" | while IFS= read -r line; do
    printf '%s:   %s\n' "$prog" "$line" >&2
  done
  err "re-copy the seed (or rebuild it with dubnium-seed build) and run again"
  exit 3
}

# sha256sum -c prints one line per file; only the failures are news.
show_check_failures() {
  printf '%s\n' "$check_out" | grep -v ': OK$' | while IFS= read -r line; do
    printf '%s:   %s\n' "$prog" "$line" >&2
  done
}

# --- 0. the signature: with --signer, who made this seed, before anything else --------------------
# dubnium-seed.json.sig is `ssh-keygen -Y sign -n dubnium-seed` of the manifest, and the manifest
# records the digest of SHA256SUMS, which covers every payload byte. The public key inside the
# signature is trusted only when its fingerprint is the one given; then ssh-keygen -Y verify checks
# the signature with exactly that key. Any doubt: exit 3, nothing written.
manifest=dubnium-seed.json
sig=dubnium-seed.json.sig
sig_fail() { die 3 "signature check failed: $*; nothing was written"; }
# Big-endian uint32 at byte offset $2 of file $1.
u32() {
  # shellcheck disable=SC2046 # od prints four numbers, split on purpose
  set -- $(od -An -v -tu1 -j "$2" -N 4 -- "$1")
  [ $# -eq 4 ] || return 1
  printf '%s\n' $(( ($1 * 16777216) + ($2 * 65536) + ($3 * 256) + $4 ))
}
if [ -n "$signer" ]; then
  case $signer in
    SHA256:*) ;;
    *) die 2 "--signer takes the signer's key fingerprint, SHA256:... as the build printed it (ssh-keygen -lf KEY.pub shows it)" ;;
  esac
  fp=${signer#SHA256:}
  case $fp in
    *[!A-Za-z0-9+/]*|'') die 2 "--signer '$signer' is not a SHA256 key fingerprint (SHA256: and 43 base64 characters)" ;;
  esac
  [ ${#fp} -eq 43 ] || die 2 "--signer '$signer' is not a SHA256 key fingerprint (SHA256: and 43 base64 characters)"
  command -v ssh-keygen >/dev/null 2>&1 || sig_fail "ssh-keygen is not installed here, so the signature cannot be checked"
  [ -f "$manifest" ] && [ ! -L "$manifest" ] || sig_fail "dubnium-seed.json is missing or not a regular file"
  if [ ! -e "$sig" ] && [ ! -L "$sig" ]; then
    sig_fail "unsigned: the seed has no $sig, so it cannot be shown to come from $signer"
  fi
  [ -f "$sig" ] && [ ! -L "$sig" ] || sig_fail "bad signature: $sig is not a regular file"
  [ "$(wc -c < "$sig")" -le 65536 ] || sig_fail "bad signature: $sig is too large to be a signature"
  sig_tmp=$(mktemp -d "${TMPDIR:-/tmp}/seed-install-sig.XXXXXX") || sig_fail "cannot make a temporary folder"
  [ "$(sed -n '1p' "$sig" | tr -d '\r')" = '-----BEGIN SSH SIGNATURE-----' ] &&
    [ "$(sed -n '$p' "$sig" | tr -d '\r')" = '-----END SSH SIGNATURE-----' ] ||
    sig_fail "bad signature: $sig is not an armored SSH signature"
  sed '1d;$d' "$sig" | tr -d '\r\n' > "$sig_tmp/body"
  ! grep -q '[^A-Za-z0-9+/=]' "$sig_tmp/body" || sig_fail "bad signature: $sig is not base64 inside"
  base64 -d < "$sig_tmp/body" > "$sig_tmp/sig.bin" 2>/dev/null || sig_fail "bad signature: $sig is not base64 inside"
  # SSHSIG: "SSHSIG", uint32 version, string public key, ... (PROTOCOL.sshsig).
  [ "$(head -c 6 "$sig_tmp/sig.bin")" = SSHSIG ] || sig_fail "bad signature: $sig is not an SSHSIG signature"
  sig_size=$(wc -c < "$sig_tmp/sig.bin")
  key_len=$(u32 "$sig_tmp/sig.bin" 10) || sig_fail "bad signature: $sig is truncated"
  [ "$key_len" -gt 4 ] && [ $((14 + key_len)) -le "$sig_size" ] || sig_fail "bad signature: $sig is truncated"
  tail -c +15 "$sig_tmp/sig.bin" | head -c "$key_len" > "$sig_tmp/key.bin"
  type_len=$(u32 "$sig_tmp/key.bin" 0) || sig_fail "bad signature: the key in $sig is malformed"
  [ "$type_len" -ge 3 ] && [ "$type_len" -le 64 ] && [ $((4 + type_len)) -le "$key_len" ] || sig_fail "bad signature: the key in $sig is malformed"
  key_type=$(tail -c +5 "$sig_tmp/key.bin" | head -c "$type_len")
  case $key_type in
    *[!a-z0-9@.-]*|'') sig_fail "bad signature: the key in $sig has an unknown type" ;;
  esac
  printf '%s %s\n' "$key_type" "$(base64 < "$sig_tmp/key.bin" | tr -d '\n')" > "$sig_tmp/signer.pub"
  # ssh-keygen computes the fingerprint from the key blob itself: SHA256 of the blob, base64.
  actual=$(ssh-keygen -l -E sha256 -f "$sig_tmp/signer.pub" 2>/dev/null | cut -d' ' -f2)
  case $actual in
    SHA256:*) ;;
    *) sig_fail "bad signature: ssh-keygen cannot read the key in $sig" ;;
  esac
  [ "$actual" = "$signer" ] || sig_fail "other signer: the seed is signed by $actual, not by the expected $signer"
  printf 'dubnium-seed-signer namespaces="dubnium-seed" %s\n' "$(cat "$sig_tmp/signer.pub")" > "$sig_tmp/allowed_signers"
  ssh-keygen -Y verify -f "$sig_tmp/allowed_signers" -I dubnium-seed-signer -n dubnium-seed -s "$sig" < "$manifest" > "$sig_tmp/verify.out" 2>&1 ||
    sig_fail "bad signature: $sig (key $signer) does not verify for this manifest (the manifest changed after signing, or the signature belongs to another build)"
  rm -rf -- "$sig_tmp"
  sig_tmp=
  say "signature: dubnium-seed.json is signed by $signer (the required signer)"
elif [ -e "$sig" ] || [ -L "$sig" ]; then
  say "signature: the seed carries $sig, NOT checked (pass --signer SHA256:... to require its signer)"
else
  say "signature: the seed is not signed (no $sig); its signer was not checked"
fi

# --- 1. sanity of the seed's own files -----------------------------------------------------------
if [ ! -e "$manifest" ] && [ ! -L "$manifest" ]; then
  die 3 "incomplete seed: dubnium-seed.json missing in $seed (the build writes it last; rebuild the seed)"
fi
[ -f "$manifest" ] && [ ! -L "$manifest" ] || die 3 "dubnium-seed.json in $seed is not a regular file"
if [ ! -e SHA256SUMS ] && [ ! -L SHA256SUMS ]; then
  die 3 "incomplete seed: SHA256SUMS missing in $seed"
fi
[ -f SHA256SUMS ] && [ ! -L SHA256SUMS ] || die 3 "SHA256SUMS in $seed is not a regular file"

# The manifest is pretty-printed by JSON.stringify(x, null, 2): top-level keys sit at exactly
# two spaces of indent, one per line, which lets sed read them without a JSON parser.
format_lines=$(grep -c '^  "format": ' "$manifest")
format=$(sed -n 's/^  "format": \([0-9][0-9]*\),\{0,1\}$/\1/p' "$manifest")
[ "$format_lines" = 1 ] && [ -n "$format" ] ||
  die 3 "dubnium-seed.json has no readable top-level \"format\" (truncated or not written by dubnium-seed)"
[ "$format" = 1 ] || die 3 "seed format $format is not supported by this script (it reads format 1)"

# selfSha256 is the sha256 of the manifest with that value written as 64 zeros, so any changed
# byte shows. Hand-made seeds may lack it; a seed that names it must carry it on its own line.
if grep -q '"selfSha256"' "$manifest"; then
  self_re='^  "selfSha256": "\([0-9a-f]\{64\}\)"\(,\{0,1\}\)$'
  [ "$(grep -c "$self_re" "$manifest")" = 1 ] ||
    die 3 "dubnium-seed.json: its selfSha256 line is damaged (the manifest was changed); re-copy or rebuild the seed"
  self_recorded=$(sed -n "s/$self_re/\1/p" "$manifest")
  self_actual=$(sed "s/$self_re/  \"selfSha256\": \"0000000000000000000000000000000000000000000000000000000000000000\"\2/" "$manifest" | sha256sum | cut -c1-64)
  [ "$self_recorded" = "$self_actual" ] ||
    die 3 "dubnium-seed.json was changed after it was written (its selfSha256 does not match); re-copy or rebuild the seed"
fi

# The manifest records the sha256 of SHA256SUMS ("checksums", its fields four spaces in): that ties
# every payload digest to the manifest, and so to its signature.
checksums_block=$(sed -n '/^  "checksums": {$/,/^  }/p' "$manifest")
if [ -n "$checksums_block" ]; then
  sums_recorded=$(printf '%s\n' "$checksums_block" | sed -n 's/^    "sha256": "\([0-9a-f]\{64\}\)",\{0,1\}$/\1/p')
  [ "$(printf '%s\n' "$sums_recorded" | grep -c .)" = 1 ] ||
    die 3 "dubnium-seed.json: its record of the SHA256SUMS digest is unreadable; re-copy or rebuild the seed"
  [ "$(sha256sum < SHA256SUMS | cut -c1-64)" = "$sums_recorded" ] ||
    die 3 "SHA256SUMS does not match the digest dubnium-seed.json records (it was changed or damaged); re-copy or rebuild the seed"
elif [ -n "$signer" ]; then
  die 3 "signature check failed: dubnium-seed.json records no digest of SHA256SUMS, so its signature does not cover the files; nothing was written"
fi

store_lines=$(grep -c '^  "modelStore": ' "$manifest")
if [ "$store_lines" = 0 ]; then
  model_store=$default_store
else
  model_store=$(sed -n 's/^  "modelStore": "\(.*\)",\{0,1\}$/\1/p' "$manifest")
  [ "$store_lines" = 1 ] && [ -n "$model_store" ] ||
    die 3 "dubnium-seed.json: top-level \"modelStore\" is unreadable"
fi
case $model_store in
  /*) ;;
  *) die 3 "dubnium-seed.json: modelStore '$model_store' is not an absolute path" ;;
esac
case $model_store in
  *[!A-Za-z0-9._/-]*) die 3 "dubnium-seed.json: modelStore '$model_store' has characters outside A-Z a-z 0-9 . _ / -" ;;
esac
case $model_store/ in
  */../*) die 3 "dubnium-seed.json: modelStore '$model_store' contains '..'" ;;
esac
while :; do
  case $model_store in
    ?*/) model_store=${model_store%/} ;;
    *) break ;;
  esac
done
[ "$model_store" != / ] || die 3 "dubnium-seed.json: modelStore cannot be /"
store=${root%/}$model_store

# SHA256SUMS lines: `<64 hex>  <relative path>`, nothing else, nothing escaping the seed.
[ -s SHA256SUMS ] || die 3 "SHA256SUMS in $seed lists no files"
bad_lines=$(grep -n -v '^[0-9a-fA-F]\{64\}  [^/ *	]' SHA256SUMS | cut -c1-120)
[ -z "$bad_lines" ] || {
  for l in $(printf '%s\n' "$bad_lines" | cut -d: -f1); do problem "SHA256SUMS line $l is not '<sha256>  <relative path>'"; done
  fail_problems
}
listed=$(cut -c67- SHA256SUMS)
escaping=$(printf '%s\n' "$listed" | grep -E '(^|/)\.\.(/|$)')
[ -z "$escaping" ] || {
  printf '%s\n' "$escaping" | {
    while IFS= read -r p; do printf '%s:   %s\n' "$prog" "$p" >&2; done
  }
  die 3 "SHA256SUMS names paths outside the seed (with '..', listed above); this seed is unsafe, do not use it"
}

# Every listed path must be a regular file reached without symlinks: sha256sum -c would follow
# a link to a file outside the seed and happily hash it.
while IFS= read -r p; do
  [ -n "$p" ] || continue
  d=$p
  while :; do
    case $d in */*) d=${d%/*} ;; *) break ;; esac
    if [ -L "$d" ]; then problem "$p: folder $d is a symlink (payload must be real files)"; continue 2; fi
  done
  if [ -L "$p" ]; then
    problem "$p: is a symlink (payload must be real files)"
  elif [ ! -e "$p" ]; then
    problem "$p: missing"
  elif [ ! -f "$p" ]; then
    problem "$p: not a regular file"
  fi
done <<EOF
$listed
EOF

# Every file under models/ and source/ must be listed; anything else there is unexpected.
scan_dirs=
for d in models source inputs; do
  if [ -L "$d" ]; then problem "$d: is a symlink (must be a real folder)"
  elif [ -d "$d" ]; then scan_dirs="$scan_dirs $d"
  elif [ -e "$d" ]; then problem "$d: not a folder"
  fi
done
if [ -n "$scan_dirs" ]; then
  # shellcheck disable=SC2086 # the two fixed names above, split on purpose
  unlisted=$(find $scan_dirs ! -type d -print | while IFS= read -r f; do
    printf '%s\n' "$listed" | grep -Fxq -- "$f" || printf '%s\n' "$f"
  done)
  if [ -n "$unlisted" ]; then
    while IFS= read -r f; do
      if [ -L "$f" ]; then problem "$f: symlink not listed in SHA256SUMS"
      else problem "$f: not listed in SHA256SUMS (unexpected file)"; fi
    done <<EOF
$unlisted
EOF
  fi
fi

# Exactly one source archive.
archives=
archive_count=0
for a in source/*.tar.gz; do
  [ -e "$a" ] || [ -L "$a" ] || continue
  archives="$archives $a"
  archive=$a
  archive_count=$((archive_count + 1))
done
case $archive_count in
  0) problem "source/: no <name>-<rev>.tar.gz archive" ;;
  1) ;;
  *) problem "source/: $archive_count archives (${archives# }), expected exactly one" ;;
esac

# Bundles: folders directly under models/, with names safe to use as a folder name.
bundles=
if [ -d models ] && [ ! -L models ]; then
  for b in models/* models/.[!.]* models/..?*; do
    [ -e "$b" ] || [ -L "$b" ] || continue
    name=${b#models/}
    case $name in
      .*) problem "$b: hidden entry in models/ (bundle names must not start with '.')"; continue ;;
      *"$nl"*) problem "models/: entry with a newline in its name"; continue ;;
    esac
    if [ -d "$b" ] && [ ! -L "$b" ]; then
      bundles=$bundles$name$nl
    else
      problem "$b: not a bundle folder"
    fi
  done
fi

[ -z "$problems" ] || fail_problems

# --- 2. the source archive first (small), so a refusal below comes before the long full check --
archive_line=$(grep -F -- "  $archive" SHA256SUMS | while IFS= read -r l; do
  [ "${l#*  }" = "$archive" ] && printf '%s\n' "$l"
done)
if ! check_out=$(printf '%s\n' "$archive_line" | sha256sum -c - 2>&1); then
  err "seed verification failed: $archive does not match SHA256SUMS; nothing was written. Re-copy the seed"
  show_check_failures
  exit 3
fi

# --- 3. the source archive: safe member names, one top-level folder ------------------------------
# GNU tar and busybox both rewrite absolute and '..' member names when listing and say so on
# stderr, so any word from tar here means a member name we would not take as it is.
tar_says=$(tar -tzf "$archive" 2>&1 >/dev/null) || die 3 "$archive: cannot be listed by tar (corrupt archive)"
[ -z "$tar_says" ] || die 3 "$archive: unsafe member names (tar: $(printf '%s\n' "$tar_says" | sed -n '1s/^tar: //p')); refusing this archive"
names=$(tar -tzf "$archive" 2>/dev/null) || die 3 "$archive: cannot be listed by tar (corrupt archive)"
details=$(tar -tvzf "$archive" 2>/dev/null) || die 3 "$archive: cannot be listed by tar (corrupt archive)"
[ -n "$names" ] || die 3 "$archive: empty archive"
top=
links=
while IFS= read -r n <&3 && IFS= read -r v <&4; do
  case $n in
    /*) die 3 "$archive: member '$n' has an absolute path; refusing this archive" ;;
  esac
  case /$n/ in
    */../*) die 3 "$archive: member '$n' contains '..'; refusing this archive" ;;
  esac
  t=${n%%/*}
  case $t in
    ''|.) die 3 "$archive: member '$n' is not inside one top-level folder" ;;
  esac
  if [ -z "$top" ]; then top=$t
  elif [ "$t" != "$top" ]; then
    die 3 "$archive: more than one top-level entry ('$top', '$t'); expected one folder"
  fi
  # Busybox lists a hard link as a regular file ' -> target', GNU tar as 'h... link to target'.
  case $v in
    *' link to '*) die 3 "$archive: member '$n' is a hard link; refusing this archive" ;;
    -*' -> '*) die 3 "$archive: member '$n' is a hard link; refusing this archive" ;;
    [-d]*) ;;
    l*) links=$links$n$nl ;;
    *) die 3 "$archive: member '$n' is not a file, folder or symlink; refusing this archive" ;;
  esac
done 3<<EOF1 4<<EOF2
$names
EOF1
$details
EOF2
[ "$(printf '%s\n' "$names" | wc -l)" -eq "$(printf '%s\n' "$details" | wc -l)" ] ||
  die 3 "$archive: member listing is inconsistent (unusual file names); refusing this archive"
# A member beneath a symlink member would be written through the link, possibly outside the target.
if [ -n "$links" ]; then
  while IFS= read -r n; do
    while IFS= read -r l; do
      [ -n "$l" ] || continue
      case $n in
        "$l"/*) die 3 "$archive: member '$n' lies beneath symlink '$l'; refusing this archive" ;;
      esac
    done <<EOF
$links
EOF
  done <<EOF
$names
EOF
fi
case $names in
  "$top/"*|*"$nl$top/"*) ;;
  *) die 3 "$archive: top-level entry '$top' is not a folder" ;;
esac
# Top-level entries of the configuration, after stripping the archive's folder.
entries=$(while IFS= read -r n; do
  rest=${n#"$top"/}
  [ "$rest" != "$n" ] && [ -n "$rest" ] && printf '%s\n' "${rest%%/*}"
done <<EOF | sort -u
$names
EOF
)
[ -n "$entries" ] || die 3 "$archive: the top-level folder '$top' is empty"

# --- 3b. carried flake inputs: read from the manifest's "flake" block ----------------------------
# JSON.stringify(_, null, 2) puts each carried input's keys at eight spaces of indent inside the
# top-level "flake" object; sed reads them without a JSON parser, one record per input object.
flake_host=
carried=
if grep -q '^  "flake": {$' "$manifest"; then
  flake_block=$(sed -n '/^  "flake": {$/,/^  },\{0,1\}$/p' "$manifest")
  flake_host=$(printf '%s\n' "$flake_block" | sed -n 's/^    "host": "\([A-Za-z0-9._-]*\)",\{0,1\}$/\1/p')
  carried=$(printf '%s\n' "$flake_block" | sed -n \
    -e 's/^        "name": "\(.*\)",\{0,1\}$/name \1/p' \
    -e 's/^        "file": "\(.*\)",\{0,1\}$/file \1/p' \
    -e 's/^        "storePath": "\(.*\)",\{0,1\}$/store \1/p' \
    -e 's/^      },\{0,1\}$/end/p' | {
      n= f= p=
      while IFS=' ' read -r k v; do
        case $k in
          name) n=$v ;; file) f=$v ;; store) p=$v ;;
          end) [ -z "$f" ] || printf '%s %s %s\n' "$f" "$p" "$n"; n= f= p= ;;
        esac
      done
    })
fi
check_input_archive() {
  ia=$1
  ia_says=$(tar -tzf "$ia" 2>&1 >/dev/null) || die 3 "$ia: cannot be listed by tar (corrupt archive)"
  [ -z "$ia_says" ] || die 3 "$ia: unsafe member names (tar: $(printf '%s\n' "$ia_says" | sed -n '1s/^tar: //p')); refusing this archive"
  ia_names=$(tar -tzf "$ia" 2>/dev/null) || die 3 "$ia: cannot be listed by tar (corrupt archive)"
  ia_details=$(tar -tvzf "$ia" 2>/dev/null) || die 3 "$ia: cannot be listed by tar (corrupt archive)"
  [ "$(printf '%s\n' "$ia_names" | wc -l)" -eq "$(printf '%s\n' "$ia_details" | wc -l)" ] ||
    die 3 "$ia: member listing is inconsistent (unusual file names); refusing this archive"
  ia_links=
  while IFS= read -r n <&3 && IFS= read -r v <&4; do
    case $n in source|source/*) ;; *) die 3 "$ia: member '$n' is not inside the folder source/; refusing this archive" ;; esac
    case /$n/ in */../*) die 3 "$ia: member '$n' contains '..'; refusing this archive" ;; esac
    case $v in
      *' link to '*|-*' -> '*) die 3 "$ia: member '$n' is a hard link; refusing this archive" ;;
      [-d]*) ;;
      l*) ia_links=$ia_links$n$nl ;;
      *) die 3 "$ia: member '$n' is not a file, folder or symlink; refusing this archive" ;;
    esac
  done 3<<EOF1 4<<EOF2
$ia_names
EOF1
$ia_details
EOF2
  # Nothing may lie beneath a symlink member: tar would write it wherever the link points.
  [ -z "$ia_links" ] || while IFS= read -r n; do
    while IFS= read -r l; do
      [ -n "$l" ] || continue
      case $n in "$l"/*) die 3 "$ia: member '$n' lies beneath symlink '$l'; refusing this archive" ;; esac
    done <<EOF
$ia_links
EOF
  done <<EOF
$ia_names
EOF
}
if [ -n "$carried" ]; then
  while IFS=' ' read -r f p n; do
    case $f in
      inputs/*/*|*..*|*[!A-Za-z0-9._+/-]*) die 3 "dubnium-seed.json: carried input file '$f' is not a plain name under inputs/" ;;
      inputs/?*.tar.gz) ;;
      *) die 3 "dubnium-seed.json: carried input file '$f' is not inputs/<name>.tar.gz" ;;
    esac
    case $p in
      /nix/store/????????????????????????????????-source) ;;
      *) die 3 "dubnium-seed.json: carried input $n has no valid store path ('$p')" ;;
    esac
    printf '%s\n' "$listed" | grep -Fxq -- "$f" || die 3 "dubnium-seed.json: carried input file $f is not listed in SHA256SUMS"
  done <<EOF
$carried
EOF
fi

# --- 4. plan: decide everything that could refuse before writing anything -------------------------
source_mode=new
if [ -L "$source_to" ]; then
  die 2 "--source-to '$source_to' is a symlink; pass the real folder"
elif [ -d "$source_to" ]; then
  if [ -n "$(ls -A -- "$source_to")" ]; then
    if [ "$force" = 1 ]; then
      source_mode=replace
    else
      source_mode=merge
      conflicts=
      while IFS= read -r e; do
        if [ -e "$source_to/$e" ] || [ -L "$source_to/$e" ]; then conflicts="$conflicts $e"; fi
      done <<EOF
$entries
EOF
      [ -z "$conflicts" ] ||
        die 2 "$source_to already has:$conflicts (the archive has them too); pass --force to replace its contents (hardware-configuration.nix is kept unless the archive has one), or --source-to DIR"
    fi
  else
    source_mode=empty
  fi
elif [ -e "$source_to" ]; then
  die 2 "--source-to '$source_to' exists and is not a folder"
fi
# The nearest existing ancestor of each destination must be a folder, or mkdir -p would fail
# halfway through the install.
check_creatable() {
  c=$1
  while [ ! -e "$c" ] && [ ! -L "$c" ]; do c=${c%/*}; [ -n "$c" ] || c=/; done
  [ -d "$c" ] || die 2 "cannot create $1: $c is not a folder; fix the target or pass $2"
}
[ -z "$bundles" ] || check_creatable "$store" "--root DIR"
check_creatable "$source_to" "--source-to DIR"
keep_hw=0
if [ "$source_mode" = replace ] && [ -f "$source_to/hardware-configuration.nix" ] &&
  ! printf '%s\n' "$entries" | grep -Fxq hardware-configuration.nix; then
  keep_hw=1
fi

# --- 5. hash every byte, before any write ------------------------------------------------------
file_count=$(printf '%s\n' "$listed" | grep -c .)
say "verifying $file_count files in $seed against SHA256SUMS (reads every byte)..."
if ! check_out=$(sha256sum -c SHA256SUMS 2>&1); then
  err "seed verification failed: these files do not match SHA256SUMS; nothing was written. Re-copy the seed"
  show_check_failures
  exit 3
fi
say "verified: all $file_count files match"

# The carried inputs' bytes are verified now: their archives are checked before anything unpacks them.
if [ -n "$carried" ]; then
  while IFS=' ' read -r f p n; do check_input_archive "$f"; done <<EOF
$carried
EOF
fi

if [ "$dry_run" = 1 ]; then
  say "dry run: nothing will be written"
  [ -z "$carried" ] || while IFS=' ' read -r f p n; do
    say "would register flake input $n ($f) as $p in the live Nix store and in $root's"
  done <<EOF
$carried
EOF
  while IFS= read -r b; do
    [ -n "$b" ] || continue
    if [ -e "$store/$b" ] || [ -L "$store/$b" ]; then
      say "would replace model bundle $store/$b with models/$b"
    else
      say "would install model bundle models/$b to $store/$b"
    fi
  done <<EOF
$bundles
EOF
  case $source_mode in
    new|empty) say "would unpack $archive into $source_to" ;;
    merge) say "would unpack $archive into $source_to, beside its existing files" ;;
    replace)
      say "would replace the contents of $source_to with $archive (--force)"
      [ "$keep_hw" = 0 ] || say "would keep $source_to/hardware-configuration.nix"
      ;;
  esac
  exit 0
fi

install_fail() { err "$*"; exit 1; }

# --- 5b. register carried flake inputs in the live store, then the target's ---------------------
# The live store goes first: a store path that differs from the manifest's stops the install
# before anything is written under the target root.
registered=0
nix_missing=0
if [ -n "$carried" ]; then
  if ! command -v nix-store >/dev/null 2>&1; then
    nix_missing=1
    err "nix-store is not on PATH: the carried flake inputs are NOT registered; the rest is installed. Run this script on the NixOS installer to register them."
  else
    while IFS=' ' read -r f p n; do
      input_tmp=$(mktemp -d "${TMPDIR:-/tmp}/seed-input-XXXXXX") || install_fail "cannot create a temporary folder for $f"
      tar -x -z -o -f "$f" -C "$input_tmp" || install_fail "unpacking $f failed (disk full?)"
      [ -e "$input_tmp/source" ] || install_fail "unpacking $f did not produce source"
      if [ -n "$live_store" ]; then
        got=$(nix-store --store "$live_store" --add-fixed --recursive sha256 "$input_tmp/source") || install_fail "nix-store could not add flake input $n to $live_store"
      else
        got=$(nix-store --add-fixed --recursive sha256 "$input_tmp/source") || install_fail "nix-store could not add flake input $n to the live Nix store"
      fi
      [ "$got" = "$p" ] || die 3 "flake input $n: Nix stored $f as $got, the manifest expects $p (the seed does not match flake.lock); nothing was written under $root"
      got=$(nix-store --store "$root" --add-fixed --recursive sha256 "$input_tmp/source") || install_fail "nix-store could not add flake input $n to the store of $root"
      [ "$got" = "$p" ] || install_fail "flake input $n: the store of $root holds it as $got, expected $p"
      say "registered flake input $n as $p (live store and $root)"
      registered=$((registered + 1))
      rm -rf -- "$input_tmp"
      input_tmp=
    done <<EOF
$carried
EOF
  fi
fi

# --- 6. install bundles, each by copy-then-rename ----------------------------------------------
if [ -n "$bundles" ]; then
  mkdir -p -- "$store" || install_fail "cannot create model store $store"
fi
while IFS= read -r b; do
  [ -n "$b" ] || continue
  dest=$store/$b
  old=$store/.$b.old-$$
  # Leftovers of an interrupted earlier run are never a bundle; clear them first.
  for stale in "$store/.$b.partial-"*; do
    [ -e "$stale" ] || [ -L "$stale" ] || continue
    say "removing leftover $stale from an interrupted run"
    rm -rf -- "$stale"
  done
  partial=$store/.$b.partial-$$
  say "installing model bundle $b -> $dest"
  rm -rf -- "$partial"
  cp -R -- "models/$b" "$partial" || install_fail "copying models/$b to $partial failed (disk full?); $dest is unchanged"
  if [ -e "$dest" ] || [ -L "$dest" ]; then
    mv -- "$dest" "$old" || install_fail "cannot move the existing $dest aside; it is unchanged"
    if ! mv -- "$partial" "$dest"; then
      mv -- "$old" "$dest"
      install_fail "cannot rename $partial to $dest; the previous bundle was put back"
    fi
    partial=
    rm -rf -- "$old" || err "could not remove the previous bundle at $old; remove it by hand"
  else
    mv -- "$partial" "$dest" || install_fail "cannot rename $partial to $dest"
    partial=
  fi
  for stale in "$store/.$b.old-"*; do
    [ -e "$stale" ] || [ -L "$stale" ] || continue
    say "removing leftover $stale from an interrupted run"
    rm -rf -- "$stale"
  done
done <<EOF
$bundles
EOF

# --- 7. unpack the source beside its target, then move it in -----------------------------------
parent=${source_to%/*}
[ -n "$parent" ] || parent=/
base=${source_to##*/}
mkdir -p -- "$parent" || install_fail "cannot create $parent"
extract_tmp=$(mktemp -d "$parent/.$base.seed-XXXXXX") || install_fail "cannot create a temporary folder in $parent"
say "unpacking $archive -> $source_to"
# -o: do not restore the archive's owners (GNU tar and busybox both read it so on extract).
tar -x -z -o -f "$archive" -C "$extract_tmp" || install_fail "unpacking $archive failed (disk full?); $source_to is unchanged"
new=$extract_tmp/$top
[ -d "$new" ] && [ ! -L "$new" ] || install_fail "unpacking $archive did not produce the folder $top"
case $source_mode in
  new)
    mv -- "$new" "$source_to" || install_fail "cannot move the source into $source_to"
    ;;
  empty)
    rmdir -- "$source_to" && mv -- "$new" "$source_to" || install_fail "cannot move the source into $source_to"
    ;;
  merge)
    while IFS= read -r e; do
      mv -- "$new/$e" "$source_to/$e" || install_fail "cannot move $e into $source_to; it is partly installed, re-run with --force"
    done <<EOF
$entries
EOF
    ;;
  replace)
    if [ "$keep_hw" = 1 ]; then
      cp -p -- "$source_to/hardware-configuration.nix" "$new/hardware-configuration.nix" ||
        install_fail "cannot keep $source_to/hardware-configuration.nix; $source_to is unchanged"
      say "keeping $source_to/hardware-configuration.nix"
    fi
    old_src=$parent/.$base.old-$$
    mv -- "$source_to" "$old_src" || install_fail "cannot move $source_to aside; it is unchanged"
    if ! mv -- "$new" "$source_to"; then
      mv -- "$old_src" "$source_to"
      install_fail "cannot move the source into $source_to; the previous contents were put back"
    fi
    rm -rf -- "$old_src" || err "could not remove the previous contents at $old_src; remove them by hand"
    ;;
esac
rm -rf -- "$extract_tmp"
extract_tmp=

say "done: models in $store, source in $source_to"
if [ -f "$source_to/flake.nix" ]; then
  [ "$registered" = 0 ] || say "flake inputs: $registered carried inputs are in the Nix stores; nixos-install needs no credentials for them"
  [ "$nix_missing" = 0 ] || say "flake inputs: NOT registered (no nix-store here); nixos-install will try to fetch them"
  if [ -n "$flake_host" ]; then
    say "next: nixos-install --root $root --flake $source_to#$flake_host"
  else
    say "next: nixos-install --root $root --flake $source_to#<host>"
    say "      (the seed names no host: put your nixosConfigurations name in place of <host>)"
  fi
fi
exit 0
