//! Datagram authentication: a keyed BLAKE3 MAC over the whole datagram and a replay window per
//! sender. A datagram that fails either is dropped and counted before anything in it is trusted.

use std::path::{Path, PathBuf};

/// Bytes of MAC at the end of an authenticated datagram.
pub const MAC_LEN: usize = 32;

/// Why a cluster key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read.
    #[error("cluster_key {path}: {source}")]
    Read {
        /// The file named by `cluster_key`.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The key file holds fewer than 16 bytes: too little secret to key a MAC.
    #[error("cluster_key {path}: {len} bytes, at least 16 are needed")]
    TooShort {
        /// The file named by `cluster_key`.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
}

/// The cluster's shared secret, derived from the contents of the `cluster_key` file.
///
/// Any file of at least 16 bytes works; its contents go through BLAKE3's key derivation, so the
/// file's format does not matter and two clusters with different files never share a key.
#[derive(Clone)]
pub struct ClusterKey([u8; 32]);

impl core::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

impl ClusterKey {
    const CONTEXT: &'static str = "cohort group transport 2026 datagram MAC v1";

    /// A key derived from secret material (the key file's contents).
    pub fn from_material(material: &[u8]) -> ClusterKey {
        ClusterKey(blake3::derive_key(Self::CONTEXT, material))
    }

    /// Reads and derives the key from the `cluster_key` file.
    pub fn load(path: &Path) -> Result<ClusterKey, KeyError> {
        let material = std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
        })?;
        if material.len() < 16 {
            return Err(KeyError::TooShort {
                path: path.to_owned(),
                len: material.len(),
            });
        }
        Ok(ClusterKey::from_material(&material))
    }

    /// The MAC of `data`.
    pub fn mac(&self, data: &[u8]) -> [u8; MAC_LEN] {
        *blake3::keyed_hash(&self.0, data).as_bytes()
    }

    /// Whether `tag` is the MAC of `data`, compared in constant time.
    pub fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        let Ok(tag) = <[u8; MAC_LEN]>::try_from(tag) else {
            return false;
        };
        blake3::keyed_hash(&self.0, data) == blake3::Hash::from_bytes(tag)
    }
}

/// Accepts each packet number of one sender at most once, tolerating reordering within the last 64
/// numbers (the IPsec anti-replay window). Numbers older than the window are refused.
#[derive(Clone, Debug, Default)]
pub struct ReplayWindow {
    highest: u64,
    /// Bit `i` set: `highest - i` has been seen.
    seen: u64,
}

impl ReplayWindow {
    /// Records `n` and says whether it is new. Call only after the MAC has been verified.
    pub fn accept(&mut self, n: u64) -> bool {
        if n == 0 {
            return false;
        }
        if n > self.highest {
            let shift = n - self.highest;
            self.seen = if shift >= 64 { 0 } else { self.seen << shift };
            self.seen |= 1;
            self.highest = n;
            return true;
        }
        let back = self.highest - n;
        if back >= 64 {
            return false;
        }
        let bit = 1u64 << back;
        if self.seen & bit != 0 {
            return false;
        }
        self.seen |= bit;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_verifies_and_rejects_changes() {
        let k = ClusterKey::from_material(b"sixteen bytes at least");
        let other = ClusterKey::from_material(b"sixteen bytes at most!");
        let tag = k.mac(b"hello");
        assert!(k.verify(b"hello", &tag));
        assert!(!k.verify(b"hellp", &tag));
        assert!(!other.verify(b"hello", &tag));
        assert!(!k.verify(b"hello", &tag[..31]));
    }

    #[test]
    fn replay_window_accepts_once_and_tolerates_reordering() {
        let mut w = ReplayWindow::default();
        assert!(w.accept(1));
        assert!(w.accept(3));
        assert!(w.accept(2));
        assert!(!w.accept(2));
        assert!(!w.accept(0));
        assert!(w.accept(100));
        assert!(!w.accept(30));
        assert!(w.accept(40));
        assert!(!w.accept(40));
    }

    #[test]
    fn short_key_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("key");
        std::fs::write(&p, b"short").expect("write");
        assert!(matches!(
            ClusterKey::load(&p),
            Err(KeyError::TooShort { len: 5, .. })
        ));
        std::fs::write(&p, b"a long enough secret").expect("write");
        assert!(ClusterKey::load(&p).is_ok());
    }
}
