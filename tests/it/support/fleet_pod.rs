//! The pods of a fleet run: each one's file and writer, its firetail process, what its
//! log said, and a scraper of the gauges that show how far each pod has backed off.

use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::fleet::{stream, Plan};
use super::fleet_figures::line;

/// SIGTERM to every pod at once, as a rollout's end does; then each exit and drain
/// report is checked.
pub fn stop_all(pods: &mut [Pod], problems: &mut Vec<String>) -> Vec<Option<i32>> {
    for pod in pods.iter() {
        if let Some(child) = &pod.child {
            // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    pods.iter_mut()
        .map(|pod| pod.stop(deadline, problems))
        .collect()
}

/// One pod: its file, its firetail process and what its log said.
pub struct Pod {
    index: usize,
    dir: PathBuf,
    file: File,
    pub written: u64,
    pub child: Option<Child>,
    reader: Option<JoinHandle<PodLog>>,
    /// The metrics address, once the pod has logged its start.
    pub metrics: Arc<Mutex<Option<String>>>,
}

#[derive(Default)]
struct PodLog {
    report: Option<serde_json::Value>,
    errors: Vec<String>,
}

impl Pod {
    pub fn prepare(plan: &Plan, index: usize) -> Pod {
        let dir = plan.dir.join(format!("pod-{index}"));
        std::fs::create_dir_all(&dir).expect("fleet: create the pod's directory");
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("access.log"))
            .expect("fleet: create the pod's log file");
        Pod {
            index,
            dir,
            file,
            written: 0,
            child: None,
            reader: None,
            metrics: Arc::default(),
        }
    }

    pub fn spawn(&mut self, plan: &Plan, endpoint: &str) {
        let mut child = Command::new(&plan.binary)
            .arg(format!("--path={}", self.dir.join("access.log").display()))
            .arg(format!("--stream={}", stream(self.index)))
            .arg("--metrics-addr=127.0.0.1:0")
            .arg("--drain-timeout=30s")
            .arg(format!(
                "--termination-message-path={}",
                self.dir.join("termination-log").display()
            ))
            .args(plan.mode.args())
            .args(&plan.extra_args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .envs(aws_env(endpoint))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("fleet: spawn firetail");
        let stderr = child.stderr.take().expect("piped stderr");
        let metrics = Arc::clone(&self.metrics);
        self.reader = Some(std::thread::spawn(move || read_log(stderr, &metrics)));
        self.child = Some(child);
    }

    pub fn write_up_to(&mut self, target: u64, bytes: usize) {
        if target <= self.written {
            return;
        }
        let mut buf = String::new();
        for seq in self.written..target {
            buf.push_str(&line(self.index, seq, bytes));
            buf.push('\n');
        }
        self.file
            .write_all(buf.as_bytes())
            .expect("fleet: append to the pod's log file");
        self.written = target;
    }

    /// Waits for the exit (SIGKILL at the deadline) and checks the drain report.
    fn stop(&mut self, deadline: Instant, problems: &mut Vec<String>) -> Option<i32> {
        let mut child = self.child.take()?;
        let name = format!("pod {}", self.index);
        let code = loop {
            if let Some(status) = child.try_wait().expect("fleet: try_wait") {
                break status.code();
            }
            if Instant::now() >= deadline {
                problems.push(format!("{name}: no exit 60 s after SIGTERM; killed."));
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let log = self.reader.take().map(|r| r.join().unwrap_or_default());
        let log = log.unwrap_or_default();
        if code != Some(0) {
            problems.push(format!("{name}: exit {code:?}."));
        }
        problems.extend(log.errors.iter().map(|e| format!("{name}: ERROR {e}")));
        match &log.report {
            None => problems.push(format!("{name}: no drain report.")),
            Some(r) => {
                let read = r["lines_read"].as_u64();
                if r["undelivered"] != 0
                    || r["drain_end"] != "drained"
                    || read != Some(self.written)
                {
                    problems.push(format!(
                        "{name}: drain report {r} for {} lines written.",
                        self.written
                    ));
                }
            }
        }
        code
    }
}

/// Loopback endpoint, a region and fake credentials; nothing else from the
/// environment reaches the pods.
fn aws_env(endpoint: &str) -> [(&'static str, &str); 6] {
    [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "fleet"),
        ("AWS_SECRET_ACCESS_KEY", "fleet"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("NO_PROXY", "127.0.0.1,localhost"),
    ]
}

/// Keeps what the driver checks from a pod's JSON log: the metrics address, the drain
/// report and the first few ERROR lines.
fn read_log(stderr: impl std::io::Read, metrics: &Mutex<Option<String>>) -> PodLog {
    let mut log = PodLog::default();
    for text in BufReader::new(stderr).lines() {
        let Ok(text) = text else { break };
        let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        if value["message"] == "firetail started." {
            *metrics.lock().unwrap() = value["metrics_addr"].as_str().map(str::to_owned);
        } else if value["message"] == "Drain report." {
            log.report = Some(value);
        } else if value["level"] == "ERROR" && log.errors.len() < 5 {
            log.errors.push(text);
        }
    }
    log
}

/// The mean effective in-flight limit and flush interval over the pods that export
/// them, at `t` seconds.
#[derive(Clone, Copy, Debug)]
pub struct GaugeSample {
    pub t: f64,
    pub in_flight_limit: f64,
    pub flush_interval_seconds: f64,
}

/// Scrapes every pod's `/metrics` once a second on a thread of its own, so that a slow
/// answer never delays the writers.
pub struct Scraper {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<GaugeSample>>,
}

impl Scraper {
    pub fn start(pods: &[Pod], t0: Instant) -> Scraper {
        let addrs: Vec<_> = pods.iter().map(|p| Arc::clone(&p.metrics)).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            let mut next = 1.0;
            while !stopped.load(Ordering::Relaxed) {
                let now = t0.elapsed().as_secs_f64();
                if now < next {
                    std::thread::sleep(
                        Duration::from_secs_f64(next - now).min(Duration::from_millis(100)),
                    );
                    continue;
                }
                next += 1.0;
                let addrs: Vec<String> = addrs
                    .iter()
                    .filter_map(|a| a.lock().unwrap().clone())
                    .collect();
                let values: Vec<(f64, f64)> = addrs.iter().filter_map(|a| gauges(a)).collect();
                if !values.is_empty() {
                    let n = values.len() as f64;
                    samples.push(GaugeSample {
                        t: now,
                        in_flight_limit: values.iter().map(|v| v.0).sum::<f64>() / n,
                        flush_interval_seconds: values.iter().map(|v| v.1).sum::<f64>() / n,
                    });
                }
            }
            samples
        });
        Scraper { stop, thread }
    }

    pub fn finish(self) -> Vec<GaugeSample> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// The two gauges of one pod; `None` when it cannot be scraped or does not export them.
fn gauges(addr: &str) -> Option<(f64, f64)> {
    let socket = addr.parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&socket, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    // Each pod here ships to one stream: its series (labelled `stream`) is the one
    // sample of that name.
    let value = |name: &str| {
        text.lines().find_map(|l| {
            let (series, v) = l.rsplit_once(' ')?;
            let n = series.split_once('{').map_or(series, |(n, _)| n);
            (n == name).then(|| v.trim().parse::<f64>().ok())?
        })
    };
    Some((
        value("firetail_in_flight_limit")?,
        value("firetail_flush_interval_seconds")?,
    ))
}
