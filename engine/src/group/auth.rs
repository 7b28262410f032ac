//! Datagram authentication: a keyed BLAKE3 MAC over the whole datagram, or in sealed mode
//! ChaCha20-Poly1305 over its messages (encrypted) and its header (authenticated), and a replay
//! window per sender. A datagram that fails either is dropped and counted before anything in it
//! is trusted.

use std::path::{Path, PathBuf};

/// Bytes of MAC at the end of an authenticated datagram.
pub const MAC_LEN: usize = 32;
/// Bytes of AEAD tag at the end of a sealed datagram.
pub const SEAL_TAG_LEN: usize = 16;

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
pub struct ClusterKey(Vec<[u8; 32]>, bool);

impl core::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

impl ClusterKey {
    const CONTEXT: &'static str = "cohort group transport 2026 datagram MAC v1";

    /// A key derived from secret material (the key file's contents).
    pub fn from_material(material: &[u8]) -> ClusterKey {
        ClusterKey(vec![blake3::derive_key(Self::CONTEXT, material)], false)
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
        let mut seal = false;
        for k in keys.into_iter().flat_map(|k| {
            seal |= k.1;
            k.0
        }) {
            if !all.contains(&k) {
                all.push(k);
            }
        }
        (!all.is_empty()).then_some(ClusterKey(all, seal))
    }

    /// Each key of the ring on its own, the signing key first.
    pub fn singles(&self) -> impl Iterator<Item = ClusterKey> + '_ {
        self.0.iter().map(|k| ClusterKey(vec![*k], self.1))
    }

    /// Keys in the ring.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a ring holds at least one key.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The same ring in sealed mode (`msgc_server { cluster_crypto = seal }`) or not: sealed,
    /// the transport encrypts every datagram's messages ([`ClusterKey::seal_to`]) instead of
    /// only authenticating them.
    pub fn sealing(mut self, seal: bool) -> ClusterKey {
        self.1 = seal;
        self
    }

    /// Whether the transport seals datagrams under this key.
    pub fn seals(&self) -> bool {
        self.1
    }

    /// The ChaCha20-Poly1305 key of the datagrams `sender` (in its incarnation `incarnation`)
    /// sends to `to`, under ring key `k`: every such stream has its own key, and packet numbers
    /// never repeat within one (they count from 1 per incarnation and destination), so a nonce
    /// of the packet number is never used twice under one key. Incarnations are the start's
    /// millisecond clock above the process id: a stream key could only repeat if the same
    /// process id started again in the same millisecond of a clock set back.
    fn stream_key(k: &[u8; 32], sender: &str, incarnation: u64, to: &str) -> chacha20poly1305::Key {
        let mut h = blake3::Hasher::new_derive_key("cohort group transport 2026 sealed stream v1");
        h.update(k);
        h.update(&(sender.len() as u64).to_be_bytes());
        h.update(sender.as_bytes());
        h.update(&incarnation.to_be_bytes());
        h.update(&(to.len() as u64).to_be_bytes());
        h.update(to.as_bytes());
        (*h.finalize().as_bytes()).into()
    }

    fn nonce(number: u64) -> chacha20poly1305::Nonce {
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&number.to_be_bytes());
        n.into()
    }

    /// Seals datagram `buf` (header then messages) on its way to member `to`: encrypts the
    /// messages in place under the stream key of (`sender`, `incarnation`, `to`) with the packet
    /// number as nonce, the header and the destination's name as associated data, and appends
    /// the [`SEAL_TAG_LEN`]-byte tag.
    pub fn seal_to(
        &self,
        buf: &mut Vec<u8>,
        header_len: usize,
        sender: &str,
        incarnation: u64,
        number: u64,
        to: &str,
    ) {
        use chacha20poly1305::aead::AeadInPlace;
        use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
        let cipher =
            ChaCha20Poly1305::new(&Self::stream_key(self.signing(), sender, incarnation, to));
        let mut aad = Vec::with_capacity(header_len + 1 + to.len());
        aad.extend_from_slice(&buf[..header_len]);
        aad.push(0xff);
        aad.extend_from_slice(to.as_bytes());
        let (_, messages) = buf.split_at_mut(header_len);
        // Encryption cannot fail for a datagram (the length limit is 2^38 bytes).
        if let Ok(tag) = cipher.encrypt_in_place_detached(&Self::nonce(number), &aad, messages) {
            buf.extend_from_slice(&tag);
        }
    }

    /// Opens sealed datagram `datagram` (header, sealed messages, tag) addressed to `me`, under
    /// any key of the ring: the header then the messages in clear, or `None` when no key
    /// authenticates it (nothing in it may then be trusted).
    pub fn open_to(
        &self,
        datagram: &[u8],
        header_len: usize,
        sender: &str,
        incarnation: u64,
        number: u64,
        me: &str,
    ) -> Option<Vec<u8>> {
        use chacha20poly1305::aead::AeadInPlace;
        use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Tag};
        let body_end = datagram.len().checked_sub(SEAL_TAG_LEN)?;
        if body_end < header_len {
            return None;
        }
        let tag = Tag::from_slice(&datagram[body_end..]);
        let mut aad = Vec::with_capacity(header_len + 1 + me.len());
        aad.extend_from_slice(&datagram[..header_len]);
        aad.push(0xff);
        aad.extend_from_slice(me.as_bytes());
        // One copy, decrypted in place; a key that fails restores it for the next one.
        let mut plain = datagram[..body_end].to_vec();
        for (i, k) in self.0.iter().enumerate() {
            if i > 0 {
                plain.copy_from_slice(&datagram[..body_end]);
            }
            let cipher = ChaCha20Poly1305::new(&Self::stream_key(k, sender, incarnation, me));
            let (_, messages) = plain.split_at_mut(header_len);
            if cipher
                .decrypt_in_place_detached(&Self::nonce(number), &aad, messages, tag)
                .is_ok()
            {
                return Some(plain);
            }
        }
        None
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
    fn sealing_round_trips_and_refuses_any_change() {
        let key = ClusterKey::from_material(b"sealed cluster key material").sealing(true);
        assert!(key.seals());
        let header = b"header bytes".to_vec();
        let secret = b"replicated key in clear? never";
        let mut buf = header.clone();
        buf.extend_from_slice(secret);
        key.seal_to(&mut buf, header.len(), "node1", 7, 42, "node2");
        assert_eq!(buf.len(), header.len() + secret.len() + SEAL_TAG_LEN);
        assert!(!buf.windows(secret.len()).any(|w| w == secret), "encrypted");
        let open = |b: &[u8], sender: &str, inc: u64, n: u64, me: &str| {
            key.open_to(b, header.len(), sender, inc, n, me)
        };
        let plain = open(&buf, "node1", 7, 42, "node2").expect("opens");
        assert_eq!(&plain[header.len()..], secret);
        assert_eq!(&plain[..header.len()], &header[..]);
        // Another destination, sender, incarnation or number: another key or nonce.
        assert!(open(&buf, "node1", 7, 42, "node3").is_none());
        assert!(open(&buf, "node9", 7, 42, "node2").is_none());
        assert!(open(&buf, "node1", 8, 42, "node2").is_none());
        assert!(open(&buf, "node1", 7, 43, "node2").is_none());
        // Any flipped bit: header (associated data), ciphertext or tag.
        for at in [0, header.len() + 3, buf.len() - 1] {
            let mut bad = buf.clone();
            bad[at] ^= 0x10;
            assert!(open(&bad, "node1", 7, 42, "node2").is_none(), "bit at {at}");
        }
        assert!(
            open(&buf[..10], "node1", 7, 42, "node2").is_none(),
            "truncated"
        );
        // Two datagrams with the same messages differ on the wire (a nonce per packet number).
        let mut again = header.clone();
        again.extend_from_slice(secret);
        key.seal_to(&mut again, header.len(), "node1", 7, 43, "node2");
        assert_ne!(again, buf);
    }

    #[test]
    fn a_sealed_ring_opens_under_any_key_and_seals_under_the_first() {
        let old = ClusterKey::from_material(b"the old key material").sealing(true);
        let new = ClusterKey::from_material(b"the new key material").sealing(true);
        let ring = ClusterKey::ring([new.clone(), old.clone()]).expect("ring");
        assert!(ring.seals());
        let mut by_old = b"hdr".to_vec();
        by_old.extend_from_slice(b"payload");
        old.seal_to(&mut by_old, 3, "a", 1, 1, "b");
        assert!(ring.open_to(&by_old, 3, "a", 1, 1, "b").is_some());
        let mut by_ring = b"hdr".to_vec();
        by_ring.extend_from_slice(b"payload");
        ring.seal_to(&mut by_ring, 3, "a", 1, 1, "b");
        assert!(new.open_to(&by_ring, 3, "a", 1, 1, "b").is_some());
        assert!(old.open_to(&by_ring, 3, "a", 1, 1, "b").is_none());
    }

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
