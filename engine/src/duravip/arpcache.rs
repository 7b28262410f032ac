//! The cluster-wide shared ARP cache behind `cluster arp show` and `arp_all_hosts = false`.
//!
//! Momentum documents only that `arp_all_hosts = false` targets "specific hosts of interest" and
//! that `cluster arp show` resolves "the MAC addresses of the cluster" (docs 27.3, 71.19.4). The
//! design follows Wackamole (docs 6.8), whose options DuraVIP's map onto: every node periodically
//! collects its own ARP cache (the kernel's neighbour table on the `Topology` interfaces, as
//! Wackamole reads the system ARP table every `Arp-Cache` interval) and multicasts it to its peers;
//! every node keeps the aggregate, and a node that acquires an address notifies every host of that
//! aggregate. Each host's entry is stamped when a report of it last arrived, and expires when no
//! node has reported it for [`SharedArpCache::ttl`].
//!
//! The reports are independent facts merged by "newest report wins", so they need no total order:
//! the daemon sends them FIFO on the cluster group. Everything here is sans-IO: the daemon reads
//! `/proc/net/arp` (IPv4) and gives the text to [`parse_proc_net_arp`], and the kernel's IPv6
//! neighbour table over rtnetlink, and reports both: hosts of both families share the cache.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use serde::{Serialize, Serializer};

/// An Ethernet address, printed and serialized as `00:e0:81:63:5c:e8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One entry of the cluster-wide shared ARP cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ArpEntry {
    pub ip: IpAddr,
    pub mac: MacAddr,
    /// Seconds since the entry was last confirmed.
    pub age_secs: u64,
}

/// `cluster arp show`: the shared ARP cache, in the order the daemon chooses (Momentum's sample is
/// unsorted).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ArpTable {
    pub entries: Vec<ArpEntry>,
}

/// Most hosts the cache keeps; when full, the host reported least recently makes room.
pub const MAX_HOSTS: usize = 4096;
/// Most IPv4 hosts in one report message (10 bytes each, so a report fits the default 1400-byte
/// MTU).
pub const MAX_PER_MESSAGE: usize = 100;
/// Most IPv6 hosts in one report message (22 bytes each).
pub const MAX_PER_MESSAGE_V6: usize = 60;
/// Version byte of a report of IPv4 hosts (the first encoding, unchanged).
const VERSION: u8 = 1;
/// Version byte of a report of IPv6 hosts. A node from before it refuses such a report (and
/// logs it), and keeps every IPv4 host.
const VERSION_V6: u8 = 2;

/// One host: its address and its MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Neighbour {
    pub ip: IpAddr,
    pub mac: [u8; 6],
}

/// A line of `/proc/net/arp` that is not in the kernel's format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("/proc/net/arp line {line}, column {column}: {what}")]
pub struct ProcArpError {
    pub line: usize,
    pub column: usize,
    pub what: String,
}

/// A report that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ARP cache report, byte {offset}: {what}")]
pub struct ReportError {
    pub offset: usize,
    pub what: String,
}

/// `ATF_COM`: the entry is complete (its MAC is known).
const ATF_COM: u32 = 0x2;

/// The complete IPv4 entries of `/proc/net/arp` for which `keep(device, ip)` holds. Format:
/// a header line, then `IP  HW-type  Flags  HW-address  Mask  Device` separated by spaces.
/// Incomplete entries (no `ATF_COM` flag, or an all-zero MAC) are skipped; malformed lines are
/// errors naming the line and column.
pub fn parse_proc_net_arp(
    text: &str,
    keep: impl Fn(&str, Ipv4Addr) -> bool,
) -> Result<Vec<Neighbour>, ProcArpError> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let err = |column: usize, what: String| ProcArpError {
            line: n + 1,
            column,
            what,
        };
        // (column, field) pairs, columns counted from 1.
        let mut fields = Vec::with_capacity(6);
        let mut start = None;
        for (i, c) in line
            .char_indices()
            .chain(std::iter::once((line.len(), ' ')))
        {
            match (c.is_whitespace(), start) {
                (false, None) => start = Some(i),
                (true, Some(s)) => {
                    fields.push((s + 1, &line[s..i]));
                    start = None;
                }
                _ => {}
            }
        }
        if fields.len() != 6 {
            return Err(err(1, format!("expected 6 fields, found {}", fields.len())));
        }
        let (ipc, ip) = fields[0];
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| err(ipc, format!("'{ip}' is not an IPv4 address")))?;
        let (fc, flags) = fields[2];
        let flags = flags
            .strip_prefix("0x")
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| err(fc, format!("flags '{flags}' are not 0x-hexadecimal")))?;
        let (mc, mac_text) = fields[3];
        let mac =
            parse_mac(mac_text).ok_or_else(|| err(mc, format!("'{mac_text}' is not a MAC")))?;
        let device = fields[5].1;
        if flags & ATF_COM == 0 || mac == [0; 6] || !keep(device, ip) {
            continue;
        }
        out.push(Neighbour {
            ip: IpAddr::V4(ip),
            mac,
        });
    }
    Ok(out)
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// The report messages for `hosts`: `[1, count]` then `count` times 4 address bytes and 6 MAC
/// bytes for the IPv4 hosts, at most [`MAX_PER_MESSAGE`] each; `[2, count]` then `count` times
/// 16 address bytes and 6 MAC bytes for the IPv6 hosts, at most [`MAX_PER_MESSAGE_V6`] each.
pub fn encode_reports(hosts: &[Neighbour]) -> Vec<Vec<u8>> {
    let v4: Vec<(Ipv4Addr, [u8; 6])> = hosts
        .iter()
        .filter_map(|h| match h.ip {
            IpAddr::V4(a) => Some((a, h.mac)),
            IpAddr::V6(_) => None,
        })
        .collect();
    let v6: Vec<(Ipv6Addr, [u8; 6])> = hosts
        .iter()
        .filter_map(|h| match h.ip {
            IpAddr::V6(a) => Some((a, h.mac)),
            IpAddr::V4(_) => None,
        })
        .collect();
    let mut out = Vec::new();
    for chunk in v4.chunks(MAX_PER_MESSAGE) {
        let mut b = Vec::with_capacity(2 + 10 * chunk.len());
        b.push(VERSION);
        // Bounded by MAX_PER_MESSAGE (100), so it fits.
        b.push(chunk.len() as u8);
        for (ip, mac) in chunk {
            b.extend_from_slice(&ip.octets());
            b.extend_from_slice(mac);
        }
        out.push(b);
    }
    for chunk in v6.chunks(MAX_PER_MESSAGE_V6) {
        let mut b = Vec::with_capacity(2 + 22 * chunk.len());
        b.push(VERSION_V6);
        b.push(chunk.len() as u8);
        for (ip, mac) in chunk {
            b.extend_from_slice(&ip.octets());
            b.extend_from_slice(mac);
        }
        out.push(b);
    }
    out
}

/// Decodes one report message.
pub fn decode_report(bytes: &[u8]) -> Result<Vec<Neighbour>, ReportError> {
    let err = |offset: usize, what: &str| ReportError {
        offset,
        what: what.to_owned(),
    };
    let (&version, rest) = bytes.split_first().ok_or_else(|| err(0, "empty"))?;
    let (addr_len, max) = match version {
        VERSION => (4, MAX_PER_MESSAGE),
        VERSION_V6 => (16, MAX_PER_MESSAGE_V6),
        _ => return Err(err(0, "unknown version")),
    };
    let entry = addr_len + 6;
    let (&count, body) = rest.split_first().ok_or_else(|| err(1, "no host count"))?;
    let count = usize::from(count);
    if count > max {
        return Err(err(1, "more hosts than a report may carry"));
    }
    if body.len() != entry * count {
        return Err(err(
            2 + body.len().min(entry * count),
            "length does not match the host count",
        ));
    }
    Ok(body
        .chunks_exact(entry)
        .map(|c| {
            let (a, m) = c.split_at(addr_len);
            let ip = match <[u8; 16]>::try_from(a) {
                Ok(a16) => IpAddr::V6(Ipv6Addr::from(a16)),
                Err(_) => IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])),
            };
            Neighbour {
                ip,
                mac: [m[0], m[1], m[2], m[3], m[4], m[5]],
            }
        })
        .collect())
}

/// The aggregate of every node's reports. Times are the daemon's monotonic clock.
#[derive(Clone, Debug)]
pub struct SharedArpCache {
    /// How long a host stays without a new report.
    pub ttl: Duration,
    hosts: BTreeMap<IpAddr, ([u8; 6], Duration)>,
}

impl SharedArpCache {
    pub fn new(ttl: Duration) -> SharedArpCache {
        SharedArpCache {
            ttl,
            hosts: BTreeMap::new(),
        }
    }

    /// Records a report (this node's own collection or a peer's message) received at `now`.
    pub fn learn(&mut self, now: Duration, hosts: &[Neighbour]) {
        for h in hosts {
            if !self.hosts.contains_key(&h.ip)
                && self.hosts.len() >= MAX_HOSTS
                && let Some(oldest) = self
                    .hosts
                    .iter()
                    .min_by_key(|(ip, (_, seen))| (*seen, **ip))
                    .map(|(ip, _)| *ip)
            {
                self.hosts.remove(&oldest);
            }
            self.hosts.insert(h.ip, (h.mac, now));
        }
    }

    /// Forgets hosts nobody reported for `ttl`.
    pub fn expire(&mut self, now: Duration) {
        let ttl = self.ttl;
        self.hosts
            .retain(|_, (_, seen)| now.saturating_sub(*seen) <= ttl);
    }

    /// Every host, by address.
    pub fn hosts(&self) -> Vec<Neighbour> {
        self.hosts
            .iter()
            .map(|(ip, (mac, _))| Neighbour { ip: *ip, mac: *mac })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// `cluster arp show`: address, MAC and seconds since the last report, least recently
    /// reported first (as the docs' sample runs from 43 s down to 8 s), then by address.
    pub fn table(&self, now: Duration) -> ArpTable {
        let mut entries: Vec<(Duration, ArpEntry)> = self
            .hosts
            .iter()
            .map(|(ip, (mac, seen))| {
                (
                    *seen,
                    ArpEntry {
                        ip: *ip,
                        mac: MacAddr(*mac),
                        age_secs: now.saturating_sub(*seen).as_secs(),
                    },
                )
            })
            .collect();
        entries.sort_by_key(|(seen, e)| (*seen, e.ip));
        ArpTable {
            entries: entries.into_iter().map(|(_, e)| e).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROC: &str = "\
IP address       HW type     Flags       HW address            Mask     Device
10.7.0.9         0x1         0x2         5a:4e:0b:11:22:33     *        eth0
10.7.0.8         0x1         0x0         00:00:00:00:00:00     *        eth0
192.168.1.1      0x1         0x2         00:00:5e:00:01:0c     *        eth1
10.7.0.3         0x1         0x6         02:00:00:00:00:03     *        eth0
";

    /// Golden bytes: a field swapped in both `encode_reports` and `decode_report` fails here.
    #[test]
    fn report_golden_bytes() {
        let hosts = vec![
            Neighbour {
                ip: IpAddr::V4(Ipv4Addr::new(10, 7, 0, 9)),
                mac: [0x5a, 0x4e, 0x0b, 0x11, 0x22, 0x33],
            },
            Neighbour {
                ip: IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1)),
                mac: [0, 0, 0x5e, 0, 1, 0x0c],
            },
        ];
        let want = vec![
            VERSION, 2, 10, 7, 0, 9, 0x5a, 0x4e, 0x0b, 0x11, 0x22, 0x33, 192, 168, 1, 1, 0, 0,
            0x5e, 0, 1, 0x0c,
        ];
        assert_eq!(encode_reports(&hosts), vec![want.clone()]);
        assert_eq!(decode_report(&want), Ok(hosts));
    }

    #[test]
    fn proc_net_arp_keeps_complete_entries_on_the_chosen_devices() {
        let got = parse_proc_net_arp(PROC, |dev, _| dev == "eth0").expect("parses");
        assert_eq!(
            got,
            vec![
                Neighbour {
                    ip: IpAddr::V4(Ipv4Addr::new(10, 7, 0, 9)),
                    mac: [0x5a, 0x4e, 0x0b, 0x11, 0x22, 0x33]
                },
                Neighbour {
                    ip: IpAddr::V4(Ipv4Addr::new(10, 7, 0, 3)),
                    mac: [2, 0, 0, 0, 0, 3]
                },
            ]
        );
        let net1 = parse_proc_net_arp(PROC, |_, ip| ip.octets()[0] == 192).expect("parses");
        assert_eq!(net1.len(), 1);
    }

    #[test]
    fn proc_net_arp_errors_name_line_and_column() {
        let bad_ip = "header\n10.7.0.x 0x1 0x2 02:00:00:00:00:03 * eth0\n";
        assert_eq!(
            parse_proc_net_arp(bad_ip, |_, _| true),
            Err(ProcArpError {
                line: 2,
                column: 1,
                what: "'10.7.0.x' is not an IPv4 address".into()
            })
        );
        let bad_mac = "header\n10.7.0.1   0x1 0x2 02:00:00:00:0003 * eth0\n";
        let e = parse_proc_net_arp(bad_mac, |_, _| true).expect_err("bad MAC");
        assert_eq!((e.line, e.column), (2, 20));
        let short = "header\nok\n10.7.0.1 0x1\n";
        let e = parse_proc_net_arp(short, |_, _| true).expect_err("short");
        assert_eq!(e.line, 2);
        let flags = "header\n10.7.0.1 0x1 2 02:00:00:00:00:03 * eth0\n";
        let e = parse_proc_net_arp(flags, |_, _| true).expect_err("flags");
        assert_eq!((e.line, e.column), (2, 14));
    }

    #[test]
    fn reports_round_trip_in_bounded_chunks() {
        let hosts: Vec<Neighbour> = (0..300u32)
            .map(|i| Neighbour {
                ip: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)),
                mac: [2, 0, 0, 0, (i >> 8) as u8, i as u8],
            })
            .collect();
        let reports = encode_reports(&hosts);
        assert_eq!(reports.len(), 3);
        assert!(reports.iter().all(|r| r.len() <= 2 + 10 * MAX_PER_MESSAGE));
        let back: Vec<Neighbour> = reports
            .iter()
            .flat_map(|r| decode_report(r).expect("decodes"))
            .collect();
        assert_eq!(back, hosts);
    }

    #[test]
    fn ipv6_hosts_travel_in_reports_of_their_own() {
        let v6: Ipv6Addr = "fd00::7".parse().unwrap();
        let one = [Neighbour {
            ip: IpAddr::V6(v6),
            mac: [2, 0, 0, 0, 0, 7],
        }];
        // Golden bytes: version 2, one host, 16 address bytes, 6 MAC bytes.
        let mut want = vec![2u8, 1];
        want.extend_from_slice(&v6.octets());
        want.extend_from_slice(&[2, 0, 0, 0, 0, 7]);
        assert_eq!(encode_reports(&one), vec![want]);
        // A mixed set: IPv4 reports first, then IPv6 ones, each within its bound.
        let mut hosts: Vec<Neighbour> = (0..150u32)
            .map(|i| Neighbour {
                ip: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)),
                mac: [2, 0, 0, 0, 0, i as u8],
            })
            .collect();
        hosts.extend((0..130u16).map(|i| Neighbour {
            ip: IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, i)),
            mac: [2, 0, 0, 0, 1, i as u8],
        }));
        let reports = encode_reports(&hosts);
        assert_eq!(reports.len(), 2 + 3);
        assert!(
            reports
                .iter()
                .all(|r| r.len() <= 2 + 22 * MAX_PER_MESSAGE_V6)
        );
        assert!(
            reports.iter().all(|r| r.len() <= 1400),
            "each fits the default MTU"
        );
        let back: Vec<Neighbour> = reports
            .iter()
            .flat_map(|r| decode_report(r).expect("decodes"))
            .collect();
        assert_eq!(back, hosts);
        assert_eq!(
            decode_report(&[VERSION_V6, 61])
                .expect_err("too many")
                .offset,
            1
        );
        assert_eq!(
            decode_report(&[VERSION_V6, 1, 0, 0])
                .expect_err("short")
                .offset,
            4
        );
        // The cache keeps both families, IPv4 first among equals.
        let mut c = SharedArpCache::new(Duration::from_secs(60));
        c.learn(Duration::from_secs(1), &[one[0], hosts[0]]);
        let t = c.table(Duration::from_secs(2));
        assert_eq!(t.entries.len(), 2);
        assert_eq!(t.entries[1].ip, IpAddr::V6(v6));
    }

    #[test]
    fn malformed_reports_are_errors_with_an_offset() {
        assert_eq!(decode_report(&[]).expect_err("empty").offset, 0);
        assert_eq!(decode_report(&[9, 0]).expect_err("version").offset, 0);
        assert_eq!(decode_report(&[VERSION]).expect_err("count").offset, 1);
        assert_eq!(
            decode_report(&[VERSION, 200]).expect_err("too many").offset,
            1
        );
        let e = decode_report(&[VERSION, 2, 10, 0, 0, 1, 2, 0, 0, 0, 0, 1]).expect_err("truncated");
        assert_eq!(e.offset, 12);
        assert_eq!(decode_report(&[VERSION, 0]), Ok(vec![]));
    }

    #[test]
    fn newest_report_wins_entries_expire_and_the_cache_is_bounded() {
        let s = Duration::from_secs;
        let h = |last: u8, mac: u8| Neighbour {
            ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)),
            mac: [2, 0, 0, 0, 0, mac],
        };
        let mut c = SharedArpCache::new(s(180));
        c.learn(s(10), &[h(1, 1), h(2, 2)]);
        c.learn(s(40), &[h(2, 9)]);
        let t = c.table(s(53));
        let rows: Vec<(String, u64)> = t
            .entries
            .iter()
            .map(|e| (format!("{} {}", e.ip, e.mac), e.age_secs))
            .collect();
        assert_eq!(
            rows,
            vec![
                ("10.0.0.1 02:00:00:00:00:01".to_owned(), 43),
                ("10.0.0.2 02:00:00:00:00:09".to_owned(), 13),
            ],
            "oldest first, the newer MAC replaces the older"
        );
        c.expire(s(191));
        assert_eq!(c.hosts(), vec![h(2, 9)]);
        for i in 0..(MAX_HOSTS + 10) as u32 {
            let n = Neighbour {
                ip: IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i)),
                mac: [2; 6],
            };
            c.learn(s(200) + Duration::from_millis(u64::from(i)), &[n]);
        }
        assert_eq!(c.len(), MAX_HOSTS);
        assert!(
            !c.hosts().contains(&h(2, 9)),
            "the least recently reported host made room"
        );
    }
}
