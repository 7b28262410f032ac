//! Rust mirrors of the map values in `ebpf/include/cohort_xdp.h`. `tests::layout_matches_header`
//! compiles the header with the C compiler and compares every size and offset.

/// `struct cohort_vip`
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Vip {
    pub mac: [u8; 6],
    pub flags: u16,
}

/// `struct cohort_in6`: the key of `vips6`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct In6 {
    pub addr: [u8; 16],
}

/// `struct cohort_lease`
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lease {
    pub expires_ns: u64,
}

/// `struct cohort_config`
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpConfig {
    /// Network byte order.
    pub transport_port: u16,
    pub reserved: u16,
    pub reserved2: u32,
}

/// `struct cohort_peer`
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Peer {
    pub last_ns: u64,
    pub packets: u64,
}

// SAFETY: #[repr(C)] structs of integers with no padding holes read by the kernel (layouts
// checked against the C header by the test below).
unsafe impl aya::Pod for Vip {}
// SAFETY: as above.
unsafe impl aya::Pod for In6 {}
// SAFETY: as above.
unsafe impl aya::Pod for Lease {}
// SAFETY: as above.
unsafe impl aya::Pod for XdpConfig {}
// SAFETY: as above.
unsafe impl aya::Pod for Peer {}

/// `enum cohort_stat`
pub const STAT_ARP_REPLIED: u32 = 0;
pub const STAT_ARP_LEASE_EXPIRED: u32 = 1;
pub const STAT_ARP_PASSED: u32 = 2;
pub const STAT_TRANSPORT_STAMPED: u32 = 3;
pub const STAT_INGRESS_FENCED: u32 = 4;
pub const STAT_NDP_REPLIED: u32 = 5;
pub const STAT_NDP_LEASE_EXPIRED: u32 = 6;
pub const STAT_MAX: u32 = 7;

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};
    use std::process::Command;

    #[test]
    fn layout_matches_header() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("layout.c");
        let bin = dir.path().join("layout");
        std::fs::write(
            &src,
            format!(
                "#include <stdio.h>\n#include <stddef.h>\n#include \"{}\"\nint main(void) {{\n\
                 printf(\"%zu %zu %zu\\n\", sizeof(struct cohort_vip), offsetof(struct cohort_vip, mac), offsetof(struct cohort_vip, flags));\n\
                 printf(\"%zu %zu\\n\", sizeof(struct cohort_lease), offsetof(struct cohort_lease, expires_ns));\n\
                 printf(\"%zu %zu %zu %zu\\n\", sizeof(struct cohort_config), offsetof(struct cohort_config, transport_port), offsetof(struct cohort_config, reserved), offsetof(struct cohort_config, reserved2));\n\
                 printf(\"%zu %zu %zu\\n\", sizeof(struct cohort_peer), offsetof(struct cohort_peer, last_ns), offsetof(struct cohort_peer, packets));\n\
                 printf(\"%zu %zu\\n\", sizeof(struct cohort_in6), offsetof(struct cohort_in6, addr));\n\
                 printf(\"%d %d %d %d %d %d %d %d\\n\", COHORT_STAT_ARP_REPLIED, COHORT_STAT_ARP_LEASE_EXPIRED, COHORT_STAT_ARP_PASSED, COHORT_STAT_TRANSPORT_STAMPED, COHORT_STAT_INGRESS_FENCED, COHORT_STAT_NDP_REPLIED, COHORT_STAT_NDP_LEASE_EXPIRED, COHORT_STAT_MAX);\n\
                 return 0; }}\n",
                cohort_ebpf::HEADER
            ),
        )
        .expect("write");
        let cc = Command::new("cc")
            .arg("-I/usr/include/x86_64-linux-gnu")
            .arg(&src)
            .arg("-o")
            .arg(&bin)
            .output()
            .expect("cc runs");
        assert!(
            cc.status.success(),
            "{}",
            String::from_utf8_lossy(&cc.stderr)
        );
        let out = Command::new(&bin).output().expect("runs");
        let want = format!(
            "{} {} {}\n{} {}\n{} {} {} {}\n{} {} {}\n{} {}\n{} {} {} {} {} {} {} {}\n",
            size_of::<Vip>(),
            offset_of!(Vip, mac),
            offset_of!(Vip, flags),
            size_of::<Lease>(),
            offset_of!(Lease, expires_ns),
            size_of::<XdpConfig>(),
            offset_of!(XdpConfig, transport_port),
            offset_of!(XdpConfig, reserved),
            offset_of!(XdpConfig, reserved2),
            size_of::<Peer>(),
            offset_of!(Peer, last_ns),
            offset_of!(Peer, packets),
            size_of::<In6>(),
            offset_of!(In6, addr),
            STAT_ARP_REPLIED,
            STAT_ARP_LEASE_EXPIRED,
            STAT_ARP_PASSED,
            STAT_TRANSPORT_STAMPED,
            STAT_INGRESS_FENCED,
            STAT_NDP_REPLIED,
            STAT_NDP_LEASE_EXPIRED,
            STAT_MAX
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), want);
    }
}
