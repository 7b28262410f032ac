//! Cohort's XDP fast path: an ARP responder for owned DuraVIP addresses that stops answering when
//! its lease runs out, and a stamper of transport-packet arrival times. The program is C
//! (`src/cohort_xdp.c`, map layouts in `include/cohort_xdp.h`), compiled by `build.rs` with
//! clang-19 (Rust eBPF would need `rust-src`, which this toolchain lacks) and embedded here.
//! `userspace` loads it with aya 0.14.

/// Aligns embedded bytes: the ELF parser reads the object's headers in place.
#[repr(C, align(32))]
pub struct Aligned<B: ?Sized>(pub B);

static OBJECT_ALIGNED: &Aligned<[u8]> =
    &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/cohort_xdp.o")));

/// The compiled XDP object (ELF, BPF target).
pub fn object() -> &'static [u8] {
    &OBJECT_ALIGNED.0
}

/// Name of the fast-path program in the object.
pub const PROGRAM: &str = "cohort_xdp";
/// Name of the pass-through program for a veth peer (native-mode XDP_TX needs one there).
pub const PASS_PROGRAM: &str = "cohort_xdp_pass";
/// The header that fixes the map layouts (for layout tests).
pub const HEADER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/include/cohort_xdp.h");

/// Map names in the object.
pub mod maps {
    pub const VIPS: &str = "vips";
    pub const VIPS6: &str = "vips6";
    pub const LEASE: &str = "lease";
    pub const CONFIG: &str = "config";
    pub const PEERS: &str = "peers";
    pub const STATS: &str = "stats";
}

#[cfg(test)]
mod tests {
    #[test]
    fn object_is_a_bpf_elf() {
        let o = super::object();
        assert_eq!(&o[..4], b"\x7fELF");
        // e_machine at offset 18: EM_BPF = 247.
        assert_eq!(u16::from_le_bytes([o[18], o[19]]), 247);
        assert_eq!(o.as_ptr() as usize % 32, 0, "aligned");
    }
}
