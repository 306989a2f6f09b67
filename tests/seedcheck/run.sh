#!/usr/bin/env bash
# run.sh — the seed differential test (meson suite 'seedcheck').
#
#   run.sh C_DRIVER WORKDIR [C_REBUILD] [C_VIEW]
#
# Builds the Rust side (main.rs + shim.rs + alloc.rs of this directory and
# the seed allocators, read from the seeds directory at build time and
# never copied into the repository) with plain rustc into WORKDIR, then for
# each allocator runs random operation scripts through both the seed and
# our C (C_DRIVER, driver.c) and compares, after every step, the slices
# returned and the whole image (length + FNV-1a hash).  On a mismatch it
# replays both up to the first differing step and prints the first
# differing byte of the images.
#
# Then the seed walk of repaired images (issue 14): C_REBUILD (rebuild.c)
# writes, per allocator, an undamaged image, images whose allocator
# metadata was damaged and repaired by fsck -y's open, and negative
# controls, each with the live slices its catalog names; the seed walks
# each (main.rs `walk`, walk.rs).  A repaired image or the control must
# pass, a negative control must be refused (exit 1, "FAILED:"); each walk
# is one test.  Without C_REBUILD (the volume not built) this part is
# skipped.
#
# Then the view of images the seeds wrote (issue 16): for each allocator,
# the seed's own code applies random scripts (main.rs `view`, view.rs) and
# says what `bstackfs -o view` must show of each image; C_VIEW (view.c)
# opens it with core/allocview.c and compares allocation by allocation,
# the slices' bytes, the free space, and the image's SHA-256 before and
# after.  Each image is one test, and one negative control per allocator
# (an expectation with one allocation dropped) must be refused.  Without
# C_VIEW this part is skipped.  BSTACKFS_SEEDCHECK_VIEW_N: images per
# allocator (10).
#
# Seeds directory: $BSTACKFS_SEEDS, else <repo>/../shared/seeds.
# Environment: BSTACKFS_SEED (base seed; random when unset),
# BSTACKFS_SEEDCHECK_N (scripts per allocator, 60),
# BSTACKFS_SEEDCHECK_OPS (operations per script, 300).
#
# BSTACKFS_SEEDCHECK_STRICT=1 also compares the one documented FirstFit
# difference (a dealloc/realloc of a tail block larger than its slice
# rounded up; main.rs ff_known_difference), which both drivers otherwise
# skip as "skip-OP" steps.
#
# rustc feature configuration: set + alloc + atomic (the seeds' thread-safe
# build, whose try_discard / try_extend_zeros paths our C mirrors; single
# threaded, the bytes are the same without atomic).
#
# Exit 77 (skipped) without rustc (>= 1.88) or the seeds; last line
# "suite seedcheck: P passed, F failed" (one test = one allocator x script,
# or one walk).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
driver=${1:?usage: run.sh C_DRIVER WORKDIR [C_REBUILD]}
work=${2:?usage: run.sh C_DRIVER WORKDIR [C_REBUILD]}
rebuild=${3:-}
viewer=${4:-}
srcdir=${BSTACKFS_SRCDIR:-$(cd "$here/../.." && pwd)}
seeds=${BSTACKFS_SEEDS:-$srcdir/../shared/seeds}

ghost_seed=bstack-0.2.4-ghost-tree-allocator.rs.txt
firstfit_seed=bstack-0.2.0-first-fit-allocator.rs.txt
slab_seed=bstack-0.2.4-slab-allocator.rs.txt

if ! command -v rustc >/dev/null 2>&1; then
	echo "seedcheck: SKIP: rustc not found (the seed side is Rust)"
	exit 77
fi
# The seeds use let chains (edition 2024, stable since rustc 1.88).
rv=$(rustc --version | sed -n 's/^rustc \([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
set -- $rv
if [ -z "$rv" ] || [ "$1" -lt 1 ] || { [ "$1" -eq 1 ] && [ "$2" -lt 88 ]; }; then
	echo "seedcheck: SKIP: $(rustc --version) is older than 1.88 (the seeds need edition 2024 let chains)"
	exit 77
fi
for f in $ghost_seed $firstfit_seed $slab_seed; do
	if [ ! -r "$seeds/$f" ]; then
		echo "seedcheck: SKIP: seed $seeds/$f not found (set BSTACKFS_SEEDS)"
		exit 77
	fi
done

mkdir -p "$work/gen" || exit 1
gen=$(cd "$work/gen" && pwd)

# Each seed is a web page's text: drop the page furniture before the first
# line of Rust (title, tagline, "Documentation").
for k in ghost firstfit slab; do
	v=${k}_seed
	awk 'f || /^(use |\/\/|#|const |pub |mod )/ { f = 1; print }' \
		"$seeds/${!v}" >"$gen/$k.rs" || exit 1
	printf '#[allow(dead_code, unused)]\n#[path = "%s/%s.rs"]\npub mod %s;\n' \
		"$gen" "$k" "$k"
done >"$gen/seeds.rs"

echo "seedcheck: building the seed side with $(rustc --version)"
if ! SEEDCHECK_GEN=$gen rustc --edition 2024 -O \
	--cfg 'feature="set"' --cfg 'feature="alloc"' --cfg 'feature="atomic"' \
	-o "$work/seedcheck" "$here/main.rs"; then
	echo "seedcheck: the seed side does not build"
	echo "suite seedcheck: 0 passed, 1 failed"
	exit 1
fi

n_scripts=${BSTACKFS_SEEDCHECK_N:-60}
n_ops=${BSTACKFS_SEEDCHECK_OPS:-300}
base=${BSTACKFS_SEED:-$(( ($(date +%s) * 7919 + $$) % 1000000000 ))}
echo "seedcheck: base seed $base (replay with BSTACKFS_SEED=$base)," \
	"$n_scripts scripts x $n_ops ops per allocator"

rs=$work/seedcheck
tmp=$work/tmp
mkdir -p "$tmp" || exit 1
passed=0
failed=0

# explain KIND SEED SCRIPT: the first differing step and byte.
explain() {
	local kind=$1 seed=$2 script=$3 stepno line_r line_c cmpout byte
	stepno=$(diff "$tmp/r.out" "$tmp/c.out" |
		awk '/^[<>]/ { print $2; exit }')
	line_r=$(grep -m1 "^$stepno " "$tmp/r.out")
	line_c=$(grep -m1 "^$stepno " "$tmp/c.out")
	cp "$script" "$work/fail-$kind-$seed.txt"
	echo "MISMATCH $kind seed $seed at step $stepno:" \
		"$(sed -n "$((stepno + 1))p" "$script")"
	echo "  seed: ${line_r:-<no line>}"
	echo "  C:    ${line_c:-<no line>}"
	echo "  script kept as $work/fail-$kind-$seed.txt"
	[ -n "$stepno" ] || return
	"$rs" run "$script" "$tmp/r.img" "$stepno" >/dev/null 2>&1
	"$driver" "$script" "$tmp/c.img" "$stepno" >/dev/null 2>&1
	echo "  images after step $stepno: $(stat -c %s "$tmp/r.img") bytes (seed)," \
		"$(stat -c %s "$tmp/c.img") bytes (C)"
	# the first differing payload byte (the header's clen follows the length)
	cmpout=$(cmp -i 16 "$tmp/r.img" "$tmp/c.img" 2>&1)
	byte=$(printf '%s\n' "$cmpout" | sed -n 's/.*differ: \(char\|byte\) \([0-9]*\).*/\2/p')
	if [ -n "$byte" ]; then
		local off=$((byte - 1 + 16))
		echo "  first differing payload offset $((off - 16)) (file byte $off):"
		echo "    seed: $(od -An -tx1 -j "$off" -N 16 "$tmp/r.img")"
		echo "    C:    $(od -An -tx1 -j "$off" -N 16 "$tmp/c.img")"
	else
		echo "  payload bytes: ${cmpout:-identical}"
	fi
}

for kind in ghost firstfit slab; do
	kp=0
	kf=0
	steps=0
	skips=0
	for ((i = 0; i < n_scripts; i++)); do
		seed=$((base + i))
		script=$tmp/$kind.txt
		"$rs" gen "$kind" "$seed" "$n_ops" >"$script" || exit 1
		"$rs" run "$script" "$tmp/r.img" >"$tmp/r.out" 2>"$tmp/r.err"
		rr=$?
		"$driver" "$script" "$tmp/c.img" >"$tmp/c.out" 2>"$tmp/c.err"
		cr=$?
		steps=$((steps + $(wc -l <"$tmp/c.out") - 1))
		skips=$((skips + $(grep -c ' skip-' "$tmp/c.out")))
		if [ $rr -ne 0 ] || [ $cr -ne 0 ] || grep -q ' ERR$' "$tmp/r.out" "$tmp/c.out"; then
			echo "FAIL $kind seed $seed: a driver failed (seed rc $rr, C rc $cr)"
			cat "$tmp/r.err" "$tmp/c.err"
			cp "$script" "$work/fail-$kind-$seed.txt"
			kf=$((kf + 1))
		elif ! cmp -s "$tmp/r.out" "$tmp/c.out" || ! cmp -s "$tmp/r.img" "$tmp/c.img"; then
			explain "$kind" "$seed" "$script"
			kf=$((kf + 1))
		else
			kp=$((kp + 1))
		fi
	done
	echo "seedcheck: $kind: $kp scripts identical, $kf differ;" \
		"$steps steps compared, $skips skipped as known differences"
	passed=$((passed + kp))
	failed=$((failed + kf))
done

# The seed walk of the images fsck -y repaired (and of the controls).
if [ -z "$rebuild" ]; then
	echo "seedcheck: walk: skipped (seedcheck_rebuild is not built: it needs the volume and heapmap modules)"
fi
for kind in ${rebuild:+ghost firstfit slab}; do
	wdir=$tmp/walk-$kind
	mkdir -p "$wdir" || exit 1
	t0=$(date +%s%N)
	if ! "$rebuild" "$kind" "$wdir" >"$wdir/cases" 2>"$wdir/err"; then
		echo "FAIL walk $kind: seedcheck_rebuild could not make every image:"
		sed 's/^/  /' "$wdir/err"
		failed=$((failed + 1))
	fi
	wp=0
	wf=0
	neg=0
	while read -r name expect; do
		out=$("$rs" walk "$kind" "$wdir/$name.img" "$wdir/$name.live" 2>&1)
		rc=$?
		if [ "$expect" = ok ] && [ $rc -eq 0 ]; then
			echo "seedcheck: $name: $out"
			wp=$((wp + 1))
		elif [ "$expect" = fail ] && [ $rc -eq 1 ] && [[ $out == *FAILED:* ]]; then
			echo "seedcheck: $name (negative control, refused as it must be): ${out#*FAILED: }"
			wp=$((wp + 1))
			neg=$((neg + 1))
		else
			echo "FAIL walk $name: expected $expect, the walk exited $rc: $out"
			cp "$wdir/$name.img" "$wdir/$name.live" "$work/" 2>/dev/null &&
				echo "  image and live slices kept as $work/$name.img, $work/$name.live"
			wf=$((wf + 1))
		fi
	done <"$wdir/cases"
	ms=$((($(date +%s%N) - t0) / 1000000))
	echo "seedcheck: walk $kind: $wp walks as expected ($neg of them negative controls" \
		"refused), $wf not; ${ms} ms"
	passed=$((passed + wp))
	failed=$((failed + wf))
done
# The view of the images the seeds wrote (issue 16).
if [ -z "$viewer" ]; then
	echo "seedcheck: view: skipped (seedcheck_view is not built: it needs allocview)"
fi
n_view=${BSTACKFS_SEEDCHECK_VIEW_N:-10}
for kind in ${viewer:+ghost firstfit slab}; do
	vdir=$tmp/view-$kind
	mkdir -p "$vdir" || exit 1
	last=
	vp=0
	vf=0
	for ((i = 0; i < n_view; i++)); do
		seed=$((base + 100000 + i))
		script=$vdir/script.txt
		"$rs" gen "$kind" "$seed" "$n_ops" >"$script" || exit 1
		if ! "$rs" view "$script" "$vdir/img" "$vdir/expect" >/dev/null 2>"$vdir/err"; then
			echo "FAIL view $kind seed $seed: the seed side failed: $(cat "$vdir/err")"
			vf=$((vf + 1))
			continue
		fi
		before=$(sha256sum <"$vdir/img")
		out=$("$viewer" "$vdir/img" "$vdir/expect" 2>&1)
		rc=$?
		after=$(sha256sum <"$vdir/img")
		if [ $rc -eq 0 ] && [ "$before" = "$after" ]; then
			vp=$((vp + 1))
			last=$out
		else
			echo "FAIL view $kind seed $seed (exit $rc): $out"
			[ "$before" = "$after" ] || echo "  and the image's SHA-256 changed"
			cp "$script" "$work/fail-view-$kind-$seed.txt"
			vf=$((vf + 1))
		fi
	done
	# negative control: one allocation left out of what the seed made
	awk '/^expect / && !d { d = 1; next } { print }' "$vdir/expect" >"$vdir/expect.neg"
	out=$("$viewer" "$vdir/img" "$vdir/expect.neg" 2>&1)
	if [ $? -eq 1 ] && [[ $out == *FAILED:* ]]; then
		vp=$((vp + 1))
		echo "seedcheck: view $kind negative control refused as it must be: ${out#*FAILED: }"
	else
		echo "FAIL view $kind negative control: accepted: $out"
		vf=$((vf + 1))
	fi
	echo "seedcheck: view $kind: $vp as expected, $vf not (last: ${last:-none})"
	passed=$((passed + vp))
	failed=$((failed + vf))
done
rm -rf "$tmp"
echo "suite seedcheck: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
