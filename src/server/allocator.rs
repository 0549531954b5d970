//! The allocator's settings for a long-running server (glibc only; other
//! libcs are left alone).

/// Blocks of this size or more get their own mapping, given back to the
/// system when freed.
#[cfg(target_env = "gnu")]
const MMAP_THRESHOLD: libc::c_int = 1024 * 1024;

/// Every thread started from now on shares the one arena.
#[cfg(target_env = "gnu")]
const ARENAS: libc::c_int = 1;

/// Called first thing by [`run`](super::run); called before the async
/// runtime starts, the arena limit covers the runtime's threads too.
///
/// The mmap threshold: glibc raises it each time a mapped block is freed
/// (up to 32 MiB), after which argon2's 19 MiB blocks come from the
/// per-thread arenas, which keep them: a login storm left the RSS at
/// 350–515 MiB. With a fixed threshold it stays near 40 MiB.
///
/// The arenas: glibc gives new threads arenas of their own (up to eight
/// per core). The store's writes run on whichever blocking thread is free,
/// and each such arena kept about 45 MB of fragments: with 1,000,000
/// sessions one pass of idle-timer refreshes grew the RSS from 271 to
/// 361 MiB. Sharing one arena, the writes reuse the holes the start-up
/// load left (275 MiB), at no measured cost in throughput: the per-thread
/// caches serve most small blocks without the arena's lock.
pub fn tune() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets parameters of glibc's allocator, under the
    // allocator's own lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}

#[cfg(all(test, target_env = "gnu"))]
mod tests {
    use std::process::Command;

    /// Set in the child process that measures; its value says whether to
    /// tune first.
    const CHILD: &str = "AUTHGATE_ALLOCATOR_CHILD";
    const MIB: usize = 1024 * 1024;
    const NAME: &str =
        "server::allocator::tests::large_blocks_stay_mapped_and_threads_share_the_heap";

    /// Bytes in mapped blocks that a 2 MiB allocation adds, once a 20 MiB
    /// block was freed.
    fn mapped_after_a_large_free() -> usize {
        drop(std::hint::black_box(vec![1u8; 20 * MIB]));
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        let before = unsafe { libc::mallinfo2() }.hblkhd;
        let block = std::hint::black_box(vec![1u8; 2 * MIB]);
        // SAFETY: as above.
        let after = unsafe { libc::mallinfo2() }.hblkhd;
        drop(block);
        after.saturating_sub(before)
    }

    /// Whether a small block allocated by a new thread lies in the main
    /// heap (below the program break) rather than in an arena of its own.
    fn new_thread_allocates_in_the_heap() -> bool {
        let address = std::thread::spawn(|| {
            let block = std::hint::black_box(Box::new([1u8; 64]));
            block.as_ptr() as usize
        })
        .join()
        .unwrap();
        // SAFETY: sbrk(0) only reads the current program break.
        let brk = unsafe { libc::sbrk(0) } as usize;
        address < brk
    }

    /// Measured in a process of its own: the settings are global, and
    /// other tests allocate meanwhile.
    fn measured(tuned: bool) -> (usize, bool) {
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
            .env(CHILD, if tuned { "tuned" } else { "default" })
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let field = |name: &str| {
            stdout
                .split_whitespace()
                .find_map(|word| word.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} in {stdout}"))
                .to_owned()
        };
        (
            field("mapped=").parse().unwrap(),
            field("in_heap=").parse().unwrap(),
        )
    }

    #[test]
    fn large_blocks_stay_mapped_and_threads_share_the_heap() {
        if let Ok(mode) = std::env::var(CHILD) {
            if mode == "tuned" {
                super::tune();
            }
            let mapped = mapped_after_a_large_free();
            let in_heap = new_thread_allocates_in_the_heap();
            println!(" mapped={mapped} in_heap={in_heap} ");
            return;
        }
        let (mapped, in_heap) = measured(true);
        assert!(mapped >= 2 * MIB, "{mapped}");
        assert!(in_heap);
        assert_eq!(
            measured(false),
            (0, false),
            "glibc's defaults: a moving threshold, an arena per thread"
        );
    }
}
