//! The command line: raw arguments (clap), validated once into typed settings, so
//! nothing downstream re-checks a flag. Every error here is a usage error (exit 2) that
//! names the flag.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::{Args, Parser, Subcommand};

use crate::sql::{Direction, Filter, Ident, LikeMatch, SqlError, TableRef, Value};
use crate::table::Format;
use crate::timerange::{parse_time, TimeRange};

/// Search the access log firetail shipped, and verify that a test's lines all arrived,
/// with Amazon Athena.
///
/// Credentials and region come from the AWS default chain (IRSA, EKS Pod Identity, env);
/// AWS_ENDPOINT_URL points it at an emulator. Exit codes: 0 ok, 1 lines lost or the
/// query failed, 2 bad usage.
#[derive(Debug, Parser)]
#[command(name = "firetail-query", version)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Common {
    /// Athena workgroup to run the queries in.
    #[arg(
        long,
        env = "FIRETAIL_QUERY_WORKGROUP",
        default_value = "access-logs",
        global = true
    )]
    pub workgroup: String,
    /// Where Athena writes results (s3://bucket/prefix/); default: the workgroup's.
    #[arg(long, env = "FIRETAIL_QUERY_OUTPUT_LOCATION", global = true)]
    pub output_location: Option<String>,
    /// Glue database of the table.
    #[arg(
        long,
        env = "FIRETAIL_QUERY_DATABASE",
        default_value = "access_logs",
        global = true
    )]
    pub database: String,
    /// Glue table of the access log.
    #[arg(
        long,
        env = "FIRETAIL_QUERY_TABLE",
        default_value = "shop_access_log",
        global = true
    )]
    pub table: String,
    /// Longest wait for a query to finish (1s-1h); then it is stopped and the run fails.
    #[arg(long, env = "FIRETAIL_QUERY_TIMEOUT", default_value = "5m", value_parser = parse_timeout, global = true)]
    pub timeout: Duration,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Find lines by time range and filters; print them as a table, JSON lines or CSV.
    Search(SearchArgs),
    /// Check that every id a test wrote arrived exactly once; exit 1 if any is lost.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct RangeArgs {
    /// Start of the time range (UTC, RFC 3339: 2026-11-26T17:00:00Z).
    #[arg(long, value_parser = parse_time)]
    pub from: Option<SystemTime>,
    /// End of the time range, exclusive (default: now).
    #[arg(long, value_parser = parse_time)]
    pub to: Option<SystemTime>,
    /// The range as the last DURATION before --to (e.g. 15m, 2h), instead of --from.
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "from")]
    pub last: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct FilterArgs {
    /// COLUMN=VALUE: equality (repeatable), e.g. status=500, request_id=..., method=GET.
    #[arg(long = "eq", value_name = "COLUMN=VALUE")]
    pub eq: Vec<String>,
    /// COLUMN=TEXT: the column starts with TEXT (e.g. path=/orders/); % and _ are literal.
    #[arg(long = "prefix", value_name = "COLUMN=TEXT")]
    pub prefix: Vec<String>,
    /// COLUMN=TEXT: the column ends with TEXT.
    #[arg(long = "suffix", value_name = "COLUMN=TEXT")]
    pub suffix: Vec<String>,
    /// COLUMN=TEXT: the column contains TEXT.
    #[arg(long = "contains", value_name = "COLUMN=TEXT")]
    pub contains: Vec<String>,
    #[command(flatten)]
    pub identity: IdentityArgs,
}

/// The pod's identity firetail adds to every line, and the source it came from: each
/// given value is an equality on its column, whose name the table decides (Terraform's
/// pod_column, namespace_column, node_column, source_column).
#[derive(Debug, Args)]
pub struct IdentityArgs {
    /// Only the lines of this pod (its name, e.g. shop-web-7d4b9c-x2x8q).
    #[arg(long, value_name = "NAME")]
    pub pod: Option<String>,
    /// Only the lines of pods in this namespace.
    #[arg(long, value_name = "NAME")]
    pub namespace: Option<String>,
    /// Only the lines of pods on this node.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Only the lines of this firetail source (needs a source column: --source-field).
    #[arg(long, value_name = "NAME")]
    pub source: Option<String>,
    /// The column holding the pod's name.
    #[arg(long, env = "FIRETAIL_QUERY_POD_COLUMN", default_value = "pod")]
    pub pod_column: String,
    /// The column holding the pod's namespace.
    #[arg(
        long,
        env = "FIRETAIL_QUERY_NAMESPACE_COLUMN",
        default_value = "namespace"
    )]
    pub namespace_column: String,
    /// The column holding the node's name.
    #[arg(long, env = "FIRETAIL_QUERY_NODE_COLUMN", default_value = "node")]
    pub node_column: String,
    /// The column holding the source's name.
    #[arg(long, env = "FIRETAIL_QUERY_SOURCE_COLUMN", default_value = "source")]
    pub source_column: String,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    #[command(flatten)]
    pub range: RangeArgs,
    #[command(flatten)]
    pub filters: FilterArgs,
    /// Columns to show, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "time,request_id,method,path,status,duration_ms"
    )]
    pub columns: Vec<String>,
    /// COLUMN[:asc|:desc] to sort by (default: time:desc).
    #[arg(long, default_value = "time:desc")]
    pub order: String,
    /// Most rows to return (1-100000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub limit: u32,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The file of ids the test wrote, one per line.
    #[arg(long)]
    pub ids: PathBuf,
    #[command(flatten)]
    pub range: RangeArgs,
    /// The column holding the ids.
    #[arg(long, default_value = "request_id")]
    pub id_column: String,
    /// Only ids starting with this text are counted (the test's run prefix): keeps the
    /// result to the test's own lines. % and _ are literal.
    #[arg(long)]
    pub id_prefix: Option<String>,
    #[command(flatten)]
    pub filters: FilterArgs,
    /// Print the report as one JSON object (with every lost and duplicated id).
    #[arg(long)]
    pub json: bool,
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if d < Duration::from_secs(1) || d > Duration::from_secs(3600) {
        return Err(format!("{text} is outside 1s-1h"));
    }
    Ok(d)
}

impl RangeArgs {
    /// `--from`/`--last` and `--to` as a range; `required` says whether `--to` may
    /// default to now (search) or must be given (verify: the test's own range).
    pub fn range(&self, to_required: bool) -> Result<TimeRange, String> {
        let to = match (self.to, to_required) {
            (Some(t), _) => t,
            (None, false) => SystemTime::now(),
            (None, true) => return Err("--to is required: the end of the test's time range".into()),
        };
        let from = match (self.from, self.last) {
            (Some(f), _) => f,
            (None, Some(d)) => to.checked_sub(d).ok_or("--last reaches before 1970")?,
            (None, None) => return Err("a time range is required: --from (or --last)".into()),
        };
        TimeRange::new(from, to)
    }
}

impl FilterArgs {
    pub fn filters(&self) -> Result<Vec<Filter>, String> {
        let mut filters = Vec::new();
        for pair in &self.eq {
            let (col, value) = column_pair("--eq", pair)?;
            filters.push(Filter::Eq(
                col.clone(),
                Value::for_column(&col, value).map_err(flag("--eq"))?,
            ));
        }
        let likes = [
            ("--prefix", LikeMatch::Prefix, &self.prefix),
            ("--suffix", LikeMatch::Suffix, &self.suffix),
            ("--contains", LikeMatch::Contains, &self.contains),
        ];
        for (name, kind, pairs) in likes {
            for pair in pairs {
                let (col, text) = column_pair(name, pair)?;
                filters.push(Filter::like(col, kind, text).map_err(flag(name))?);
            }
        }
        filters.extend(self.identity.filters()?);
        Ok(filters)
    }
}

impl IdentityArgs {
    /// One equality per value given, on its column; a column name is checked only when
    /// its value is given, so a bad default never stops a query that does not use it.
    pub fn filters(&self) -> Result<Vec<Filter>, String> {
        let given = [
            ("--pod", &self.pod, "--pod-column", &self.pod_column),
            (
                "--namespace",
                &self.namespace,
                "--namespace-column",
                &self.namespace_column,
            ),
            ("--node", &self.node, "--node-column", &self.node_column),
            (
                "--source",
                &self.source,
                "--source-column",
                &self.source_column,
            ),
        ];
        let mut filters = Vec::new();
        for (name, value, column_flag, column) in given {
            let Some(value) = value else { continue };
            let col = Ident::new("column", column).map_err(flag(column_flag))?;
            let value = Value::for_column(&col, value).map_err(flag(name))?;
            filters.push(Filter::Eq(col, value));
        }
        Ok(filters)
    }
}

fn flag(name: &'static str) -> impl Fn(SqlError) -> String {
    move |e| format!("{name}: {e}")
}

fn column_pair<'a>(name: &'static str, pair: &'a str) -> Result<(Ident, &'a str), String> {
    let (col, value) = pair
        .split_once('=')
        .ok_or_else(|| format!("{name} {pair:?}: expected COLUMN=VALUE"))?;
    Ok((Ident::new("column", col).map_err(flag(name))?, value))
}

impl Common {
    pub fn table(&self) -> Result<TableRef, String> {
        Ok(TableRef {
            database: Ident::new("database", &self.database).map_err(flag("--database"))?,
            table: Ident::new("table", &self.table).map_err(flag("--table"))?,
        })
    }

    /// The output location must be an s3:// URL if given.
    pub fn output_location(&self) -> Result<Option<String>, String> {
        match &self.output_location {
            Some(l) if !l.starts_with("s3://") => Err(format!(
                "--output-location {l:?} must be an s3://bucket/prefix/ URL"
            )),
            other => Ok(other.clone()),
        }
    }
}

impl SearchArgs {
    pub fn columns(&self) -> Result<Vec<Ident>, String> {
        self.columns
            .iter()
            .map(|c| Ident::new("column", c.trim()).map_err(flag("--columns")))
            .collect()
    }

    pub fn order(&self) -> Result<(Ident, Direction), String> {
        let (col, dir) = self.order.split_once(':').unwrap_or((&self.order, "asc"));
        let dir = match dir {
            "asc" => Direction::Asc,
            "desc" => Direction::Desc,
            other => return Err(format!("--order: {other:?} is not asc or desc")),
        };
        Ok((Ident::new("column", col).map_err(flag("--order"))?, dir))
    }
}

#[cfg(test)]
#[path = "cli_tests.rs"]
mod tests;
