//! The memory allocator of every Cohort binary: mimalloc, with freed memory kept for a second
//! before it goes back to the kernel.
//!
//! Why (perf, `cohort-bench transport --size 10000`): the transport allocates and frees a buffer
//! per datagram and per message on several threads. With glibc's allocator a third of the run
//! went to malloc, free and consolidation; with mimalloc at its default purge delay (10 ms) a
//! third went to the kernel zeroing pages that had just been handed back and were faulted in
//! again. A one-second delay keeps the working set mapped under load and still returns memory
//! to the system soon after a burst.

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_e` (`mimalloc.h`; the Rust bindings name
/// only some options).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed memory stays mapped, in milliseconds.
pub const PURGE_DELAY_MS: i64 = 1000;

/// Applies the allocator settings; call first thing in `main`. The environment
/// (`MIMALLOC_PURGE_DELAY`) still wins, for experiments.
pub fn tune() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: sets a plain integer option; mimalloc reads it on its next purge decision.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS as _) };
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_purge_delay_option_is_the_one_mimalloc_reads() {
        super::tune();
        // SAFETY: reads a plain integer option.
        let got = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        assert_eq!(got as i64, super::PURGE_DELAY_MS);
        // The neighbours keep their documented defaults (use_numa_nodes 0, and not 1000), so
        // index 15 is not some other option.
        // SAFETY: as above.
        let numa = unsafe { libmimalloc_sys::mi_option_get(16) };
        assert_eq!(numa, 0);
    }
}
