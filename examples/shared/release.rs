//! What the benchmark and the fleet simulation share: the release binary they run,
//! and how they describe the machine and the commit they measured.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `given`, or `target/release/firetail` after `cargo build --release --bin firetail`
/// (found beside the running example, `target/release/examples/<name>`).
pub fn firetail_binary(given: Option<&Path>, say: impl Fn(&str)) -> PathBuf {
    if let Some(p) = given {
        return p.to_path_buf();
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    say("cargo build --release --bin firetail");
    let status = Command::new(cargo)
        .args(["build", "--release", "--bin", "firetail"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build");
    assert!(
        status.success(),
        "cargo build --release --bin firetail failed"
    );
    let exe = std::env::current_exe().expect("current_exe");
    let release = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/release/examples/<example>");
    let bin = release.join("firetail");
    assert!(bin.is_file(), "{} was not built", bin.display());
    bin
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` gives them.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A command's trimmed standard output, empty when it cannot run or fails.
pub fn command_output(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
