//! Test support: the built `firetail-query` as a child process, moto's server, and a
//! fake Athena.

pub mod engine;
pub mod fake_athena;
pub mod moto;

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// AWS variables of the test runner that must not reach the child.
const ENV_REMOVE: &[&str] = &[
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_ATHENA",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "FIRETAIL_QUERY_WORKGROUP",
    "FIRETAIL_QUERY_OUTPUT_LOCATION",
    "FIRETAIL_QUERY_DATABASE",
    "FIRETAIL_QUERY_TABLE",
    "FIRETAIL_QUERY_TIMEOUT",
];

/// How a run of firetail-query ended.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

/// Run `firetail-query ARGS` against `endpoint` (all AWS services), with test
/// credentials and region; kill it if it is not done within `deadline`.
pub fn run(endpoint: &str, args: &[&str], deadline: Duration) -> Run {
    run_with_env(endpoint, args, &[], deadline)
}

/// `run` with extra environment variables (set after the test defaults).
pub fn run_with_env(
    endpoint: &str,
    args: &[&str],
    env: &[(&str, &str)],
    deadline: Duration,
) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_firetail-query"));
    for k in ENV_REMOVE {
        cmd.env_remove(k);
    }
    cmd.args(args)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("NO_PROXY", "127.0.0.1")
        .env("no_proxy", "127.0.0.1")
        .envs(env.iter().copied());
    run_command(cmd, deadline)
}

/// Run a prepared command, capturing its output, under a deadline.
pub fn run_command(mut cmd: Command, deadline: Duration) -> Run {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run firetail-query");
    // Read both pipes on threads so a full pipe never blocks the child.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "firetail-query did not finish within {deadline:?}; stderr: {}",
                err.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code(),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
        took: started.elapsed(),
    }
}

/// Write `ids` one per line into `dir/ids.txt` and return its path as a string.
pub fn ids_file(dir: &Path, ids: &[String]) -> String {
    let path = dir.join("ids.txt");
    std::fs::write(
        &path,
        ids.iter().map(|i| format!("{i}\n")).collect::<String>(),
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}
