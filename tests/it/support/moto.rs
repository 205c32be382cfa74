//! moto's server as a real Firehose + S3 peer on loopback.
//!
//! `Moto::start()` runs `moto_server -H 127.0.0.1 -p PORT` as a child process and waits
//! until it answers; dropping the `Moto` kills and reaps it. Talks to it with plain,
//! unsigned HTTP (moto does not check signatures; it routes a request to a service by the
//! credential scope of the `Authorization` header, so we send a dummy SigV4 header).
//!
//! What moto 5.2.5 does with `PutRecordBatch` into a DirectPut stream with an
//! ExtendedS3 destination (checked by hand and by `moto_selftest`): it writes **one S3
//! object per call** whose body is the records' data **concatenated as sent**, with no
//! delimiter added, under the key `YYYY/MM/DD/HH/<stream>-1-YYYY-MM-DD-HH-MM-SS-<uuid4>`
//! (a random uuid: listing order is NOT call order). It never fails single records and
//! enforces no Firehose limits; an unknown stream gets `ResourceNotFoundException`.
//!
//! The `moto_server` executable: `$FIRETAIL_MOTO_SERVER`, else `<repo>/.venv/bin/moto_server`
//! (made by `scripts/python-env.sh`). If it is missing the test panics: it never skips.

use std::fs::File;
use std::io::Read;
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Region every moto resource is created in, and that firetail children are given.
pub const REGION: &str = "us-east-1";
/// moto's default account id (what its ARNs contain).
pub const ACCOUNT_ID: &str = "123456789012";
/// A role ARN for the delivery stream: moto never checks IAM.
pub const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/firetail-test-firehose";

/// How long `start` waits for moto to answer (it usually takes 1–2 s).
const START_DEADLINE: Duration = Duration::from_secs(30);
/// Attempts with a fresh port if moto dies at start (e.g. the port was taken in between).
const START_ATTEMPTS: usize = 3;

/// AWS variables that must not leak from the test runner's environment into a firetail
/// child talking to moto (they would win over, or add to, what `env()` sets).
pub const ENV_REMOVE: &[&str] = &[
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL_FIREHOSE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_USE_FIPS_ENDPOINT",
    "AWS_USE_DUALSTACK_ENDPOINT",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
];

pub struct Moto {
    child: Option<Child>,
    port: u16,
    log: tempfile::NamedTempFile,
    http: ureq::Agent,
}

impl Moto {
    /// Start a fresh moto server on 127.0.0.1 on a free port and wait until it answers.
    /// Panics (with moto's own output) if it cannot be started.
    pub fn start() -> Moto {
        let exe = moto_server_path();
        let mut last_failure = String::new();
        for _ in 0..START_ATTEMPTS {
            match Moto::try_start(&exe) {
                Ok(moto) => return moto,
                Err(failure) => last_failure = failure,
            }
        }
        panic!(
            "moto_server ({}) did not start:\n{last_failure}",
            exe.display()
        );
    }

    fn try_start(exe: &PathBuf) -> Result<Moto, String> {
        let port = free_port();
        let log = tempfile::Builder::new()
            .prefix("firetail-moto-")
            .suffix(".log")
            .tempfile()
            .expect("create moto log file");
        let out = log.reopen().expect("open moto log file");
        let err = out.try_clone().expect("clone moto log file");
        let child = Command::new(exe)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .env("PYTHONUNBUFFERED", "1")
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
        let mut moto = Moto {
            child: Some(child),
            port,
            log,
            http: agent(),
        };
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(status) = moto.child.as_mut().unwrap().try_wait().ok().flatten() {
                moto.child = None;
                return Err(format!(
                    "moto_server exited with {status} before answering on port {port}; its output:\n{}",
                    moto.log_contents()
                ));
            }
            // GET / is S3's ListBuckets: a 200 with that XML means moto is serving.
            if let Ok((200, body)) = moto.request("GET", "/", "s3", None, &[]) {
                if String::from_utf8_lossy(&body).contains("ListAllMyBucketsResult") {
                    return Ok(moto);
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "moto_server did not answer on port {port} within {START_DEADLINE:?}; its output:\n{}",
                    moto.log_contents()
                ));
                // (drop kills it)
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The environment a firetail child needs to talk to this moto (set these, and
    /// remove `ENV_REMOVE`; `apply` does both).
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint().as_str()),
            ("AWS_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            // Never wait on an instance-metadata lookup (there is no IMDS here).
            ("AWS_EC2_METADATA_DISABLED", "true"),
            // Keep a developer's ~/.aws files out of it.
            ("AWS_CONFIG_FILE", "/dev/null"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
            // Loopback must never go through a proxy.
            ("NO_PROXY", "127.0.0.1,localhost"),
            ("no_proxy", "127.0.0.1,localhost"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Set `env()` on a command and remove the variables in `ENV_REMOVE`.
    pub fn apply<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        for k in ENV_REMOVE {
            cmd.env_remove(k);
        }
        cmd.envs(self.env())
    }

    /// Create S3 bucket `bucket` (if it doesn't exist) and a DirectPut delivery stream
    /// `stream` whose ExtendedS3 destination is that bucket. Panics on any failure.
    pub fn create_stream(&self, stream: &str, bucket: &str) {
        self.create_bucket(bucket);
        let body = serde_json::json!({
            "DeliveryStreamName": stream,
            "DeliveryStreamType": "DirectPut",
            "ExtendedS3DestinationConfiguration": {
                "RoleARN": ROLE_ARN,
                "BucketARN": format!("arn:aws:s3:::{bucket}"),
                "BufferingHints": { "SizeInMBs": 1, "IntervalInSeconds": 60 },
            },
        });
        self.firehose("CreateDeliveryStream", &body);
        let described = self.firehose(
            "DescribeDeliveryStream",
            &serde_json::json!({ "DeliveryStreamName": stream }),
        );
        let status = &described["DeliveryStreamDescription"]["DeliveryStreamStatus"];
        assert_eq!(
            status, "ACTIVE",
            "moto delivery stream {stream} is not ACTIVE: {described}"
        );
    }

    /// Create an S3 bucket (no error if this moto already has it).
    pub fn create_bucket(&self, bucket: &str) {
        let (status, body) = self
            .request("PUT", &format!("/{bucket}"), "s3", None, &[])
            .unwrap_or_else(|e| panic!("moto CreateBucket {bucket}: {e}\n{}", self.log_tail()));
        let text = String::from_utf8_lossy(&body);
        if status != 200 && !text.contains("BucketAlreadyOwnedByYou") {
            panic!("moto CreateBucket {bucket}: HTTP {status}: {text}");
        }
    }

    /// One Firehose API call (awsJson1.1); returns the response JSON. Panics unless 200.
    pub fn firehose(&self, operation: &str, body: &serde_json::Value) -> serde_json::Value {
        let target = format!("Firehose_20150804.{operation}");
        let payload = body.to_string();
        let (status, resp) = self
            .request(
                "POST",
                "/",
                "firehose",
                Some(payload.as_bytes()),
                &[
                    ("Content-Type", "application/x-amz-json-1.1"),
                    ("X-Amz-Target", &target),
                ],
            )
            .unwrap_or_else(|e| panic!("moto Firehose {operation}: {e}\n{}", self.log_tail()));
        let text = String::from_utf8_lossy(&resp);
        assert_eq!(
            status, 200,
            "moto Firehose {operation}: HTTP {status}: {text}"
        );
        serde_json::from_slice(&resp)
            .unwrap_or_else(|e| panic!("moto Firehose {operation}: bad JSON ({e}): {text}"))
    }

    /// Keys of every object in `bucket`, in S3's (lexicographic) listing order — which
    /// for Firehose's keys is the second they were written, then a random uuid.
    pub fn s3_keys(&self, bucket: &str) -> Vec<String> {
        self.s3_keys_paged(bucket, 1000)
    }

    /// `s3_keys` asking for at most `page_size` keys per ListObjectsV2 call (to exercise
    /// pagination).
    pub fn s3_keys_paged(&self, bucket: &str, page_size: usize) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut path = format!("/{bucket}?list-type=2&max-keys={page_size}");
            if let Some(t) = &token {
                path.push_str("&continuation-token=");
                path.push_str(&percent_encode(t, false));
            }
            let (status, body) = self
                .request("GET", &path, "s3", None, &[])
                .unwrap_or_else(|e| panic!("moto ListObjectsV2 {bucket}: {e}"));
            let xml = String::from_utf8_lossy(&body).into_owned();
            assert_eq!(
                status, 200,
                "moto ListObjectsV2 {bucket}: HTTP {status}: {xml}"
            );
            let page: Vec<String> = xml_all(&xml, "Key").into_iter().map(xml_unescape).collect();
            let truncated = xml_all(&xml, "IsTruncated").first().copied() == Some("true");
            keys.extend(page);
            if !truncated {
                return keys;
            }
            let next = xml_all(&xml, "NextContinuationToken")
                .first()
                .map(|t| xml_unescape(t))
                .unwrap_or_else(|| panic!("truncated listing without a token: {xml}"));
            token = Some(next);
        }
    }

    /// The body of one object.
    pub fn s3_get(&self, bucket: &str, key: &str) -> Vec<u8> {
        let path = format!("/{bucket}/{}", percent_encode(key, true));
        let (status, body) = self
            .request("GET", &path, "s3", None, &[])
            .unwrap_or_else(|e| panic!("moto GetObject {bucket}/{key}: {e}"));
        assert_eq!(
            status,
            200,
            "moto GetObject {bucket}/{key}: HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        );
        body
    }

    /// Every object's body in `bucket` (one per PutRecordBatch call), in key order.
    pub fn s3_objects(&self, bucket: &str) -> Vec<Vec<u8>> {
        self.s3_keys(bucket)
            .iter()
            .map(|k| self.s3_get(bucket, k))
            .collect()
    }

    /// All objects in `bucket` split into lines (without their `\n`). A final piece with
    /// no `\n` in an object is returned as a line too. Order: key order, then within an
    /// object the order of the call — compare as a multiset, not as a sequence.
    pub fn s3_lines(&self, bucket: &str) -> Vec<String> {
        let mut lines = Vec::new();
        for object in self.s3_objects(bucket) {
            let text = String::from_utf8(object).expect("S3 object is not UTF-8");
            let mut rest = text.as_str();
            while !rest.is_empty() {
                match rest.find('\n') {
                    Some(i) => {
                        lines.push(rest[..i].to_string());
                        rest = &rest[i + 1..];
                    }
                    None => {
                        lines.push(rest.to_string());
                        rest = "";
                    }
                }
            }
        }
        lines
    }

    /// moto's stdout+stderr so far.
    pub fn log_contents(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(self.log.path()) {
            let mut buf = Vec::new();
            let _ = f.read_to_end(&mut buf);
            s = String::from_utf8_lossy(&buf).into_owned();
        }
        s
    }

    /// The last lines of moto's output, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = self.log_contents();
        let lines: Vec<&str> = log.lines().collect();
        let from = lines.len().saturating_sub(40);
        format!(
            "--- moto log ({}), last {} lines ---\n{}",
            self.log.path().display(),
            lines.len() - from,
            lines[from..].join("\n")
        )
    }

    /// The moto_server process id (None once it is gone).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// One HTTP request to moto, routed to `service` (`s3`, `firehose`) by a dummy SigV4
    /// Authorization header. Returns (status, body); non-2xx is not an error here.
    fn request(
        &self,
        method: &str,
        path_and_query: &str,
        service: &str,
        body: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> Result<(u16, Vec<u8>), String> {
        let url = format!("{}{path_and_query}", self.endpoint());
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=testing/20260101/{REGION}/{service}/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature=00"
        );
        let mut req = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("Authorization", auth)
            .header("X-Amz-Date", "20260101T000000Z");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let sent = match body {
            Some(bytes) => req.body(bytes.to_vec()).map(|r| self.http.run(r)),
            None => req.body(ureq::SendBody::none()).map(|r| self.http.run(r)),
        };
        let mut resp = sent
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("{method} {url}: {e}"))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .map_err(|e| format!("{method} {url}: reading the body: {e}"))?;
        Ok((status, bytes))
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if thread::panicking() {
            // Shown with the failing test's output.
            eprintln!("{}", self.log_tail());
        }
    }
}

/// `$FIRETAIL_MOTO_SERVER`, else `<repo>/.venv/bin/moto_server`; panics if missing.
pub fn moto_server_path() -> PathBuf {
    moto_server_path_from(std::env::var_os("FIRETAIL_MOTO_SERVER"))
}

/// `moto_server_path` with the value of `$FIRETAIL_MOTO_SERVER` given (for testing).
pub fn moto_server_path_from(var: Option<std::ffi::OsString>) -> PathBuf {
    let (path, from) = match var {
        Some(p) if !p.is_empty() => (PathBuf::from(p), "$FIRETAIL_MOTO_SERVER"),
        _ => (
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server"),
            "the default",
        ),
    };
    if !path.is_file() {
        panic!(
            "moto_server not found at {} ({from}). These tests need moto's server: run \
             `scripts/python-env.sh` in the repo root (it makes .venv with moto[server]), \
             or set FIRETAIL_MOTO_SERVER to a moto_server executable.",
            path.display()
        );
    }
    path
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .proxy(None)
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(2)))
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().unwrap().port()
}

/// The text of every `<tag>…</tag>` in `xml` (no nesting, no attributes: enough for
/// ListObjectsV2).
fn xml_all<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(&after[..j]);
        rest = &after[j + close.len()..];
    }
    out
}

fn xml_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let Some(semi) = after.find(';') else {
            out.push_str(after);
            return out;
        };
        let entity = &after[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ if entity.starts_with("#x") => u32::from_str_radix(&entity[2..], 16)
                .ok()
                .and_then(char::from_u32),
            _ if entity.starts_with('#') => entity[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &after[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Percent-encode everything but RFC 3986 unreserved characters (and `/` if `keep_slash`).
fn percent_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/');
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn xml_helpers() {
        let xml = "<R><IsTruncated>false</IsTruncated><Contents><Key>a&amp;b</Key></Contents>\
                   <Contents><Key>c&#x2F;d&#47;e</Key></Contents></R>";
        let keys: Vec<String> = xml_all(xml, "Key").into_iter().map(xml_unescape).collect();
        assert_eq!(keys, ["a&b", "c/d/e"]);
        assert_eq!(xml_all(xml, "IsTruncated"), ["false"]);
        assert_eq!(percent_encode("a b/c+d", true), "a%20b/c%2Bd");
        assert_eq!(percent_encode("a/b", false), "a%2Fb");
    }
}
