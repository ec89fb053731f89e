//! What a process cost: CPU seconds (user + system, all threads) from `/proc/PID/stat`, and
//! peak resident memory (`VmHWM`) from `/proc/PID/status`.
//!
//! A service under test may be several processes over a run (a gateway restarted): a
//! [`CostMeter`] adds up its incarnations. An incarnation's last CPU figure is read after it
//! exited but before it is reaped (`waitid(WNOWAIT)`, see [`crate::process`]), so the work of
//! a clean shutdown counts too; its peak RSS is the last one sampled while it ran (a zombie
//! has no memory to report), sampled every [`crate::scenario`] tick.

/// Clock ticks per second of `/proc` CPU times.
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

/// The user + system CPU seconds of process `pid` (all its threads, live and exited).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    cpu_seconds_of_stat(&stat, ticks_per_second())
}

/// Parses `utime` and `stime` (fields 14 and 15) of a `/proc/PID/stat` line. The command name
/// (field 2) is in parentheses and may hold spaces and parentheses, so fields are counted from
/// its last `)`.
fn cpu_seconds_of_stat(stat: &str, hz: f64) -> Option<f64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace();
    // After the comm: field 3 (state) is the first; utime is field 14, the 12th from there.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / hz)
}

/// The peak resident set size of `pid`, in KiB (`VmHWM`); `None` once it exited.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    vm_hwm_of_status(&status)
}

fn vm_hwm_of_status(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// The cost of one service (gateway, broker) across its incarnations during a run.
#[derive(Debug, Clone, Default)]
pub struct CostMeter {
    /// CPU seconds of incarnations that ended.
    ended_cpu: f64,
    /// The current incarnation: pid and its CPU seconds when the measurement started.
    current: Option<(u32, f64)>,
    peak_rss_kib: u64,
}

impl CostMeter {
    /// Starts measuring `pid`: its CPU so far (startup) is not counted.
    pub fn start(&mut self, pid: u32) {
        let baseline = cpu_seconds(pid).unwrap_or(0.0);
        self.current = Some((pid, baseline));
        self.sample();
    }

    /// Measures a new incarnation `pid` from its very start (a restart is part of the cost).
    pub fn restarted(&mut self, pid: u32) {
        self.current = Some((pid, 0.0));
        self.sample();
    }

    /// Ends the current incarnation at `final_cpu` seconds (read before it was reaped).
    pub fn ended(&mut self, final_cpu: Option<f64>) {
        if let Some((pid, baseline)) = self.current.take() {
            let last = final_cpu.or_else(|| cpu_seconds(pid)).unwrap_or(baseline);
            self.ended_cpu += (last - baseline).max(0.0);
        }
    }

    /// Updates the peak RSS from the running incarnation.
    pub fn sample(&mut self) {
        if let Some(rss) = self.current.and_then(|(pid, _)| peak_rss_kib(pid)) {
            self.peak_rss_kib = self.peak_rss_kib.max(rss);
        }
    }

    /// CPU seconds so far.
    pub fn cpu_seconds(&self) -> f64 {
        let running = self.current.map_or(0.0, |(pid, baseline)| {
            cpu_seconds(pid).map_or(0.0, |now| (now - baseline).max(0.0))
        });
        self.ended_cpu + running
    }

    pub fn peak_rss_kib(&self) -> u64 {
        self.peak_rss_kib
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        // comm "(my) prog)" holds a space and parentheses; utime 250, stime 50 ticks.
        let stat = "4242 ((my) prog)) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 \
                    9 0 12345 100000000 2000 18446744073709551615";
        assert_eq!(cpu_seconds_of_stat(stat, 100.0), Some(3.0));
        assert_eq!(cpu_seconds_of_stat("garbage", 100.0), None);
        assert_eq!(cpu_seconds_of_stat("1 (x) S 1 2", 100.0), None);
    }

    #[test]
    fn vm_hwm_is_read_in_kib() {
        let status = "Name:\tlogtail\nVmPeak:\t  900000 kB\nVmHWM:\t   70312 kB\nVmRSS:\t 1 kB\n";
        assert_eq!(vm_hwm_of_status(status), Some(70312));
        assert_eq!(vm_hwm_of_status("Name:\tzombie\n"), None);
    }

    #[test]
    fn this_process_has_a_cost() {
        let pid = std::process::id();
        // Spun until the kernel charged a tick, not for a wall time: on a loaded machine this
        // thread may not run at all for 50 ms.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while cpu_seconds(pid).unwrap() == 0.0 {
            assert!(std::time::Instant::now() < deadline, "no CPU time in 30 s");
            std::hint::black_box((0..10_000u64).sum::<u64>());
        }
        assert!(peak_rss_kib(pid).unwrap() > 0);
        let mut meter = CostMeter::default();
        meter.start(pid);
        let before = meter.current.expect("started").1;
        // Burn 0.1 s of CPU after the start: the meter counts it, and not what came before.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        // Compared as the meter computes it (`now - before`), not as `now < before + 0.1`:
        // in floating point the two can disagree by one ulp.
        while cpu_seconds(pid).unwrap() - before < 0.1 {
            assert!(std::time::Instant::now() < deadline, "no CPU time in 30 s");
            std::hint::black_box((0..10_000u64).sum::<u64>());
        }
        let measured = meter.cpu_seconds();
        let since_before = cpu_seconds(pid).unwrap() - before;
        assert!(measured >= 0.1, "{measured} s measured, 0.1 s burnt");
        assert!(
            measured <= since_before,
            "{measured} s > {since_before} s since the start"
        );
        assert!(meter.peak_rss_kib() > 0);
        // An incarnation that ended at `end` seconds counts `end - baseline`, exactly (to
        // rounding: seconds are tick counts divided by the tick rate, so compare with a margin).
        let end = cpu_seconds(pid).unwrap() + 1.0;
        meter.ended(Some(end));
        let expected = end - before;
        assert!(
            (meter.cpu_seconds() - expected).abs() < 1e-6,
            "{} s counted, {expected} s expected",
            meter.cpu_seconds()
        );
        assert!(
            expected >= 1.1 - 1e-6,
            "{expected} s: the 0.1 s burnt is in it"
        );
    }
}
