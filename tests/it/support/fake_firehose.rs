//! A fault-injecting fake Amazon Data Firehose for the integration tests and the
//! throughput benchmark (docs/performance.md).
//!
//! moto proves wire compatibility but never fails a record and enforces no limit, so
//! it cannot show that firetail resends exactly the failed entries, bisects a rejected
//! call, backs off on throttling or survives a hung call. This fake can: it speaks the
//! awsJson1.1 `Firehose_20150804.PutRecordBatch` operation, enforces the real quotas
//! (docs/design.md#firehose-rules) and injects faults, either by rate (seeded, so a
//! failing run can be replayed) or by script (a queue of answers, one per call, used
//! before any rate applies).
//!
//! With a [`Quota`] it is the shared stream of the fleet simulation (docs/fleet.md): records,
//! requests and bytes per one-second window, the excess records answered "Slow down."
//! inside a 200 and the excess calls rejected whole with a 503, as Firehose does; with
//! `stream_family` each pod may use its own stream name (`{stream}-{pod}`) so that the
//! per-source counters tell pods apart while they share the one quota.
//!
//! Every answer has the shape the AWS SDK for Rust parses (checked against
//! aws-sdk-firehose 1.128 `operation/put_record_batch.rs` and aws-smithy-json 0.65
//! `protocol/error.rs`): success is HTTP 200 with `FailedPutCount`, `Encrypted` and a
//! `RequestResponses` array lined up with the request; an error is a status, an
//! `x-amzn-ErrorType` header (which the SDK reads before the body) and a body
//! `{"__type": code, "message": text}`. The self-tests in `fake_firehose_selftest.rs`
//! drive every answer through the real SDK client.
//!
//! The server runs on its own std thread with its own single-threaded tokio runtime,
//! so it works the same from a plain `#[test]` and from `#[tokio::test]`, and dropping
//! the handle stops it: the runtime is dropped, which cancels every connection task
//! (hung ones too) and closes every socket before `Drop` returns.
//!
//! It is the sink of the benchmark, so the per-record cost is kept small: connections
//! are tasks (no thread per request), the body is parsed once with borrowed strings,
//! each record is base64-decoded once into one buffer per call, accepted data is
//! appended to a single arena (`store: false` keeps only the counts), and the shared
//! lock is held only to decide a call's fate and to record its result.
//!
//! ```ignore
//! let fake = FakeFirehose::start(FakeConfig {
//!     script: vec![Fault::Error(CallError::Throttling), Fault::Hang(Duration::from_secs(30))],
//!     faults: Faults { record_slow_down_rate: 0.1, ..Faults::default() },
//!     ..FakeConfig::default()
//! });
//! // run firetail with AWS_ENDPOINT_URL_FIREHOSE=fake.endpoint(), write N unique lines…
//! assert!(fake.wait_for_lines(n, Duration::from_secs(30)));
//! assert!(fake.duplicates().is_empty());
//! fake.set_faults(Faults::default()); // faults off mid-run
//! ```

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Most records one `PutRecordBatch` call may carry (Firehose quota).
pub const MAX_RECORDS_PER_CALL: usize = 500;
/// Most decoded data bytes one call may carry: 4 MiB (Firehose quota). The fake counts
/// decoded bytes, the generous reading; firetail must count conservatively
/// (docs/design.md#firehose-rules).
pub const MAX_BYTES_PER_CALL: usize = 4_194_304;
/// Most decoded data bytes in one record: 1,000 KiB (Firehose quota).
pub const MAX_RECORD_BYTES: usize = 1_024_000;
/// The `X-Amz-Target` of the only operation the fake answers.
pub const PUT_RECORD_BATCH_TARGET: &str = "Firehose_20150804.PutRecordBatch";
/// The stream name the fake knows unless told otherwise.
pub const DEFAULT_STREAM: &str = "firetail-test";
/// The awsJson1.1 content type, for requests and answers alike.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

const ACCOUNT: &str = "123456789012";

/// A per-record failure, answered inside a 200 `RequestResponses` entry. These are
/// the two codes Firehose documents for `PutRecordBatch` entries; firetail must resend
/// exactly these entries and never the ones that got a `RecordId`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordError {
    /// `ServiceUnavailableException` / "Slow down.": the per-stream throughput limit.
    SlowDown,
    /// `InternalFailure`: a transient service-side failure of that record.
    InternalFailure,
}

impl RecordError {
    /// The `ErrorCode` of the response entry.
    pub fn code(self) -> &'static str {
        match self {
            RecordError::SlowDown => "ServiceUnavailableException",
            RecordError::InternalFailure => "InternalFailure",
        }
    }

    /// The `ErrorMessage` of the response entry.
    pub fn message(self) -> &'static str {
        match self {
            RecordError::SlowDown => "Slow down.",
            RecordError::InternalFailure => {
                "The request processing has failed because of an unknown error, exception or failure."
            }
        }
    }
}

/// A whole-call error answer: nothing in the call was accepted. Each variant is one
/// class of fault firetail must treat differently (docs/design.md#firehose-rules):
/// retry the whole call (503/500 unavailable, throttling, other 5xx), bisect (invalid
/// argument) or report a configuration error and keep retrying slowly (not found,
/// access denied).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallError {
    /// HTTP 503 `ServiceUnavailableException` "Slow down.".
    ServiceUnavailable503,
    /// HTTP 500 `ServiceUnavailableException` (Firehose documents both statuses).
    ServiceUnavailable500,
    /// HTTP 400 `ThrottlingException` "Rate exceeded" (not modeled by the SDK, so it
    /// reaches callers as an unhandled error with this code).
    Throttling,
    /// HTTP 502 `InternalFailure`: some other 5xx.
    InternalFailure502,
    /// HTTP 400 `ResourceNotFoundException` naming the stream.
    ResourceNotFound,
    /// HTTP 400 `AccessDeniedException`, as IAM answers a missing permission.
    AccessDenied,
    /// HTTP 400 `InvalidArgumentException`, as for a call breaking a limit.
    InvalidArgument,
    /// Any other answer, e.g. `ExpiredTokenException` for expired credentials.
    Other {
        /// HTTP status.
        status: u16,
        /// The error code (`x-amzn-ErrorType` and `__type`).
        code: String,
        /// The `message`.
        message: String,
    },
}

impl CallError {
    /// A custom error answer.
    pub fn other(status: u16, code: impl Into<String>, message: impl Into<String>) -> Self {
        CallError::Other {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    /// The HTTP status of the answer.
    pub fn status(&self) -> u16 {
        match self {
            CallError::ServiceUnavailable503 => 503,
            CallError::ServiceUnavailable500 => 500,
            CallError::Throttling => 400,
            CallError::InternalFailure502 => 502,
            CallError::ResourceNotFound => 400,
            CallError::AccessDenied => 400,
            CallError::InvalidArgument => 400,
            CallError::Other { status, .. } => *status,
        }
    }

    /// The error code, as the SDK's `code()` reports it.
    pub fn code(&self) -> &str {
        match self {
            CallError::ServiceUnavailable503 | CallError::ServiceUnavailable500 => {
                "ServiceUnavailableException"
            }
            CallError::Throttling => "ThrottlingException",
            CallError::InternalFailure502 => "InternalFailure",
            CallError::ResourceNotFound => "ResourceNotFoundException",
            CallError::AccessDenied => "AccessDeniedException",
            CallError::InvalidArgument => "InvalidArgumentException",
            CallError::Other { code, .. } => code,
        }
    }

    fn message(&self, stream: &str) -> String {
        match self {
            CallError::ServiceUnavailable503 | CallError::ServiceUnavailable500 => {
                "Slow down.".to_owned()
            }
            CallError::Throttling => "Rate exceeded".to_owned(),
            CallError::InternalFailure502 => {
                "We encountered an internal error. Please try again.".to_owned()
            }
            CallError::ResourceNotFound => stream_not_found(stream),
            CallError::AccessDenied => format!(
                "User: arn:aws:sts::{ACCOUNT}:assumed-role/firetail/test is not authorized to \
                 perform: firehose:PutRecordBatch on resource: \
                 arn:aws:firehose:us-east-1:{ACCOUNT}:deliverystream/{stream} because no \
                 identity-based policy allows the firehose:PutRecordBatch action"
            ),
            CallError::InvalidArgument => "Injected InvalidArgumentException.".to_owned(),
            CallError::Other { message, .. } => message.clone(),
        }
    }
}

fn stream_not_found(stream: &str) -> String {
    format!("Firehose {stream} under account {ACCOUNT} not found.")
}

/// An answer that is not Firehose's JSON, as a proxy, load balancer or gateway in front
/// of it gives: any status, any content type, any body, no `x-amzn-ErrorType`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawAnswer {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl RawAnswer {
    /// nginx's own page for a body over `client_max_body_size`.
    pub fn nginx_413() -> RawAnswer {
        RawAnswer::html(
            413,
            "<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n\
             <center><h1>413 Request Entity Too Large</h1></center>\r\n\
             <hr><center>nginx/1.27.3</center>\r\n</body>\r\n</html>\r\n",
        )
    }

    /// An HTML error page with this status (a 502 or 503 from a load balancer).
    pub fn html(status: u16, body: &str) -> RawAnswer {
        RawAnswer {
            status,
            content_type: "text/html".to_owned(),
            body: body.to_owned(),
        }
    }

    /// This status with an empty body and no content type.
    pub fn empty(status: u16) -> RawAnswer {
        RawAnswer {
            status,
            content_type: String::new(),
            body: String::new(),
        }
    }

    /// A 200 that is well-formed JSON but cannot be lined up with the request: its
    /// `RequestResponses` is empty.
    pub fn unmatched_200() -> RawAnswer {
        RawAnswer {
            status: 200,
            content_type: CONTENT_TYPE.to_owned(),
            body: r#"{"FailedPutCount":0,"Encrypted":false,"RequestResponses":[]}"#.to_owned(),
        }
    }
}

/// One scripted answer. The script is a queue consumed one entry per call, before any
/// rate is consulted, so a test can say exactly what its n-th call meets. Every
/// well-formed `PutRecordBatch` call takes an entry, even one then rejected for its
/// stream name or a limit; a request that is not a `PutRecordBatch` takes none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer normally; no rate-based fault applies to this call.
    Pass,
    /// Answer normally after this extra delay. The records are accepted when the
    /// answer is written, even if the client has given up by then: that models the
    /// "timed out but accepted" case that turns into duplicates
    /// (docs/design.md#firehose-rules).
    Delay(Duration),
    /// 200; the records at these request indices fail with this error, the others are
    /// accepted. Indices beyond the call are ignored.
    FailRecords(Vec<usize>, RecordError),
    /// 200; every record fails with this error.
    FailAll(RecordError),
    /// A whole-call error answer.
    Error(CallError),
    /// Read the request, answer nothing for this long, then close the connection.
    /// Nothing in the call is accepted. Use a duration longer than the client's attempt
    /// timeout to model a hung call.
    Hang(Duration),
    /// Read the request, then drop the TCP connection with a RST and no answer.
    /// Nothing in the call is accepted.
    Reset,
    /// Answer this instead of Firehose's JSON; nothing in the call is accepted.
    Raw(RawAnswer),
    /// Accept every record (as a 200 would), then answer this instead of the
    /// `RequestResponses`: e.g. [`RawAnswer::unmatched_200`], or an HTML 200.
    AcceptThen(RawAnswer),
}

/// Rate-based faults, consulted for every call that the script does not cover. Rates
/// are probabilities in `0.0..=1.0` drawn from the fake's seeded RNG, so a run is
/// reproducible for a given seed and order of calls.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// Chance that each record of an answered call fails with "Slow down.".
    pub record_slow_down_rate: f64,
    /// Chance that each record of an answered call fails with `InternalFailure`.
    pub record_internal_failure_rate: f64,
    /// Chance that a call gets a whole-call error picked uniformly from `call_errors`.
    pub call_error_rate: f64,
    /// The errors `call_error_rate` picks from; empty means `ServiceUnavailable503`.
    pub call_errors: Vec<CallError>,
    /// Chance that a call hangs for `hang_for` (see [`Fault::Hang`]).
    pub hang_rate: f64,
    /// How long a rate-chosen hang lasts.
    pub hang_for: Duration,
    /// Chance that a call's connection is reset (see [`Fault::Reset`]).
    pub reset_rate: f64,
    /// Added to every answer (scripted ones too): the service's own latency.
    pub latency: Duration,
    /// A uniformly random extra in `0..=latency_jitter` on top of `latency`.
    pub latency_jitter: Duration,
    /// When set, any call holding a record whose data contains these bytes is
    /// rejected whole with `InvalidArgumentException`, as Firehose rejects a call with
    /// one bad record: firetail must bisect down to that record
    /// (docs/design.md#firehose-rules).
    pub reject_marker: Option<Vec<u8>>,
    /// A proxy in front: any request whose body (the base64 JSON, headers aside) is
    /// over this many bytes gets nginx's HTML 413 ([`RawAnswer::nginx_413`]) before
    /// the fake sees it, taking no scripted answer and no fault.
    pub proxy_body_limit: Option<usize>,
    /// When set, every record whose data contains these bytes fails inside a 200 with
    /// this error, in every call, while the others in the call are accepted: one
    /// batch stuck in retries for as long as it is set (the duplicate-window test).
    pub fail_marker: Option<(Vec<u8>, RecordError)>,
}

/// How to start a [`FakeFirehose`]. Everything but `store` and `seed` can also be
/// changed at runtime through the handle's setters.
#[derive(Clone, Debug)]
pub struct FakeConfig {
    /// The one delivery stream the fake knows; any other name gets
    /// `ResourceNotFoundException`.
    pub stream_name: String,
    /// When true every call gets `ResourceNotFoundException`, as before the stream is
    /// created; [`FakeFirehose::set_stream_missing`] turns it off mid-run.
    pub stream_missing: bool,
    /// Keep the data of accepted records. False keeps only counts (and the call log),
    /// for throughput runs where storing gigabytes would measure the fake.
    pub store: bool,
    /// Seed of the RNG behind every rate and jitter.
    pub seed: u64,
    /// Rate-based faults.
    pub faults: Faults,
    /// Scripted answers for the first calls.
    pub script: Vec<Fault>,
    /// A stream quota over one-second windows (the fleet simulation); `None` enforces
    /// only the per-call limits.
    pub quota: Option<Quota>,
    /// When true, every name `{stream_name}-{source}` is known too, all of them sharing
    /// the one quota: a fleet driver gives each pod its own name so the per-source
    /// counters tell pods apart while they compete as they would for one stream.
    pub stream_family: bool,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            stream_name: DEFAULT_STREAM.to_owned(),
            stream_missing: false,
            store: true,
            seed: 0x5eed_f17e,
            faults: Faults::default(),
            script: Vec::new(),
            quota: None,
            stream_family: false,
        }
    }
}

/// A delivery stream's throughput quota, enforced over one-second windows counted from
/// the fake's start. Firehose states its quota per second (records, requests, bytes:
/// docs/design.md#firehose-rules) and answers the excess with "Slow down."; fixed
/// windows are the plainest reading of that, and make every decision explainable from
/// the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    /// Records accepted per window; the records past it get "Slow down." inside a 200.
    pub records_per_second: u64,
    /// Calls admitted per window; the calls past it get a whole-call 503
    /// `ServiceUnavailableException` "Slow down." and take none of the other quotas.
    pub requests_per_second: u64,
    /// Decoded bytes accepted per window; a record that would pass it gets "Slow
    /// down." inside a 200.
    pub bytes_per_second: u64,
}

/// What the quota did, in one window or to one source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuotaCounts {
    /// Records accepted (within every quota).
    pub records_accepted: u64,
    /// Records answered "Slow down." inside an admitted call.
    pub records_throttled: u64,
    /// Records carried by calls rejected whole.
    pub records_in_rejected_calls: u64,
    /// Decoded bytes accepted.
    pub bytes_accepted: u64,
    /// Lines in the records accepted (more than the records with `--aggregate`).
    pub lines_accepted: u64,
    /// Calls within the request quota.
    pub calls_admitted: u64,
    /// Calls rejected whole for the request quota.
    pub calls_rejected: u64,
}

impl QuotaCounts {
    /// Records the quota turned away, one by one or with their call: what callers must
    /// send again.
    pub fn records_rejected(&self) -> u64 {
        self.records_throttled + self.records_in_rejected_calls
    }

    /// Adds `other` in, e.g. to total the sources.
    pub fn add(&mut self, other: &QuotaCounts) {
        self.records_accepted += other.records_accepted;
        self.records_throttled += other.records_throttled;
        self.records_in_rejected_calls += other.records_in_rejected_calls;
        self.bytes_accepted += other.bytes_accepted;
        self.lines_accepted += other.lines_accepted;
        self.calls_admitted += other.calls_admitted;
        self.calls_rejected += other.calls_rejected;
    }
}

/// The quota's bookkeeping: the current window's use, a time series by window and a
/// total by source (stream name).
#[derive(Default)]
struct QuotaBook {
    window: u64,
    used: QuotaCounts,
    series: Vec<QuotaCounts>,
    sources: BTreeMap<String, QuotaCounts>,
}

impl QuotaBook {
    /// Decides one call in `window`: `None` rejects it whole; otherwise the records to
    /// throttle. Records already `failed` by an injected fault take no quota.
    fn decide(
        &mut self,
        quota: Quota,
        window: u64,
        source: &str,
        batch: &DecodedBatch,
        failed: &[bool],
    ) -> Option<Vec<bool>> {
        if window != self.window {
            self.window = window;
            self.used = QuotaCounts::default();
        }
        let mut counts = QuotaCounts::default();
        let throttled = if self.used.calls_admitted >= quota.requests_per_second {
            counts.calls_rejected = 1;
            counts.records_in_rejected_calls = batch.len() as u64;
            None
        } else {
            counts.calls_admitted = 1;
            let mut throttled = vec![false; batch.len()];
            for i in (0..batch.len()).filter(|&i| !failed[i]) {
                let size = batch.record(i).len();
                let records = self.used.records_accepted + counts.records_accepted;
                let bytes = self.used.bytes_accepted + counts.bytes_accepted + size as u64;
                if records < quota.records_per_second && bytes <= quota.bytes_per_second {
                    counts.records_accepted += 1;
                    counts.bytes_accepted += size as u64;
                    counts.lines_accepted += count_lines(batch.record(i));
                } else {
                    throttled[i] = true;
                    counts.records_throttled += 1;
                }
            }
            Some(throttled)
        };
        self.used.add(&counts);
        let index = usize::try_from(window).expect("window index fits usize");
        if self.series.len() <= index {
            self.series.resize(index + 1, QuotaCounts::default());
        }
        self.series[index].add(&counts);
        self.sources
            .entry(source.to_owned())
            .or_default()
            .add(&counts);
        throttled
    }
}

/// What became of one call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// HTTP 200, every record accepted.
    Accepted,
    /// HTTP 200 with `FailedPutCount > 0`; these request indices failed, the others
    /// were accepted.
    PartialFailure {
        /// Request indices of the failed records, ascending.
        failed: Vec<usize>,
    },
    /// A whole-call error answer; nothing accepted.
    Error {
        /// HTTP status.
        status: u16,
        /// Error code.
        code: String,
    },
    /// No answer; the connection was closed after the hang. Nothing accepted.
    Hung,
    /// The connection was reset without an answer. Nothing accepted.
    Reset,
    /// An answer that is not Firehose's JSON ([`Fault::Raw`], the proxy's 413).
    /// `accepted`: the records were accepted first ([`Fault::AcceptThen`]).
    Raw { status: u16, accepted: bool },
}

/// One accepted line with the stream its call named and when the fake had read that
/// call (the moment the line reached Firehose, for latency figures).
#[derive(Clone, Debug)]
pub struct StreamLine {
    pub stream: Arc<str>,
    pub line: String,
    pub received: Instant,
}

/// One entry of the call log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallLog {
    /// Arrival order, from 0. The log itself is in the order outcomes were decided,
    /// which differs when calls overlap or are delayed.
    pub seq: u64,
    /// When the request (headers and body) had been read.
    pub received: Instant,
    /// The `DeliveryStreamName` asked for (empty when the body did not parse).
    pub stream: String,
    /// Records in the call.
    pub records: usize,
    /// Decoded data bytes in the call.
    pub bytes: usize,
    /// Its fate.
    pub outcome: Outcome,
}

/// Counters by outcome, cheap to read at any time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Calls whose outcome is decided (a hang counts when it starts).
    pub calls: u64,
    /// 200 answers with every record accepted.
    pub calls_accepted: u64,
    /// 200 answers with some records failed.
    pub calls_partial: u64,
    /// Whole-call error answers.
    pub calls_error: u64,
    /// Hangs started.
    pub calls_hung: u64,
    /// Hangs finished (the connection closed without an answer).
    pub hangs_finished: u64,
    /// Connections reset.
    pub calls_reset: u64,
    /// Answers that were not Firehose's JSON (scripted, or the proxy's 413).
    pub calls_raw: u64,
    /// The proxy's 413 answers (see [`Faults::proxy_body_limit`]).
    pub proxy_413: u64,
    /// Records accepted (got a `RecordId`).
    pub records_accepted: u64,
    /// Records failed inside 200 answers.
    pub records_failed: u64,
    /// Decoded bytes accepted.
    pub bytes_accepted: u64,
    /// Lines accepted: each accepted record counted as its `\n`-separated lines.
    pub lines_accepted: u64,
    /// Whole-call errors by code.
    pub errors_by_code: BTreeMap<String, u64>,
}

/// A running fake Firehose; dropping it stops the server.
pub struct FakeFirehose {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeFirehose {
    /// Binds 127.0.0.1 on a free port and serves on a thread of its own. Panics when it
    /// cannot bind or start, which in a test is the right failure.
    pub fn start(config: FakeConfig) -> FakeFirehose {
        // Bind here, not on the server thread, so the port is known (and any bind
        // error surfaces) before `start` returns: a client may connect at once.
        let listener =
            StdTcpListener::bind("127.0.0.1:0").expect("fake firehose: bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("fake firehose: set_nonblocking");
        let addr = listener.local_addr().expect("fake firehose: local_addr");
        let shared = Arc::new(Shared::new(config));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let server_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("fake-firehose-{}", addr.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("fake firehose: tokio runtime");
                runtime.block_on(accept_loop(listener, server_shared, stop_rx));
                // Dropping the runtime here cancels every connection task, hung
                // ones included, and closes their sockets.
                drop(runtime);
            })
            .expect("fake firehose: spawn server thread");
        FakeFirehose {
            addr,
            shared,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`, for `endpoint_url` or `AWS_ENDPOINT_URL_FIREHOSE`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The stream name the fake currently knows.
    pub fn stream_name(&self) -> String {
        self.shared.lock().stream_name.to_string()
    }

    // ----- runtime switches -------------------------------------------------------

    /// Replaces the rate-based faults; takes effect from the next call.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.lock().faults = Arc::new(faults);
    }

    /// Changes the rate-based faults in place, e.g.
    /// `fake.update_faults(|f| f.record_slow_down_rate = 0.0)`.
    pub fn update_faults(&self, change: impl FnOnce(&mut Faults)) {
        let mut state = self.shared.lock();
        let mut faults = (*state.faults).clone();
        change(&mut faults);
        state.faults = Arc::new(faults);
    }

    /// The current rate-based faults.
    pub fn faults(&self) -> Faults {
        (*self.shared.lock().faults).clone()
    }

    /// Sets or clears the reject marker (see [`Faults::reject_marker`]).
    pub fn set_reject_marker(&self, marker: Option<&[u8]>) {
        self.update_faults(|f| f.reject_marker = marker.map(<[u8]>::to_vec));
    }

    /// Appends answers to the script.
    pub fn push_script(&self, answers: impl IntoIterator<Item = Fault>) {
        self.shared.lock().script.extend(answers);
    }

    /// Drops the scripted answers not used yet.
    pub fn clear_script(&self) {
        self.shared.lock().script.clear();
    }

    /// Scripted answers not used yet.
    pub fn script_len(&self) -> usize {
        self.shared.lock().script.len()
    }

    /// Turns the "stream missing" switch on or off; off models creating the stream.
    pub fn set_stream_missing(&self, missing: bool) {
        self.shared.lock().stream_missing = missing;
    }

    /// Renames the one stream the fake knows.
    pub fn set_stream_name(&self, name: &str) {
        self.shared.lock().stream_name = Arc::from(name);
    }

    /// Forgets every accepted record, the call log and the counters (the script,
    /// faults and RNG state stay).
    pub fn clear(&self) {
        let mut state = self.shared.lock();
        state.data = Vec::new();
        state.ends = Vec::new();
        state.record_streams = Vec::new();
        state.record_received = Vec::new();
        state.calls = Vec::new();
        state.counters = Counters::default();
        drop(state);
        self.shared.changed.notify_all();
    }

    // ----- what was accepted ------------------------------------------------------

    /// The data of every accepted record, in the order accepted. Empty when the fake
    /// runs with `store: false`.
    pub fn accepted(&self) -> Vec<Vec<u8>> {
        let state = self.shared.lock();
        state.records().map(<[u8]>::to_vec).collect()
    }

    /// Every accepted record split on `\n` into lines (without the `\n`; an empty
    /// piece after a final `\n` is not a line), so aggregated records that pack
    /// several lines count line by line. Invalid UTF-8 is replaced lossily.
    pub fn accepted_lines(&self) -> Vec<String> {
        let state = self.shared.lock();
        state
            .records()
            .flat_map(split_lines)
            .map(|line| String::from_utf8_lossy(line).into_owned())
            .collect()
    }

    /// Records accepted more than once, each listed once, in the order their second
    /// copy was accepted. Tests write unique lines, so each entry here is a resend
    /// of something Firehose had already accepted.
    pub fn duplicates(&self) -> Vec<Vec<u8>> {
        let state = self.shared.lock();
        find_duplicates(state.records())
    }

    /// Lines accepted more than once (across records), each listed once. Use this
    /// with `--aggregate`, where a resent line may be packed differently.
    pub fn duplicate_lines(&self) -> Vec<String> {
        let state = self.shared.lock();
        find_duplicates(state.records().flat_map(split_lines))
            .into_iter()
            .map(|line| String::from_utf8_lossy(&line).into_owned())
            .collect()
    }

    /// The call log, in the order outcomes were decided.
    pub fn calls(&self) -> Vec<CallLog> {
        self.shared.lock().calls.clone()
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        self.shared.lock().counters.clone()
    }

    /// Lines accepted so far (also counted with `store: false`).
    pub fn lines_accepted(&self) -> u64 {
        self.shared.lock().counters.lines_accepted
    }

    /// Records accepted so far (also counted with `store: false`).
    pub fn records_accepted(&self) -> u64 {
        self.shared.lock().counters.records_accepted
    }

    // ----- the quota ----------------------------------------------------------------

    /// Sets or lifts the quota from the next call; the windows keep counting from the
    /// fake's start, and the series and per-source totals are kept.
    pub fn set_quota(&self, quota: Option<Quota>) {
        self.shared.lock().quota = quota;
    }

    /// The current quota window: whole seconds since the fake started.
    pub fn quota_window(&self) -> u64 {
        self.shared.lock().epoch.elapsed().as_secs()
    }

    /// What the quota did in each window so far, indexed by window (whole seconds since
    /// the fake started); windows without calls are zero.
    pub fn quota_series(&self) -> Vec<QuotaCounts> {
        self.shared.lock().quota_book.series.clone()
    }

    /// What the quota did to each source (the stream name a call asked for), in total.
    pub fn quota_sources(&self) -> BTreeMap<String, QuotaCounts> {
        self.shared.lock().quota_book.sources.clone()
    }

    /// Calls `f` with every accepted line (as [`FakeFirehose::accepted_lines`] splits
    /// them) without copying them out, for runs that accept millions of lines.
    pub fn for_each_accepted_line(&self, mut f: impl FnMut(&[u8])) {
        let state = self.shared.lock();
        state.records().flat_map(split_lines).for_each(&mut f);
    }

    // ----- several streams ----------------------------------------------------------

    /// Gives calls to `stream` their own rate-based faults (replacing [`Faults`] for
    /// them), or with `None` the common ones again; from the next call. One stream
    /// throttled hard while another is healthy is how a test shows that a throttled
    /// stream holds up only its own lines.
    pub fn set_stream_faults(&self, stream: &str, faults: Option<Faults>) {
        let mut state = self.shared.lock();
        match faults {
            Some(f) => {
                state.stream_faults.insert(stream.to_owned(), Arc::new(f));
            }
            None => {
                state.stream_faults.remove(stream);
            }
        }
    }

    /// Every accepted line (split as [`FakeFirehose::accepted_lines`] does) with the
    /// stream its call named and when the fake had read that call, in the order
    /// accepted. Empty with `store: false`.
    pub fn accepted_lines_by_stream(&self) -> Vec<StreamLine> {
        let state = self.shared.lock();
        let mut out = Vec::with_capacity(state.ends.len());
        for (i, record) in state.records().enumerate() {
            let stream = &state.stream_names[state.record_streams[i] as usize];
            for line in split_lines(record) {
                out.push(StreamLine {
                    stream: Arc::clone(stream),
                    line: String::from_utf8_lossy(line).into_owned(),
                    received: state.record_received[i],
                });
            }
        }
        out
    }

    /// Accepted lines of one stream, in the order accepted.
    pub fn accepted_lines_of(&self, stream: &str) -> Vec<String> {
        self.accepted_lines_by_stream()
            .into_iter()
            .filter(|l| *l.stream == *stream)
            .map(|l| l.line)
            .collect()
    }

    // ----- waiting ----------------------------------------------------------------

    /// Blocks until at least `n` lines were accepted or `timeout` passed; true when
    /// they were. Woken by each call's outcome, not by polling. In a
    /// `#[tokio::test]` this blocks the test's runtime thread; that is fine while
    /// the agent under test is a child process, otherwise use
    /// [`FakeFirehose::wait_for_lines_async`].
    pub fn wait_for_lines(&self, n: u64, timeout: Duration) -> bool {
        self.shared.wait_until(timeout, |c| c.lines_accepted >= n)
    }

    /// Blocks until at least `n` calls have an outcome or `timeout` passed.
    pub fn wait_for_calls(&self, n: u64, timeout: Duration) -> bool {
        self.shared.wait_until(timeout, |c| c.calls >= n)
    }

    /// Blocks until `done` holds for the counters or `timeout` passed; true when it
    /// held.
    pub fn wait_until(&self, timeout: Duration, done: impl FnMut(&Counters) -> bool) -> bool {
        self.shared.wait_until(timeout, done)
    }

    /// [`FakeFirehose::wait_for_lines`] on a blocking thread, for async tests whose
    /// runtime must keep running meanwhile.
    pub async fn wait_for_lines_async(&self, n: u64, timeout: Duration) -> bool {
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || shared.wait_until(timeout, |c| c.lines_accepted >= n))
            .await
            .expect("fake firehose: wait task panicked")
    }
}

impl Drop for FakeFirehose {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // A panic on the server thread has been printed already; re-raising it
            // here could abort a test that is already unwinding.
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for FakeFirehose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeFirehose")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

// ===== shared state =================================================================

struct Shared {
    state: Mutex<State>,
    /// Signalled whenever a call's outcome is recorded, for the `wait_*` methods.
    changed: Condvar,
}

struct State {
    stream_name: Arc<str>,
    stream_missing: bool,
    store: bool,
    /// Behind an `Arc` so a call takes a snapshot without copying the marker.
    faults: Arc<Faults>,
    script: VecDeque<Fault>,
    rng: fastrand::Rng,
    next_seq: u64,
    /// Accepted data, back to back; `ends[i]` is where record `i` ends. One arena
    /// instead of a `Vec` per record keeps a long run's memory compact.
    data: Vec<u8>,
    ends: Vec<usize>,
    calls: Vec<CallLog>,
    counters: Counters,
    stream_family: bool,
    quota: Option<Quota>,
    /// Window 0 of the quota starts here (the fake's start).
    epoch: Instant,
    quota_book: QuotaBook,
    /// Faults that replace `faults` for calls to one stream (see
    /// [`FakeFirehose::set_stream_faults`]).
    stream_faults: HashMap<String, Arc<Faults>>,
    /// For each stored record (lined up with `ends`): the index in `stream_names` of
    /// the stream its call named, and when the fake had read that call.
    record_streams: Vec<u32>,
    record_received: Vec<Instant>,
    stream_names: Vec<Arc<str>>,
}

impl State {
    /// The index of `stream` in `stream_names`, added on first sight.
    fn stream_index(&mut self, stream: &str) -> u32 {
        let found = self.stream_names.iter().position(|s| **s == *stream);
        let index = found.unwrap_or_else(|| {
            self.stream_names.push(Arc::from(stream));
            self.stream_names.len() - 1
        });
        u32::try_from(index).expect("fewer than 2^32 streams")
    }

    fn records(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let record = &self.data[start..end];
            start = end;
            record
        })
    }

    fn log(&mut self, entry: CallLog) {
        let c = &mut self.counters;
        c.calls += 1;
        match &entry.outcome {
            Outcome::Accepted => c.calls_accepted += 1,
            Outcome::PartialFailure { failed } => {
                c.calls_partial += 1;
                c.records_failed += failed.len() as u64;
            }
            Outcome::Error { code, .. } => {
                c.calls_error += 1;
                *c.errors_by_code.entry(code.clone()).or_insert(0) += 1;
            }
            Outcome::Hung => c.calls_hung += 1,
            Outcome::Reset => c.calls_reset += 1,
            Outcome::Raw { .. } => c.calls_raw += 1,
        }
        self.calls.push(entry);
    }
}

impl Shared {
    fn new(config: FakeConfig) -> Shared {
        Shared {
            state: Mutex::new(State {
                stream_name: Arc::from(config.stream_name.as_str()),
                stream_missing: config.stream_missing,
                store: config.store,
                faults: Arc::new(config.faults),
                script: config.script.into(),
                rng: fastrand::Rng::with_seed(config.seed),
                next_seq: 0,
                data: Vec::new(),
                ends: Vec::new(),
                calls: Vec::new(),
                counters: Counters::default(),
                stream_family: config.stream_family,
                quota: config.quota,
                epoch: Instant::now(),
                quota_book: QuotaBook::default(),
                stream_faults: HashMap::new(),
                record_streams: Vec::new(),
                record_received: Vec::new(),
                stream_names: Vec::new(),
            }),
            changed: Condvar::new(),
        }
    }

    /// Locks the state, shrugging off poisoning: a panicking test thread must not
    /// turn every later assertion into a poison error.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait_until(&self, timeout: Duration, mut done: impl FnMut(&Counters) -> bool) -> bool {
        let guard = self.lock();
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |s| !done(&s.counters))
            .unwrap_or_else(|e| e.into_inner());
        done(&guard.counters)
    }

    fn log(&self, entry: CallLog) {
        self.lock().log(entry);
        self.changed.notify_all();
    }

    /// The next arrival number.
    fn next_seq(&self) -> u64 {
        let mut state = self.lock();
        state.next_seq += 1;
        state.next_seq - 1
    }

    /// Decides a call's fate: the next scripted answer, else the rates.
    fn plan(&self, stream: &str) -> Plan {
        let mut state = self.lock();
        let seq = state.next_seq;
        state.next_seq += 1;
        let faults = match state.stream_faults.get(stream) {
            Some(faults) => Arc::clone(faults),
            None => Arc::clone(&state.faults),
        };
        let mut delay = faults.latency;
        if !faults.latency_jitter.is_zero() {
            delay += faults.latency_jitter.mul_f64(state.rng.f64());
        }
        let action = match state.script.pop_front() {
            Some(fault) => match fault {
                Fault::Pass => Action::Answer(RecordFaults::None),
                Fault::Delay(extra) => {
                    delay += extra;
                    Action::Answer(RecordFaults::None)
                }
                Fault::FailRecords(indices, error) => {
                    Action::Answer(RecordFaults::Indices(indices, error))
                }
                Fault::FailAll(error) => Action::Answer(RecordFaults::All(error)),
                Fault::Error(error) => Action::Error(error),
                Fault::Hang(duration) => Action::Hang(duration),
                Fault::Reset => Action::Reset,
                Fault::Raw(answer) => Action::Raw(answer),
                Fault::AcceptThen(answer) => Action::AcceptThen(answer),
            },
            None => {
                let rng = &mut state.rng;
                if faults.reset_rate > 0.0 && rng.f64() < faults.reset_rate {
                    Action::Reset
                } else if faults.hang_rate > 0.0 && rng.f64() < faults.hang_rate {
                    Action::Hang(faults.hang_for)
                } else if faults.call_error_rate > 0.0 && rng.f64() < faults.call_error_rate {
                    let error = if faults.call_errors.is_empty() {
                        CallError::ServiceUnavailable503
                    } else {
                        faults.call_errors[rng.usize(..faults.call_errors.len())].clone()
                    };
                    Action::Error(error)
                } else if faults.record_slow_down_rate > 0.0
                    || faults.record_internal_failure_rate > 0.0
                {
                    // A per-call seed keeps the lock short (the per-record draws
                    // happen outside it) and the run reproducible.
                    Action::Answer(RecordFaults::Random {
                        rng: fastrand::Rng::with_seed(rng.u64(..)),
                        slow_down: faults.record_slow_down_rate,
                        internal: faults.record_internal_failure_rate,
                    })
                } else {
                    Action::Answer(RecordFaults::None)
                }
            }
        };
        Plan {
            seq,
            action,
            delay,
            faults,
            stream_name: Arc::clone(&state.stream_name),
            stream_missing: state.stream_missing,
            stream_family: state.stream_family,
        }
    }

    /// Applies the quota (when set) to a call that passed every other check: `None`
    /// when the call is rejected whole, else its per-record verdicts with the
    /// throttled records marked "Slow down.".
    fn apply_quota(
        &self,
        source: &str,
        batch: &DecodedBatch,
        faults: RecordFaults,
    ) -> Option<RecordFaults> {
        let mut state = self.lock();
        let Some(quota) = state.quota else {
            return Some(faults);
        };
        let window = state.epoch.elapsed().as_secs();
        let mut verdicts = faults
            .verdicts(batch.len())
            .unwrap_or_else(|| vec![None; batch.len()]);
        let failed: Vec<bool> = verdicts.iter().map(Option::is_some).collect();
        let throttled = state
            .quota_book
            .decide(quota, window, source, batch, &failed)?;
        for (verdict, throttled) in verdicts.iter_mut().zip(throttled) {
            if throttled {
                *verdict = Some(RecordError::SlowDown);
            }
        }
        Some(RecordFaults::Verdicts(verdicts))
    }
}

struct Plan {
    seq: u64,
    action: Action,
    delay: Duration,
    faults: Arc<Faults>,
    stream_name: Arc<str>,
    stream_missing: bool,
    stream_family: bool,
}

enum Action {
    Reset,
    Hang(Duration),
    Error(CallError),
    Raw(RawAnswer),
    Answer(RecordFaults),
    AcceptThen(RawAnswer),
}

enum RecordFaults {
    None,
    Indices(Vec<usize>, RecordError),
    All(RecordError),
    Verdicts(Vec<Option<RecordError>>),
    Random {
        rng: fastrand::Rng,
        slow_down: f64,
        internal: f64,
    },
}

impl RecordFaults {
    /// Per-record verdicts for a call of `n` records, or `None` when all pass.
    fn verdicts(self, n: usize) -> Option<Vec<Option<RecordError>>> {
        match self {
            RecordFaults::None => None,
            RecordFaults::Indices(indices, error) => {
                let mut v = vec![None; n];
                for i in indices {
                    if let Some(slot) = v.get_mut(i) {
                        *slot = Some(error);
                    }
                }
                Some(v)
            }
            RecordFaults::All(error) => Some(vec![Some(error); n]),
            RecordFaults::Verdicts(verdicts) => Some(verdicts),
            RecordFaults::Random {
                mut rng,
                slow_down,
                internal,
            } => Some(
                (0..n)
                    .map(|_| {
                        let x = rng.f64();
                        if x < slow_down {
                            Some(RecordError::SlowDown)
                        } else if x < slow_down + internal {
                            Some(RecordError::InternalFailure)
                        } else {
                            None
                        }
                    })
                    .collect(),
            ),
        }
    }
}

fn split_lines(record: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = record.strip_suffix(b"\n").unwrap_or(record);
    let empty = record.is_empty();
    body.split(|&b| b == b'\n').filter(move |_| !empty)
}

fn count_lines(record: &[u8]) -> u64 {
    if record.is_empty() {
        return 0;
    }
    count_newlines(record) + u64::from(record.last() != Some(&b'\n'))
}

/// Counts `\n` bytes eight at a time (SWAR), so that the count stays cheap even in
/// an unoptimised test build, where a byte-by-byte iterator costs several
/// nanoseconds a byte.
fn count_newlines(bytes: &[u8]) -> u64 {
    const NEWLINES: u64 = u64::from_ne_bytes([b'\n'; 8]);
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut chunks = bytes.chunks_exact(8);
    let mut count = 0u64;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_ne_bytes(word) ^ NEWLINES;
        // The high bit of each byte of `x` that is zero, i.e. of each '\n': exact,
        // since no byte sum below can carry into the next byte.
        let zero_bytes = !(((x & LOW7) + LOW7) | x) & HIGH;
        count += u64::from(zero_bytes.count_ones());
    }
    count + chunks.remainder().iter().filter(|&&b| b == b'\n').count() as u64
}

fn find_duplicates<'a>(items: impl Iterator<Item = &'a [u8]>) -> Vec<Vec<u8>> {
    let mut seen: HashMap<&[u8], u32> = HashMap::new();
    let mut duplicates = Vec::new();
    for item in items {
        let count = seen.entry(item).or_insert(0);
        *count += 1;
        if *count == 2 {
            duplicates.push(item.to_vec());
        }
    }
    duplicates
}

// ===== the server ===================================================================

async fn accept_loop(
    listener: StdTcpListener,
    shared: Arc<Shared>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = TcpListener::from_std(listener).expect("fake firehose: tokio listener");
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve_connection(stream, Arc::clone(&shared)));
                }
                // Out of file descriptors or the like: do not spin on it.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
        }
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let reset = Arc::new(AtomicBool::new(false));
    let io = TokioIo::new(ConnIo {
        stream,
        reset: Arc::clone(&reset),
    });
    let service = hyper::service::service_fn(move |request| {
        handle(Arc::clone(&shared), Arc::clone(&reset), request)
    });
    // No header read timeout: it would close idle keep-alive connections that the
    // SDK's pool still holds, and the resulting dispatch errors would be faults
    // nobody injected.
    // Half-close allowed: otherwise hyper drops the handler when the client closes
    // its side mid-call (a client that timed out), and a delayed call would never be
    // accepted; Firehose finishes a call it received whether anyone waits for the
    // answer or not.
    let _ = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .half_close(true)
        .header_read_timeout(None)
        .serve_connection(io, service)
        .await;
}

/// The TCP stream with a switch to end it with a RST instead of a FIN. The handler
/// cannot reach the socket (hyper owns it), so it sets the switch and fails the
/// request; hyper then drops the connection, and this drop sets `SO_LINGER` to 0,
/// which makes the kernel send a RST: the client sees "connection reset", an I/O
/// error, rather than a clean end of stream.
struct ConnIo {
    stream: TcpStream,
    reset: Arc<AtomicBool>,
}

impl Drop for ConnIo {
    fn drop(&mut self) {
        if self.reset.load(Ordering::Acquire) {
            let _ = self.stream.set_zero_linger();
        }
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.reset.load(Ordering::Acquire) {
            // A FIN before the RST would let the client read a clean end of stream.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_shutdown(cx)
    }
}

/// Why the handler ended a connection without an answer.
#[derive(Debug)]
struct NoAnswer(&'static str);

impl std::fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for NoAnswer {}

/// The request body, parsed once with borrowed strings: base64 never needs JSON
/// unescaping, so `Data` is normally a slice of the body itself.
#[derive(serde::Deserialize)]
struct PutRecordBatchRequest<'a> {
    #[serde(rename = "DeliveryStreamName", borrow)]
    delivery_stream_name: Cow<'a, str>,
    #[serde(rename = "Records", borrow)]
    records: Vec<RequestRecord<'a>>,
}

#[derive(serde::Deserialize)]
struct RequestRecord<'a> {
    #[serde(rename = "Data", borrow)]
    data: Cow<'a, str>,
}

/// Decoded size of a padded base64 string, without decoding it, so an oversized call
/// is refused before any work is spent on it. Invalid input is caught by the decoder.
fn decoded_len(b64: &str) -> usize {
    let b = b64.as_bytes();
    let padding = b.iter().rev().take(2).filter(|&&c| c == b'=').count();
    (b.len() / 4 * 3).saturating_sub(padding)
}

/// A call's records, decoded back to back into one buffer (one allocation per call).
struct DecodedBatch {
    data: Vec<u8>,
    ends: Vec<usize>,
}

impl DecodedBatch {
    /// Decodes every record; `Err(i)` names the first record that is not base64.
    fn decode(records: &[RequestRecord<'_>], total: usize) -> Result<DecodedBatch, usize> {
        let mut data = Vec::with_capacity(total);
        let mut ends = Vec::with_capacity(records.len());
        for (i, record) in records.iter().enumerate() {
            base64::engine::general_purpose::STANDARD
                .decode_vec(record.data.as_bytes(), &mut data)
                .map_err(|_| i)?;
            ends.push(data.len());
        }
        Ok(DecodedBatch { data, ends })
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn record(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.data[start..self.ends[i]]
    }
}

async fn handle(
    shared: Arc<Shared>,
    reset: Arc<AtomicBool>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, NoAnswer> {
    let target_ok = request
        .headers()
        .get("x-amz-target")
        .is_some_and(|t| t.as_bytes() == PUT_RECORD_BATCH_TARGET.as_bytes());
    let post_root = request.method() == hyper::Method::POST && request.uri().path() == "/";
    let body = request
        .into_body()
        .collect()
        .await
        .map_err(|_| NoAnswer("request body not read"))?
        .to_bytes();
    let mut entry = CallLog {
        seq: 0,
        received: Instant::now(),
        stream: String::new(),
        records: 0,
        bytes: 0,
        outcome: Outcome::Accepted,
    };

    // A proxy in front answers before the service sees anything.
    let proxy_limit = shared.lock().faults.proxy_body_limit;
    if proxy_limit.is_some_and(|limit| body.len() > limit) {
        entry.seq = shared.next_seq();
        entry.outcome = Outcome::Raw {
            status: 413,
            accepted: false,
        };
        shared.lock().counters.proxy_413 += 1;
        shared.log(entry);
        return Ok(raw_response(&RawAnswer::nginx_413()));
    }

    // Requests that are not a well-formed PutRecordBatch get the protocol's own
    // errors and do not consume a scripted answer.
    if !(target_ok && post_root) {
        entry.seq = shared.next_seq();
        return Ok(answer_error(
            &shared,
            entry,
            400,
            "UnknownOperationException",
            "The fake Firehose answers only POST / with X-Amz-Target: Firehose_20150804.PutRecordBatch.",
        ));
    }
    let parsed: PutRecordBatchRequest<'_> = match serde_json::from_slice(&body) {
        Ok(parsed) => parsed,
        Err(e) => {
            entry.seq = shared.next_seq();
            let message = format!("Cannot parse the PutRecordBatch request: {e}");
            return Ok(answer_error(
                &shared,
                entry,
                400,
                "SerializationException",
                &message,
            ));
        }
    };
    entry.stream = parsed.delivery_stream_name.to_string();
    entry.records = parsed.records.len();
    let sizes: Vec<usize> = parsed
        .records
        .iter()
        .map(|r| decoded_len(&r.data))
        .collect();
    entry.bytes = sizes.iter().sum();

    let plan = shared.plan(&entry.stream);
    entry.seq = plan.seq;
    let mut then = None;
    let record_faults = match plan.action {
        Action::Reset => {
            entry.outcome = Outcome::Reset;
            shared.log(entry);
            reset.store(true, Ordering::Release);
            return Err(NoAnswer("injected connection reset"));
        }
        Action::Hang(duration) => {
            entry.outcome = Outcome::Hung;
            shared.log(entry);
            tokio::time::sleep(duration).await;
            shared.lock().counters.hangs_finished += 1;
            shared.changed.notify_all();
            return Err(NoAnswer("injected hang"));
        }
        Action::Error(error) => {
            sleep_if_any(plan.delay).await;
            let message = error.message(&plan.stream_name);
            return Ok(answer_error(
                &shared,
                entry,
                error.status(),
                error.code(),
                &message,
            ));
        }
        Action::Raw(answer) => {
            sleep_if_any(plan.delay).await;
            entry.outcome = Outcome::Raw {
                status: answer.status,
                accepted: false,
            };
            shared.log(entry);
            return Ok(raw_response(&answer));
        }
        Action::Answer(record_faults) => record_faults,
        Action::AcceptThen(answer) => {
            then = Some(answer);
            RecordFaults::None
        }
    };
    sleep_if_any(plan.delay).await;

    // What the real service checks, in a plausible order: the stream, the quotas,
    // then the records' contents.
    let known = *parsed.delivery_stream_name == *plan.stream_name
        || (plan.stream_family
            && is_family_member(&parsed.delivery_stream_name, &plan.stream_name));
    if plan.stream_missing || !known {
        let message = stream_not_found(&parsed.delivery_stream_name);
        return Ok(answer_error(
            &shared,
            entry,
            400,
            "ResourceNotFoundException",
            &message,
        ));
    }
    if let Some(message) = check_limits(&sizes) {
        return Ok(answer_error(
            &shared,
            entry,
            400,
            "InvalidArgumentException",
            &message,
        ));
    }
    let batch = match DecodedBatch::decode(&parsed.records, entry.bytes) {
        Ok(batch) => batch,
        Err(i) => {
            let message = format!("Records[{i}].Data is not valid base64.");
            return Ok(answer_error(
                &shared,
                entry,
                400,
                "SerializationException",
                &message,
            ));
        }
    };
    drop(parsed);
    if let Some(marker) = plan.faults.reject_marker.as_deref() {
        if let Some(i) = (0..batch.len()).find(|&i| contains(batch.record(i), marker)) {
            let message = format!(
                "Records[{i}] was rejected: its data contains the reject marker (fault injection)."
            );
            return Ok(answer_error(
                &shared,
                entry,
                400,
                "InvalidArgumentException",
                &message,
            ));
        }
    }
    let record_faults = match &plan.faults.fail_marker {
        Some((marker, error)) => {
            let hits: Vec<usize> = (0..batch.len())
                .filter(|&i| contains(batch.record(i), marker))
                .collect();
            if hits.is_empty() {
                record_faults
            } else {
                RecordFaults::Indices(hits, *error)
            }
        }
        None => record_faults,
    };
    let Some(record_faults) = shared.apply_quota(&entry.stream, &batch, record_faults) else {
        let error = CallError::ServiceUnavailable503;
        let message = error.message(&entry.stream);
        return Ok(answer_error(
            &shared,
            entry,
            error.status(),
            error.code(),
            &message,
        ));
    };
    Ok(accept(&shared, entry, &batch, record_faults, then.as_ref()))
}

/// `{stream}-{source}` with a non-empty source.
fn is_family_member(name: &str, stream: &str) -> bool {
    name.strip_prefix(stream)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|source| !source.is_empty())
}

/// Answers 200 for a call that passed every check: records the accepted records,
/// logs the call and builds the `RequestResponses` lined up with the request — or,
/// with `then`, answers that instead.
fn accept(
    shared: &Shared,
    mut entry: CallLog,
    batch: &DecodedBatch,
    record_faults: RecordFaults,
    then: Option<&RawAnswer>,
) -> Response<Full<Bytes>> {
    let verdicts = record_faults.verdicts(batch.len());
    let verdict = |i: usize| verdicts.as_ref().and_then(|v| v[i]);
    let failed: Vec<usize> = (0..batch.len()).filter(|&i| verdict(i).is_some()).collect();

    let mut body = String::with_capacity(80 + batch.len() * 40);
    body.push_str("{\"FailedPutCount\":");
    push_decimal(&mut body, failed.len());
    body.push_str(",\"Encrypted\":false,\"RequestResponses\":[");
    // Formatting machinery per record is slow in a debug build; build the record id
    // from a per-call prefix and the index's digits instead.
    let id_prefix = format!("{{\"RecordId\":\"fake-{:010x}-", entry.seq);
    let (mut lines, mut bytes) = (0u64, 0u64);
    for i in 0..batch.len() {
        if i > 0 {
            body.push(',');
        }
        match verdict(i) {
            Some(error) => {
                body.push_str("{\"ErrorCode\":\"");
                body.push_str(error.code());
                body.push_str("\",\"ErrorMessage\":\"");
                body.push_str(error.message());
                body.push_str("\"}");
            }
            None => {
                body.push_str(&id_prefix);
                push_decimal(&mut body, i);
                body.push_str("\"}");
                let record = batch.record(i);
                lines += count_lines(record);
                bytes += record.len() as u64;
            }
        }
    }
    body.push_str("]}");

    let seq = entry.seq;
    let accepted = (batch.len() - failed.len()) as u64;
    entry.outcome = match then {
        Some(raw) => Outcome::Raw {
            status: raw.status,
            accepted: true,
        },
        None if failed.is_empty() => Outcome::Accepted,
        None => Outcome::PartialFailure { failed },
    };
    {
        let mut state = shared.lock();
        if state.store {
            let stored = accepted as usize;
            let stream = state.stream_index(&entry.stream);
            state
                .record_streams
                .extend(std::iter::repeat_n(stream, stored));
            state
                .record_received
                .extend(std::iter::repeat_n(entry.received, stored));
            if verdicts.is_none() {
                let base = state.data.len();
                state.data.extend_from_slice(&batch.data);
                state.ends.extend(batch.ends.iter().map(|&end| base + end));
            } else {
                for i in (0..batch.len()).filter(|&i| verdict(i).is_none()) {
                    state.data.extend_from_slice(batch.record(i));
                    let end = state.data.len();
                    state.ends.push(end);
                }
            }
        }
        let c = &mut state.counters;
        c.records_accepted += accepted;
        c.bytes_accepted += bytes;
        c.lines_accepted += lines;
        state.log(entry);
    }
    shared.changed.notify_all();
    match then {
        Some(raw) => raw_response(raw),
        None => json_response(StatusCode::OK, seq, body, None),
    }
}

/// A proxy's answer: its status, content type and body, and no AWS headers.
fn raw_response(answer: &RawAnswer) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut builder = Response::builder().status(status);
    if !answer.content_type.is_empty() {
        builder = builder.header("content-type", answer.content_type.as_str());
    }
    builder
        .body(Full::new(Bytes::from(answer.body.clone())))
        .expect("fake firehose: valid raw response")
}

/// The quota check; `None` when the call is within every limit.
fn check_limits(sizes: &[usize]) -> Option<String> {
    if sizes.is_empty() {
        return Some(
            "Records must hold at least 1 record (PutRecordBatch takes 1 to 500 records)."
                .to_owned(),
        );
    }
    if sizes.len() > MAX_RECORDS_PER_CALL {
        return Some(format!(
            "The call holds {} records; the limit is {MAX_RECORDS_PER_CALL} records per \
             PutRecordBatch call.",
            sizes.len()
        ));
    }
    if let Some((i, size)) = sizes
        .iter()
        .enumerate()
        .find(|&(_, &size)| size > MAX_RECORD_BYTES)
    {
        return Some(format!(
            "Records[{i}] holds {size} bytes of data; the limit is {MAX_RECORD_BYTES} bytes \
             (1,000 KiB) per record."
        ));
    }
    let total: usize = sizes.iter().sum();
    if total > MAX_BYTES_PER_CALL {
        return Some(format!(
            "The call holds {total} bytes of data; the limit is {MAX_BYTES_PER_CALL} bytes \
             (4 MiB) per PutRecordBatch call."
        ));
    }
    None
}

fn push_decimal(out: &mut String, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&digits[at..]).expect("ASCII digits"));
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

async fn sleep_if_any(delay: Duration) {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}

/// Logs a whole-call error and builds its awsJson1.1 answer.
fn answer_error(
    shared: &Shared,
    mut entry: CallLog,
    status: u16,
    code: &str,
    message: &str,
) -> Response<Full<Bytes>> {
    let seq = entry.seq;
    entry.outcome = Outcome::Error {
        status,
        code: code.to_owned(),
    };
    shared.log(entry);
    let body = serde_json::json!({ "__type": code, "message": message }).to_string();
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, seq, body, Some(code))
}

fn json_response(
    status: StatusCode,
    seq: u64,
    body: String,
    error_type: Option<&str>,
) -> Response<Full<Bytes>> {
    let mut builder = Response::builder()
        .status(status)
        .header("content-type", CONTENT_TYPE)
        // The SDK attaches this to outputs and errors as the request id.
        .header(
            "x-amzn-RequestId",
            format!("00000000-0000-4000-8000-{seq:012x}"),
        );
    if let Some(code) = error_type {
        builder = builder.header("x-amzn-ErrorType", code);
    }
    builder
        .body(Full::new(Bytes::from(body)))
        .expect("fake firehose: valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SWAR count must agree with the obvious one wherever the newlines fall,
    /// including the unaligned tail.
    #[test]
    fn count_newlines_matches_a_byte_by_byte_count() {
        let mut rng = fastrand::Rng::with_seed(7);
        for len in 0..100 {
            for _ in 0..20 {
                let bytes: Vec<u8> = (0..len)
                    .map(|_| match rng.u8(..4) {
                        0 => b'\n',
                        1 => 0x8a, // '\n' with the high bit set
                        2 => rng.u8(..),
                        _ => b'x',
                    })
                    .collect();
                let expected = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
                assert_eq!(count_newlines(&bytes), expected, "{bytes:?}");
            }
        }
        assert_eq!(count_lines(b""), 0);
        assert_eq!(count_lines(b"a"), 1);
        assert_eq!(count_lines(b"a\n"), 1);
        assert_eq!(count_lines(b"a\nb"), 2);
        assert_eq!(
            split_lines(b"a\nb\n").collect::<Vec<_>>(),
            [&b"a"[..], b"b"]
        );
    }

    #[test]
    fn decoded_len_is_exact_for_padded_base64() {
        for len in 0..20 {
            let data = vec![0xabu8; len];
            let encoded = base64::engine::general_purpose::STANDARD.encode(&data);
            assert_eq!(decoded_len(&encoded), len);
        }
    }
}
