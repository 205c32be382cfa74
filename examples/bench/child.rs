//! firetail as a measured child process: the OS's own accounting only.
//!
//! - CPU while it runs: the process CPU clock (`clock_getcpuclockid(pid)`), which the
//!   kernel keeps in nanoseconds for all threads, exited ones included.
//! - CPU at exit: `wait4`'s `rusage` (`ru_utime + ru_stime`).
//! - Peak RSS: `VmHWM` from `/proc/<pid>/status`, sampled every 10 ms by a thread until
//!   the process is gone (the high-water mark only grows, so the last sample is the
//!   peak to within the last 10 ms). Not `ru_maxrss`: on Linux the child's `ru_maxrss`
//!   includes the parent's RSS at the fork, because `exec` folds the high-water mark of
//!   the pre-exec address space (the parent's copy, or the parent's own with `vfork`)
//!   into the process's `maxrss` (fs/exec.c, `exec_mmap`), so it would report the
//!   bench's own hundreds of MiB.
//! - RSS while it runs: `VmRSS` from `/proc/<pid>/status`.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the child ended, from `wait4`.
#[derive(Clone, Debug)]
pub struct Exit {
    pub at: Instant,
    /// The exit code, or `None` when a signal ended it.
    pub code: Option<i32>,
    pub user: Duration,
    pub sys: Duration,
    /// `VmHWM` as last sampled before the exit.
    pub peak_rss_kib: u64,
}

impl Exit {
    pub fn cpu(&self) -> Duration {
        self.user + self.sys
    }
}

pub struct Child {
    pub pid: i32,
    pub started: Instant,
    logs: Arc<Mutex<Vec<String>>>,
    metrics_addr: Arc<Mutex<Option<SocketAddr>>>,
    hwm_kib: Arc<AtomicU64>,
    exit: Option<Exit>,
}

impl Child {
    /// Starts `bin` with exactly `env` (plus PATH), stderr collected line by line.
    pub fn spawn(bin: &Path, args: &[String], env: &[(String, String)]) -> Child {
        let mut child = Command::new(bin)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let started = Instant::now();
        let pid = child.id() as i32;
        let logs = Arc::new(Mutex::new(Vec::new()));
        let metrics_addr = Arc::new(Mutex::new(None));
        let stderr = child.stderr.take().expect("piped stderr");
        let (logs2, addr2) = (logs.clone(), metrics_addr.clone());
        std::thread::Builder::new()
            .name("firetail-stderr".into())
            .spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if line.contains("firetail started.") {
                        if let Some(addr) = serde_json::from_str::<serde_json::Value>(&line)
                            .ok()
                            .and_then(|v| v["metrics_addr"].as_str()?.parse().ok())
                        {
                            *addr2.lock().unwrap() = Some(addr);
                        }
                    }
                    logs2.lock().unwrap().push(line);
                }
            })
            .expect("spawn stderr reader");
        let hwm_kib = Arc::new(AtomicU64::new(0));
        let hwm2 = hwm_kib.clone();
        std::thread::Builder::new()
            .name("firetail-hwm".into())
            .spawn(move || {
                let path = format!("/proc/{pid}/status");
                // A zombie has no VmHWM line: the loop ends when the process does.
                while let Some(kib) = status_kib(&path, "VmHWM") {
                    hwm2.fetch_max(kib, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
            .expect("spawn VmHWM sampler");
        // The `std::process::Child` is dropped without waiting: `wait4` below reaps it,
        // which is where the rusage comes from.
        drop(child);
        Child {
            pid,
            started,
            logs,
            metrics_addr,
            hwm_kib,
            exit: None,
        }
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// The first log line holding `message`, parsed.
    pub fn log_message(&self, message: &str) -> Option<serde_json::Value> {
        let needle = format!("\"message\":\"{message}\"");
        self.logs
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains(&needle))
            .and_then(|l| serde_json::from_str(l).ok())
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        *self.metrics_addr.lock().unwrap()
    }

    /// Polls `/readyz` every millisecond from the moment the metrics address is logged;
    /// the time from spawn to the first 200.
    pub fn wait_ready(&mut self, timeout: Duration) -> Option<Duration> {
        let deadline = self.started + timeout;
        while Instant::now() < deadline {
            if let Some(addr) = self.metrics_addr() {
                if http_get(addr, "/readyz").is_some_and(|(status, _)| status == 200) {
                    return Some(self.started.elapsed());
                }
            }
            if let Some(exit) = self.try_reap() {
                self.exit = Some(exit);
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        None
    }

    /// `/metrics` as name{labels} → value.
    pub fn metrics(&self) -> HashMap<String, f64> {
        let Some(addr) = self.metrics_addr() else {
            return HashMap::new();
        };
        let Some((_, body)) = http_get(addr, "/metrics") else {
            return HashMap::new();
        };
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                Some((name.to_owned(), value.parse().ok()?))
            })
            .collect()
    }

    /// The process's CPU time so far (all threads, exited ones too), to the nanosecond.
    pub fn cpu(&self) -> Duration {
        let mut clock: libc::clockid_t = 0;
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: plain libc calls with valid out-pointers.
        let ok = unsafe {
            libc::clock_getcpuclockid(self.pid, &mut clock) == 0
                && libc::clock_gettime(clock, &mut ts) == 0
        };
        if !ok {
            return Duration::ZERO;
        }
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    /// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in KiB.
    pub fn status_kib(&self, field: &str) -> Option<u64> {
        status_kib(&format!("/proc/{}/status", self.pid), field)
    }

    pub fn signal(&self, sig: i32) {
        if self.exit.is_none() {
            // SAFETY: kill(2) on our own unreaped child.
            unsafe { libc::kill(self.pid, sig) };
        }
    }

    fn try_reap(&self) -> Option<Exit> {
        reap(self.pid, libc::WNOHANG).map(|e| self.with_hwm(e))
    }

    fn with_hwm(&self, mut exit: Exit) -> Exit {
        exit.peak_rss_kib = self.hwm_kib.load(Ordering::Relaxed);
        exit
    }

    /// Waits up to `timeout` for the child to exit (checking every millisecond, so the
    /// exit time is known to about a millisecond); SIGKILL after that.
    pub fn wait(&mut self, timeout: Duration) -> Exit {
        if let Some(exit) = &self.exit {
            return exit.clone();
        }
        let deadline = Instant::now() + timeout;
        let exit = loop {
            if let Some(exit) = self.try_reap() {
                break exit;
            }
            if Instant::now() >= deadline {
                eprintln!("bench: firetail did not exit in {timeout:?}; SIGKILL");
                // SAFETY: as in `signal`.
                unsafe { libc::kill(self.pid, libc::SIGKILL) };
                break self.with_hwm(reap(self.pid, 0).expect("wait4 after SIGKILL"));
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        self.exit = Some(exit.clone());
        exit
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.exit.is_none() {
            // SAFETY: as in `signal`; then reap so no zombie is left.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            let _ = reap(self.pid, 0);
        }
    }
}

fn reap(pid: i32, flags: i32) -> Option<Exit> {
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid out-parameter for wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, flags, &mut usage) };
    if r != pid {
        return None;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Some(Exit {
        at: Instant::now(),
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        user: tv(usage.ru_utime),
        sys: tv(usage.ru_stime),
        peak_rss_kib: 0,
    })
}

pub fn status_kib(path: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPU time of this process's threads whose name starts with `prefix`
/// (`/proc/self/task/*/schedstat`, nanoseconds on a CPU).
pub fn thread_cpu(prefix: &str) -> Duration {
    let mut total = 0u64;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let p = task.path();
            let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
            if !comm.trim_end().starts_with(prefix) {
                continue;
            }
            let stat = std::fs::read_to_string(p.join("schedstat")).unwrap_or_default();
            total += stat
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Duration::from_nanos(total)
}

/// A plain HTTP/1.0 GET on loopback: (status, body), or `None` if it failed.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let status = raw.split_whitespace().nth(1)?.parse().ok()?;
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}
