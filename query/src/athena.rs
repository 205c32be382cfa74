//! Running one query in Athena: start it, wait for it, page through its results.
//!
//! Input: a [`Query`] (SQL text and execution parameters). Output: a [`Finished`] query
//! (its id, result file and bytes scanned) and its rows, or an [`AthenaError`] that says
//! what Athena said. Guarantees: the wait is bounded (backoff capped at
//! [`MAX_POLL_DELAY`], an overall timeout after which the query is stopped so it costs
//! nothing more), and every result page is read, never only the first.

use std::time::Duration;

use aws_sdk_athena::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_athena::types::{QueryExecutionContext, QueryExecutionState, ResultConfiguration};
use aws_sdk_athena::Client;
use tokio::time::Instant;

use crate::sql::Query;
use crate::table::Rows;

/// The first wait between two `GetQueryExecution` calls; each wait doubles.
pub const FIRST_POLL_DELAY: Duration = Duration::from_millis(100);
/// The longest wait between two polls. With the 1 h ceiling of `--timeout`, a query is
/// polled at most ~1,800 times; Athena's GetQueryExecution quota is far above that.
pub const MAX_POLL_DELAY: Duration = Duration::from_secs(2);
/// GetQueryResults returns at most 1,000 rows a call (Athena API reference, MaxResults).
pub const PAGE_ROWS: i32 = 1000;

/// Where and how queries run.
#[derive(Clone, Debug)]
pub struct Settings {
    pub workgroup: String,
    pub database: String,
    /// `s3://bucket/prefix/`; None leaves it to the workgroup's configuration.
    pub output_location: Option<String>,
    pub timeout: Duration,
}

/// A query that reached SUCCEEDED.
#[derive(Clone, Debug)]
pub struct Finished {
    pub id: String,
    /// The CSV file Athena wrote the result to.
    pub output_location: Option<String>,
    pub bytes_scanned: i64,
}

/// Why a query did not produce results. Every variant exits 1.
#[derive(Debug, thiserror::Error)]
pub enum AthenaError {
    #[error("Athena query {id} FAILED: {reason}")]
    Failed { id: String, reason: String },
    #[error("Athena query {id} was CANCELLED: {reason}")]
    Cancelled { id: String, reason: String },
    #[error(
        "Athena query {id} did not finish within {timeout:?} (last state {state}); it was stopped"
    )]
    Timeout {
        id: String,
        timeout: Duration,
        state: String,
    },
    #[error("Athena {operation} failed: {message}")]
    Call {
        operation: &'static str,
        message: String,
    },
}

/// The error code and message Athena sent, or the chain of causes of a call that got no
/// answer (connection refused, timeout, no credentials), without the SDK's debug dump.
fn call_error<E, R>(operation: &'static str, e: SdkError<E, R>) -> AthenaError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let message = match e.as_service_error() {
        Some(service) => format!(
            "{}: {}",
            service.code().unwrap_or("error"),
            service.message().unwrap_or("no message")
        ),
        None => error_chain(&e),
    };
    AthenaError::Call { operation, message }
}

/// `error: cause: cause…`
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// The Athena client with the settings every query shares.
pub struct Athena {
    client: Client,
    settings: Settings,
}

impl Athena {
    pub fn new(client: Client, settings: Settings) -> Athena {
        Athena { client, settings }
    }

    /// Start `query` and wait until it succeeded.
    pub async fn run(&self, query: &Query) -> Result<Finished, AthenaError> {
        let id = self.start(query).await?;
        self.wait(&id).await
    }

    async fn start(&self, query: &Query) -> Result<String, AthenaError> {
        let context = QueryExecutionContext::builder()
            .database(&self.settings.database)
            .build();
        let mut req = self
            .client
            .start_query_execution()
            .query_string(&query.sql)
            .query_execution_context(context)
            .work_group(&self.settings.workgroup);
        if !query.params.is_empty() {
            req = req.set_execution_parameters(Some(query.params.clone()));
        }
        if let Some(location) = &self.settings.output_location {
            let config = ResultConfiguration::builder()
                .output_location(location)
                .build();
            req = req.result_configuration(config);
        }
        // The SDK fills ClientRequestToken, so a retried start never runs the query twice.
        let out = req
            .send()
            .await
            .map_err(|e| call_error("StartQueryExecution", e))?;
        out.query_execution_id.ok_or_else(|| AthenaError::Call {
            operation: "StartQueryExecution",
            message: "the answer has no QueryExecutionId".into(),
        })
    }

    /// Poll with doubling waits until a final state or the deadline.
    async fn wait(&self, id: &str) -> Result<Finished, AthenaError> {
        let deadline = Instant::now() + self.settings.timeout;
        let mut delay = FIRST_POLL_DELAY;
        loop {
            let out = self
                .client
                .get_query_execution()
                .query_execution_id(id)
                .send()
                .await
                .map_err(|e| call_error("GetQueryExecution", e))?;
            let Some(execution) = out.query_execution else {
                return Err(AthenaError::Call {
                    operation: "GetQueryExecution",
                    message: format!("the answer for {id} has no QueryExecution"),
                });
            };
            let status = execution.status.as_ref();
            let state = status.and_then(|s| s.state.clone());
            let reason = || status.map_or("Athena gave no reason".into(), reason_of);
            let id = id.to_string();
            match state {
                Some(QueryExecutionState::Succeeded) => return Ok(finished(id, execution)),
                Some(QueryExecutionState::Failed) => {
                    return Err(AthenaError::Failed {
                        id,
                        reason: reason(),
                    })
                }
                Some(QueryExecutionState::Cancelled) => {
                    return Err(AthenaError::Cancelled {
                        id,
                        reason: reason(),
                    })
                }
                _ => {}
            }
            let now = Instant::now();
            if now >= deadline {
                self.stop(&id).await;
                let state = state.map_or("none".into(), |s| s.as_str().to_string());
                let timeout = self.settings.timeout;
                return Err(AthenaError::Timeout { id, timeout, state });
            }
            tokio::time::sleep(delay.min(deadline - now)).await;
            delay = (delay * 2).min(MAX_POLL_DELAY);
        }
    }

    /// Stop a query we gave up on, so it scans (and costs) nothing more. Best effort: the
    /// timeout is reported whatever happens here.
    async fn stop(&self, id: &str) {
        let stopped = self
            .client
            .stop_query_execution()
            .query_execution_id(id)
            .send()
            .await;
        if let Err(e) = stopped {
            eprintln!(
                "firetail-query: could not stop query {id}: {}",
                call_error("StopQueryExecution", e)
            );
        }
    }

    /// Every row of a finished query, page after page. The first row of the first page is
    /// the header (Athena puts the column names there for SELECT statements); its names
    /// become the columns, and ColumnInfo gives their types.
    pub async fn rows(&self, id: &str) -> Result<Rows, AthenaError> {
        let mut rows = Rows::default();
        let mut token: Option<String> = None;
        let mut first = true;
        loop {
            let out = self
                .client
                .get_query_results()
                .query_execution_id(id)
                .max_results(PAGE_ROWS)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| call_error("GetQueryResults", e))?;
            let Some(set) = out.result_set else {
                return Err(AthenaError::Call {
                    operation: "GetQueryResults",
                    message: format!("the answer for {id} has no ResultSet"),
                });
            };
            let mut page = set.rows.unwrap_or_default().into_iter();
            if first {
                rows.types = types_of(set.result_set_metadata.as_ref());
                if let Some(header) = page.next() {
                    rows.columns = cells(header)
                        .into_iter()
                        .map(Option::unwrap_or_default)
                        .collect();
                }
                first = false;
            }
            rows.data.extend(page.map(cells));
            match out.next_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(rows),
            }
        }
    }
}

fn finished(id: String, execution: aws_sdk_athena::types::QueryExecution) -> Finished {
    Finished {
        id,
        output_location: execution
            .result_configuration
            .and_then(|c| c.output_location),
        bytes_scanned: execution
            .statistics
            .and_then(|s| s.data_scanned_in_bytes)
            .unwrap_or(0),
    }
}

fn reason_of(status: &aws_sdk_athena::types::QueryExecutionStatus) -> String {
    let error = status
        .athena_error
        .as_ref()
        .and_then(|e| e.error_message.clone());
    match (status.state_change_reason.clone(), error) {
        (Some(r), Some(e)) if r != e => format!("{r} ({e})"),
        (Some(r), _) => r,
        (None, Some(e)) => e,
        (None, None) => "Athena gave no reason".into(),
    }
}

fn cells(row: aws_sdk_athena::types::Row) -> Vec<Option<String>> {
    row.data
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.var_char_value)
        .collect()
}

fn types_of(meta: Option<&aws_sdk_athena::types::ResultSetMetadata>) -> Vec<String> {
    meta.and_then(|m| m.column_info.as_ref())
        .map(|info| info.iter().map(|c| c.r#type.clone()).collect())
        .unwrap_or_default()
}

/// Athena's price: USD 5 per TB scanned (10^12 bytes), each query billed at least 10 MB,
/// rounded up to the MB (Athena pricing page, SQL queries).
pub const USD_PER_TB: f64 = 5.0;
const MB: i64 = 1_000_000;
const MIN_BILLED_BYTES: i64 = 10 * MB;

/// The stderr line on what a query cost: bytes scanned, bytes billed, estimated USD.
pub fn cost_line(bytes_scanned: i64) -> String {
    let billed = (bytes_scanned.max(0) + MB - 1) / MB * MB;
    let billed = billed.max(MIN_BILLED_BYTES);
    let usd = billed as f64 / 1e12 * USD_PER_TB;
    format!(
        "scanned {bytes_scanned} bytes, billed {} MB: about USD {usd:.6} (USD {USD_PER_TB} per TB, 10 MB minimum)",
        billed / MB
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_has_a_ten_mb_minimum_and_rounds_up_to_the_mb() {
        assert!(
            cost_line(0).contains("billed 10 MB: about USD 0.000050 "),
            "{}",
            cost_line(0)
        );
        assert!(cost_line(10_000_001).contains("billed 11 MB: about USD 0.000055 "));
        let tb = cost_line(1_000_000_000_000);
        assert!(
            tb.contains("billed 1000000 MB: about USD 5.000000 "),
            "{tb}"
        );
    }
}
