#!/usr/bin/env bash
# tests/install.sh BUILD_DIR SOURCE_DIR SANITIZE — `meson install --destdir`
# into a temporary prefix, then check what a user gets: the programs (and
# fsck.bstackfs), man pages, bash completion, headers, libbstack shared and
# static, and a pkg-config file with which examples/alloc_demo.c builds and
# runs against the installed library, for every allocator.
#
# Prints "suite install: P passed, F failed" (scripts/test counts it); exit
# status 1 when a check failed, 77 (skipped) in a sanitizer build (programs
# built without the sanitizer runtime cannot link its library).
set -uo pipefail

build=$1 src=$2 sanitize=${3:-none}
if [ "$sanitize" != none ]; then
	echo "install: skipped in a -Db_sanitize=$sanitize build"
	exit 77
fi

passed=0 failed=0
check() {   # check WHAT COMMAND...: run it, count it
	local what=$1
	shift
	if "$@" >"$work/log" 2>&1; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		echo "FAILED: $what"
		sed 's/^/    /' "$work/log" | head -40
	fi
}

work=$(mktemp -d "${TMPDIR:-/tmp}/bstackfs-install-XXXXXX")
trap 'rm -rf "$work"' EXIT
dest=$work/dest

opt() {   # the value of build option $1
	meson introspect "$build" --buildoptions |
		python3 -c "import json,sys; print(next(o['value'] for o in json.load(sys.stdin) if o['name'] == '$1'))"
}
prefix=$(opt prefix) libdir=$(opt libdir) bindir=$(opt bindir) mandir=$(opt mandir)
datadir=$(opt datadir) incdir=$(opt includedir)
abs() { case $1 in /*) echo "$dest$1" ;; *) echo "$dest$prefix/$1" ;; esac; }
B=$(abs "$bindir") L=$(abs "$libdir") M=$(abs "$mandir") D=$(abs "$datadir") I=$(abs "$incdir")

check "meson install --destdir" meson install -C "$build" --destdir "$dest" --no-rebuild --quiet

for p in bstackfs mkfs.bstackfs bstackfs-fsck bstackfs-inspect; do
	check "program $p installed" test -x "$B/$p"
done
check "fsck.bstackfs is a link to bstackfs-fsck" \
	bash -c "[ -L '$B/fsck.bstackfs' ] && [ \"\$(readlink '$B/fsck.bstackfs')\" = bstackfs-fsck ]"
for m in bstackfs mkfs.bstackfs bstackfs-fsck fsck.bstackfs bstackfs-inspect; do
	check "man page $m.8" test -e "$M/man8/$m.8"
	if command -v man >/dev/null && command -v col >/dev/null; then
		check "man page $m.8 renders" bash -c "
			MANWIDTH=80 man -l -P cat '$M/man8/$m.8' 2>/dev/null | col -b |
			grep -q '^EXIT STATUS'"
	fi
	check "bash completion for $m" test -f "$D/bash-completion/completions/$m"
done
check "the completion script loads and completes" bash -c "
	source '$D/bash-completion/completions/mkfs.bstackfs'
	COMP_WORDS=(mkfs.bstackfs -a g); COMP_CWORD=2; _bstackfs
	[ \"\${COMPREPLY[*]}\" = ghost ]"
for h in io.h bstack.h alloc.h volume.h heapmap.h stats_json.h; do
	check "header bstack/$h installed" test -f "$I/bstack/$h"
done
check "libbstack shared" bash -c "ls '$L'/libbstack.so.0* >/dev/null"
check "libbstack static" test -f "$L/libbstack.a"
check "bstack.pc" test -f "$L/pkgconfig/bstack.pc"

export PKG_CONFIG_PATH=$L/pkgconfig PKG_CONFIG_SYSROOT_DIR=$dest
cflags=$(pkg-config --cflags bstack) libs=$(pkg-config --libs bstack)
check "pkg-config names the installed tree" bash -c "
	[[ '$cflags' == *'$I'* ]] && [[ '$libs' == *'$L'* ]] && [[ '$libs' == *-lbstack* ]]"
# every public header compiles on its own: the installed set is closed
for h in io.h bstack.h alloc.h volume.h heapmap.h stats_json.h; do
	printf '#include <bstack/%s>\nint main(void) { return 0; }\n' "$h" >"$work/h.c"
	check "bstack/$h compiles alone" cc -std=c11 -Wall -Wextra -Werror $cflags \
		-c "$work/h.c" -o "$work/h.o"
done
check "alloc_demo builds with pkg-config (shared)" cc -std=gnu11 -Wall -Wextra -Werror \
	"$src/examples/alloc_demo.c" $cflags $libs -o "$work/demo"
check "alloc_demo builds static" cc -std=gnu11 -Wall -Wextra -Werror \
	"$src/examples/alloc_demo.c" $cflags "$L/libbstack.a" -lpthread -o "$work/demo-static"
check "the shared demo uses the installed libbstack" bash -c "
	LD_LIBRARY_PATH='$L' ldd '$work/demo' | grep -q '$L/libbstack.so'"

for k in ghost firstfit slab linear; do
	for exe in demo demo-static; do
		img=$work/$exe-$k.bst
		check "$exe creates a $k heap" bash -c "
			LD_LIBRARY_PATH='$L' '$work/$exe' '$img' $k >'$work/out' &&
			grep -qx 'allocated and verified 16 blocks' '$work/out' &&
			grep -q '^allocator $k ' '$work/out' &&
			grep -qx 'check: 0 violations' '$work/out'"
		check "$exe reopens its $k heap" bash -c "
			LD_LIBRARY_PATH='$L' '$work/$exe' '$img' $k | grep -qx 'check: 0 violations'"
	done
	check "the demo refuses a $k heap as another allocator" bash -c "
		o=\$( [ $k = ghost ] && echo slab || echo ghost )
		! LD_LIBRARY_PATH='$L' '$work/demo' '$work/demo-$k.bst' \$o 2>/dev/null"
	# the installed tools on an image of their own, and on the demo's heap
	check "installed mkfs + fsck.bstackfs + inspect ($k)" bash -c "
		'$B/mkfs.bstackfs' -q -a $k '$work/fs-$k.bst' &&
		'$B/fsck.bstackfs' '$work/fs-$k.bst' >/dev/null &&
		'$B/bstackfs-inspect' --json '$work/fs-$k.bst' stats |
			python3 -c 'import json,sys; assert json.load(sys.stdin)[\"allocator\"] == \"$k\"'"
done
check "inspect refuses the demo's heap as another program's" bash -c "
	! '$B/bstackfs-inspect' '$work/demo-ghost.bst' ls 2>'$work/err' &&
	grep -q 'another program' '$work/err'"

echo "suite install: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
