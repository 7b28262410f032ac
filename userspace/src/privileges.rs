//! After start-up a node keeps only the capabilities DuraVIP needs at run time: CAP_NET_ADMIN
//! (plumb addresses), CAP_NET_RAW (ARP through AF_PACKET) and CAP_BPF (XDP map updates). Every
//! other capability is dropped from the effective, permitted, inheritable and bounding sets, so a
//! compromised daemon cannot regain them, not even through exec.
//!
//! Capabilities are per thread in Linux: call [`keep_only_runtime_caps`] on the main thread before
//! any other thread is started, so every later thread inherits the reduced sets.

use caps::{CapSet, Capability, CapsHashSet};

/// The capabilities a running node keeps.
pub const RUNTIME_CAPS: [Capability; 3] = [
    Capability::CAP_NET_ADMIN,
    Capability::CAP_NET_RAW,
    Capability::CAP_BPF,
];

#[derive(Debug, thiserror::Error)]
#[error("cannot drop capabilities: {0}")]
pub struct PrivilegeError(String);

/// Reduces this thread's capabilities to `RUNTIME_CAPS` (those it has of them). Without any
/// capability (an unprivileged test run) there is nothing to drop and it succeeds.
pub fn keep_only_runtime_caps() -> Result<CapsHashSet, PrivilegeError> {
    let err = |e: caps::errors::CapsError| PrivilegeError(e.to_string());
    let permitted = caps::read(None, CapSet::Permitted).map_err(err)?;
    let keep: CapsHashSet = RUNTIME_CAPS
        .iter()
        .copied()
        .filter(|c| permitted.contains(c))
        .collect();
    // The bounding set needs CAP_SETPCAP to shrink; drop it there first, while we still hold it.
    if permitted.contains(&Capability::CAP_SETPCAP) {
        for cap in caps::all() {
            if !keep.contains(&cap) && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
                caps::drop(None, CapSet::Bounding, cap).map_err(err)?;
            }
        }
    }
    caps::set(None, CapSet::Inheritable, &CapsHashSet::new()).map_err(err)?;
    caps::set(None, CapSet::Effective, &keep).map_err(err)?;
    caps::set(None, CapSet::Permitted, &keep).map_err(err)?;
    Ok(keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The thread's effective set as the kernel reports it.
    fn cap_eff() -> u64 {
        let status = std::fs::read_to_string("/proc/thread-self/status").expect("status");
        let line = status
            .lines()
            .find(|l| l.starts_with("CapEff:"))
            .expect("CapEff");
        u64::from_str_radix(line.split_whitespace().nth(1).expect("value"), 16).expect("hex")
    }

    #[test]
    fn only_runtime_caps_remain() {
        // On a thread of its own: capabilities are per thread, so the test harness keeps its own.
        std::thread::spawn(|| {
            let had = caps::read(None, CapSet::Permitted).expect("read");
            let kept = keep_only_runtime_caps().expect("drop");
            let want: u64 = RUNTIME_CAPS
                .iter()
                .filter(|c| had.contains(c))
                .map(|c| 1u64 << c.index())
                .sum();
            assert_eq!(cap_eff(), want, "kernel's CapEff after the drop");
            assert_eq!(caps::read(None, CapSet::Permitted).expect("read"), kept);
            if had.contains(&Capability::CAP_SYS_ADMIN) {
                assert!(
                    !caps::has_cap(None, CapSet::Bounding, Capability::CAP_SYS_ADMIN)
                        .expect("read")
                );
                assert!(
                    caps::raise(None, CapSet::Effective, Capability::CAP_SYS_ADMIN).is_err(),
                    "cannot regain"
                );
            }
        })
        .join()
        .expect("thread");
    }
}
