//! CPU time, client and server side, in nanoseconds.

/// CPU time of every thread of this process so far (the first field of
/// `/proc/self/task/*/schedstat`, ns on CPU). The runtime's threads live
/// for the whole run, so differences over a window are exact.
pub fn client_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// CPU time of one server process (a Postgres backend), ns: the first
/// field of `/proc/PID/schedstat`. `None` if it cannot be read (another
/// machine, or another user's process without permission).
pub fn process_ns(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
