//! How the process's allocator is set up.
//!
//! glibc's malloc serves a request above its mmap threshold with a mapping of
//! its own, returned to the system when freed, and one below it from an
//! arena, which keeps freed memory for later. The threshold starts at
//! 128 KiB but rises (up to 32 MiB) each time a mapped block is freed. An
//! ingest frees its chunk buffers and, at each swap, the previous version's
//! index: from then on the next ingest's multi-megabyte buffers (hash table,
//! key and row arrays while they grow) come from arenas and stay there, so
//! each swap left the process larger than the versions it holds (peak RSS
//! during an upload and swap 1.6x the file, instead of the 1.0x measured with
//! a fixed threshold). The threshold is a tunable that glibc reads only at
//! start: the binary restarts itself once with it set.

/// The tunable: blocks of 256 KiB and more are mapped, and stay mapped.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: &str = "glibc.malloc.mmap_threshold=262144";

/// Replaces the process with itself (same pid, arguments and environment)
/// with a fixed mmap threshold in `GLIBC_TUNABLES`, unless a threshold is
/// already set there (by this or by the operator). Call it first, before
/// any thread starts. Returns when there is nothing to do or the restart is
/// not possible (then the process goes on with glibc's defaults).
pub fn fix_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;

        let current = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
        if current.contains("glibc.malloc.mmap_threshold") {
            return;
        }
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let tunables = if current.is_empty() {
            MMAP_THRESHOLD.to_string()
        } else {
            format!("{current}:{MMAP_THRESHOLD}")
        };
        let mut args = std::env::args_os();
        let mut command = std::process::Command::new(exe);
        if let Some(arg0) = args.next() {
            command.arg0(arg0);
        }
        let error = command.args(args).env("GLIBC_TUNABLES", tunables).exec();
        eprintln!("warning: could not restart with a fixed mmap threshold ({error}); going on without it");
    }
}
