//! `firetail-query search|verify`: parse, run, exit with the outcome's code.

use std::process::ExitCode;

use clap::Parser;
use firetail_query::{cli::Cli, run, Outcome};

fn main() -> ExitCode {
    // clap prints usage errors and exits 2 itself.
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("firetail-query: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(run(cli));
    match &outcome {
        Outcome::Ok => {}
        Outcome::Lost => eprintln!("firetail-query: lines were lost (see the report)."),
        Outcome::Failed(e) => eprintln!("firetail-query: {e}"),
        Outcome::Usage(e) => eprintln!("firetail-query: {e}"),
    }
    outcome.code()
}
