//! The shell's heap over a day of calls. Each call runs a media worker and
//! WebRTC's threads; glibc's allocator gives every thread that allocates an
//! arena of its own (up to 8 per core) and keeps what those threads free
//! for reuse, so 20 calls left the idle shell with about 26 MB more heap,
//! growth that levelled off but never came back (docs/benchmarks.md,
//! "Desktop app memory"). Two arenas serve a softphone's handful of busy
//! threads, and when a call ends the freed pages go back to the OS.
//!
//! Only on Linux with glibc; elsewhere both are no-ops.

/// Caps glibc's malloc arenas at 2 (`mallopt(M_ARENA_MAX)`), unless the
/// environment sets `MALLOC_ARENA_MAX` or `GLIBC_TUNABLES`. Call it first
/// in `main`, before any thread exists.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none()
        && std::env::var_os("GLIBC_TUNABLES").is_none()
    {
        // SAFETY: mallopt changes the allocator's parameters; called before
        // any other thread allocates, it races with nothing.
        #[allow(unsafe_code)]
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

/// Returns the free pages of every arena to the OS (`malloc_trim(0)`), on a
/// blocking thread: it walks the whole heap. Called when the last call ends.
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tauri::async_runtime::spawn_blocking(|| {
        // SAFETY: malloc_trim only takes the allocator's own locks.
        #[allow(unsafe_code)]
        unsafe {
            libc::malloc_trim(0);
        }
    });
}
