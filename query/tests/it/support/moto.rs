//! moto's server as a real Athena + S3 peer on loopback.
//!
//! moto does not run SQL: a query succeeds at once with the result queued beforehand
//! through moto's own endpoint `POST /moto-api/static/athena/query-results` (each started
//! query takes the next queued result). When the query has an OutputLocation whose bucket
//! exists, moto also writes that result as CSV to S3 there, as Athena does (moto 5.x,
//! `moto/athena/models.py`, `_store_query_result_in_s3`).
//!
//! The `moto_server` executable: `$FIRETAIL_MOTO_SERVER`, else the repository's
//! `.venv/bin/moto_server` (made by `scripts/python-env.sh`). Missing, the test panics:
//! it never skips.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const REGION: &str = "us-east-1";

pub struct Moto {
    child: Child,
    port: u16,
    log: tempfile::NamedTempFile,
    http: ureq::Agent,
}

impl Moto {
    /// Start moto on a free loopback port and wait (up to 30 s) until it answers.
    pub fn start() -> Moto {
        let exe = moto_server_path();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(&exe)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
        let http: ureq::Agent = ureq::Agent::config_builder()
            .proxy(None)
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let mut moto = Moto {
            child,
            port,
            log,
            http,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while moto.request("GET", "/", "s3", None).map(|(s, _)| s) != Ok(200) {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto_server exited with {status}: {}", moto.log());
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer: {}",
                moto.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn create_bucket(&self, bucket: &str) {
        let (status, body) = self
            .request("PUT", &format!("/{bucket}"), "s3", None)
            .unwrap();
        assert_eq!(status, 200, "CreateBucket {bucket}: {body}");
    }

    /// Queue the result of the next query: the header row, then `rows`; every cell a
    /// VarCharValue, None a NULL.
    pub fn queue_result(&self, columns: &[(&str, &str)], rows: &[Vec<Option<&str>>]) {
        let cell = |v: &Option<&str>| v.map_or(json!({}), |v| json!({ "VarCharValue": v }));
        let header = json!({ "Data": columns.iter().map(|(n, _)| json!({ "VarCharValue": n })).collect::<Vec<_>>() });
        let mut all = vec![header];
        all.extend(
            rows.iter()
                .map(|r| json!({ "Data": r.iter().map(cell).collect::<Vec<_>>() })),
        );
        let info: Vec<Value> = columns
            .iter()
            .map(|(n, t)| json!({ "Name": n, "Label": n, "Type": t, "Nullable": "UNKNOWN", "CaseSensitive": true }))
            .collect();
        let body = json!({ "region": REGION, "results": [{ "rows": all, "column_info": info }] });
        let url = format!("{}/moto-api/static/athena/query-results", self.endpoint());
        let resp = self
            .http
            .post(&url)
            .content_type("application/json")
            .send(body.to_string())
            .unwrap();
        assert_eq!(resp.status().as_u16(), 201, "moto did not take the result");
    }

    /// One Athena call (awsJson1.1); panics unless 200.
    pub fn athena(&self, operation: &str, input: Value) -> Value {
        let target = format!("AmazonAthena.{operation}");
        let (status, body) = self
            .request("POST", "/", "athena", Some((&target, input.to_string())))
            .unwrap();
        assert_eq!(status, 200, "Athena {operation}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Every query execution moto saw: (SQL, execution parameters).
    pub fn executions(&self) -> Vec<(String, Vec<String>)> {
        let ids = self.athena("ListQueryExecutions", json!({}));
        let ids = ids["QueryExecutionIds"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        ids.iter()
            .map(|id| {
                let e = self.athena("GetQueryExecution", json!({ "QueryExecutionId": id }));
                let e = &e["QueryExecution"];
                let params = e["ExecutionParameters"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let params = params
                    .iter()
                    .map(|p| p.as_str().unwrap().to_string())
                    .collect();
                (e["Query"].as_str().unwrap().to_string(), params)
            })
            .collect()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// moto routes by the credential scope of the Authorization header; it checks no
    /// signature, so a dummy one does.
    fn request(
        &self,
        method: &str,
        path: &str,
        service: &str,
        json_call: Option<(&str, String)>,
    ) -> Result<(u16, String), String> {
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=testing/20260101/{REGION}/{service}/aws4_request, SignedHeaders=host, Signature=00"
        );
        let req = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.endpoint()))
            .header("Authorization", auth);
        let sent = match json_call {
            Some((target, body)) => req
                .header("X-Amz-Target", target)
                .header("Content-Type", "application/x-amz-json-1.1")
                .body(body)
                .map(|r| self.http.run(r)),
            None => req.body(String::new()).map(|r| self.http.run(r)),
        };
        let mut resp = sent
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        Ok((status, body))
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- moto log ---\n{}", self.log());
        }
    }
}

fn moto_server_path() -> PathBuf {
    let path = match std::env::var_os("FIRETAIL_MOTO_SERVER") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/moto_server"),
    };
    assert!(
        path.is_file(),
        "moto_server not found at {}: run scripts/python-env.sh in the repository root, or set FIRETAIL_MOTO_SERVER",
        path.display()
    );
    path
}
