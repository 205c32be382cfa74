//! A test that cannot build its real world (a mount refused, a tool or the release
//! build missing) must not pass as if it had run its check. Under `CI=true` (which
//! `.ci/run` exports) it fails; elsewhere it says so on stderr, in a line that
//! `scripts/test.sh` counts and reports as skipped, and returns.

use std::io::Write;

/// The line prefix `scripts/test.sh` collects.
pub const SKIP_PREFIX: &str = "firetail-test-skip:";

/// True under CI (`CI=true`), where nothing may be skipped.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The running test could not build its real world because of `why`: panics under CI;
/// elsewhere writes `firetail-test-skip: <test>: <why>` to stderr, and the caller
/// returns without asserting anything.
pub fn skip_or_fail(why: &str) {
    let current = std::thread::current();
    // libtest runs each test on a thread named after it.
    let test = current.name().unwrap_or("an unnamed test");
    if in_ci() {
        panic!("{test}: {why} (CI=true: a test that cannot build its real world fails)");
    }
    // Written past libtest's output capture (which only catches `eprintln!`) and in
    // one write, so that the line reaches the runner's stderr whole even while other
    // tests print.
    let line = format!("{SKIP_PREFIX} {test}: {why}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}
