//! Process gauges read from `/proc` at scrape time (two small reads, no dependency): resident
//! memory and open file descriptors, under the Prometheus client libraries' standard names.

/// Resident set size in bytes (`VmRSS` of `/proc/self/status`), if readable.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}

/// Open file descriptors (entries of `/proc/self/fd`), if readable.
pub fn open_fds() -> Option<u64> {
    let n = std::fs::read_dir("/proc/self/fd").ok()?.count();
    u64::try_from(n).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        assert!(super::resident_bytes().is_some_and(|b| b > 1024 * 1024));
        // Other tests in this process open and close descriptors meanwhile (runtimes): open
        // many more than they could close at once, so the count must show them.
        let before = super::open_fds().unwrap_or(0);
        let files: Vec<_> = (0..64)
            .map(|_| std::fs::File::open("/proc/self/status").expect("opens"))
            .collect();
        assert!(super::open_fds().unwrap_or(0) >= before + 32);
        drop(files);
    }
}
