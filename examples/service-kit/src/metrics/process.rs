//! The standard Prometheus process metrics, read from `/proc/self` at each scrape.
//!
//! The names, types and units are those every Prometheus client library exports
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`, ...), so the dashboards and
//! alerts written for any other service work unchanged. They are read when `/metrics` is
//! scraped rather than kept up to date by a timer: a scrape costs four small reads of
//! `/proc` and one directory listing, and nothing runs between scrapes.
//!
//! Linux only: elsewhere [`Process::read`] is `None` and the families are absent, which a
//! scraper treats as "not exported" rather than as zero. A file that cannot be read or parsed
//! drops only the figures it carries.

use std::fmt::Write as _;

/// The kernel reports process times in `/proc` in clock ticks of `USER_HZ`, which is part of
/// its user-space ABI and 100 on every architecture it supports. Reading it through
/// `sysconf(_SC_CLK_TCK)` would need `unsafe` FFI, which this workspace forbids; the
/// Prometheus Go client's `procfs` hard-codes the same value for the same reason.
const USER_HZ: f64 = 100.0;

/// One reading of the process's resources.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Process {
    /// User plus system CPU time, seconds.
    pub cpu_seconds: Option<f64>,
    /// Resident set size, bytes.
    pub resident_bytes: Option<u64>,
    /// Virtual memory size, bytes.
    pub virtual_bytes: Option<u64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// The soft limit on open file descriptors (`None` when unlimited).
    pub max_fds: Option<u64>,
    /// When the process started, seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
    /// Threads in the process.
    pub threads: Option<u64>,
}

/// The fields of `/proc/self/stat` this module uses.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stat {
    /// `utime + stime`, clock ticks.
    cpu_ticks: u64,
    /// `num_threads`.
    threads: u64,
    /// `starttime`, clock ticks after boot.
    start_ticks: u64,
    /// `vsize`, bytes.
    virtual_bytes: u64,
}

impl Process {
    /// Reads `/proc/self`; `None` on a system without it.
    pub fn read() -> Option<Self> {
        if cfg!(target_os = "linux") {
            Some(Self::read_from(std::path::Path::new("/proc")))
        } else {
            None
        }
    }

    /// Reads the process files under `proc` (`/proc` in production).
    fn read_from(proc: &std::path::Path) -> Self {
        let text = |name: &str| std::fs::read_to_string(proc.join(name)).ok();
        let stat = text("self/stat").as_deref().and_then(parse_stat);
        let boot = text("stat").as_deref().and_then(parse_boot_time);
        Process {
            cpu_seconds: stat.map(|s| s.cpu_ticks as f64 / USER_HZ),
            resident_bytes: text("self/status").as_deref().and_then(parse_resident),
            virtual_bytes: stat.map(|s| s.virtual_bytes),
            open_fds: std::fs::read_dir(proc.join("self/fd"))
                .ok()
                .map(|dir| dir.count() as u64),
            max_fds: text("self/limits").as_deref().and_then(parse_max_fds),
            start_time_seconds: stat
                .zip(boot)
                .map(|(s, boot)| boot as f64 + s.start_ticks as f64 / USER_HZ),
            threads: stat.map(|s| s.threads),
        }
    }

    /// Appends the families that were read, in the text exposition format, to `out`.
    pub fn render(&self, out: &mut String) {
        let mut family = |name: &str, kind: &str, help: &str, value: Option<f64>| {
            if let Some(v) = value {
                // Writing to a String cannot fail.
                let _ = write!(
                    out,
                    "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n\n"
                );
            }
        };
        let f = |v: Option<u64>| v.map(|v| v as f64);
        family(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            self.cpu_seconds,
        );
        family(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            f(self.resident_bytes),
        );
        family(
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            f(self.virtual_bytes),
        );
        family(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            f(self.open_fds),
        );
        family(
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            f(self.max_fds),
        );
        family(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            self.start_time_seconds,
        );
        family(
            "process_threads",
            "gauge",
            "Number of OS threads in the process.",
            f(self.threads),
        );
    }
}

/// `/proc/self/stat`: the command name is in parentheses and may itself hold spaces and
/// parentheses, so the fields are counted from after the last `)`; `state` (field 3 of
/// proc(5)) is the first of them.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // proc(5) numbers fields from 1, and `state` is field 3.
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        cpu_ticks: field(14)? + field(15)?,
        threads: field(20)?,
        start_ticks: field(22)?,
        virtual_bytes: field(23)?,
    })
}

/// `btime` of `/proc/stat`: boot time, seconds since the epoch.
fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// `VmRSS` of `/proc/self/status`, in kB there (so no page size is needed).
fn parse_resident(text: &str) -> Option<u64> {
    let line = text.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let mut parts = line.split_whitespace();
    let kb: u64 = parts.next()?.parse().ok()?;
    (parts.next()? == "kB").then_some(kb * 1024)
}

/// The soft limit of "Max open files" in `/proc/self/limits`; `None` when unlimited.
fn parse_max_fds(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stat line whose command name holds a space and a `)`, as a thread may name itself.
    const STAT: &str = "4242 (tokio) rt) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
        250 75 0 0 20 0 9 0 123456 987654321 4321 18446744073709551615 1 1 0 0 0 0 0 4096 \
        17664 0 0 0 17 1 0 0 0 0 0\n";

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        assert_eq!(
            parse_stat(STAT),
            Some(Stat {
                cpu_ticks: 325,
                threads: 9,
                start_ticks: 123_456,
                virtual_bytes: 987_654_321,
            })
        );
        assert_eq!(parse_stat("4242 (cut short) S 1 2"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn status_limits_and_boot_time_are_parsed() {
        let status = "Name:\tsvc\nVmSize:\t  99999 kB\nVmRSS:\t    5120 kB\nThreads:\t9\n";
        assert_eq!(parse_resident(status), Some(5 * 1024 * 1024));
        assert_eq!(parse_resident("Name:\tsvc\n"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
            Max processes             63459                63459                processes \n\
            Max open files            1024                 524288               files     \n";
        assert_eq!(parse_max_fds(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_max_fds(unlimited), None);
        assert_eq!(
            parse_boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n"),
            Some(1_700_000_000)
        );
    }

    /// A fake `/proc`: every figure comes from its file, start time from boot time plus
    /// ticks, and a missing file drops only its own figures.
    #[test]
    fn a_reading_combines_the_files_and_survives_missing_ones() {
        let dir = std::env::temp_dir().join(format!("proc-fake-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("self/fd")).unwrap();
        for n in 0..3 {
            std::fs::write(dir.join(format!("self/fd/{n}")), "").unwrap();
        }
        std::fs::write(dir.join("self/stat"), STAT).unwrap();
        std::fs::write(dir.join("stat"), "btime 1700000000\n").unwrap();
        std::fs::write(dir.join("self/status"), "VmRSS:\t 8 kB\n").unwrap();
        let p = Process::read_from(&dir);
        assert_eq!(
            p,
            Process {
                cpu_seconds: Some(3.25),
                resident_bytes: Some(8192),
                virtual_bytes: Some(987_654_321),
                open_fds: Some(3),
                max_fds: None,
                start_time_seconds: Some(1_700_000_000.0 + 1234.56),
                threads: Some(9),
            }
        );
        let mut text = String::new();
        p.render(&mut text);
        assert!(text.contains(
            "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 3.25\n"
        ));
        assert!(text.contains("process_resident_memory_bytes 8192\n"));
        assert!(!text.contains("process_max_fds"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(Process::read_from(&dir), Process::default());
    }
}
