/* Map layouts shared by the XDP program (src/cohort_xdp.c) and userspace
 * (userspace/src/xdp/maps.rs mirrors them with #[repr(C)] structs; a test compiles this header
 * with the C compiler and compares every size and offset). */
#ifndef COHORT_XDP_H
#define COHORT_XDP_H

#include <linux/types.h>

/* Momentum's documented maximum number of IP aliases. */
#define COHORT_MAX_VIPS 10240
/* Peers whose transport packets are stamped. */
#define COHORT_MAX_PEERS 1024

/* vips: IPv4 address (network byte order) -> what to answer ARP requests for it with. */
struct cohort_vip {
	__u8 mac[6];   /* the owning interface's MAC */
	__u16 flags;   /* reserved, 0 */
};

/* vips6: IPv6 address (16 bytes, network order) -> what to answer neighbour solicitations for it
 * with (the same struct as vips). */
struct cohort_in6 {
	__u8 addr[16];
};

/* lease[0]: the program answers only while bpf_ktime_get_ns() < expires_ns (CLOCK_MONOTONIC).
 * Userspace renews it; if the daemon hangs, ARP requests for the addresses in `vips` and
 * neighbour solicitations for those in `vips6` are dropped, so neither XDP nor the kernel (which
 * still has them plumbed) claims them for this node, and so is every IPv4 or IPv6 packet to them
 * (the ingress fence). Userspace re-arms it only once a view confirms
 * the node's ownership again. */
struct cohort_lease {
	__u64 expires_ns;
};

/* config[0] */
struct cohort_config {
	__u16 transport_port; /* UDP port of the group transport, network byte order; 0 = no stamping */
	__u16 reserved;
	__u32 reserved2;
};

/* peers: source IPv4 (network byte order) -> arrival of its latest transport packet. */
struct cohort_peer {
	__u64 last_ns;  /* bpf_ktime_get_ns() at arrival (CLOCK_MONOTONIC) */
	__u64 packets;
};

/* stats: per-CPU counters, index by enum cohort_stat. */
enum cohort_stat {
	COHORT_STAT_ARP_REPLIED = 0,     /* ARP requests answered with XDP_TX */
	COHORT_STAT_ARP_LEASE_EXPIRED = 1, /* requests for an owned VIP dropped: lease expired */
	COHORT_STAT_ARP_PASSED = 2,      /* other ARP passed to the kernel */
	COHORT_STAT_TRANSPORT_STAMPED = 3, /* transport packets stamped in peers */
	COHORT_STAT_INGRESS_FENCED = 4,  /* IPv4/IPv6 packets to a VIP dropped: lease expired */
	COHORT_STAT_NDP_REPLIED = 5,     /* neighbour solicitations answered with XDP_TX */
	COHORT_STAT_NDP_LEASE_EXPIRED = 6, /* solicitations for an owned VIP dropped: lease expired */
	COHORT_STAT_MAX = 7,
};

#endif
