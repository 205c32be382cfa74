//! A small fake Amazon Athena (and the one S3 call firetail-query makes) for the cases
//! moto cannot play: moto never pages results, never reaches FAILED or CANCELLED, and
//! finishes every query at once.
//!
//! It speaks the awsJson1.1 `AmazonAthena.*` protocol for StartQueryExecution,
//! GetQueryExecution, GetQueryResults and StopQueryExecution, with the shapes of the
//! Athena API reference (and aws-sdk-athena 1.128's deserializers): GetQueryResults
//! returns at most 1,000 rows a call (a bigger MaxResults is an InvalidRequestException,
//! as on AWS), the header row first on the first page, and a NextToken while rows remain;
//! asking for results before SUCCEEDED is an InvalidRequestException. Path-style
//! `GET /bucket/key` serves the result file as CSV, only to a SigV4-signed request.
//!
//! Each started query follows the next [`Plan`] queued (or a default that succeeds with
//! no rows); everything asked is recorded for the test to check.

use std::collections::{HashMap, VecDeque};
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

/// Rows per GetQueryResults call at most (Athena API reference, MaxResults).
pub const MAX_PAGE_ROWS: usize = 1000;

/// How a query ends.
#[derive(Clone, Debug)]
pub enum End {
    Succeed,
    Fail(String),
    Cancel(String),
    /// RUNNING forever (until StopQueryExecution).
    Never,
}

/// What one started query does and returns.
#[derive(Clone, Debug)]
pub struct Plan {
    pub end: End,
    /// GetQueryExecution answers QUEUED, then RUNNING, this many times before the end.
    pub polls_before_end: usize,
    /// (name, Athena type) of each result column.
    pub columns: Vec<(String, String)>,
    pub rows: Vec<Vec<Option<String>>>,
    pub bytes_scanned: i64,
    /// Whether the result file can be read from S3 (else 404 NoSuchKey).
    pub result_file: bool,
}

impl Plan {
    pub fn rows(columns: &[(&str, &str)], rows: Vec<Vec<Option<String>>>) -> Plan {
        Plan {
            end: End::Succeed,
            polls_before_end: 2,
            columns: columns
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect(),
            rows,
            bytes_scanned: 123_456_789,
            result_file: true,
        }
    }

    pub fn ending(end: End) -> Plan {
        Plan {
            end,
            ..Plan::rows(&[], Vec::new())
        }
    }
}

/// A StartQueryExecution as received.
#[derive(Clone, Debug)]
pub struct Started {
    pub id: String,
    pub sql: String,
    pub params: Vec<String>,
    pub workgroup: Option<String>,
    pub database: Option<String>,
    pub output_location: String,
}

#[derive(Default)]
struct State {
    plans: VecDeque<Plan>,
    started: Vec<Started>,
    executions: HashMap<String, (Plan, usize, bool)>,
    result_pages: usize,
    polls: usize,
    stopped: Vec<String>,
    s3_gets: Vec<String>,
}

pub struct FakeAthena {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeAthena {
    /// Listen on a free loopback port, serving on its own thread and runtime.
    pub fn start(plans: Vec<Plan>) -> FakeAthena {
        let listener = StdTcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            plans: plans.into(),
            ..State::default()
        }));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let served = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(serve(listener, served, stopped));
            // Dropping the runtime cancels every connection task.
        });
        FakeAthena {
            addr,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn started(&self) -> Vec<Started> {
        self.state.lock().unwrap().started.clone()
    }

    /// GetQueryResults calls answered with rows.
    pub fn result_pages(&self) -> usize {
        self.state.lock().unwrap().result_pages
    }

    /// GetQueryExecution calls answered.
    pub fn polls(&self) -> usize {
        self.state.lock().unwrap().polls
    }

    pub fn stopped(&self) -> Vec<String> {
        self.state.lock().unwrap().stopped.clone()
    }

    /// Paths of the S3 GETs received.
    pub fn s3_gets(&self) -> Vec<String> {
        self.state.lock().unwrap().s3_gets.clone()
    }
}

impl Drop for FakeAthena {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: StdTcpListener,
    state: Arc<Mutex<State>>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
            _ = &mut stopped => return,
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(req, state.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let signed = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256 Credential="))
        && req.headers().contains_key("x-amz-content-sha256");
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let body = req.into_body().collect().await?.to_bytes();
    let mut state = state.lock().unwrap();
    Ok(match (method.as_str(), target) {
        ("POST", Some(target)) => {
            let input: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            match athena(&mut state, &target, &input) {
                Ok(answer) => respond(StatusCode::OK, answer.to_string(), None),
                Err((code, message)) => {
                    let body = json!({ "__type": code, "Message": message }).to_string();
                    respond(StatusCode::BAD_REQUEST, body, Some(code))
                }
            }
        }
        ("GET", None) => s3_get(&mut state, &path, signed),
        _ => respond(StatusCode::NOT_FOUND, String::new(), None),
    })
}

fn respond(status: StatusCode, body: String, error: Option<&str>) -> Response<Full<Bytes>> {
    let mut resp = Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.1");
    if let Some(code) = error {
        resp = resp.header("x-amzn-ErrorType", code);
    }
    resp.body(Full::new(Bytes::from(body))).unwrap()
}

type Answer = Result<Value, (&'static str, String)>;

fn athena(state: &mut State, target: &str, input: &Value) -> Answer {
    let id = input["QueryExecutionId"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    match target {
        "AmazonAthena.StartQueryExecution" => Ok(start(state, input)),
        "AmazonAthena.GetQueryExecution" => get_execution(state, &id),
        "AmazonAthena.GetQueryResults" => get_results(state, &id, input),
        "AmazonAthena.StopQueryExecution" => {
            state.stopped.push(id.clone());
            if let Some(exec) = state.executions.get_mut(&id) {
                exec.2 = true;
            }
            Ok(json!({}))
        }
        other => Err((
            "UnknownOperationException",
            format!("the fake does not know {other}"),
        )),
    }
}

fn start(state: &mut State, input: &Value) -> Value {
    let id = format!("00000000-0000-4000-8000-{:012}", state.started.len() + 1);
    let location = input["ResultConfiguration"]["OutputLocation"]
        .as_str()
        .unwrap_or("s3://fake-workgroup-results/")
        .to_string();
    let output_location = format!("{}/{id}.csv", location.trim_end_matches('/'));
    let plan = state
        .plans
        .pop_front()
        .unwrap_or_else(|| Plan::rows(&[], Vec::new()));
    let strings = |v: &Value| v.as_str().map(str::to_string);
    state.started.push(Started {
        id: id.clone(),
        sql: input["QueryString"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        params: input["ExecutionParameters"]
            .as_array()
            .map(|a| a.iter().filter_map(strings).collect())
            .unwrap_or_default(),
        workgroup: strings(&input["WorkGroup"]),
        database: strings(&input["QueryExecutionContext"]["Database"]),
        output_location,
    });
    state.executions.insert(id.clone(), (plan, 0, false));
    json!({ "QueryExecutionId": id })
}

/// The state after this poll: QUEUED first, RUNNING until the plan's polls are used up.
fn state_of(plan: &Plan, polls: usize, stopped: bool) -> (&'static str, Option<String>) {
    if stopped {
        return ("CANCELLED", Some("Query cancelled by user".into()));
    }
    if polls <= 1 && plan.polls_before_end > 0 {
        return ("QUEUED", None);
    }
    if polls <= plan.polls_before_end {
        return ("RUNNING", None);
    }
    match &plan.end {
        End::Succeed => ("SUCCEEDED", None),
        End::Fail(reason) => ("FAILED", Some(reason.clone())),
        End::Cancel(reason) => ("CANCELLED", Some(reason.clone())),
        End::Never => ("RUNNING", None),
    }
}

fn get_execution(state: &mut State, id: &str) -> Answer {
    let started = state.started.iter().find(|s| s.id == id).cloned();
    let (Some(started), Some(exec)) = (started, state.executions.get_mut(id)) else {
        return Err((
            "InvalidRequestException",
            format!("QueryExecution {id} was not found"),
        ));
    };
    exec.1 += 1;
    state.polls += 1;
    let (plan, polls, stopped) = (&exec.0, exec.1, exec.2);
    let (name, reason) = state_of(plan, polls, stopped);
    let mut status = json!({ "State": name, "SubmissionDateTime": 1_764_000_000.0 });
    if let Some(reason) = reason {
        status["StateChangeReason"] = json!(reason);
        if name == "FAILED" {
            status["AthenaError"] = json!({ "ErrorCategory": 2, "ErrorType": 1001, "Retryable": false, "ErrorMessage": reason });
        }
    }
    Ok(json!({ "QueryExecution": {
        "QueryExecutionId": id,
        "Query": started.sql,
        "StatementType": "DML",
        "ResultConfiguration": { "OutputLocation": started.output_location },
        "Status": status,
        "Statistics": { "DataScannedInBytes": plan.bytes_scanned, "EngineExecutionTimeInMillis": 42 },
        "WorkGroup": started.workgroup,
    }}))
}

fn get_results(state: &mut State, id: &str, input: &Value) -> Answer {
    let max = input["MaxResults"].as_u64().unwrap_or(MAX_PAGE_ROWS as u64) as usize;
    if max == 0 || max > MAX_PAGE_ROWS {
        return Err((
            "InvalidRequestException",
            format!("MaxResults {max} is outside 1-1000"),
        ));
    }
    let Some((plan, polls, stopped)) = state.executions.get(id) else {
        return Err((
            "InvalidRequestException",
            format!("QueryExecution {id} was not found"),
        ));
    };
    let (name, _) = state_of(plan, *polls, *stopped);
    if name != "SUCCEEDED" {
        return Err((
            "InvalidRequestException",
            format!("Query has not yet finished. Current state: {name}"),
        ));
    }
    // Row 0 is the header; the token is the index of the next row to send.
    let from: usize = input["NextToken"]
        .as_str()
        .map_or(0, |t| t.parse().unwrap());
    let total = plan.rows.len() + 1;
    let to = (from + max).min(total);
    let header: Vec<Option<String>> = plan.columns.iter().map(|(n, _)| Some(n.clone())).collect();
    let rows: Vec<Value> = (from..to)
        .map(|i| if i == 0 { &header } else { &plan.rows[i - 1] })
        .map(|cells| {
            json!({ "Data": cells.iter().map(|c| match c {
            Some(v) => json!({ "VarCharValue": v }),
            None => json!({}),
        }).collect::<Vec<_>>() })
        })
        .collect();
    let info: Vec<Value> = plan
        .columns
        .iter()
        .map(|(n, t)| json!({ "Name": n, "Label": n, "Type": t, "Nullable": "UNKNOWN", "CaseSensitive": true }))
        .collect();
    let mut answer = json!({ "ResultSet": { "Rows": rows, "ResultSetMetadata": { "ColumnInfo": info } }, "UpdateCount": 0 });
    if to < total {
        answer["NextToken"] = json!(to.to_string());
    }
    state.result_pages += 1;
    Ok(answer)
}

/// The result file of the query whose output location is `s3://<path>`, as Athena
/// writes it: every value quoted, NULL empty.
fn s3_get(state: &mut State, path: &str, signed: bool) -> Response<Full<Bytes>> {
    state.s3_gets.push(path.to_string());
    if !signed {
        return respond(
            StatusCode::FORBIDDEN,
            "<Error><Code>AccessDenied</Code></Error>".into(),
            None,
        );
    }
    let url = format!("s3:/{path}");
    let found = state
        .started
        .iter()
        .find(|s| s.output_location == url)
        .and_then(|s| {
            let (plan, _, _) = &state.executions[&s.id];
            plan.result_file.then(|| athena_csv(plan))
        });
    match found {
        Some(csv) => respond(StatusCode::OK, csv, None),
        None => respond(
            StatusCode::NOT_FOUND,
            "<Error><Code>NoSuchKey</Code></Error>".into(),
            None,
        ),
    }
}

fn athena_csv(plan: &Plan) -> String {
    let quote = |v: &str| format!("\"{}\"", v.replace('"', "\"\""));
    let mut out = String::new();
    let header: Vec<String> = plan.columns.iter().map(|(n, _)| quote(n)).collect();
    out.push_str(&header.join(","));
    out.push('\n');
    for row in &plan.rows {
        let cells: Vec<String> = row
            .iter()
            .map(|c| c.as_deref().map(quote).unwrap_or_default())
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}
