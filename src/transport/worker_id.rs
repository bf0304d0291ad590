//! Interim worker identity used by the transport until `crate::ids` lands.

use std::fmt;

/// A worker's 28-byte id (Ray's `WorkerID` size), printed as hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId([u8; 28]);

impl WorkerId {
    /// Its size in bytes.
    pub const SIZE: usize = 28;

    /// From raw bytes.
    pub const fn from_bytes(b: [u8; 28]) -> Self {
        Self(b)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 28] {
        &self.0
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WorkerId({self})")
    }
}

impl std::str::FromStr for WorkerId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.len() != 56 || !s.is_ascii() {
            return Err(format!("a worker id is 56 hex digits, got {s:?}"));
        }
        let mut out = [0u8; 28];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
        }
        Ok(Self(out))
    }
}
