//! `seedcheck walk KIND IMAGE LIVE [N]`: does the seed accept an image
//! that bstackfs wrote (issue 14: what `bstackfs-fsck -y` rebuilt)?
//!
//! IMAGE is a whole bstack file; LIVE lists the allocations the catalog
//! names, `off len` per line (payload offsets, the catalog's own
//! allocation included; `#` starts a comment).  The walk:
//!
//! 1. opens IMAGE with the seed's allocator of KIND as `run`'s reopen does
//!    (GhostTree and FirstFit `new`, with their open-time coalesce /
//!    recovery; Slab `open`, which takes the block size from the header);
//! 2. lays each LIVE slice out as the seed would when freeing it (its
//!    extent: GhostTree rounded to 32, Slab whole blocks, FirstFit header
//!    + block + footer, the header saying "allocated", its size at least
//!    the slice rounded and equal to the footer) — no two may overlap —
//!    and reads their bytes and the caller-reserved prefix;
//! 3. allocates, cycling through a few sizes, until N allocations are
//!    done or every size has made the seed grow the image (a size that
//!    grew it is not asked again): each new slice must lie in the arena,
//!    overlap no LIVE extent and no earlier new one, and read as zeros
//!    (every seed hands out zeroed bytes); it is then filled with a
//!    pattern.  At least one must come from free space inside the image,
//!    and when every size grew the image, every arena byte of the image
//!    as opened must belong to a LIVE or a new extent (no free space the
//!    seed cannot find: nothing lost);
//! 4. checks the LIVE bytes, deallocates the new slices (newest first),
//!    checks them again, reopens the image with the seed and checks them
//!    a third time.
//!
//! Ok: one line `walk KIND: ok ...`; otherwise `walk KIND: FAILED: why`,
//! exit 1 (main.rs prints them).

use crate::shim::BStack;
use crate::{Drv, Sl, open_kind, pattern};

pub const DEFAULT_N: u64 = 200;

/// The sizes asked for, in turn (Slab's over one block always grow).
const SIZES: [u64; 9] = [1, 24, 64, 100, 300, 700, 1500, 3000, 9000];

/// The first arena offset and the caller-reserved prefix of each seed.
fn layout(kind: &str) -> Result<(u64, u64), String> {
    match kind {
        "ghost" => Ok((48, 32)),
        "firstfit" => Ok((48, 16)),
        "slab" => Ok((48, 24)),
        _ => Err(format!("unknown kind {kind:?} (ghost, firstfit, slab)")),
    }
}

fn le64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().unwrap())
}

fn get(st: &BStack, off: u64, len: u64) -> Result<Vec<u8>, String> {
    st.get(off, off.checked_add(len).ok_or("offset overflow")?)
        .map_err(|e| format!("reading [{off}, +{len}): {e}"))
}

/// The bytes slice `s` holds as the seed of `kind` sees it: [start, end).
pub(crate) fn extent(kind: &str, bs: u64, st: &BStack, s: Sl) -> Result<(u64, u64), String> {
    let (off, len) = s;
    let slen = st.len().map_err(|e| e.to_string())?;
    let end = |e: Option<u64>| -> Result<u64, String> {
        match e {
            Some(e) if e <= slen => Ok(e),
            _ => Err(format!("slice {off}:{len} runs past the payload end {slen}")),
        }
    };
    if len == 0 {
        return Err(format!("slice {off}:0 is empty"));
    }
    match kind {
        "ghost" => {
            if off < 48 || off % 32 != 16 {
                return Err(format!("slice {off}:{len} is not a GhostTree address"));
            }
            let al = len.checked_add(31).map(|x| (x & !31).max(32));
            Ok((off, end(al.and_then(|a| off.checked_add(a)))?))
        }
        "slab" => {
            if off < 48 || (off - 48) % bs != 0 {
                return Err(format!("slice {off}:{len} is not on a {bs}-byte block"));
            }
            let blocks = len.div_ceil(bs);
            Ok((off, end(blocks.checked_mul(bs).and_then(|b| off.checked_add(b)))?))
        }
        _ => {
            if off < 64 || off % 8 != 0 {
                return Err(format!("slice {off}:{len} is not a FirstFit payload"));
            }
            let h = get(st, off - 16, 16)?;
            let size = le64(&h);
            let flags = u32::from_le_bytes(h[8..12].try_into().unwrap());
            let rounded = len.max(16).next_multiple_of(8);
            if flags & 1 != 0 {
                return Err(format!("slice {off}:{len}: its block header says free"));
            }
            if size % 8 != 0 || size < rounded {
                return Err(format!(
                    "slice {off}:{len}: its block header's size {size} cannot hold it"
                ));
            }
            let e = end(off.checked_add(size).and_then(|x| x.checked_add(8)))?;
            let foot = le64(&get(st, off + size, 8)?);
            if foot != size {
                return Err(format!("slice {off}:{len}: header size {size}, footer {foot}"));
            }
            Ok((off - 16, e))
        }
    }
}

fn parse_live(path: &str) -> Result<Vec<Sl>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let mut v = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let w: Vec<&str> = line.split_whitespace().collect();
        let n =
            |x: &str| x.parse::<u64>().map_err(|_| format!("{path}:{}: bad number {x:?}", i + 1));
        if w.len() != 2 {
            return Err(format!("{path}:{}: want `off len`", i + 1));
        }
        v.push((n(w[0])?, n(w[1])?));
    }
    Ok(v)
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// The LIVE bytes (and the reserved prefix) still as they were.
fn unchanged(st: &BStack, saved: &[(Sl, Vec<u8>)], when: &str) -> Result<(), String> {
    for ((off, len), bytes) in saved {
        let now =
            get(st, *off, *len).map_err(|e| format!("{when}: LIVE slice {off}:{len}: {e}"))?;
        if let Some(i) = now.iter().zip(bytes).position(|(a, b)| a != b) {
            return Err(format!(
                "{when}: the bytes of LIVE slice {off}:{len} changed (first at payload {}: {:#04x} -> {:#04x})",
                off + i as u64,
                bytes[i],
                now[i]
            ));
        }
    }
    Ok(())
}

fn open(kind: &str, image: &str, when: &str) -> Result<Box<dyn Drv>, String> {
    let st = BStack::open(image)
        .map_err(|e| format!("{when}: {image} does not open as a bstack: {e}"))?;
    open_kind(kind, 0, st, false).map_err(|e| format!("{when}: the seed refuses the image: {e}"))
}

pub fn walk(kind: &str, image: &str, live_path: &str, n: u64) -> Result<String, String> {
    let (arena, reserved) = layout(kind)?;
    let live = parse_live(live_path)?;
    let file0 = std::fs::read(image).map_err(|e| format!("{image}: {e}"))?;
    let d = open(kind, image, "open")?;
    let st = d.stack_ref();
    // what the seed's open-time recovery / coalesce wrote (told, not judged)
    let file1 = st.image().map_err(|e| e.to_string())?;
    let opened = if file1 == file0 {
        "the seed's open wrote nothing".to_string()
    } else {
        let diff = file0.iter().zip(&file1).filter(|(a, b)| a != b).count();
        format!(
            "the seed's open rewrote {diff} bytes{}",
            if file0.len() != file1.len() { " and the length" } else { "" }
        )
    };
    let len0 = st.len().map_err(|e| e.to_string())?;
    let bs = if kind == "slab" { le64(&get(st, 32, 8)?) } else { 0 };

    // 2: the LIVE extents, disjoint; their bytes
    let mut ext: Vec<(u64, u64)> = Vec::new();
    for &s in &live {
        ext.push(extent(kind, bs, st, s).map_err(|e| format!("LIVE: {e}"))?);
    }
    let mut sorted = ext.clone();
    sorted.sort();
    for w in sorted.windows(2) {
        if overlaps(w[0], w[1]) {
            return Err(format!(
                "LIVE: extents [{}, {}) and [{}, {}) overlap",
                w[0].0, w[0].1, w[1].0, w[1].1
            ));
        }
    }
    if sorted.first().is_some_and(|e| e.0 < arena) {
        return Err(format!("LIVE: an extent starts before the arena ({arena})"));
    }
    // the bytes as the file held them before the seed's open (its
    // coalesce / recovery must not write into them either)
    let as_found = |off: u64, len: u64| -> Result<Vec<u8>, String> {
        let a = 16 + off as usize;
        file0
            .get(a..a + len as usize)
            .map(|b| b.to_vec())
            .ok_or_else(|| format!("LIVE slice {off}:{len} runs past the file"))
    };
    let mut saved: Vec<(Sl, Vec<u8>)> = vec![((0, reserved), as_found(0, reserved)?)];
    for &(off, len) in &live {
        saved.push(((off, len), as_found(off, len)?));
    }
    unchanged(st, &saved, "after the seed's open")?;

    // 3: allocate until N or every size grew the image
    let mut active = vec![true; SIZES.len()];
    let mut got: Vec<(Sl, (u64, u64))> = Vec::new();
    let (mut reused, mut grew, mut k) = (0u64, 0u64, 0usize);
    while (got.len() as u64) < n && active.iter().any(|&a| a) {
        while !active[k % SIZES.len()] {
            k += 1;
        }
        let i = k % SIZES.len();
        k += 1;
        let size = SIZES[i];
        let len_before = st.len().map_err(|e| e.to_string())?;
        let s =
            d.d_alloc(size).map_err(|e| format!("alloc({size}) #{} failed: {e}", got.len() + 1))?;
        let len_after = st.len().map_err(|e| e.to_string())?;
        if s.1 != size {
            return Err(format!("alloc({size}) returned {}:{}", s.0, s.1));
        }
        let e = extent(kind, bs, st, s)
            .map_err(|e| format!("alloc({size}) #{}: {e}", got.len() + 1))?;
        if e.0 < arena {
            return Err(format!("alloc({size}) returned {}:{} inside the header", s.0, s.1));
        }
        if let Some(j) = ext.iter().position(|&x| overlaps(x, e)) {
            return Err(format!(
                "alloc({size}) #{} returned {}:{} (extent [{}, {})), which overlaps LIVE slice {}:{} (extent [{}, {}))",
                got.len() + 1,
                s.0,
                s.1,
                e.0,
                e.1,
                live[j].0,
                live[j].1,
                ext[j].0,
                ext[j].1
            ));
        }
        if let Some((o, oe)) = got.iter().find(|(_, x)| overlaps(*x, e)) {
            return Err(format!(
                "alloc({size}) #{} returned {}:{}, which overlaps the walk's own {}:{} (extent [{}, {}))",
                got.len() + 1,
                s.0,
                s.1,
                o.0,
                o.1,
                oe.0,
                oe.1
            ));
        }
        // zeros: the slice (FirstFit zeroes only what it hands out); the
        // whole extent for GhostTree (free memory is all zero past its
        // node: the padding is exposed later without zeroing) and Slab
        // (a popped block is zeroed whole)
        let zlen = if kind == "firstfit" { s.1 } else { e.1 - e.0 };
        let bytes = get(st, s.0, zlen)?;
        if let Some(z) = bytes.iter().position(|&b| b != 0) {
            return Err(format!(
                "alloc({size}) #{} returned {}:{} whose byte at payload {} is {:#04x}, not zero",
                got.len() + 1,
                s.0,
                s.1,
                s.0 + z as u64,
                bytes[z]
            ));
        }
        st.set(s.0, pattern(got.len() as u64 + 7, s.1)).map_err(|e| e.to_string())?;
        if len_after > len_before {
            grew += 1;
            active[i] = false;
        } else {
            reused += 1;
        }
        got.push((s, e));
    }
    unchanged(st, &saved, "after the allocations")?;
    if reused == 0 {
        return Err(format!(
            "the seed found no free space inside the image: all {} allocations grew it",
            got.len()
        ));
    }
    let exhausted = !active.iter().any(|&a| a);
    if exhausted {
        // every byte of the arena as opened is LIVE or the walk's
        let mut all: Vec<(u64, u64)> = ext.iter().copied().chain(got.iter().map(|g| g.1)).collect();
        all.sort();
        let mut at = arena;
        let mut lost = Vec::new();
        for (a, b) in all {
            if a > at && at < len0 {
                lost.push((at, a.min(len0)));
            }
            at = at.max(b);
        }
        if at < len0 {
            lost.push((at, len0));
        }
        if !lost.is_empty() {
            let bytes: u64 = lost.iter().map(|(a, b)| b - a).sum();
            return Err(format!(
                "{bytes} arena bytes are neither LIVE nor handed out by the seed (first [{}, {})): space the seed cannot find",
                lost[0].0, lost[0].1
            ));
        }
    }

    // 4: give them back, reopen
    for (s, _) in got.iter().rev() {
        d.d_dealloc(*s).map_err(|e| format!("dealloc({}:{}) failed: {e}", s.0, s.1))?;
    }
    unchanged(d.stack_ref(), &saved, "after the deallocations")?;
    drop(d.d_into_stack());
    let d = open(kind, image, "reopen")?;
    unchanged(d.stack_ref(), &saved, "after the reopen")?;
    let lenr = d.stack_ref().len().map_err(|e| e.to_string())?;
    drop(d.d_into_stack());
    Ok(format!(
        "{opened}; {} allocations ({reused} from free space, {grew} grew the image{}), {} LIVE \
         slices and the {reserved} reserved bytes unchanged through the walk, its deallocs and \
         a reopen (payload {len0} -> {lenr} bytes)",
        got.len(),
        if exhausted { "; no arena byte left unaccounted" } else { "; stopped at N" },
        live.len()
    ))
}
