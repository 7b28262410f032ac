//! The record header that precedes every payload in a segment file.
//!
//! Layout (native-endian, 16 bytes, no padding between records):
//! `u32 magic | u32 tv_sec | u32 tv_usec | u32 mlen`, then `mlen` payload bytes.

/// Header magic of jlog 2.x uncompressed records (`DEFAULT_HDR_MAGIC`).
pub const DEFAULT_HDR_MAGIC: u32 = 0x663A_7318;
/// Header magic of pre-2.0 jlogs: the `reserved` word was always 0.
pub const LEGACY_HDR_MAGIC: u32 = 0;
/// Compressed jlogs have `0x15106A00 | provider` as their magic.
pub const COMPRESSED_MAGIC_BASE: u32 = 0x1510_6A00;
/// Size of an uncompressed record header.
pub const HEADER_LEN: usize = 16;

/// Whether `magic` is one of jlog's compressed-record magics.
pub fn is_compressed_magic(magic: u32) -> bool {
    magic != DEFAULT_HDR_MAGIC && magic & COMPRESSED_MAGIC_BASE == COMPRESSED_MAGIC_BASE
}

/// A parsed record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Must equal the metastore's `hdr_magic` (0 in legacy journals).
    pub magic: u32,
    /// Write time, seconds since the epoch truncated to 32 bits.
    pub tv_sec: u32,
    /// Microseconds part of the write time.
    pub tv_usec: u32,
    /// Payload length in bytes.
    pub mlen: u32,
}

impl RecordHeader {
    /// Parses the first [`HEADER_LEN`] bytes of `b`; `None` when `b` is shorter.
    pub fn parse(b: &[u8]) -> Option<RecordHeader> {
        let word = |i: usize| -> Option<u32> {
            let bytes: [u8; 4] = b.get(i..i + 4)?.try_into().ok()?;
            Some(u32::from_ne_bytes(bytes))
        };
        Some(RecordHeader {
            magic: word(0)?,
            tv_sec: word(4)?,
            tv_usec: word(8)?,
            mlen: word(12)?,
        })
    }

    /// The 16 on-disk bytes.
    pub fn emit(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..4].copy_from_slice(&self.magic.to_ne_bytes());
        out[4..8].copy_from_slice(&self.tv_sec.to_ne_bytes());
        out[8..12].copy_from_slice(&self.tv_usec.to_ne_bytes());
        out[12..16].copy_from_slice(&self.mlen.to_ne_bytes());
        out
    }

    /// Total on-disk length of the record this header starts.
    pub fn record_len(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.mlen)
    }
}

/// Whether a header with `record_magic` belongs to a journal whose metastore says `meta_magic`.
/// Legacy (magic 0) records are accepted only in journals whose metastore is legacy too, so that
/// a zeroed hole in a 2.x segment is never mistaken for a record.
pub fn magic_matches(record_magic: u32, meta_magic: u32) -> bool {
    record_magic == meta_magic
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_matches_reference_bytes() {
        let h = RecordHeader {
            magic: DEFAULT_HDR_MAGIC,
            tv_sec: 0x6b05ec8e,
            tv_usec: 0x3c89,
            mlen: 5,
        };
        let bytes = h.emit();
        // From the hexdump in jlog-format.md 2.3: "1873 3a66 8eec 056b 893c 0000 0500 0000".
        assert_eq!(
            bytes,
            [
                0x18, 0x73, 0x3a, 0x66, 0x8e, 0xec, 0x05, 0x6b, 0x89, 0x3c, 0, 0, 5, 0, 0, 0
            ]
        );
        assert_eq!(RecordHeader::parse(&bytes), Some(h));
        assert_eq!(RecordHeader::parse(&bytes[..15]), None);
        assert_eq!(h.record_len(), 21);
    }

    #[test]
    fn compressed_magic_detection() {
        assert!(is_compressed_magic(0x1510_6A01));
        assert!(!is_compressed_magic(DEFAULT_HDR_MAGIC));
        assert!(!is_compressed_magic(LEGACY_HDR_MAGIC));
    }
}
