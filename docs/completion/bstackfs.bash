# bash completion for bstackfs, mkfs.bstackfs, bstackfs-fsck/fsck.bstackfs
# and bstackfs-inspect (installed once under each command's name).

_bstackfs_images()
{
	COMPREPLY+=($(compgen -f -- "$1"))
}

_bstackfs()
{
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
	COMPREPLY=()
	case ${COMP_WORDS[0]##*/} in
	mkfs.bstackfs)
		case $prev in
		-a) COMPREPLY=($(compgen -W "ghost firstfit slab linear" -- "$cur")); return ;;
		-b) COMPREPLY=($(compgen -W "512 1024 4096 65536" -- "$cur")); return ;;
		esac
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "-a -b -f -q -h -V --help --version" -- "$cur"))
		else
			_bstackfs_images "$cur"
		fi
		;;
	bstackfs-fsck|fsck.bstackfs)
		case $prev in
		-C|-W) return ;;   # a descriptor, a number of seconds
		esac
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "-n -p -a -y -f -v -C -W --json -h -V --help --version" -- "$cur"))
		else
			_bstackfs_images "$cur"
		fi
		;;
	bstackfs-inspect)
		local i nonopt=0
		for ((i = 1; i < COMP_CWORD; i++)); do
			case ${COMP_WORDS[i]} in
			--svg|--columns) ((i++)) ;;
			-*) ;;
			*) ((nonopt++)) ;;
			esac
		done
		case $prev in
		--svg) _bstackfs_images "$cur"; return ;;
		--columns) return ;;
		esac
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "--json --svg --columns -h -V --help --version" -- "$cur"))
		elif ((nonopt == 0)); then
			_bstackfs_images "$cur"
		elif ((nonopt == 1)); then
			COMPREPLY=($(compgen -W "stats ls stat cat extract free hist map" -- "$cur"))
		else
			_bstackfs_images "$cur"
		fi
		;;
	*)
		case $prev in
		-o)
			COMPREPLY=($(compgen -W "allocator=ghost allocator=firstfit allocator=slab
				allocator=linear block_size= sync nocreate noxattr view ro allow_other" -- "$cur"))
			return ;;
		esac
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "-o -f -d -s -h -V --help --version" -- "$cur"))
		else
			COMPREPLY=($(compgen -f -- "$cur"))
		fi
		;;
	esac
}
complete -o filenames -F _bstackfs bstackfs mkfs.bstackfs bstackfs-fsck fsck.bstackfs \
	bstackfs-inspect
