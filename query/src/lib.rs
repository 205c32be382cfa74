//! firetail-query: the Athena end of firetail's pipeline, as a separate binary so the
//! sidecar does not grow.
//!
//! # Layout
//!
//! - `cli`: flags and env, validated into typed settings (usage errors exit 2).
//! - `sql`: the query builder, pure: strict identifiers, values only as execution
//!   parameters, LIKE escaping, `datepath` always restricted.
//! - `timerange`: `--from`/`--to`/`--last`, and the UTC days a range scans.
//! - `athena`: start, bounded polling, every result page, the cost line.
//! - `s3`: the result file in one signed GET (verify's ids, without 1,000-row pages).
//! - `csv`, `table`: reading Athena's CSV; printing rows as a table, JSON lines or CSV.
//! - `verify`: written against found ids: lost, duplicated.
//!
//! ```text
//!  search: flags ─▶ sql::search ─▶ StartQueryExecution ─▶ poll ─▶ GetQueryResults pages ─▶ table/jsonl/csv
//!  verify: flags ─▶ sql::verify ─▶ StartQueryExecution ─▶ poll ─▶ GET result CSV (or pages) ─▶ report
//! ```

pub mod athena;
pub mod cli;
pub mod csv;
pub mod s3;
pub mod sql;
pub mod table;
pub mod timerange;
pub mod verify;

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};

use athena::{Athena, Finished, Settings};
use cli::{Cli, Command, Common, SearchArgs, VerifyArgs};
use table::Rows;

/// How a run ends; `code` maps it to the exit code, in this one place.
#[derive(Debug)]
pub enum Outcome {
    /// Search printed its rows, or verify found every id.
    Ok,
    /// Verify found ids missing.
    Lost,
    /// The query or a call failed (exit 1).
    Failed(String),
    /// Bad flags or configuration (exit 2).
    Usage(String),
}

impl Outcome {
    pub fn code(&self) -> ExitCode {
        match self {
            Outcome::Ok => ExitCode::SUCCESS,
            Outcome::Lost | Outcome::Failed(_) => ExitCode::from(1),
            Outcome::Usage(_) => ExitCode::from(2),
        }
    }
}

/// The timeouts of one Athena call (the SDK has no read timeout by default).
const CALL_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A step that either goes on or ends the run with an outcome.
type Step<T> = Result<T, Outcome>;

fn usage(e: impl ToString) -> Outcome {
    Outcome::Usage(e.to_string())
}

fn failed(e: impl ToString) -> Outcome {
    Outcome::Failed(e.to_string())
}

/// Run one subcommand to its outcome.
pub async fn run(cli: Cli) -> Outcome {
    let outcome = async {
        let location = cli.common.output_location().map_err(usage)?;
        let config = load_config().await.map_err(usage)?;
        let settings = Settings {
            workgroup: cli.common.workgroup.clone(),
            database: cli.common.database.clone(),
            output_location: location,
            timeout: cli.common.timeout,
        };
        let athena = Athena::new(aws_sdk_athena::Client::new(&config), settings);
        match &cli.command {
            Command::Search(args) => search(&cli.common, args, &athena).await,
            Command::Verify(args) => verify(&cli.common, args, &athena, &config).await,
        }
    };
    outcome.await.unwrap_or_else(|ended| ended)
}

async fn load_config() -> Result<SdkConfig, String> {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .operation_attempt_timeout(CALL_ATTEMPT_TIMEOUT)
        .operation_timeout(CALL_TIMEOUT)
        .build();
    let config = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts)
        .load()
        .await;
    if config.region().is_none() {
        return Err("no AWS region: set AWS_REGION (or a profile's region)".into());
    }
    Ok(config)
}

async fn search(common: &Common, args: &SearchArgs, athena: &Athena) -> Step<Outcome> {
    let spec = search_spec(common, args).map_err(usage)?;
    let query = sql::search(&spec).map_err(usage)?;
    let finished = athena.run(&query).await.map_err(failed)?;
    report_cost(&finished);
    let rows = athena.rows(&finished.id).await.map_err(failed)?;
    let mut out = std::io::stdout().lock();
    table::write(&rows, args.format, &mut out)
        .and_then(|()| out.flush())
        .map_err(|e| failed(format!("cannot write the rows: {e}")))?;
    Ok(Outcome::Ok)
}

fn search_spec(common: &Common, args: &SearchArgs) -> Result<sql::SearchSpec, String> {
    let range = args.range.range(false)?;
    Ok(sql::SearchSpec {
        table: common.table()?,
        columns: args.columns()?,
        days: range.search_days(),
        time: range.bounds(),
        filters: args.filters.filters()?,
        order: Some(args.order()?),
        limit: args.limit,
    })
}

async fn verify(
    common: &Common,
    args: &VerifyArgs,
    athena: &Athena,
    config: &SdkConfig,
) -> Step<Outcome> {
    let ids = args.ids.display();
    let text = tokio::fs::read_to_string(&args.ids)
        .await
        .map_err(|e| usage(format!("--ids {ids}: {e}")))?;
    let (written, repeated) = verify::read_ids(&text);
    if written.is_empty() {
        // Nothing written would verify as "nothing lost": a broken test must not pass.
        return Err(usage(format!("--ids {ids}: the file holds no ids")));
    }
    let spec = verify_spec(common, args).map_err(usage)?;
    let query = sql::verify(&spec).map_err(usage)?;
    let finished = athena.run(&query).await.map_err(failed)?;
    report_cost(&finished);
    let rows = result_rows(&finished, athena, config)
        .await
        .map_err(failed)?;
    let found =
        verify::copies_by_id(&rows).map_err(|e| failed(format!("query {}: {e}", finished.id)))?;
    let report = verify::compare(&written, repeated, &found);
    if args.json {
        println!("{}", verify::render_json(&report));
    } else {
        print!("{}", verify::render_text(&report));
    }
    Ok(if report.nothing_lost() {
        Outcome::Ok
    } else {
        Outcome::Lost
    })
}

fn verify_spec(common: &Common, args: &VerifyArgs) -> Result<sql::VerifySpec, String> {
    let range = args.range.range(true)?;
    let id_column =
        sql::Ident::new("column", &args.id_column).map_err(|e| format!("--id-column: {e}"))?;
    let mut filters = args.filters.filters()?;
    if let Some(prefix) = &args.id_prefix {
        let like = sql::Filter::like(id_column.clone(), sql::LikeMatch::Prefix, prefix);
        filters.push(like.map_err(|e| format!("--id-prefix: {e}"))?);
    }
    Ok(sql::VerifySpec {
        table: common.table()?,
        id_column,
        days: range.verify_days(),
        filters,
    })
}

/// The verify query's rows: from its result file in one GET; if that cannot be read
/// (no s3:GetObject on the results prefix, say), from GetQueryResults pages, with a
/// warning, since that is slower but gives the same rows.
async fn result_rows(
    finished: &Finished,
    athena: &Athena,
    config: &SdkConfig,
) -> Result<Rows, String> {
    let from_file = match &finished.output_location {
        Some(url) => s3::get_object(config, url)
            .await
            .and_then(|body| rows_from_csv(&body)),
        None => Err("Athena gave no result file location".into()),
    };
    match from_file {
        Ok(rows) => Ok(rows),
        Err(e) => {
            eprintln!("firetail-query: reading the result file failed ({e}); paging through GetQueryResults instead.");
            athena.rows(&finished.id).await.map_err(|e| e.to_string())
        }
    }
}

/// A result file: the header row, then one record per row.
fn rows_from_csv(body: &[u8]) -> Result<Rows, String> {
    let text =
        std::str::from_utf8(body).map_err(|e| format!("the result file is not UTF-8: {e}"))?;
    let mut records = csv::parse(text)?.into_iter();
    let header = records
        .next()
        .ok_or("the result file is empty (not even a header)")?;
    Ok(Rows {
        columns: header.into_iter().map(Option::unwrap_or_default).collect(),
        types: Vec::new(),
        data: records.collect(),
    })
}

fn report_cost(finished: &Finished) {
    eprintln!(
        "firetail-query: query {} succeeded: {}.",
        finished.id,
        athena::cost_line(finished.bytes_scanned)
    );
}
