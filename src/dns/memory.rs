//! Keeping the server's resident memory to what it serves with.
//!
//! The server lives as long as any network has DNS, beside every
//! container, so what it keeps resident is paid for the host's whole
//! uptime. Three things made it hold more than it uses (measured with 100
//! names, bench/dns.sh): code pages touched by starting and reloading
//! (argument parsing, opening and checking the state, SQLite: 7.9 MB of
//! file pages were resident, the kernel mapping 64 KiB around each page
//! touched, against about 1 MB for serving), glibc's per-thread arenas
//! (the reload thread's own heap, never given back), and heap pages a
//! reload freed that glibc keeps. The server lets go of the first and the
//! last when it has started and when a burst of reloads is over. What
//! serving itself touches is fewer pages in `berth-dns`, whose text holds
//! only the server's code (see `standalone`).

/// One malloc arena for the process: the reload thread allocates rarely,
/// and a second arena would keep its freed pages apart from the main one.
pub fn one_arena() {
    #[cfg(target_env = "gnu")]
    // SAFETY: a plain call, made before the runtime starts threads.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Gives freed heap pages back to the kernel (after a reload replaced the
/// table: the old one, and the rows read, are freed).
pub fn trim() {
    #[cfg(target_env = "gnu")]
    // SAFETY: a plain call; glibc locks its arenas itself.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Unmaps the resident pages of read-only file mappings (the binary's
/// code, the libraries') that hold no private copy: the kernel maps back,
/// from the page cache, whatever the server still runs, so what stays
/// resident is the code serving uses, not what starting or reloading
/// used. A mapping with private (copy-on-write) pages, such as relocated
/// read-only data, is left alone: dropping those would lose the writes.
pub fn drop_idle_pages() {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    for (start, end) in droppable(&smaps) {
        // SAFETY: the range is a whole mapping of this process, read-only,
        // backed by a file, with no private pages: after MADV_DONTNEED
        // its pages are read again from the file, the same bytes.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}

/// The mappings of `smaps` that [`drop_idle_pages`] may drop: backed
/// by a file, not writable, with resident pages and none anonymous.
fn droppable(smaps: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, usize, bool)> = None;
    let mut rss = 0u64;
    let mut finish = |current: Option<(usize, usize, bool)>, rss: u64, anon: u64| {
        if let Some((start, end, true)) = current {
            if rss > 0 && anon == 0 {
                out.push((start, end));
            }
        }
    };
    let mut anon = u64::MAX;
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or_default();
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(start), Ok(end)) =
                (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            {
                finish(current.take(), rss, anon);
                let perms = words.next().unwrap_or_default();
                let inode = words.nth(2).unwrap_or("0");
                let path = words.next().unwrap_or_default();
                let file_backed = inode != "0" && path.starts_with('/');
                let read_only = perms.as_bytes().get(1) == Some(&b'-');
                current = Some((start, end, file_backed && read_only));
                rss = 0;
                anon = u64::MAX;
                continue;
            }
        }
        let value = || words.clone().next().and_then(|v| v.parse::<u64>().ok());
        match first {
            "Rss:" => rss = value().unwrap_or(0),
            "Anonymous:" => anon = value().unwrap_or(u64::MAX),
            _ => {}
        }
    }
    finish(current, rss, anon);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clean_read_only_file_mappings_are_dropped() {
        let smaps = "\
55a600d3d000-55a600f45000 r--p 00000000 fe:00 6362683 /usr/bin/berth
Rss:                 844 kB
Anonymous:             0 kB
55a600f45000-55a60167d000 r-xp 00207000 fe:00 6362683 /usr/bin/berth
Rss:                5088 kB
Anonymous:             0 kB
55a60167d000-55a6016a6000 r--p 0093e000 fe:00 6362683 /usr/bin/berth
Rss:                 164 kB
Anonymous:           164 kB
55a6016a6000-55a6016a8000 rw-p 00967000 fe:00 6362683 /usr/bin/berth
Rss:                   8 kB
Anonymous:             8 kB
7f0550000000-7f0550063000 rw-p 00000000 00:00 0 
Rss:                 396 kB
Anonymous:           396 kB
7f055601a000-7f0556170000 r-xp 00026000 fe:00 326279 /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                1240 kB
Anonymous:             0 kB
7f0556200000-7f0556201000 r-xp 00000000 fe:00 1 /usr/lib/unused.so
Rss:                   0 kB
Anonymous:             0 kB
7ffd1c9f0000-7ffd1c9f2000 r-xp 00000000 00:00 0                          [vdso]
Rss:                   4 kB
Anonymous:             0 kB
";
        assert_eq!(
            droppable(smaps),
            [
                (0x55a600d3d000, 0x55a600f45000),
                (0x55a600f45000, 0x55a60167d000),
                (0x7f055601a000, 0x7f0556170000),
            ]
        );
    }

    #[test]
    fn a_mapping_without_an_anonymous_line_is_kept() {
        let smaps = "\
55a600f45000-55a60167d000 r-xp 00207000 fe:00 6362683 /usr/bin/berth
Rss:                5088 kB
";
        assert!(droppable(smaps).is_empty());
    }

    /// Pointers in read-only data: relocated at start (copy-on-write pages
    /// of the binary), which must survive.
    static WORDS: [&str; 3] = ["gateway", "upstream", "table"];

    #[test]
    fn dropping_the_pages_of_this_process_keeps_its_code_and_relocated_data() {
        let before: Vec<String> = WORDS.iter().map(|w| w.to_uppercase()).collect();
        drop_idle_pages();
        let after: Vec<String> = WORDS.iter().map(|w| w.to_uppercase()).collect();
        assert_eq!(before, after);
        assert_eq!(after[1], "UPSTREAM");
    }
}
