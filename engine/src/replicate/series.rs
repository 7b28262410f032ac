//! Windowed time series (`Replicate "metrics"`, `audit_series`, `eccmgr_metrics`).
//!
//! Events are counted per series (`connect`, `reception`, `rejection`, `delivery`, `transfail`,
//! `permfail`, or a named audit series), per item (an IP address, a CIDR block, or a string) and
//! per *bucket*: a span of `bucket` seconds aligned on the Unix epoch, `bucket` being the
//! greatest common divisor of the object's monitors' window sizes. A monitor such as `"300,6"`
//! reads six windows of 300 s made of whole buckets. Aligning on the epoch means every node
//! files an event in the same bucket, so buckets replicate as plain sums.

use std::time::Duration;

use ipnet::IpNet;

use super::object::Monitor;
use super::update::{Key, SeriesItem};

/// The series that `parameters` of `Replicate "metrics"` enable, in Momentum's console order.
pub const BUILTIN_SERIES: [&str; 6] = [
    "connect",
    "reception",
    "rejection",
    "delivery",
    "transfail",
    "permfail",
];

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Bucket length shared by all `monitors` (at least 1 s).
pub fn bucket_len(monitors: &[Monitor]) -> u64 {
    monitors.iter().fold(0, |g, m| gcd(g, m.window)).max(1)
}

/// The key under which an event at `now` (since the Unix epoch) is counted.
pub fn key_at(series: &str, item: SeriesItem, now: Duration, bucket: u64) -> Key {
    let secs = now.as_secs();
    Key::Series {
        series: series.to_string(),
        window: secs - secs % bucket,
        item,
    }
}

/// Whether `item` is counted in a query for `target`: equal strings, or an address or block
/// inside the target block.
pub fn item_matches(target: &SeriesItem, item: &SeriesItem) -> bool {
    match (target, item) {
        (SeriesItem::Net(block), SeriesItem::Net(net)) => contains(block, net),
        (SeriesItem::Text(a), SeriesItem::Text(b)) => a == b,
        _ => false,
    }
}

fn contains(block: &IpNet, net: &IpNet) -> bool {
    block.contains(net)
}

/// The Unix-second range `[start, end)` covered by windows `period_start..=period_end` of
/// `monitor` at `now` (0 = the current window, 1 = the one before, ...).
pub fn period_range(
    monitor: Monitor,
    period_start: u32,
    period_end: u32,
    now: Duration,
) -> (u64, u64) {
    let secs = now.as_secs();
    let current = secs - secs % monitor.window;
    let (first, last) = if period_start <= period_end {
        (period_start, period_end)
    } else {
        (period_end, period_start)
    };
    let last = last.min(monitor.windows.saturating_sub(1));
    let first = first.min(last);
    let start = current.saturating_sub(u64::from(last) * monitor.window);
    let end = current.saturating_sub(u64::from(first) * monitor.window) + monitor.window;
    (start, end)
}

/// Sums the entries of `series` for `target` inside `[start, end)`.
pub fn sum<'a>(
    entries: impl Iterator<Item = (&'a Key, i64)>,
    series: &str,
    target: &SeriesItem,
    (start, end): (u64, u64),
) -> i64 {
    entries
        .filter_map(|(key, value)| match key {
            Key::Series {
                series: s,
                window,
                item,
            } if s == series && (start..end).contains(window) && item_matches(target, item) => {
                Some(value)
            }
            _ => None,
        })
        .sum()
}

/// Oldest bucket start still inside some monitor at `now`.
pub fn horizon(monitors: &[Monitor], now: Duration) -> u64 {
    let span = monitors
        .iter()
        .map(|m| m.span() + m.window)
        .max()
        .unwrap_or(0);
    now.as_secs().saturating_sub(span)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_sums() {
        let m = Monitor {
            window: 300,
            windows: 6,
        };
        assert_eq!(
            bucket_len(&[
                m,
                Monitor {
                    window: 60,
                    windows: 20
                }
            ]),
            60
        );
        let now = Duration::from_secs(10_000);
        // Current window is [9900, 10200).
        assert_eq!(period_range(m, 0, 0, now), (9900, 10200));
        assert_eq!(period_range(m, 0, 5, now), (8400, 10200));
        assert_eq!(period_range(m, 2, 2, now), (9300, 9600));
        let ip: IpNet = "10.0.0.1/32".parse().unwrap();
        let other: IpNet = "11.0.0.1/32".parse().unwrap();
        let keys = [
            (key_at("connect", SeriesItem::Net(ip), now, 300), 3),
            (
                key_at(
                    "connect",
                    SeriesItem::Net(ip),
                    now - Duration::from_secs(600),
                    300,
                ),
                4,
            ),
            (key_at("connect", SeriesItem::Net(other), now, 300), 5),
            (key_at("reception", SeriesItem::Net(ip), now, 300), 7),
        ];
        let block = SeriesItem::Net("10.0.0.0/8".parse().unwrap());
        let iter = || keys.iter().map(|(k, v)| (k, *v));
        assert_eq!(
            sum(iter(), "connect", &block, period_range(m, 0, 0, now)),
            3
        );
        assert_eq!(
            sum(iter(), "connect", &block, period_range(m, 0, 5, now)),
            7
        );
        assert_eq!(
            sum(iter(), "connect", &block, period_range(m, 2, 2, now)),
            4
        );
        assert_eq!(horizon(&[m], now), 10_000 - 2100);
    }
}
