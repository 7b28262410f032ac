// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/* Cohort's XDP fast path.
 *
 * 1. ARP responder: a request (not a gratuitous announcement) for an address in `vips` is turned
 *    into the reply in place and sent back out of the same interface (XDP_TX), while the lease is
 *    valid; once it has lapsed, such requests are dropped (the kernel would answer them for a
 *    hung daemon). Everything else goes on to the kernel unchanged.
 * 2. Arrival stamping: every IPv4 UDP packet to the transport port records, per source address,
 *    the kernel time it arrived, so the failure detector sees true arrival times even when the
 *    daemon is descheduled.
 * 3. Ingress fence: while the lease has lapsed, every IPv4 packet to an address in `vips` (and
 *    IPv6 packet to one in `vips6`) is dropped, so a hung node's kernel (which still has the
 *    addresses plumbed) accepts no traffic meant for the address's new owner.
 * 4. NDP responder: a neighbour solicitation for an address in `vips6` is turned into the
 *    neighbour advertisement in place (solicited, override, with the target link-layer address
 *    option) and sent back out (XDP_TX), under the same lease as ARP; a duplicate address
 *    detection probe (unspecified source) is answered to all nodes, as the kernel does.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/icmpv6.h>
#include <linux/in.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "cohort_xdp.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, COHORT_MAX_VIPS);
	__type(key, __u32);
	__type(value, struct cohort_vip);
} vips SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, COHORT_MAX_VIPS);
	__type(key, struct cohort_in6);
	__type(value, struct cohort_vip);
} vips6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cohort_lease);
} lease SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cohort_config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, COHORT_MAX_PEERS);
	__type(key, __u32);
	__type(value, struct cohort_peer);
} peers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COHORT_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/* An Ethernet/IPv4 ARP packet after the Ethernet header. */
struct arp_eth {
	__be16 hrd;
	__be16 pro;
	__u8 hln;
	__u8 pln;
	__be16 op;
	__u8 sha[6];
	__u8 spa[4];
	__u8 tha[6];
	__u8 tpa[4];
} __attribute__((packed));

static __always_inline void count(__u32 which)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &which);
	if (v)
		*v += 1;
}

static __always_inline int lease_lapsed(void)
{
	__u32 zero = 0;
	struct cohort_lease *l = bpf_map_lookup_elem(&lease, &zero);
	return !l || bpf_ktime_get_ns() >= l->expires_ns;
}

static __always_inline int handle_arp(struct ethhdr *eth, void *end)
{
	struct arp_eth *arp = (void *)(eth + 1);
	if ((void *)(arp + 1) > end)
		return XDP_PASS;
	if (arp->hrd != bpf_htons(1) || arp->pro != bpf_htons(ETH_P_IP) || arp->hln != 6 ||
	    arp->pln != 4 || arp->op != bpf_htons(1 /* request */)) {
		count(COHORT_STAT_ARP_PASSED);
		return XDP_PASS;
	}
	__u32 tip, sip;
	__builtin_memcpy(&tip, arp->tpa, 4);
	__builtin_memcpy(&sip, arp->spa, 4);
	/* A gratuitous request announces the sender's own address; it asks nothing. */
	if (tip == sip) {
		count(COHORT_STAT_ARP_PASSED);
		return XDP_PASS;
	}
	struct cohort_vip *vip = bpf_map_lookup_elem(&vips, &tip);
	if (!vip) {
		count(COHORT_STAT_ARP_PASSED);
		return XDP_PASS;
	}
	if (lease_lapsed()) {
		/* The daemon stopped renewing (hung, or stalled longer than the lease): its node has
		 * most likely been removed from the view and a survivor owns the address now. Drop the
		 * request rather than let the kernel, which still has the address plumbed, answer it
		 * with this node's MAC and pull clients back. */
		count(COHORT_STAT_ARP_LEASE_EXPIRED);
		return XDP_DROP;
	}
	/* The request becomes the reply: to the asker, from the VIP's owner. */
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, vip->mac, ETH_ALEN);
	arp->op = bpf_htons(2 /* reply */);
	__builtin_memcpy(arp->tha, arp->sha, 6);
	__builtin_memcpy(arp->tpa, &sip, 4);
	__builtin_memcpy(arp->sha, vip->mac, 6);
	__builtin_memcpy(arp->spa, &tip, 4);
	count(COHORT_STAT_ARP_REPLIED);
	return XDP_TX;
}

/* A neighbour solicitation or advertisement after the IPv6 header: type, code, checksum, the
 * flags word (reserved in a solicitation), the target, then one link-layer address option. */
struct nd_msg {
	__u8 type;
	__u8 code;
	__be16 cksum;
	__be32 flags;
	__u8 target[16];
	__u8 opt_type;
	__u8 opt_len;
	__u8 lladdr[6];
} __attribute__((packed));

#define ND_SOLICIT 135
#define ND_ADVERT 136
#define ND_FLAG_SOLICITED 0x40000000
#define ND_FLAG_OVERRIDE 0x20000000
#define ND_OPT_TARGET_LLADDR 2
/* Without the source link-layer address option (a DAD probe has none). */
#define ND_MSG_SHORT 24

static __always_inline __u16 csum_fold(__u64 sum)
{
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum & 0xffff;
}

static __always_inline int handle_ndp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct ipv6hdr *ip6 = (void *)(eth + 1);
	if ((void *)(ip6 + 1) > end || ip6->nexthdr != IPPROTO_ICMPV6)
		return -1;
	struct nd_msg *nd = (void *)(ip6 + 1);
	if ((void *)nd + ND_MSG_SHORT > end || nd->type != ND_SOLICIT || nd->code != 0)
		return -1;
	struct cohort_in6 target;
	__builtin_memcpy(target.addr, nd->target, 16);
	struct cohort_vip *vip = bpf_map_lookup_elem(&vips6, &target);
	if (!vip)
		return -1;
	/* Every solicitation for an owned address, whatever its shape, is dropped once the lease has
	 * lapsed: the kernel, which still has the address, must not answer it either. */
	if (lease_lapsed()) {
		count(COHORT_STAT_NDP_LEASE_EXPIRED);
		return XDP_DROP;
	}
	/* Shapes answered here: no option (a DAD probe) or one 8-byte option (the source link-layer
	 * address, or a DAD nonce), which the target link-layer address replaces. Anything else (and
	 * an invalid hop limit) is left to the kernel while the lease is valid. */
	__u16 plen = bpf_ntohs(ip6->payload_len);
	if (ip6->hop_limit != 255 || (plen != ND_MSG_SHORT && plen != sizeof(struct nd_msg)))
		return XDP_PASS;
	__u8 mac[ETH_ALEN];
	__builtin_memcpy(mac, vip->mac, ETH_ALEN);
	/* A DAD probe comes from the unspecified address: the answer goes to all nodes. */
	int dad = 1;
#pragma unroll
	for (int i = 0; i < 16; i++)
		if (ip6->saddr.in6_u.u6_addr8[i])
			dad = 0;
	if (plen == ND_MSG_SHORT) {
		/* Room for the target link-layer address option. */
		if (bpf_xdp_adjust_tail(ctx, sizeof(struct nd_msg) - ND_MSG_SHORT))
			return XDP_PASS;
		data = (void *)(long)ctx->data;
		end = (void *)(long)ctx->data_end;
		eth = data;
		ip6 = (void *)(eth + 1);
		nd = (void *)(ip6 + 1);
		if ((void *)(nd + 1) > end)
			return XDP_DROP;
	}
	if ((void *)(nd + 1) > end)
		return -1;
	if (dad) {
		/* 33:33:00:00:00:01, the all-nodes group's MAC. */
		__builtin_memset(eth->h_dest, 0, ETH_ALEN);
		eth->h_dest[0] = 0x33;
		eth->h_dest[1] = 0x33;
		eth->h_dest[5] = 0x01;
		__builtin_memset(&ip6->daddr, 0, 16);
		ip6->daddr.in6_u.u6_addr8[0] = 0xff;
		ip6->daddr.in6_u.u6_addr8[1] = 0x02;
		ip6->daddr.in6_u.u6_addr8[15] = 0x01;
		nd->flags = bpf_htonl(ND_FLAG_OVERRIDE);
	} else {
		__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
		__builtin_memcpy(&ip6->daddr, &ip6->saddr, 16);
		nd->flags = bpf_htonl(ND_FLAG_SOLICITED | ND_FLAG_OVERRIDE);
	}
	__builtin_memcpy(eth->h_source, mac, ETH_ALEN);
	__builtin_memcpy(&ip6->saddr, target.addr, 16);
	ip6->payload_len = bpf_htons(sizeof(struct nd_msg));
	ip6->hop_limit = 255;
	nd->type = ND_ADVERT;
	nd->code = 0;
	nd->cksum = 0;
	nd->opt_type = ND_OPT_TARGET_LLADDR;
	nd->opt_len = 1;
	__builtin_memcpy(nd->lladdr, mac, ETH_ALEN);
	/* The ICMPv6 checksum: the pseudo-header (addresses, length, next header), then the message. */
	__be32 pseudo[2] = { bpf_htonl(sizeof(struct nd_msg)), bpf_htonl(IPPROTO_ICMPV6) };
	__s64 sum = bpf_csum_diff(0, 0, (__be32 *)&ip6->saddr, 32, 0);
	sum = bpf_csum_diff(0, 0, pseudo, sizeof(pseudo), sum);
	sum = bpf_csum_diff(0, 0, (__be32 *)nd, sizeof(struct nd_msg), sum);
	if (sum < 0)
		return XDP_DROP;
	nd->cksum = csum_fold((__u64)sum);
	count(COHORT_STAT_NDP_REPLIED);
	return XDP_TX;
}

static __always_inline void stamp(struct ethhdr *eth, void *end)
{
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end || ip->protocol != IPPROTO_UDP || ip->ihl != 5)
		return;
	/* Only whole first fragments carry the UDP header. */
	if (ip->frag_off & bpf_htons(0x1fff))
		return;
	struct udphdr *udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > end)
		return;
	__u32 zero = 0;
	struct cohort_config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg || cfg->transport_port == 0 || udp->dest != cfg->transport_port)
		return;
	__u32 src = ip->saddr;
	__u64 now = bpf_ktime_get_ns();
	struct cohort_peer *p = bpf_map_lookup_elem(&peers, &src);
	if (p) {
		p->last_ns = now;
		__sync_fetch_and_add(&p->packets, 1);
	} else {
		struct cohort_peer fresh = { .last_ns = now, .packets = 1 };
		bpf_map_update_elem(&peers, &src, &fresh, BPF_ANY);
	}
	count(COHORT_STAT_TRANSPORT_STAMPED);
}

/* The IPv6 ingress fence, as below. */
static __always_inline int fenced6(struct ethhdr *eth, void *end)
{
	struct ipv6hdr *ip6 = (void *)(eth + 1);
	if ((void *)(ip6 + 1) > end || !lease_lapsed())
		return 0;
	struct cohort_in6 dst;
	__builtin_memcpy(dst.addr, &ip6->daddr, 16);
	if (!bpf_map_lookup_elem(&vips6, &dst))
		return 0;
	count(COHORT_STAT_INGRESS_FENCED);
	return 1;
}

/* The ingress fence: only while the lease has lapsed (one array lookup otherwise). */
static __always_inline int fenced(struct ethhdr *eth, void *end)
{
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end || !lease_lapsed())
		return 0;
	__u32 dst = ip->daddr;
	if (!bpf_map_lookup_elem(&vips, &dst))
		return 0;
	count(COHORT_STAT_INGRESS_FENCED);
	return 1;
}

SEC("xdp")
int cohort_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	if (eth->h_proto == bpf_htons(ETH_P_ARP))
		return handle_arp(eth, end);
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		stamp(eth, end);
		if (fenced(eth, end))
			return XDP_DROP;
	}
	if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		int verdict = handle_ndp(ctx);
		if (verdict >= 0)
			return verdict;
		data = (void *)(long)ctx->data;
		end = (void *)(long)ctx->data_end;
		eth = data;
		if ((void *)(eth + 1) > end)
			return XDP_PASS;
		if (fenced6(eth, end))
			return XDP_DROP;
	}
	return XDP_PASS;
}

/* Attached to the peer of a veth so that frames sent with XDP_TX in native mode are received. */
SEC("xdp")
int cohort_xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char _license[] SEC("license") = "Dual MIT/GPL";
