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

/// The cluster's shared secret, derived from the contents of the `cluster_key` file; or a keyring
/// of several (`cluster_key = ( "new", "old" )`, Cohort extension): datagrams are sent under the
/// first key and accepted under any, so a key is rotated with three reloads and no view change.
///
/// Any file of at least 16 bytes works; its contents go through BLAKE3's key derivation, so the
/// file's format does not matter and two clusters with different files never share a key.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterKey(Vec<[u8; 32]>);

impl core::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

impl ClusterKey {
    const CONTEXT: &'static str = "cohort group transport 2026 datagram MAC v1";

    /// A key derived from secret material (the key file's contents).
    pub fn from_material(material: &[u8]) -> ClusterKey {
        ClusterKey(vec![blake3::derive_key(Self::CONTEXT, material)])
    }

    /// The keyring of `files` in order (the first one signs), or `None` when there are none.
    pub fn load_ring(files: &[std::path::PathBuf]) -> Result<Option<ClusterKey>, KeyError> {
        let keys = files
            .iter()
            .map(|p| ClusterKey::load(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ClusterKey::ring(keys))
    }

    /// One keyring of `keys` in order (duplicates kept once), or `None` for none.
    pub fn ring(keys: impl IntoIterator<Item = ClusterKey>) -> Option<ClusterKey> {
        let mut all: Vec<[u8; 32]> = Vec::new();
        for k in keys.into_iter().flat_map(|k| k.0) {
            if !all.contains(&k) {
                all.push(k);
            }
        }
        (!all.is_empty()).then_some(ClusterKey(all))
    }

    /// Each key of the ring on its own, the signing key first.
    pub fn singles(&self) -> impl Iterator<Item = ClusterKey> + '_ {
        self.0.iter().map(|k| ClusterKey(vec![*k]))
    }

    /// Keys in the ring.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a ring holds at least one key.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn signing(&self) -> &[u8; 32] {
        &self.0[0]
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
        *blake3::keyed_hash(self.signing(), data).as_bytes()
    }

    /// The MAC of a datagram `data` addressed to the member named `to`: the destination is covered
    /// but not sent, so a datagram captured on its way to one member is refused by every other.
    pub fn mac_to(&self, data: &[u8], to: &str) -> [u8; MAC_LEN] {
        let mut h = blake3::Hasher::new_keyed(self.signing());
        h.update(data);
        h.update(&[0xff]);
        h.update(to.as_bytes());
        *h.finalize().as_bytes()
    }

    /// Whether `tag` is [`ClusterKey::mac_to`] of `data` for destination `to` under any key of the
    /// ring, each compared in constant time.
    pub fn verify_to(&self, data: &[u8], to: &str, tag: &[u8]) -> bool {
        let Ok(tag) = <[u8; MAC_LEN]>::try_from(tag) else {
            return false;
        };
        self.0.iter().any(|k| {
            let mut h = blake3::Hasher::new_keyed(k);
            h.update(data);
            h.update(&[0xff]);
            h.update(to.as_bytes());
            h.finalize() == blake3::Hash::from_bytes(tag)
        })
    }

    /// Whether `tag` is the MAC of `data` under any key of the ring, each compared in constant
    /// time.
    pub fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        let Ok(tag) = <[u8; MAC_LEN]>::try_from(tag) else {
            return false;
        };
        self.0
            .iter()
            .any(|k| blake3::keyed_hash(k, data) == blake3::Hash::from_bytes(tag))
    }
}

/// Numbers the window remembers behind the highest one seen.
pub const REPLAY_WINDOW: u64 = 4096;
const WORDS: usize = (REPLAY_WINDOW / 64) as usize;

/// Accepts each packet number of one sender at most once, tolerating reordering within the last
/// [`REPLAY_WINDOW`] numbers (the IPsec anti-replay window, as a ring of bits). Numbers older than
/// the window are refused. Senders number their datagrams per destination, so a burst of a large
/// message's pieces reordered on the way stays well within the window.
#[derive(Clone, Debug)]
pub struct ReplayWindow {
    highest: u64,
    /// Bit `n % REPLAY_WINDOW` set: `n` (within the window) has been seen.
    seen: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow {
            highest: 0,
            seen: [0; WORDS],
        }
    }
}

impl ReplayWindow {
    fn slot(n: u64) -> (usize, u64) {
        let bit = n % REPLAY_WINDOW;
        ((bit / 64) as usize, 1u64 << (bit % 64))
    }

    /// Records `n` and says whether it is new. Call only after the MAC has been verified.
    pub fn accept(&mut self, n: u64) -> bool {
        if n == 0 {
            return false;
        }
        if n > self.highest {
            if n - self.highest >= REPLAY_WINDOW {
                self.seen = [0; WORDS];
            } else {
                for m in self.highest + 1..n {
                    let (w, b) = Self::slot(m);
                    self.seen[w] &= !b;
                }
            }
            let (w, b) = Self::slot(n);
            self.seen[w] |= b;
            self.highest = n;
            return true;
        }
        if self.highest - n >= REPLAY_WINDOW {
            return false;
        }
        let (w, b) = Self::slot(n);
        if self.seen[w] & b != 0 {
            return false;
        }
        self.seen[w] |= b;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keyring_signs_with_its_first_key_and_accepts_any() {
        let old = ClusterKey::from_material(b"the old key material");
        let new = ClusterKey::from_material(b"the new key material");
        let both = ClusterKey::ring([old.clone(), new.clone()]).expect("ring");
        let flipped = ClusterKey::ring([new.clone(), old.clone(), new.clone()]).expect("ring");
        assert_eq!(both.len(), 2);
        assert_eq!(flipped.len(), 2, "duplicates kept once");
        let d = b"datagram";
        // Signed under the first key: whoever holds it accepts.
        assert_eq!(both.mac_to(d, "b"), old.mac_to(d, "b"));
        assert!(old.verify_to(d, "b", &both.mac_to(d, "b")));
        assert!(!new.verify_to(d, "b", &both.mac_to(d, "b")));
        // A ring accepts under any of its keys, nothing else.
        assert!(both.verify_to(d, "b", &new.mac_to(d, "b")));
        assert!(flipped.verify_to(d, "b", &old.mac_to(d, "b")));
        let other = ClusterKey::from_material(b"someone else's key");
        assert!(!both.verify_to(d, "b", &other.mac_to(d, "b")));
        assert!(!both.verify_to(d, "c", &new.mac_to(d, "b")));
        assert_eq!(both.singles().collect::<Vec<_>>(), [old, new]);
        assert!(ClusterKey::ring([]).is_none());
    }

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
        assert!(w.accept(30), "within the window, first time");
        assert!(!w.accept(30));
        assert!(w.accept(5000));
        assert!(!w.accept(100), "older than the window");
        assert!(w.accept(5000 - REPLAY_WINDOW + 1));
        assert!(!w.accept(5000 - REPLAY_WINDOW + 1));
        assert!(w.accept(5001));
        // A jump past the whole window forgets everything behind it.
        assert!(w.accept(20_000));
        assert!(w.accept(19_999));
        assert!(!w.accept(5001));
    }

    #[test]
    fn destination_bound_mac_refuses_another_destination() {
        let k = ClusterKey::from_material(b"sixteen bytes at least");
        let tag = k.mac_to(b"datagram", "node1");
        assert!(k.verify_to(b"datagram", "node1", &tag));
        assert!(!k.verify_to(b"datagram", "node2", &tag));
        assert!(!k.verify(b"datagram", &tag));
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
