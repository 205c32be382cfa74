//! A burst in one file does not delay another file's lines by more than one flush
//! interval: a million lines appended at once to one file while another gets 20 lines
//! a second, on the same stream and on two streams. The slow writer's per-line
//! latency while the burst drains is the figure, beside the same writer's latency
//! before the burst.
//!
//! A latency is a promise about the build users run: these tests run the release
//! binary (as `memory.rs` does), and `--aggregate` keeps the million lines to a few
//! dozen calls, so that the debug-built fake sharing the cores is not what is
//! measured.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{
    family_fake, latency_bound, per_stream, percentiles, source_args, stream, Source, LONG,
};
use crate::files::open_append;
use crate::support::eventually;
use crate::support::fake_firehose::{FakeFirehose, Faults};
use crate::support::firetail::{aws_env, Firetail};

const BURST: usize = 1_000_000;
const SLOW_EVERY: Duration = Duration::from_millis(50);
const FLUSH: Duration = Duration::from_secs(1);

/// The slow writer: one line every [`SLOW_EVERY`], each with the moment its write
/// returned, until stopped.
struct Slow {
    written: Arc<Mutex<Vec<(String, Instant)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Slow {
    fn start(path: &std::path::Path) -> Slow {
        let written = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut file = open_append(path);
        let thread = {
            let (written, stop) = (written.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let line = format!(r#"{{"slow":{i},"path":"/health","status":200}}"#);
                    file.write_all(format!("{line}\n").as_bytes()).unwrap();
                    written.lock().unwrap().push((line, Instant::now()));
                    i += 1;
                    std::thread::sleep(SLOW_EVERY);
                }
            })
        };
        Slow {
            written,
            stop,
            thread: Some(thread),
        }
    }

    fn count(&self) -> usize {
        self.written.lock().unwrap().len()
    }

    fn stop(&mut self) -> Vec<(String, Instant)> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("the slow writer panicked");
        }
        self.written.lock().unwrap().clone()
    }
}

impl Drop for Slow {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A million ~100-byte lines, prepared before the clock starts so they go out fast.
fn burst_lines() -> Vec<String> {
    (0..BURST)
        .map(|i| format!(r#"{{"burst":{i},"path":"/orders/{i}","status":200,"pad":"{i:040}"}}"#))
        .collect()
}

fn write_burst(path: &std::path::Path, lines: &[String]) {
    let mut f = open_append(path);
    for chunk in lines.chunks(20_000) {
        let mut buf = chunk.join("\n");
        buf.push('\n');
        f.write_all(buf.as_bytes()).unwrap();
    }
}

fn burst_beside_a_slow_writer(name: &str, same_stream: bool) {
    let release = match crate::memory::release_binary() {
        Ok(release) => release,
        Err(why) => return crate::support::skip::skip_or_fail(&why),
    };
    let fake: FakeFirehose = family_fake(Faults::default());
    let dir = tempfile::tempdir().unwrap();
    let (burst_log, slow_log) = (dir.path().join("burst.log"), dir.path().join("slow.log"));
    let burst_stream = stream(&fake, "burst");
    let slow_stream = if same_stream {
        burst_stream.clone()
    } else {
        stream(&fake, "slow")
    };
    let args = source_args(
        &[
            Source::new("burst", &burst_log, &burst_stream),
            Source::new("slow", &slow_log, &slow_stream),
        ],
        &["--flush-interval=1s", "--call-timeout=10s", "--aggregate"],
    );
    let lines = burst_lines();
    let mut ft = Firetail::start_binary(&release, &args, &aws_env(&fake.endpoint()));
    ft.wait_message("firetail started.", LONG);
    let mut slow = Slow::start(&slow_log);
    assert!(
        eventually(LONG, || fake.lines_accepted() >= 40),
        "the slow writer's lines never arrived\n{}",
        ft.dump()
    );

    let burst_start = Instant::now();
    write_burst(&burst_log, &lines);
    let wrote_in = burst_start.elapsed();
    // Drained once the fake holds the whole burst and every slow line written by now
    // but the last second's.
    let drained = eventually(Duration::from_secs(240), || {
        fake.lines_accepted() as usize >= BURST + slow.count().saturating_sub(20)
    });
    assert!(drained, "the burst never drained\n{}", ft.dump());
    let drain = burst_start.elapsed();
    let burst_end = Instant::now();
    std::thread::sleep(FLUSH);
    let slow_written = slow.stop();
    assert!(
        eventually(LONG, || fake.lines_accepted() as usize
            >= BURST + slow_written.len()),
        "{}",
        ft.dump()
    );

    let arrived: std::collections::HashMap<String, Instant> = fake
        .accepted_lines_by_stream()
        .into_iter()
        .filter(|l| l.line.starts_with(r#"{"slow":"#))
        .map(|l| (l.line, l.received))
        .collect();
    let latency = |keep: &dyn Fn(Instant) -> bool| -> Vec<Duration> {
        slow_written
            .iter()
            .filter(|(_, at)| keep(*at))
            .map(|(l, at)| arrived[l].saturating_duration_since(*at))
            .collect()
    };
    let before = latency(&|at| at < burst_start);
    let during = latency(&|at| at >= burst_start && at <= burst_end);
    let bound = latency_bound(FLUSH) + FLUSH;
    let (b50, b99, bmax) = percentiles(&before);
    let (p50, p99, max) = percentiles(&during);
    println!(
        "sources {name}: burst of {BURST} lines written in {wrote_in:?}, drained in {drain:?}; slow writer latency before it: n={} p50={b50:.0}ms p99={b99:.0}ms max={bmax:.0}ms; while it drained: n={} p50={p50:.0}ms p99={p99:.0}ms max={max:.0}ms (bound {}ms)",
        before.len(),
        during.len(),
        bound.as_millis()
    );
    assert!(
        during.len() >= 20,
        "the burst drained in {drain:?}: too few slow lines meanwhile to say anything"
    );
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());
    let slow_lines: Vec<String> = slow_written.into_iter().map(|(l, _)| l).collect();
    if same_stream {
        let mut all = lines;
        all.extend(slow_lines);
        per_stream(name, &fake, &[(burst_stream.as_str(), &all)], 0, &ft);
    } else {
        per_stream(
            name,
            &fake,
            &[
                (burst_stream.as_str(), &lines),
                (slow_stream.as_str(), &slow_lines),
            ],
            0,
            &ft,
        );
    }
    assert!(
        max <= bound.as_secs_f64() * 1e3,
        "a slow writer's line waited {max:.0} ms behind the burst, more than {bound:?}"
    );
}

#[test]
fn a_burst_in_one_file_does_not_delay_a_slow_file_on_the_same_stream() {
    burst_beside_a_slow_writer("burst_same_stream", true);
}

#[test]
fn a_burst_in_one_file_does_not_delay_a_slow_file_on_another_stream() {
    burst_beside_a_slow_writer("burst_two_streams", false);
}
