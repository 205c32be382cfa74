//! Fluent Bit beside firetail: the same lines, the same sink over the same
//! TLS proxy, measured the same way, so the per-pod cost targets are read against the
//! agent most pods run today.
//!
//! The binary is a release build of Fluent Bit kept outside the repository (no Fluent
//! Bit code or binary is committed here): `fluent-bit-<version>-linux-amd64.gz` in
//! `../shared/peers/` beside the checkout (or beside the main checkout, from a git
//! worktree), or `--fluent-bit PATH` (the binary, or such a `.gz`). The bench unpacks
//! it into `target/fluent-bit/` and names the version `fluent-bit --version` prints
//! beside every figure.
//!
//! Where it listens: Fluent Bit's Firehose output (checked with 5.1.1) takes a host
//! name as `endpoint` (a scheme is stripped, a `:port` is not understood) and always
//! connects to port 443 with TLS. So the bench gives it a loopback address of its own
//! (127.77.x.y; all of 127/8 is the local host on Linux), where a TLS proxy like
//! firetail's listens on 443 in front of the same fake Firehose. It trusts the bench CA
//! with `tls.ca_file` (OpenSSL verifies the chain). Plain HTTP is out of its reach, so
//! it runs over TLS only. Binding port 443 needs root or CAP_NET_BIND_SERVICE.
//!
//! The configuration is that of a fair peer of firetail's defaults (see `config`).

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::child::Child;
use crate::release::command_output;

/// The only port Fluent Bit's Firehose output connects to.
const FIREHOSE_PORT: u16 = 443;
const PARSERS: &str = "[PARSER]\n    Name   json\n    Format json\n";
/// How the peer's release builds are named in the shared peers directory.
const PEER_PREFIX: &str = "fluent-bit-";
const PEER_SUFFIX: &str = "-linux-amd64.gz";
/// The Debian libraries the shared build links against.
const LIBRARIES: &str = "libsqlite3-0 libyaml-0-2 libssl3";

/// The version `fluent-bit --version` printed, for every label of its figures.
static VERSION: OnceLock<String> = OnceLock::new();

/// "Fluent Bit 5.1.1": the agent's name with the version that was measured.
pub fn label() -> String {
    format!(
        "Fluent Bit {}",
        VERSION.get().map_or("(version unknown)", String::as_str)
    )
}

/// A Fluent Bit binary and the loopback address its sink listens on.
pub struct FluentBit {
    pub bin: PathBuf,
    pub ip: Ipv4Addr,
}

impl FluentBit {
    /// `given` (a binary, or a peer's `.gz`), or the newest peer build in the shared
    /// peers directory, unpacked into the target dir; `Err` says why there is none.
    pub fn find(given: Option<&Path>) -> Result<FluentBit, String> {
        let bin = match given {
            Some(p) if !p.is_file() => {
                return Err(format!("--fluent-bit {}: no such file", p.display()))
            }
            Some(p) if p.extension().is_some_and(|e| e == "gz") => unpack(p)?,
            Some(p) => p.to_path_buf(),
            None => unpack(&shared_peer()?)?,
        };
        let version = version(&bin)?;
        let _ = VERSION.set(version);
        Ok(FluentBit {
            bin,
            ip: free_address()?,
        })
    }

    /// Where the TLS proxy in front of the fake listens for Fluent Bit.
    pub fn sink_addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, FIREHOSE_PORT))
    }

    /// Starts Fluent Bit on `log` with its configuration, parsers and DB in `dir`.
    pub fn spawn(&self, log: &Path, dir: &Path, stream: &str, ca_file: &Path) -> Child {
        let conf = dir.join("fluent-bit.conf");
        let parsers = dir.join("parsers.conf");
        std::fs::write(&parsers, PARSERS).expect("write parsers.conf");
        let text = config(log, &db_path(dir), &parsers, stream, self.ip, ca_file);
        std::fs::write(&conf, text).expect("write fluent-bit.conf");
        // Fake credentials through the environment: the first provider of its chain.
        let env = [
            ("AWS_ACCESS_KEY_ID", "bench"),
            ("AWS_SECRET_ACCESS_KEY", "bench"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let args = ["-c".to_owned(), conf.display().to_string()];
        Child::spawn(&self.bin, &args, &env)
    }
}

/// The tail input's DB (its checkpoint), created when the input starts.
pub fn db_path(dir: &Path) -> PathBuf {
    dir.join("tail.db")
}

/// Where peers are kept: `../shared/peers/` beside this checkout, or beside the main
/// checkout when this is a git worktree.
fn peer_dirs() -> Vec<PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = vec![repo.join("../shared/peers")];
    let common = command_output(
        "git",
        &["rev-parse", "--path-format=absolute", "--git-common-dir"],
    );
    if let Some(main) = Path::new(&common).parent().filter(|_| !common.is_empty()) {
        dirs.push(main.join("../shared/peers"));
    }
    dirs
}

/// The newest `fluent-bit-<version>-linux-amd64.gz` of the peer directories.
fn shared_peer() -> Result<PathBuf, String> {
    let dirs = peer_dirs();
    let mut found: Vec<(Vec<u64>, PathBuf)> = dirs
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flat_map(|d| d.flatten().map(|e| e.path()))
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?;
            let v = name.strip_prefix(PEER_PREFIX)?.strip_suffix(PEER_SUFFIX)?;
            let key = v
                .split('.')
                .map(|n| n.parse().ok())
                .collect::<Option<_>>()?;
            Some((key, p))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, p)| p).ok_or_else(|| {
        let looked: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        format!(
            "no {PEER_PREFIX}<version>{PEER_SUFFIX} in {}; pass --fluent-bit PATH",
            looked.join(" or ")
        )
    })
}

/// `target/fluent-bit/<name>/fluent-bit`, unpacked from `gz` unless already there.
fn unpack(gz: &Path) -> Result<PathBuf, String> {
    let name = gz
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".gz"))
        .ok_or_else(|| format!("{}: not a .gz file", gz.display()))?;
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    // target/<profile>/examples/bench
    let target = exe
        .ancestors()
        .nth(3)
        .ok_or("the bench is not in target/<profile>/examples")?;
    let dir = target.join("fluent-bit").join(name);
    let bin = dir.join("fluent-bit");
    if bin.is_file() {
        return Ok(bin);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let partial = dir.join("fluent-bit.partial");
    let out = std::fs::File::create(&partial).map_err(|e| format!("{}: {e}", partial.display()))?;
    let status = Command::new("gunzip")
        .arg("-c")
        .arg(gz)
        .stdout(out)
        .status()
        .map_err(|e| format!("gunzip: {e}"))?;
    if !status.success() {
        return Err(format!("gunzip -c {} failed: {status}", gz.display()));
    }
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))
        .and_then(|()| std::fs::rename(&partial, &bin))
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    Ok(bin)
}

/// "5.1.1" from `fluent-bit --version` ("Fluent Bit v5.1.1").
fn version(bin: &Path) -> Result<String, String> {
    let out = Command::new(bin)
        .arg("--version")
        .output()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let found = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Fluent Bit v"))
        .map(str::to_owned);
    match found {
        Some(v) if out.status.success() => Ok(v),
        _ => Err(format!(
            "{} --version failed ({}): {}; the shared build needs Debian's {LIBRARIES} \
             (apt-get install {LIBRARIES})",
            bin.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

/// Fluent Bit as a fair peer of firetail's defaults:
/// - `Flush 1`: firetail's `--flush-interval 1s`;
/// - `tail` with a `DB` (its checkpoint, SQLite with the default `DB.sync normal`) and
///   `Read_from_Head On`, so that lines written before the input is up are not skipped
///   (firetail reads a new file from its start too);
/// - `Parser json`: the lines are JSON, and the Firehose output sends each record as
///   JSON; with the raw line under `log_key log` instead, Fluent Bit (1.8 at least)
///   sends it as a JSON string with its quotes escaped (`{\"time\":...`), not the line
///   that was written. Parsing and re-encoding is what Fluent Bit needs to deliver the
///   line's content, so it is part of its cost;
/// - the Firehose output to the same stream, one record per line (`simple_aggregation`
///   stays at its default, off: the peer of firetail without `--aggregate`);
/// - everything else default (`Grace 5`, memory buffering, inotify, `Refresh_Interval
///   60`, one output worker, no HTTP server). The same file works for 1.8 and 5.1.
pub fn config(
    log: &Path,
    db: &Path,
    parsers: &Path,
    stream: &str,
    ip: Ipv4Addr,
    ca_file: &Path,
) -> String {
    format!(
        "[SERVICE]
    Flush         1
    Daemon        Off
    Log_Level     info
    Parsers_File  {parsers}

[INPUT]
    Name            tail
    Tag             access
    Path            {log}
    DB              {db}
    Read_from_Head  On
    Parser          json

[OUTPUT]
    Name             kinesis_firehose
    Match            *
    region           us-east-1
    delivery_stream  {stream}
    endpoint         {ip}
    tls.ca_file      {ca}
",
        parsers = parsers.display(),
        log = log.display(),
        db = db.display(),
        ca = ca_file.display(),
    )
}

/// Time from spawn until the tail input has opened its DB, or `None` after `timeout`.
/// Fluent Bit has no readiness endpoint; the DB appears when the input starts, and
/// `Read_from_Head` makes lines written before then count anyway.
pub fn wait_started(child: &Child, dir: &Path, timeout: Duration) -> Option<Duration> {
    let db = db_path(dir);
    let deadline = child.started + timeout;
    while Instant::now() < deadline {
        if db.exists() {
            return Some(child.started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

/// Threads and child processes of `pid`: Fluent Bit is one process (its engine,
/// inputs and output workers are threads and coroutines), so its accounting covers it
/// all; a child process would not be, and is named.
pub fn process_tree(pid: i32) -> String {
    let tasks: Vec<PathBuf> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    let children: Vec<String> = tasks
        .iter()
        .filter_map(|t| std::fs::read_to_string(t.join("children")).ok())
        .flat_map(|c| c.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .collect();
    if children.is_empty() {
        format!("one process, {} threads", tasks.len())
    } else {
        format!(
            "{} threads and child processes {} (not measured)",
            tasks.len(),
            children.join(", ")
        )
    }
}

/// A loopback address whose port 443 is free, derived from the bench's pid so that two
/// benches on one machine do not meet.
fn free_address() -> Result<Ipv4Addr, String> {
    let pid = std::process::id();
    let mut last = String::new();
    for k in 0..32u32 {
        let n = pid.wrapping_add(k * 7919);
        let ip = Ipv4Addr::new(127, 77, (n >> 8) as u8, (n as u8).max(1));
        match TcpListener::bind((ip, FIREHOSE_PORT)) {
            Ok(_) => return Ok(ip),
            Err(e) => last = format!("{ip}:{FIREHOSE_PORT}: {e}"),
        }
    }
    Err(format!(
        "cannot listen on a loopback port {FIREHOSE_PORT} for Fluent Bit's sink ({last}); \
         its Firehose output connects to no other port: run as root or with \
         CAP_NET_BIND_SERVICE, or pass --no-fluent-bit"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_firehose::{FakeConfig, FakeFirehose, DEFAULT_STREAM};
    use crate::lines::Lines;
    use crate::tls::{Certs, Proxy};
    use std::io::Write as _;

    /// The bench's configuration, run: every line written arrives once, as the same
    /// JSON, and SIGTERM ends Fluent Bit with exit 0. Needs the shared peer build (or
    /// FIRETAIL_FLUENT_BIT=PATH) and port 443, hence ignored:
    /// `cargo test --example bench -- --ignored fluent_bit`.
    #[test]
    #[ignore = "needs the shared Fluent Bit build and port 443"]
    fn fluent_bit_delivers_every_line_as_the_same_json_and_exits_0() {
        let given = std::env::var_os("FIRETAIL_FLUENT_BIT").map(PathBuf::from);
        let fluent_bit = FluentBit::find(given.as_deref()).expect("Fluent Bit");
        let dir = tempfile::tempdir().unwrap();
        let certs = Certs::make(dir.path(), &[fluent_bit.ip]);
        let fake = FakeFirehose::start(FakeConfig::default());
        let _proxy = Proxy::start_at(&certs, fluent_bit.sink_addr(), fake.addr());
        let log = dir.path().join("access.log");
        std::fs::File::create(&log).unwrap();
        let mut child = fluent_bit.spawn(&log, dir.path(), DEFAULT_STREAM, &certs.ca_file);
        assert!(wait_started(&child, dir.path(), Duration::from_secs(30)).is_some());

        let n = 2000;
        let lines = Lines::generate(n);
        let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        for k in 0..20 {
            file.write_all(lines.slice(k * 100, (k + 1) * 100)).unwrap();
            std::thread::sleep(Duration::from_millis(50));
        }
        let all = fake.wait_for_lines(n as u64, Duration::from_secs(60));
        child.signal(libc::SIGTERM);
        let exit = child.wait(Duration::from_secs(30));
        assert!(
            all,
            "{} of {n} lines; log: {:?}",
            fake.lines_accepted(),
            child.logs()
        );
        assert_eq!(exit.code, Some(0), "log: {:?}", child.logs());

        let sent: Vec<serde_json::Value> = (0..n)
            .map(|i| serde_json::from_slice(lines.slice(i, i + 1)).unwrap())
            .collect();
        let got: Vec<serde_json::Value> = fake
            .accepted_lines()
            .iter()
            .map(|l| serde_json::from_str(l).expect("a record that is JSON"))
            .collect();
        assert_eq!(fake.records_accepted(), n as u64, "one record per line");
        assert!(fake.duplicate_lines().is_empty());
        let mut got_by_seq = got.clone();
        got_by_seq.sort_by_key(|v| v["seq"].as_u64());
        assert_eq!(got_by_seq, sent);
    }
}
