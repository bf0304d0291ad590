//! A growable byte buffer whose start is 16-byte aligned, so archived rkyv
//! messages can be read in place from a TCP receive buffer and encoded in place
//! into a TCP send buffer.

/// One 16-byte, 16-aligned chunk: the unit the buffer is made of.
#[derive(Clone, Copy, Default)]
#[repr(C, align(16))]
struct Chunk([u8; 16]);

/// A zero-initialised byte buffer, 16-byte aligned at its start, whose length
/// is always a multiple of 16.
#[derive(Default)]
pub(crate) struct AlignedBuf {
    chunks: Vec<Chunk>,
}

/// Rounds `n` up to a multiple of 16.
#[inline]
pub(crate) const fn pad16(n: usize) -> usize {
    (n + 15) & !15
}

impl AlignedBuf {
    /// A buffer of at least `len` bytes (rounded up to 16).
    pub(crate) fn with_len(len: usize) -> Self {
        Self {
            chunks: vec![Chunk::default(); pad16(len) / 16],
        }
    }

    /// Its length in bytes.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.chunks.len() * 16
    }

    /// Grows it (zero-filled) to at least `len` bytes; never shrinks.
    pub(crate) fn grow_to(&mut self, len: usize) {
        let want = pad16(len) / 16;
        if want > self.chunks.len() {
            self.chunks.resize(want, Chunk::default());
        }
    }

    /// The bytes.
    #[inline]
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `Chunk` is `repr(C)` around `[u8; 16]` with size 16 and no
        // padding, so `chunks.len()` chunks are exactly `len()` initialised bytes.
        unsafe { std::slice::from_raw_parts(self.chunks.as_ptr().cast::<u8>(), self.len()) }
    }

    /// Copies `src` to the start of the buffer (growing it if needed, never
    /// shrinking, so a warm buffer copies without allocating) and returns
    /// `src.len()`: the copy is `bytes()[..src.len()]`, 16-byte aligned.
    pub(crate) fn copy_from(&mut self, src: &[u8]) -> usize {
        self.grow_to(src.len());
        self.bytes_mut()[..src.len()].copy_from_slice(src);
        src.len()
    }

    /// The bytes, mutably.
    #[inline]
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        let len = self.len();
        // SAFETY: as in `bytes`; the `&mut self` borrow makes the slice unique.
        unsafe { std::slice::from_raw_parts_mut(self.chunks.as_mut_ptr().cast::<u8>(), len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_grows() {
        let mut b = AlignedBuf::with_len(17);
        assert_eq!(b.len(), 32);
        assert_eq!(b.bytes().as_ptr() as usize % 16, 0);
        b.bytes_mut()[31] = 7;
        b.grow_to(100);
        assert_eq!(b.len(), 112);
        assert_eq!(b.bytes()[31], 7);
        assert_eq!(b.bytes().as_ptr() as usize % 16, 0);
        assert_eq!(pad16(0), 0);
        assert_eq!(pad16(1), 16);
        assert_eq!(pad16(16), 16);
        let mut c = AlignedBuf::default();
        assert_eq!(c.copy_from(b"abc"), 3);
        assert_eq!(&c.bytes()[..3], b"abc");
        assert_eq!(c.len(), 16);
        let ptr = c.bytes().as_ptr();
        assert_eq!(c.copy_from(&[9; 16]), 16);
        assert_eq!(c.bytes().as_ptr(), ptr, "a warm buffer is reused");
        assert_eq!(c.copy_from(&[5; 40]), 40);
        assert_eq!(&c.bytes()[..40], &[5; 40]);
        assert_eq!(c.bytes().as_ptr() as usize % 16, 0);
    }
}
