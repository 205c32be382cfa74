//! Stamps the binary with the git commit and the build date, for `firetail --version`
//! and the `firetail_build_info` series: an operator asking "which build is this pod
//! running?" gets an answer that points at one commit.
//!
//! The commit comes from `FIRETAIL_GIT_COMMIT` when set (the Docker build has no
//! `.git`; its Dockerfile passes the commit as a build argument), else from `git`,
//! else "unknown". The date is `SOURCE_DATE_EPOCH` when set (reproducible builds),
//! else today, in UTC.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    println!("cargo:rerun-if-env-changed=FIRETAIL_GIT_COMMIT");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let commit = std::env::var("FIRETAIL_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .map(|c| c.trim().to_string())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_string());
    watch_git_head();
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
    println!("cargo:rustc-env=FIRETAIL_COMMIT={commit}");
    println!("cargo:rustc-env=FIRETAIL_BUILD_DATE={}", date(epoch));
}

/// HEAD's short commit. Uncommitted edits are not marked: the stamp is only rebuilt
/// when HEAD moves, so a "-dirty" mark would go stale.
fn git_commit() -> Option<String> {
    git(&["rev-parse", "--short=12", "HEAD"])
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Rebuild the stamp when HEAD moves (a commit or a checkout); worktrees keep HEAD in
/// their own git dir and branch refs in the common one. Only files that exist are
/// watched: cargo takes a missing one as changed, and a clone without `packed-refs`
/// rebuilt the crate on every `cargo build`.
fn watch_git_head() {
    let watch = |path: String| {
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    };
    for (flag, file) in [("--git-dir", "HEAD"), ("--git-common-dir", "packed-refs")] {
        if let Some(dir) = git(&["rev-parse", flag]) {
            watch(format!("{dir}/{file}"));
        }
    }
    if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(dir) = git(&["rev-parse", "--git-common-dir"]) {
            watch(format!("{dir}/{reference}"));
        }
    }
}

/// `yyyy-mm-dd` for seconds since the epoch (the civil-from-days algorithm of Howard
/// Hinnant's date library, proleptic Gregorian calendar).
fn date(epoch: u64) -> String {
    let days = (epoch / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
