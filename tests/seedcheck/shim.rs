//! The environment the seed allocators expect (`crate::BStack`,
//! `super::{BStackAllocator, BStackBulkAllocator, BStackSlice}` and the
//! `read_buf_le!` / `write_buf!` / `read_bstack!` macros), written fresh
//! for the differential test.  Only the bytes matter here: the BStack is a
//! plain file with the 16-byte header of docs/design.md §2, and no operation
//! syncs (durability is not what this test compares).

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;

/// The header magic bstackfs writes (docs/design.md §2).
const MAGIC: [u8; 8] = *b"BSTK\x00\x01\x08\x00";
const HEADER: u64 = 16;

fn range_err(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("bstack shim: {what} out of range"))
}

/// A BStack over one file: `magic[8] clen[8] payload`.
pub struct BStack {
    file: File,
    /// The committed payload length; the lock also serialises mutations,
    /// which is what the seeds' `atomic` try_* operations rely on.
    clen: Mutex<u64>,
}

impl fmt::Debug for BStack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BStack").finish_non_exhaustive()
    }
}

impl BStack {
    /// Open `path`, formatting it as an empty image when it is empty or new.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        let size = file.metadata()?.len();
        if size == 0 {
            let mut hdr = [0u8; HEADER as usize];
            hdr[..8].copy_from_slice(&MAGIC);
            file.write_all_at(&hdr, 0)?;
            return Ok(Self { file, clen: Mutex::new(0) });
        }
        let mut hdr = [0u8; HEADER as usize];
        file.read_exact_at(&mut hdr, 0)?;
        if hdr[..6] != MAGIC[..6] {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "not a bstack image"));
        }
        let clen = u64::from_le_bytes(hdr[8..16].try_into().unwrap());
        if clen + HEADER != size {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "image needs recovery"));
        }
        Ok(Self { file, clen: Mutex::new(clen) })
    }

    /// The whole image, header included.
    pub fn image(&self) -> io::Result<Vec<u8>> {
        let clen = *self.clen.lock().unwrap();
        let mut buf = vec![0u8; (HEADER + clen) as usize];
        self.file.read_exact_at(&mut buf, 0)?;
        Ok(buf)
    }

    /// Change the length: the data (or truncation) first, then clen.
    fn resize(&self, clen: &mut u64, new_len: u64) -> io::Result<()> {
        self.file.set_len(HEADER + new_len)?;
        self.file.write_all_at(&new_len.to_le_bytes(), 8)?;
        *clen = new_len;
        Ok(())
    }

    pub fn len(&self) -> io::Result<u64> {
        Ok(*self.clen.lock().unwrap())
    }

    pub fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Append n zero bytes; returns the offset they start at.
    pub fn extend(&self, n: u64) -> io::Result<u64> {
        let mut clen = self.clen.lock().unwrap();
        let off = *clen;
        self.resize(&mut clen, off + n)?;
        Ok(off)
    }

    /// Append bytes; returns the offset they start at.
    pub fn push(&self, data: impl AsRef<[u8]>) -> io::Result<u64> {
        let data = data.as_ref();
        let mut clen = self.clen.lock().unwrap();
        let off = *clen;
        self.file.write_all_at(data, HEADER + off)?;
        self.resize(&mut clen, off + data.len() as u64)?;
        Ok(off)
    }

    pub fn discard(&self, n: u64) -> io::Result<()> {
        let mut clen = self.clen.lock().unwrap();
        if n > *clen {
            return Err(range_err("discard"));
        }
        let new_len = *clen - n;
        self.resize(&mut clen, new_len)
    }

    pub fn try_discard(&self, expected_len: u64, n: u64) -> io::Result<bool> {
        let mut clen = self.clen.lock().unwrap();
        if *clen != expected_len {
            return Ok(false);
        }
        if n > *clen {
            return Err(range_err("try_discard"));
        }
        let new_len = *clen - n;
        self.resize(&mut clen, new_len)?;
        Ok(true)
    }

    pub fn try_extend_zeros(&self, expected_len: u64, n: u64) -> io::Result<bool> {
        let mut clen = self.clen.lock().unwrap();
        if *clen != expected_len {
            return Ok(false);
        }
        let new_len = *clen + n;
        self.resize(&mut clen, new_len)?;
        Ok(true)
    }

    fn check(&self, off: u64, n: u64, what: &str) -> io::Result<()> {
        let clen = *self.clen.lock().unwrap();
        match off.checked_add(n) {
            Some(end) if end <= clen => Ok(()),
            _ => Err(range_err(what)),
        }
    }

    /// Overwrite in place; never changes the length.
    pub fn set(&self, off: u64, data: impl AsRef<[u8]>) -> io::Result<()> {
        let data = data.as_ref();
        self.check(off, data.len() as u64, "set")?;
        self.file.write_all_at(data, HEADER + off)
    }

    pub fn zero(&self, off: u64, n: u64) -> io::Result<()> {
        self.check(off, n, "zero")?;
        self.file.write_all_at(&vec![0u8; n as usize], HEADER + off)
    }

    /// Bytes [start, end).
    pub fn get(&self, start: u64, end: u64) -> io::Result<Vec<u8>> {
        if end < start {
            return Err(range_err("get"));
        }
        let mut buf = vec![0u8; (end - start) as usize];
        self.get_into(start, &mut buf)?;
        Ok(buf)
    }

    pub fn get_into(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        self.check(off, buf.len() as u64, "get")?;
        self.file.read_exact_at(buf, HEADER + off)
    }
}

/// `read_buf_le!(buf, OFF => T)`: a little-endian T at byte OFF of buf.
macro_rules! read_buf_le {
    ($buf:expr, $off:expr => $t:ty) => {{
        const N: usize = ::core::mem::size_of::<$t>();
        let o = ($off) as usize;
        <$t>::from_le_bytes($buf[o..o + N].try_into().unwrap())
    }};
}

/// `write_buf!(v => buf, OFF)`: store v little-endian at byte OFF of buf.
macro_rules! write_buf {
    ($v:expr => $buf:expr, $off:expr) => {{
        let b = ($v).to_le_bytes();
        let o = ($off) as usize;
        $buf[o..o + b.len()].copy_from_slice(&b);
    }};
}

/// `read_bstack!(stack, OFF => T)`: the raw little-endian bytes of a T
/// stored at payload offset OFF (the seeds decode or copy them as needed).
macro_rules! read_bstack {
    ($stack:expr, $off:expr => $t:ty) => {{
        let mut b = [0u8; ::core::mem::size_of::<$t>()];
        $stack.get_into($off, &mut b)?;
        b
    }};
}
