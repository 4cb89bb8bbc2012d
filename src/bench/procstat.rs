//! CPU time and resident memory of processes, read from `/proc` (Linux).

use std::io;

/// utime + stime of `pid` (all its threads), in seconds.
pub fn cpu_seconds(pid: u32) -> io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| io::Error::new(e.kind(), format!("/proc/{pid}/stat: {e}")))?;
    let ticks = parse_cpu_ticks(&stat).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("/proc/{pid}/stat: no utime/stime"),
        )
    })?;
    Ok(ticks as f64 / clock_ticks_per_second())
}

/// The sum of [`cpu_seconds`] over `pids`.
pub fn total_cpu_seconds(pids: &[u32]) -> io::Result<f64> {
    pids.iter().map(|&pid| cpu_seconds(pid)).sum()
}

/// The largest VmRSS among `pids`, in MiB.
pub fn max_rss_mb(pids: &[u32]) -> io::Result<f64> {
    let mut max_kb = 0;
    for pid in pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(|e| io::Error::new(e.kind(), format!("/proc/{pid}/status: {e}")))?;
        max_kb = max_kb.max(parse_rss_kb(&status).unwrap_or(0));
    }
    Ok(max_kb as f64 / 1024.0)
}

/// utime + stime in clock ticks: fields 14 and 15 of `/proc/PID/stat`,
/// counted after the command name, which may itself hold spaces and `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11); // field 3 is the first
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The `VmRSS:` line of `/proc/PID/status`, in kB.
fn parse_rss_kb(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant of the system and has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0 // USER_HZ on every Linux architecture taskd runs on
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_a_tricky_name() {
        let stat = "4242 (taskd (x) y) S 1 4242 4242 0 -1 4194560 1234 0 0 0 150 37 0 0 20 0 9 0 100 1000 50";
        assert_eq!(parse_cpu_ticks(stat), Some(187));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn parses_rss() {
        let status = "Name:\ttaskd\nVmPeak:\t  9000 kB\nVmRSS:\t   51200 kB\nThreads:\t9\n";
        assert_eq!(parse_rss_kb(status), Some(51_200));
    }

    #[test]
    fn reads_this_process() {
        assert!(cpu_seconds(std::process::id()).unwrap() >= 0.0);
        assert!(max_rss_mb(&[std::process::id()]).unwrap() > 0.0);
    }
}
