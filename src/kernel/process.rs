//! Processes as facts: whether the process that owns something (the
//! namespace of a `run`) is still the one that started, despite PID reuse.

/// The start time of process `pid` (clock ticks after boot, field 22 of
/// /proc/PID/stat), None when there is no such process.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: the
    // fields after it start after its last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// Whether the process `pid` that started at `start` is still running.
pub fn alive(pid: u32, start: u64) -> bool {
    start_time(pid) == Some(start)
}

#[cfg(test)]
mod tests {
    #[test]
    fn own_process_is_alive_and_a_wrong_start_is_not() {
        let me = std::process::id();
        let start = super::start_time(me).expect("own stat");
        assert!(super::alive(me, start));
        assert!(!super::alive(me, start + 1));
        assert_eq!(super::start_time(u32::MAX), None);
    }
}
