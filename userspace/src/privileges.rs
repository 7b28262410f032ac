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

/// The user and group of `Security { user group }`, looked up on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub user: Option<(String, nix::unistd::Uid)>,
    pub gid: Option<nix::unistd::Gid>,
}

/// Looks up `Security { user group }`: the user's uid, and the group's gid (the user's primary
/// group when only the user is named). The error names the option to blame.
pub fn lookup(sec: &cohort_engine::config::Security) -> Result<RunAs, (&'static str, String)> {
    use nix::unistd::{Group, User};
    let user = match &sec.user {
        Some(name) => match User::from_name(name) {
            Ok(Some(u)) => Some(u),
            Ok(None) => return Err(("Security.user", format!("no user '{name}' on this host"))),
            Err(e) => {
                return Err((
                    "Security.user",
                    format!("cannot look up user '{name}': {e}"),
                ));
            }
        },
        None => None,
    };
    let gid = match &sec.group {
        Some(name) => match Group::from_name(name) {
            Ok(Some(g)) => Some(g.gid),
            Ok(None) => {
                return Err(("Security.group", format!("no group '{name}' on this host")));
            }
            Err(e) => {
                return Err((
                    "Security.group",
                    format!("cannot look up group '{name}': {e}"),
                ));
            }
        },
        None => user.as_ref().map(|u| u.gid),
    };
    Ok(RunAs {
        user: user.map(|u| (u.name, u.uid)),
        gid,
    })
}

/// Becomes `run`'s user and group, keeping the permitted capabilities (PR_SET_KEEPCAPS) and
/// raising them effective again, so that [`keep_only_runtime_caps`] can then keep exactly the
/// three a running node needs. Call on the main thread before any other thread starts (the ids
/// are per process, the capabilities per thread and inherited).
pub fn switch_user(run: &RunAs) -> Result<(), PrivilegeError> {
    use nix::unistd::{setgroups, setresgid, setresuid};
    let err = |what: &str, e: nix::Error| PrivilegeError(format!("{what}: {e}"));
    let permitted =
        caps::read(None, CapSet::Permitted).map_err(|e| PrivilegeError(e.to_string()))?;
    // SAFETY: prctl with PR_SET_KEEPCAPS takes integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } != 0 {
        return Err(PrivilegeError(format!(
            "PR_SET_KEEPCAPS: {}",
            std::io::Error::last_os_error()
        )));
    }
    if let Some(gid) = run.gid {
        setgroups(&[gid]).map_err(|e| err("setgroups", e))?;
        setresgid(gid, gid, gid).map_err(|e| err("setresgid", e))?;
    }
    if let Some((_, uid)) = &run.user {
        setresuid(*uid, *uid, *uid).map_err(|e| err("setresuid", e))?;
    }
    // SAFETY: as above.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
    // A uid change clears the effective set; the permitted set stayed.
    caps::set(None, CapSet::Effective, &permitted).map_err(|e| PrivilegeError(e.to_string()))?;
    Ok(())
}

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
