//! `seedcheck view SCRIPT IMAGE OUT`: the seed's own code writes IMAGE by
//! applying SCRIPT (as `run` does), and OUT gets what `bstackfs -o view`
//! must show of it (issue 16), derived from the slices the seed handed out
//! and the extents its layout gives them (walk.rs `extent`):
//!
//!   slice OFF LEN FNV   each live slice the script holds at the end, with
//!                       the FNV-1a of its bytes as the seed reads them
//!   expect OFF LEN      each file of /allocations/, in address order:
//!                       FirstFit the block's payload (extent less its
//!                       16-byte header and 8-byte footer), Slab each
//!                       block of each extent, GhostTree the runs of
//!                       adjacent extents merged
//!   gaps N BYTES        the arena (from 48) less every extent: N pieces,
//!                       BYTES bytes, all of it free space (the script
//!                       never crashes, so the seed leaks nothing): the
//!                       view's /free/ blocks, FirstFit's with their 24
//!                       bytes of header and footer, add up to it
//!
//! view.c (the C side) opens IMAGE with core/allocview.c and compares.

use crate::shim::BStack;
use crate::walk::extent;
use crate::{Sl, fnv, run};
use std::fmt::Write as _;

pub fn expect(script: &str, image: &str, out: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(script).map_err(|e| format!("{script}: {e}"))?;
    let kind = text.split_whitespace().nth(1).ok_or("script without a kind line")?.to_string();
    let mut live: Vec<Sl> = run(script, image, 0)
        .map_err(|e| format!("running {script}: {e}"))?
        .into_iter()
        .filter(|s| s.1 != 0)
        .collect();
    live.sort();
    let st = BStack::open(image).map_err(|e| format!("{image}: {e}"))?;
    let plen = st.len().map_err(|e| e.to_string())?;
    let bs = if kind == "slab" {
        let b = st.get(32, 40).map_err(|e| e.to_string())?;
        u64::from_le_bytes(b[..8].try_into().unwrap())
    } else {
        0
    };
    let mut o = String::new();
    let mut exts: Vec<(u64, u64)> = Vec::new();
    for &(off, len) in &live {
        let bytes = st.get(off, off + len).map_err(|e| e.to_string())?;
        writeln!(o, "slice {off} {len} {:016x}", fnv(&bytes)).unwrap();
        exts.push(extent(&kind, bs, &st, (off, len))?);
    }
    let mut expect: Vec<(u64, u64)> = Vec::new();
    for (i, &(s, e)) in exts.iter().enumerate() {
        match kind.as_str() {
            "firstfit" => expect.push((live[i].0, e - s - 24)),
            "slab" => expect.extend((s..e).step_by(bs as usize).map(|b| (b, bs))),
            _ => match expect.last_mut() {
                Some(last) if last.0 + last.1 == s => last.1 += e - s,
                _ => expect.push((s, e - s)),
            },
        }
    }
    let mut used = 0;
    for (s, l) in &expect {
        writeln!(o, "expect {s} {l}").unwrap();
    }
    // free space: the arena (from 48) less the extents, in pieces between them
    let mut at = 48u64;
    let mut pieces = 0u64;
    for &(s, e) in &exts {
        if s > at {
            pieces += 1;
        }
        used += s.saturating_sub(at);
        at = at.max(e);
    }
    if plen > at {
        used += plen - at;
        pieces += 1;
    }
    writeln!(o, "gaps {pieces} {used}").unwrap();
    std::fs::write(out, o).map_err(|e| format!("{out}: {e}"))
}
