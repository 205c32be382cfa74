//! A running `firetail` child process: start it with flags and environment, watch its
//! JSON log lines, send it real signals, wait for its exit.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Log lines seen so far, and a condition variable to wait for new ones.
type LogLines = Arc<(Mutex<Vec<serde_json::Value>>, Condvar)>;

pub struct Firetail {
    child: Child,
    logs: LogLines,
    reader: Option<std::thread::JoinHandle<()>>,
    status: Option<ExitStatus>,
}

/// The flags every test passes: a log file, a stream, a free metrics port, and
/// flush/drain settings short enough for tests.
pub fn base_args(log: &Path, stream: &str) -> Vec<String> {
    vec![
        format!("--path={}", log.display()),
        format!("--stream={stream}"),
        "--metrics-addr=127.0.0.1:0".into(),
        "--flush-interval=200ms".into(),
        "--drain-quiet=300ms".into(),
        "--drain-timeout=20s".into(),
        "--call-timeout=2s".into(),
    ]
}

/// Environment for a fake or emulated Firehose at `endpoint`.
pub fn aws_env(endpoint: &str) -> Vec<(String, String)> {
    vec![
        ("AWS_ENDPOINT_URL".into(), endpoint.into()),
        ("AWS_REGION".into(), "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ("NO_PROXY".into(), "127.0.0.1,localhost".into()),
    ]
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_firetail"))
}

impl Firetail {
    pub fn start(args: &[String], env: &[(String, String)]) -> Firetail {
        Firetail::start_via(&[], args, env)
    }

    /// Starts firetail through a wrapper command (`wrapper` then the binary), e.g.
    /// `setpriv` to run it as root without the capabilities that bypass file modes.
    pub fn start_via(wrapper: &[&str], args: &[String], env: &[(String, String)]) -> Firetail {
        Firetail::spawn(wrapper, &binary(), args, env)
    }

    /// Starts another build of firetail, `program` (the release binary), the same way.
    pub fn start_binary(program: &Path, args: &[String], env: &[(String, String)]) -> Firetail {
        Firetail::spawn(&[], program, args, env)
    }

    fn spawn(
        wrapper: &[&str],
        program: &Path,
        args: &[String],
        env: &[(String, String)],
    ) -> Firetail {
        let mut cmd = match wrapper.split_first() {
            Some((wrapper, rest)) => {
                let mut c = Command::new(wrapper);
                c.args(rest).arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn firetail");
        let stderr = child.stderr.take().expect("piped stderr");
        let logs: LogLines = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let sink = logs.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({ "raw": line }));
                let (lock, cvar) = &*sink;
                lock.lock().unwrap().push(value);
                cvar.notify_all();
            }
        });
        Firetail {
            child,
            logs,
            reader: Some(reader),
            status: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", self.pid());
    }

    pub fn term(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Waits for the exit, at most `timeout`; None if still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                self.status = Some(s);
                if let Some(r) = self.reader.take() {
                    let _ = r.join();
                }
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the exit code; panics with the logs if it takes longer than `timeout`.
    pub fn exit_code(&mut self, timeout: Duration) -> i32 {
        match self.wait_timeout(timeout) {
            Some(s) => s.code().unwrap_or(-1),
            None => panic!(
                "firetail did not exit within {timeout:?}; logs:\n{}",
                self.dump()
            ),
        }
    }

    /// SIGKILL, as the kubelet does when the grace period runs out.
    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        self.wait_timeout(Duration::from_secs(10));
    }

    pub fn logs(&self) -> Vec<serde_json::Value> {
        self.logs.0.lock().unwrap().clone()
    }

    pub fn dump(&self) -> String {
        self.logs()
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until a log line satisfies `pred`; returns it.
    pub fn wait_log(
        &self,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.logs;
        let mut logs = lock.lock().unwrap();
        loop {
            if let Some(v) = logs.iter().find(|v| pred(v)) {
                return Some(v.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            logs = cvar.wait_timeout(logs, deadline - now).unwrap().0;
        }
    }

    /// Waits for the log line whose message is `message`.
    pub fn wait_message(&self, message: &str, timeout: Duration) -> serde_json::Value {
        self.wait_log(timeout, |v| v["message"] == message)
            .unwrap_or_else(|| {
                panic!(
                    "no {message:?} log line within {timeout:?}; logs:\n{}",
                    self.dump()
                )
            })
    }

    /// The address the metrics listener bound (from the start-up line).
    pub fn metrics_addr(&self) -> String {
        let started = self.wait_message("firetail started.", Duration::from_secs(20));
        started["metrics_addr"].as_str().unwrap().to_string()
    }

    /// The drain report's fields (after exit).
    pub fn report(&self) -> serde_json::Value {
        self.wait_message("Drain report.", Duration::from_secs(1))
    }
}

impl Drop for Firetail {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Appends `lines` to `path` (each gets its `\n`), as one write.
pub fn append(path: &Path, lines: &[String]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let mut buf = String::new();
    for l in lines {
        buf.push_str(l);
        buf.push('\n');
    }
    f.write_all(buf.as_bytes()).unwrap();
}

/// Unique, realistic access-log lines: `{"seq":N,"request_id":"<tag>-N",...}`.
pub fn access_lines(tag: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range
        .map(|i| {
            format!(
                r#"{{"seq":{i},"request_id":"{tag}-{i:08}","method":"GET","path":"/orders/{i}","status":200,"duration_ms":12.5,"remote_ip":"10.0.0.{}","user_agent":"Mozilla/5.0 (X11; Linux x86_64)","bytes":{},"level":"INFO"}}"#,
                i % 250,
                1000 + i
            )
        })
        .collect()
}

/// A plain HTTP/1.0 GET on loopback: (status, body). Enough for the probes and
/// `/metrics`, without an HTTP client dependency.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the metrics listener");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// The sum of the samples of `series` in a Prometheus or OpenMetrics text: `series` is
/// a name, or a name and some of its labels (`name{reason="oversize"}`), and every
/// sample of that name whose labels include those counts, whatever its other labels
/// (`source`, `stream`). None when no sample matches, which a test of "exists at 0"
/// must tell apart from 0.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    let (name, want) = name_and_labels(series);
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            // OpenMetrics may put a timestamp after the value; ours do not.
            let (n, labels) = name_and_labels(key);
            (n == name && want.iter().all(|w| labels.contains(w)))
                .then(|| value.trim().parse::<f64>().ok())?
        })
        .fold(None, |sum, v| Some(sum.unwrap_or(0.0) + v))
}

/// `name{a="x",b="y"}` as `name` and `["a=\"x\"", "b=\"y\""]` (label values here
/// hold no commas).
pub fn name_and_labels(series: &str) -> (&str, Vec<&str>) {
    match series.split_once('{') {
        Some((name, rest)) => (
            name,
            rest.trim_end_matches('}')
                .split(',')
                .filter(|l| !l.is_empty())
                .collect(),
        ),
        None => (series, Vec::new()),
    }
}

/// One scrape of `/metrics` (text format 0.0.4); panics unless it answers 200.
pub fn scrape(addr: &str) -> String {
    let (status, body) = http_get(addr, "/metrics");
    assert_eq!(status, 200, "/metrics answered {status}: {body}");
    body
}

/// `args` with `flag` set to `value`, replacing the value `base_args` gave it (clap
/// refuses a flag given twice).
pub fn set(mut args: Vec<String>, flag: &str, value: &str) -> Vec<String> {
    let prefix = format!("{flag}=");
    args.retain(|a| !a.starts_with(&prefix));
    args.push(format!("{prefix}{value}"));
    args
}

/// A counter's value in a scrape, summed over the labels `series` does not name;
/// panics when the series is missing.
pub fn counter(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}
