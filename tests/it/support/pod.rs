//! A pod without a cluster, for the chaos suite (`chaos.rs`): the app container and
//! firetail as its sidecar, both real child processes sharing a temp directory as the
//! emptyDir, and the oracle that compares what the app wrote with what the sink got.
//!
//! - [`Pod`]: the emptyDir (`access.log`, its rotated siblings, firetail's checkpoint)
//!   and, apart from it, the app's own disk (its ledger and stderr), so the ledger's
//!   writes do not wake firetail's directory watch.
//! - [`App`]: `tests/app/access_log_app.py` started through `sh -c 'exec python3 …'`,
//!   as an image entrypoint with `exec` runs it; TSTP quiets it, TERM makes it finish
//!   its jobs for `tail` more seconds, writing meanwhile, then it exits 0.
//! - [`tally`]: every uuid in the app's ledger against every line the sink accepted:
//!   lost, duplicated, and anything the app never wrote (garbled or foreign lines).
//!   Counted, never timed.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::firetail::{base_args, http_get, Firetail};

/// The app container's program.
pub const APP_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/app/access_log_app.py");

/// One pod: the shared emptyDir and the app's private disk. Dropping it removes both
/// (after the processes, which the test drops first by declaring them later).
pub struct Pod {
    empty_dir: tempfile::TempDir,
    private: tempfile::TempDir,
}

impl Default for Pod {
    fn default() -> Self {
        Self::new()
    }
}

impl Pod {
    pub fn new() -> Pod {
        Pod {
            empty_dir: tempfile::tempdir().expect("emptyDir"),
            private: tempfile::tempdir().expect("app disk"),
        }
    }

    /// `/var/log/app/access.log`, as it were.
    pub fn log(&self) -> PathBuf {
        self.empty_dir.path().join("access.log")
    }

    /// firetail's default checkpoint beside the log.
    pub fn checkpoint(&self) -> PathBuf {
        self.empty_dir.path().join(".firetail-access.log.json")
    }

    pub fn ledger(&self) -> PathBuf {
        self.private.path().join("ledger.txt")
    }

    /// [`base_args`] for this pod's log, with some flags replaced (clap refuses a flag
    /// given twice): `overrides` are `("--drain-quiet", "2s")` pairs.
    pub fn firetail_args(&self, stream: &str, overrides: &[(&str, &str)]) -> Vec<String> {
        let mut args = base_args(&self.log(), stream);
        for (flag, value) in overrides {
            let prefix = format!("{flag}=");
            args.retain(|a| !a.starts_with(&prefix));
            args.push(format!("{flag}={value}"));
        }
        args
    }

    /// Starts firetail and waits until `/readyz` answers 200: the native sidecar's
    /// startup probe, which holds the app back until firetail watches the path.
    pub fn start_firetail(&self, args: &[String], env: &[(String, String)]) -> Firetail {
        let ft = Firetail::start(args, env);
        wait_ready(&ft);
        ft
    }

    /// Starts the app container and waits until its handlers are installed.
    pub fn start_app(&self, config: &AppConfig) -> App {
        App::start(self, config)
    }

    /// The emptyDir itself, for a pod whose containers write several logs into it.
    pub fn empty_dir(&self) -> &Path {
        self.empty_dir.path()
    }

    /// One more container of this pod writing `log_file` in the emptyDir, its ledger
    /// and stderr on the pod's private disk under its `name`, its lines tagged
    /// `"app":"<name>"` (a Sidekiq-style worker beside the web app, say).
    pub fn container(&self, name: &str, log_file: &str) -> Container {
        Container {
            log: self.empty_dir.path().join(log_file),
            ledger: self.private.path().join(format!("{name}.ledger.txt")),
            stderr: self.private.path().join(format!("{name}.stderr")),
            tag: name.to_owned(),
        }
    }

    /// Starts the app program as `container` and waits until its handlers are
    /// installed.
    pub fn start_container(&self, container: &Container, config: &AppConfig) -> App {
        App::spawn(container, config)
    }

    /// Every uuid the app wrote, in order (its ledger).
    pub fn written(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.ledger()).unwrap_or_default();
        text.lines().map(str::to_owned).collect()
    }

    /// The log and its rotated siblings (`access.log.0`, `.1`, …), whatever exists.
    pub fn log_files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.log()];
        for i in 0.. {
            let p = self.empty_dir.path().join(format!("access.log.{i}"));
            if !p.exists() {
                break;
            }
            files.push(p);
        }
        files
    }

    /// The uuids in the log files, for cross-checking the ledger: the ledger is only
    /// a witness if it says what the files say.
    pub fn uuids_in_files(&self) -> Vec<String> {
        self.log_files()
            .iter()
            .flat_map(|f| file_lines(f))
            .filter_map(|l| l.uuid)
            .collect()
    }

    /// The checkpoint file's entries; panics when it is missing or not what firetail
    /// writes (an intact checkpoint is part of every scenario's claim).
    pub fn checkpoint_entries(&self) -> Vec<serde_json::Value> {
        let bytes = std::fs::read(self.checkpoint()).expect("the checkpoint file exists");
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).expect("the checkpoint file is valid JSON");
        assert_eq!(
            value["version"],
            firetail::checkpoint::VERSION,
            "checkpoint: {value}"
        );
        value["files"].as_array().expect("checkpoint files").clone()
    }

    /// The acknowledged offset of `access.log` in the checkpoint, after checking the
    /// entry is sane: at most the file's size and on a line boundary.
    pub fn checkpoint_offset(&self) -> u64 {
        let entries = self.checkpoint_entries();
        let entry = entries
            .iter()
            .find(|e| e["path"].as_str() == Some(self.log().to_str().unwrap()))
            .unwrap_or_else(|| panic!("no entry for the log in {entries:?}"));
        let offset = entry["offset"].as_u64().expect("offset");
        let data = std::fs::read(self.log()).unwrap();
        assert!(
            offset as usize <= data.len(),
            "checkpoint offset {offset} past the end of the file ({})",
            data.len()
        );
        assert!(
            offset == 0 || data[offset as usize - 1] == b'\n',
            "checkpoint offset {offset} is not on a line boundary"
        );
        offset
    }
}

/// One line of a log file.
#[derive(Debug, Clone)]
pub struct FileLine {
    pub offset: u64,
    /// None for the Logger header (and anything else without a uuid).
    pub uuid: Option<String>,
}

/// The lines of a log file with their start offsets.
pub fn file_lines(path: &Path) -> Vec<FileLine> {
    let data = std::fs::read(path).unwrap_or_default();
    let mut out = Vec::new();
    let mut offset = 0u64;
    for line in data.split_inclusive(|b| *b == b'\n') {
        out.push(FileLine {
            offset,
            uuid: uuid_of(line),
        });
        offset += line.len() as u64;
    }
    out
}

fn uuid_of(line: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    v["uuid"].as_str().map(str::to_owned)
}

/// How the app container behaves.
#[derive(Clone, Debug)]
pub struct AppConfig {
    /// Lines a second while serving (and while quiet: running jobs still log).
    pub rate: u32,
    /// How long it keeps finishing jobs after SIGTERM.
    pub tail: Duration,
    /// None: a steady stream during the tail; Some(gap): a burst every gap (jobs
    /// completing), silent in between.
    pub tail_gap: Option<Duration>,
    pub tail_burst: u32,
    /// Logger-style rotations spread over the tail.
    pub rotations_in_tail: u32,
}

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            rate: 500,
            tail: Duration::from_secs(2),
            tail_gap: None,
            tail_burst: 20,
            rotations_in_tail: 0,
        }
    }
}

/// The running app container.
pub struct App {
    child: Child,
    stdout: BufReader<std::process::ChildStdout>,
    stderr: PathBuf,
    ledger: PathBuf,
    code: Option<i32>,
}

/// Where one container of a pod writes (see [`Pod::container`]).
#[derive(Clone, Debug)]
pub struct Container {
    pub log: PathBuf,
    pub ledger: PathBuf,
    pub stderr: PathBuf,
    pub tag: String,
}

impl Container {
    /// Every uuid this container wrote, in order (its ledger).
    pub fn written(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.ledger).unwrap_or_default();
        text.lines().map(str::to_owned).collect()
    }
}

impl App {
    fn start(pod: &Pod, c: &AppConfig) -> App {
        App::spawn(
            &Container {
                log: pod.log(),
                ledger: pod.ledger(),
                stderr: pod.private.path().join("app.stderr"),
                tag: "app".to_owned(),
            },
            c,
        )
    }

    fn spawn(container: &Container, c: &AppConfig) -> App {
        let stderr = container.stderr.clone();
        let mut cmd = Command::new("sh");
        // The entrypoint as an image should have it: `exec`, so the signals the
        // kubelet sends reach the app and not a shell that ignores them.
        cmd.arg("-c")
            .arg(r#"exec python3 "$0" "$@""#)
            .arg(APP_SCRIPT)
            .arg(format!("--log={}", container.log.display()))
            .arg(format!("--ledger={}", container.ledger.display()))
            .arg(format!("--tag={}", container.tag))
            .arg(format!("--rate={}", c.rate))
            .arg(format!("--tail={}", c.tail.as_secs_f64()))
            .arg(format!(
                "--tail-gap={}",
                c.tail_gap.map_or(0.0, |g| g.as_secs_f64())
            ))
            .arg(format!("--tail-burst={}", c.tail_burst))
            .arg(format!("--rotations-in-tail={}", c.rotations_in_tail))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("app stderr file"));
        let mut child = cmd.spawn().expect("spawn the app (sh, python3)");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut first = String::new();
        let _ = stdout.read_line(&mut first);
        let app = App {
            child,
            stdout,
            stderr,
            ledger: container.ledger.clone(),
            code: None,
        };
        assert_eq!(
            first.trim(),
            "ready",
            "the app did not start; stderr:\n{}",
            app.stderr()
        );
        app
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", self.pid());
    }

    /// The preStop hook's `kill -TSTP`: stop fetching new work.
    pub fn tstp(&self) {
        self.signal(libc::SIGTSTP);
    }

    pub fn term(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Waits for the exit (panics with its stderr after `timeout`); returns the code
    /// and checks the summary it printed against its ledger's length.
    pub fn wait(&mut self, timeout: Duration) -> i32 {
        if let Some(code) = self.code {
            return code;
        }
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "the app did not exit within {timeout:?}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let code = status.code().unwrap_or(-1);
        self.code = Some(code);
        let mut rest = String::new();
        let _ = self.stdout.read_to_string(&mut rest);
        assert_eq!(
            code,
            0,
            "the app failed: {rest}\nstderr:\n{}",
            self.stderr()
        );
        let summary: serde_json::Value =
            serde_json::from_str(rest.trim()).expect("the app's summary");
        let ledger = std::fs::read_to_string(&self.ledger).unwrap_or_default();
        assert_eq!(
            summary["written"],
            ledger.lines().count(),
            "the app's ledger misses lines it wrote"
        );
        code
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if self.code.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What the oracle found.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Lines the app wrote (uuids in its ledger).
    pub written: usize,
    /// Written, never received, in the order written.
    pub lost: Vec<String>,
    /// Extra copies received (a line received three times counts 2).
    pub duplicated: usize,
    /// Received lines the app never wrote: garbled, cut, or foreign. Always 0.
    pub unexpected: usize,
}

/// Compares the ledger with the sink's lines.
pub fn tally(written: &[String], received: &[String]) -> Tally {
    let ledger: HashSet<&str> = written.iter().map(String::as_str).collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut unexpected = 0;
    for line in received {
        match uuid_of(line.as_bytes()) {
            Some(u) if ledger.contains(u.as_str()) => *seen.entry(u).or_default() += 1,
            _ => unexpected += 1,
        }
    }
    Tally {
        written: written.len(),
        lost: written
            .iter()
            .filter(|u| !seen.contains_key(u.as_str()))
            .cloned()
            .collect(),
        duplicated: seen.values().map(|n| n - 1).sum(),
        unexpected,
    }
}

impl Tally {
    /// The suite's one line per scenario (visible with `--nocapture`).
    pub fn print(&self, name: &str, drain: Option<Duration>) {
        let drain = drain.map_or("n/a".to_string(), |d| format!("{:.2}", d.as_secs_f64()));
        eprintln!(
            "chaos {name}: written={} lost={} duplicated={} drain_seconds={drain}",
            self.written,
            self.lost.len(),
            self.duplicated
        );
    }
}

/// Sends SIGTERM and waits for the exit; returns the exit code and the time from the
/// signal to the exit (the drain time as the kubelet sees it).
pub fn term_and_wait(ft: &mut Firetail, timeout: Duration) -> (i32, Duration) {
    let sent = Instant::now();
    ft.term();
    let code = ft.exit_code(timeout);
    (code, sent.elapsed())
}

/// Waits (generously) until firetail's `/readyz` answers 200.
pub fn wait_ready(ft: &Firetail) {
    let addr = ft.metrics_addr();
    let ready = super::eventually(Duration::from_secs(30), || {
        http_get(&addr, "/readyz").0 == 200
    });
    assert!(ready, "firetail never became ready; logs:\n{}", ft.dump());
}

/// The value of a series in Prometheus text, summed over the labels `name` does not
/// give (`source`, `stream`).
pub fn metric(text: &str, name: &str) -> Option<f64> {
    super::firetail::sample(text, name)
}
