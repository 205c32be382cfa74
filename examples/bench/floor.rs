//! The SDK's floor: what the mandated client costs by itself. The same
//! `PutRecordBatch` calls of 500 records (the same lines, one record per line, as
//! firetail without `--aggregate`) through aws-sdk-firehose alone, built by
//! `firetail::ship::client` with firetail's default call timeout, on a single-threaded
//! runtime as firetail's, against the same sink behind the same TLS proxy and with the
//! same environment, measured with the same accounting as a child process.
//!
//! The child is this bench binary again (`bench sdk-floor-driver ...`). It reads the
//! lines, cuts them into the batches first, says `"floor":"ready"` on stderr with the
//! RSS the lines added, and waits for the bench to create a `go` file: the bench reads
//! its CPU clock before that, so reading and cutting are outside every figure. Then:
//! - rate 0 (the backlog): every batch as fast as the sink answers, 4 calls in flight
//!   (firetail's `--max-in-flight`);
//! - rate R: one call of min(500, R) records every min(500, R) / R seconds (the calls
//!   firetail makes at R lines/s with `--flush-interval 1s`), half an interval after
//!   the start of each, so the bench's window edges fall between calls.
//!
//! It exits 0 once every call was answered with every record accepted, else 1.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;
use aws_sdk_firehose::Client;
use bytes::Bytes;

use crate::child::{status_kib, Child};
use crate::{secs, Agent, Ctx, Mode, Row, Scenario, Sink};

/// The first argument that makes the bench binary the floor's driver.
pub const DRIVER_ARG: &str = "sdk-floor-driver";
/// firetail's defaults: records per call, calls in flight, call timeout.
const CALL_RECORDS: usize = 500;
const IN_FLIGHT: usize = 4;
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const READY: &str = "\"floor\":\"ready\"";

/// "aws-sdk-firehose 1.x.y" as Cargo.lock pins it.
pub fn sdk_version() -> String {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock"))
        .unwrap_or_default();
    let version = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"aws-sdk-firehose\""))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .map(|v| v.trim_matches('"').to_owned());
    format!(
        "aws-sdk-firehose {}",
        version.as_deref().unwrap_or("(version unknown)")
    )
}

// ===== the driver (the child) ==========================================================

/// `bench sdk-floor-driver LINES_FILE RATE SECONDS GO_FILE STREAM`; the exit code.
pub fn driver(args: &[String]) -> i32 {
    let [file, rate, seconds, go, stream] = args else {
        eprintln!("usage: bench {DRIVER_ARG} LINES_FILE RATE SECONDS GO_FILE STREAM");
        return 2;
    };
    let (Ok(rate), Ok(seconds)) = (rate.parse::<usize>(), seconds.parse::<u64>()) else {
        eprintln!("{DRIVER_ARG}: RATE and SECONDS are whole numbers");
        return 2;
    };
    let rss0 = status_kib("/proc/self/status", "VmRSS").unwrap_or(0);
    let data = match std::fs::read(file) {
        Ok(d) => Bytes::from(d),
        Err(e) => {
            eprintln!("{DRIVER_ARG}: {file}: {e}");
            return 2;
        }
    };
    let lines = split_lines(&data);
    // What the lines hold, before the runtime and the client add their own.
    let held = status_kib("/proc/self/status", "VmRSS")
        .unwrap_or(0)
        .saturating_sub(rss0);
    let per_call = if rate == 0 {
        CALL_RECORDS
    } else {
        rate.clamp(1, CALL_RECORDS)
    };
    let calls = match rate {
        0 => lines.len().div_ceil(per_call),
        _ => (rate * seconds as usize / per_call).min(lines.len().div_ceil(per_call)),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("floor: runtime");
    let failed = runtime.block_on(async {
        let client = firetail::ship::client(CALL_TIMEOUT).await;
        eprintln!("{{{READY},\"lines_kib\":{held}}}");
        while !Path::new(go).exists() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let batches: Vec<&[Bytes]> = lines.chunks(per_call).take(calls).collect();
        if rate == 0 {
            flat_out(&client, stream, &batches).await
        } else {
            let every = Duration::from_secs_f64(per_call as f64 / rate as f64);
            paced(&client, stream, &batches, every).await
        }
    });
    let _ = std::io::stderr().flush();
    i32::from(failed > 0)
}

/// Each line without its `\n`, sharing `data`.
fn split_lines(data: &Bytes) -> Vec<Bytes> {
    let mut lines = Vec::with_capacity(data.len() / 256);
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', data) {
        lines.push(data.slice(start..end));
        start = end + 1;
    }
    if start < data.len() {
        lines.push(data.slice(start..));
    }
    lines
}

/// Every batch, `IN_FLIGHT` calls at a time; the number of failed calls.
async fn flat_out(client: &Client, stream: &str, batches: &[&[Bytes]]) -> usize {
    let next = std::cell::Cell::new(0usize);
    let failed = std::cell::Cell::new(0usize);
    let worker = || async {
        loop {
            let i = next.get();
            let Some(batch) = batches.get(i) else { break };
            next.set(i + 1);
            if let Err(e) = put(client, stream, batch).await {
                eprintln!("{DRIVER_ARG}: call {i}: {e}");
                failed.set(failed.get() + 1);
            }
        }
    };
    tokio::join!(worker(), worker(), worker(), worker());
    failed.get()
}

/// One batch every `every`, at most `IN_FLIGHT` in flight; the number of failed calls.
async fn paced(client: &Client, stream: &str, batches: &[&[Bytes]], every: Duration) -> usize {
    let start = tokio::time::Instant::now();
    let mut set = tokio::task::JoinSet::new();
    let mut failed = 0;
    let mut count = |r: Result<Result<(), String>, tokio::task::JoinError>| {
        if let Err(e) = r.map_err(|e| e.to_string()).and_then(|r| r) {
            eprintln!("{DRIVER_ARG}: {e}");
            failed += 1;
        }
    };
    for (k, batch) in batches.iter().enumerate() {
        tokio::time::sleep_until(start + every.mul_f64(k as f64 + 0.5)).await;
        while set.len() >= IN_FLIGHT {
            if let Some(r) = set.join_next().await {
                count(r);
            }
        }
        while let Some(r) = set.try_join_next() {
            count(r);
        }
        let (client, stream, batch) = (client.clone(), stream.to_owned(), batch.to_vec());
        set.spawn(async move { put(&client, &stream, &batch).await });
    }
    while let Some(r) = set.join_next().await {
        count(r);
    }
    failed
}

/// One `PutRecordBatch`, built as firetail builds it (each `Blob` shares its line).
pub async fn put(client: &Client, stream: &str, lines: &[Bytes]) -> Result<(), String> {
    let records = lines
        .iter()
        .map(|l| {
            Record::builder()
                .data(Blob::from_maybe_shared(l.clone()))
                .build()
                .expect("data is set")
        })
        .collect();
    let out = client
        .put_record_batch()
        .delivery_stream_name(stream)
        .set_records(Some(records))
        .send()
        .await
        .map_err(|e| aws_sdk_firehose::error::DisplayErrorContext(e).to_string())?;
    match out.failed_put_count() {
        0 => Ok(()),
        n => Err(format!("{n} records not accepted")),
    }
}

// ===== the bench's side ================================================================

/// The driver, started on `lines` at `rate` (0: as fast as it goes) and ready: the
/// sink, the child, the KiB of RSS its lines hold, and the `go` file to create.
fn start(ctx: &Ctx, mode: Mode, lines: usize, rate: usize, seconds: u64) -> Started {
    let dir = crate::run_dir(ctx);
    let file = dir.path().join("lines");
    std::fs::write(&file, ctx.lines.slice(0, lines)).expect("write the floor's lines");
    let go = dir.path().join("go");
    let sink = Sink::start(ctx, mode.tls, false);
    let exe = std::env::current_exe().expect("current_exe");
    let args = [
        DRIVER_ARG.to_owned(),
        file.display().to_string(),
        rate.to_string(),
        seconds.to_string(),
        go.display().to_string(),
        crate::fake_firehose::DEFAULT_STREAM.to_owned(),
    ];
    let child = Child::spawn(&exe, &args, &sink.env(ctx));
    let deadline = Instant::now() + Duration::from_secs(60);
    let ready = loop {
        let logs = child.logs();
        if let Some(line) = logs.iter().find(|l| l.contains(READY)) {
            break serde_json::from_str::<serde_json::Value>(line).ok();
        }
        assert!(
            Instant::now() < deadline,
            "the SDK floor's driver did not get ready: {logs:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    let lines_kib = ready.and_then(|v| v["lines_kib"].as_u64()).unwrap_or(0);
    Started {
        _dir: dir,
        sink,
        child,
        lines_kib,
        go,
    }
}

struct Started {
    _dir: tempfile::TempDir,
    sink: Sink,
    child: Child,
    lines_kib: u64,
    go: std::path::PathBuf,
}

impl Started {
    /// Lets the driver start its calls; the CPU it had used until then.
    fn go(&self) -> Duration {
        let cpu = self.child.cpu();
        std::fs::write(&self.go, b"").expect("create the go file");
        cpu
    }

    /// Counters, exit, and peak RSS less what the pre-built lines hold, into `row`.
    fn finish(mut self, row: &mut Row) -> crate::child::Exit {
        let exit = self.child.wait(Duration::from_secs(60));
        crate::finish(row, &self.sink, &self.child, &exit);
        row.agent = Agent::Floor;
        row.peak_rss_kib = Some(exit.peak_rss_kib.saturating_sub(self.lines_kib));
        row.notes.push(format!(
            "peak RSS less the {:.1} MiB its pre-built lines hold (VmRSS after reading \
             them less before)",
            self.lines_kib as f64 / 1024.0
        ));
        row.billable_bytes = Some(row.records * crate::BILLING_INCREMENT);
        exit
    }
}

/// Scenario 1 for the floor: the backlog's lines, as fast as the sink answers.
pub fn backlog(ctx: &Ctx, mode: Mode) -> Row {
    let n = ctx.opts.backlog_lines;
    crate::say(format!(
        "{}, scenario 1 TLS: {n} lines",
        Agent::Floor.label()
    ));
    let mut row = Row::new(Scenario::Backlog, mode);
    let started = start(ctx, mode, n, 0, 0);
    let cpu0 = started.go();
    let t0 = Instant::now();
    let all = started
        .sink
        .fake
        .wait_for_lines(n as u64, Duration::from_secs(300));
    let elapsed = t0.elapsed();
    if !all {
        row.notes.push(format!(
            "only {} of {n} lines arrived",
            started.sink.fake.lines_accepted()
        ));
    }
    row.lines = started.sink.fake.lines_accepted();
    row.lines_per_s = Some(row.lines as f64 / secs(elapsed));
    let exit = started.finish(&mut row);
    row.cpu_per_m = Some(secs(exit.cpu().saturating_sub(cpu0)) / row.lines.max(1) as f64 * 1e6);
    row.notes
        .push("CPU and lines/s from its first call on (reading and cutting before)".into());
    row
}

/// Scenario 2 for the floor: the calls firetail makes at `rate`, measured over the same
/// window after the same warm-up.
pub fn steady(ctx: &Ctx, mode: Mode, rate: usize) -> Row {
    let (warm_s, seconds) = (ctx.opts.warmup_seconds, ctx.opts.steady_seconds);
    crate::say(format!(
        "{}, scenario 2 TLS: the calls of {rate} lines/s for {seconds}s",
        Agent::Floor.label()
    ));
    let mut row = Row::new(Scenario::Steady, mode);
    row.offered = rate;
    let per_call = rate.clamp(1, CALL_RECORDS);
    let calls = rate * (warm_s + seconds) as usize / per_call;
    let total = calls * per_call;
    let started = start(ctx, mode, total, rate, warm_s + seconds);
    let cpu_spawned = started.go();
    let t0 = Instant::now();
    let (from, to) = (
        t0 + Duration::from_secs(warm_s),
        t0 + Duration::from_secs(warm_s + seconds),
    );
    sleep_until(from);
    let (cpu0, sink0) = (started.child.cpu(), started.sink.cpu());
    let mut rss = Vec::new();
    while Instant::now() < to {
        sleep_until((Instant::now() + Duration::from_millis(500)).min(to));
        rss.extend(started.child.status_kib("VmRSS"));
    }
    let cpu1 = started.child.cpu();
    let caught = started
        .sink
        .fake
        .wait_for_lines(total as u64, Duration::from_secs(60));
    let t_caught = Instant::now();
    let cpu2 = started.child.cpu();
    row.sink_cpu_s = Some(secs(started.sink.cpu() - sink0));
    if !caught {
        row.notes.push(format!(
            "only {} of {total} lines arrived",
            started.sink.fake.lines_accepted()
        ));
    }
    let measured = rate * seconds as usize;
    row.lines = started.sink.fake.lines_accepted();
    row.lines_per_s = Some(measured as f64 / secs(to - from));
    row.cpu_pct = Some(secs(cpu1 - cpu0) / secs(to - from) * 100.0);
    row.cpu_per_m = Some(secs(cpu2 - cpu0) / measured.max(1) as f64 * 1e6);
    row.notes.push(format!(
        "warm-up: {warm_s}s of the same calls first, {:.0} ms of CPU (not in the window)",
        secs(cpu0 - cpu_spawned) * 1e3
    ));
    if !rss.is_empty() {
        let mean = rss.iter().sum::<u64>() / rss.len() as u64;
        row.notes.push(format!(
            "mean RSS {:.1} MiB with its lines",
            mean as f64 / 1024.0
        ));
    }
    row.notes.push(format!(
        "last call answered {:.2}s after the window",
        secs(t_caught.saturating_duration_since(to))
    ));
    started.finish(&mut row);
    row
}

fn sleep_until(t: Instant) {
    if let Some(wait) = t.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_without_their_newline_and_a_last_partial_line_is_kept() {
        let data = Bytes::from_static(b"{\"a\":1}\n{\"b\":2}\n{\"c\":3}");
        let lines = split_lines(&data);
        let got: Vec<&[u8]> = lines.iter().map(|l| &l[..]).collect();
        assert_eq!(got, [&b"{\"a\":1}"[..], b"{\"b\":2}", b"{\"c\":3}"]);
    }
}
