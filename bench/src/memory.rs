//! The memory of the processes under test, read from `/proc` (Linux).

/// A `kB` field of `/proc/{pid}/status` in bytes (e.g. `VmRSS`, `VmHWM`),
/// if the process still runs.
fn status_bytes(pid: u32, field: &str) -> std::io::Result<Option<u64>> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024))
}

/// Resident set size of `pid` in bytes (VmRSS), if it still runs.
pub fn rss(pid: u32) -> Option<u64> {
    status_bytes(pid, "VmRSS").ok().flatten()
}

/// Peak resident set size of `pid` (VmHWM), e.g. "14.2 MB".
pub fn peak_rss(pid: u32) -> String {
    match status_bytes(pid, "VmHWM") {
        Err(e) => format!("unknown ({e})"),
        Ok(None) => "unknown".into(),
        Ok(Some(bytes)) => crate::report::mb(bytes),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(rss(me).unwrap() > 0);
        assert!(peak_rss(me).ends_with(" MB"));
        assert!(peak_rss(u32::MAX).starts_with("unknown"));
    }
}
