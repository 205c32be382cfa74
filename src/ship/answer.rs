//! What one `PutRecordBatch` answer means for the records in it
//! (docs/design.md#firehose-rules).
//!
//! Classified on the raw HTTP status first and the error code string second, in every
//! shape the SDK hands an answer back: a Firehose error (`ServiceError` with a code), a
//! body that is not Firehose's JSON (an nginx or load-balancer page, an empty body, a
//! 200 that does not parse: aws-sdk-firehose 1.128 returns these as `ResponseError`
//! with the raw response — see the fake's self-test — and a `ServiceError` with no
//! code is handled the same way), timeouts and connection errors. A proxy's answer must never wedge
//! shipping, so every status has a way forward: 413 splits, 429 and 5xx retry, a 200
//! that cannot be matched to the records resends them.
//!
//! What is logged is one line (error kind, HTTP status, request id, Firehose's message);
//! the SDK's full error context, a multi-line debug dump, goes to DEBUG only.

use std::fmt;

use aws_sdk_firehose::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_firehose::operation::put_record_batch::{PutRecordBatchError, PutRecordBatchOutput};
use aws_smithy_types::error::display::DisplayErrorContext;

use crate::outcome::CallOutcome;

/// Firehose's messages are short; a proxy's could be anything. Enough to identify it.
const MESSAGE_MAX: usize = 200;

/// An answer, as an operator needs to see it: one line, no record contents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Detail {
    /// Firehose's error code, or what went wrong when there is none (`timeout`,
    /// `not_firehose_json`, the I/O error).
    pub kind: String,
    /// HTTP status, when an answer came.
    pub status: Option<u16>,
    /// `x-amzn-RequestId`, which AWS support asks for.
    pub request_id: Option<String>,
    pub message: Option<String>,
}

impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.kind)?;
        if let Some(status) = self.status {
            write!(f, " (HTTP {status})")?;
        }
        if let Some(m) = &self.message {
            write!(f, ": {m}")?;
        }
        if let Some(id) = &self.request_id {
            write!(f, " [request id {id}]")?;
        }
        Ok(())
    }
}

/// How one answer is handled.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// HTTP 200: per position, `None` for accepted, `Some(code)` for failed.
    Accepted(Vec<Option<String>>),
    /// Resend the whole call. `maybe_delivered`: the answer never came or could not
    /// be read, so Firehose may hold the records already (duplicates possible).
    Retry {
        outcome: CallOutcome,
        throttled: bool,
        maybe_delivered: bool,
        detail: Detail,
    },
    /// `InvalidArgumentException`: some record (or the call's size) is unacceptable.
    Invalid(Detail),
    /// HTTP 413, whatever its body: the request is too large for something on the way
    /// (Firehose, or a proxy's body limit). Split; a single record cannot be.
    TooLarge(Detail),
    /// Needs an operator; retried slowly.
    Config { what: &'static str, detail: Detail },
}

/// Classifies what the SDK returned for one attempt.
pub fn classify(result: Result<PutRecordBatchOutput, SdkError<PutRecordBatchError>>) -> Answer {
    let err = match result {
        Ok(out) => return accepted(&out),
        Err(e) => e,
    };
    tracing::debug!(error = %DisplayErrorContext(&err), "PutRecordBatch error in full.");
    let raw = err.raw_response();
    let mut detail = Detail {
        kind: String::new(),
        status: raw.map(|r| r.status().as_u16()),
        request_id: raw
            .and_then(|r| r.headers().get("x-amzn-RequestId"))
            .map(str::to_owned),
        message: None,
    };
    match &err {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("");
            detail.kind = if code.is_empty() {
                "not_firehose_json".into()
            } else {
                code.into()
            };
            detail.message = se.err().message().map(one_line);
            classify_status(detail.status.unwrap_or(0), code, detail)
        }
        // The body could not be parsed at all: an HTML page, a truncated answer, or a
        // 200 that is not a PutRecordBatch result.
        SdkError::ResponseError(_) => {
            detail.kind = "not_firehose_json".into();
            classify_status(detail.status.unwrap_or(0), "", detail)
        }
        SdkError::TimeoutError(_) => Answer::Retry {
            outcome: CallOutcome::Timeout,
            throttled: false,
            maybe_delivered: true,
            detail: Detail {
                kind: "timeout".into(),
                ..detail
            },
        },
        SdkError::DispatchFailure(d) if d.is_timeout() || d.is_io() => Answer::Retry {
            outcome: if d.is_timeout() {
                CallOutcome::Timeout
            } else {
                CallOutcome::Network
            },
            throttled: false,
            // A connect timeout sent nothing; an I/O error may have cut the answer.
            maybe_delivered: d.is_io(),
            detail: Detail {
                kind: source_chain(&err),
                ..detail
            },
        },
        _ => Answer::Config {
            what: "credentials, region or endpoint: check AWS_REGION, the pod's IAM role (IRSA or EKS Pod Identity) and AWS_ENDPOINT_URL",
            detail: Detail {
                kind: source_chain(&err),
                ..detail
            },
        },
    }
}

fn accepted(out: &PutRecordBatchOutput) -> Answer {
    Answer::Accepted(
        out.request_responses()
            .iter()
            .map(|r| match (r.record_id(), r.error_code()) {
                (Some(_), None) => None,
                (_, code) => Some(code.unwrap_or("unknown").to_string()),
            })
            .collect(),
    )
}

/// Classifies an error answer on its status and code string (empty when the body was
/// not Firehose's JSON) — the SDK's typed enum knows only a few codes and calls
/// everything else "unhandled".
pub fn classify_status(status: u16, code: &str, detail: Detail) -> Answer {
    let retry = |outcome, throttled, maybe_delivered| Answer::Retry {
        outcome,
        throttled,
        maybe_delivered,
        detail: detail.clone(),
    };
    if status == 413 {
        return Answer::TooLarge(detail);
    }
    match code {
        "InvalidArgumentException" => Answer::Invalid(detail),
        "ThrottlingException" | "LimitExceededException" | "TooManyRequestsException" => {
            retry(CallOutcome::Throttled, true, false)
        }
        // Firehose's answer to a stream over its quota (API reference: "If you continue
        // to see the exception, throughput limits for the delivery stream may have been
        // exceeded"): a throttle, which the adaptive control must see.
        "ServiceUnavailableException" => retry(CallOutcome::Unavailable, true, false),
        "InternalFailure" | "InternalFailureException" => retry(CallOutcome::Unavailable, false, false),
        "ResourceNotFoundException" => Answer::Config {
            what: "the delivery stream does not exist: check --stream and AWS_REGION",
            detail,
        },
        "AccessDeniedException" | "AccessDenied" | "UnrecognizedClientException"
        | "InvalidSignatureException" | "ExpiredTokenException" | "ExpiredToken"
        | "InvalidClientTokenId" | "MissingAuthenticationToken" | "IncompleteSignature"
        | "NotAuthorized" => Answer::Config {
            what: "access denied: the pod's IAM role needs firehose:PutRecordBatch on the stream's ARN, and valid credentials (IRSA or EKS Pod Identity)",
            detail,
        },
        "InvalidKMSResourceException" => Answer::Config {
            what: "the stream's KMS key cannot be used: check the key and its policy",
            detail,
        },
        _ if status == 429 => retry(CallOutcome::Throttled, true, false),
        _ if status >= 500 => retry(CallOutcome::ServerError, false, false),
        // A 2xx whose body cannot be matched to the records: Firehose may have taken
        // them, so resend and count possible duplicates.
        _ if (200..300).contains(&status) => retry(CallOutcome::BadResponse, false, true),
        _ if code.is_empty() => Answer::Config {
            what: "an answer that is not Firehose's (HTML or empty): check the proxy, load balancer or AWS_ENDPOINT_URL between firetail and Firehose",
            detail,
        },
        _ => Answer::Config {
            what: "an unexpected error answer from Firehose",
            detail,
        },
    }
}

/// The error and its sources on one line, without the SDK's debug dump.
fn source_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        out.push_str(": ");
        out.push_str(&e.to_string());
        next = e.source();
    }
    one_line(&out)
}

/// Newlines and control characters out, length capped: one log line stays one line.
fn one_line(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MESSAGE_MAX)
        .collect();
    if s.chars().count() > MESSAGE_MAX {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use aws_sdk_firehose::config::http::HttpResponse;
    use aws_sdk_firehose::error::{ConnectorError, ErrorMetadata};
    use aws_smithy_types::body::SdkBody;

    use super::*;

    fn class(status: u16, code: &str) -> Answer {
        classify_status(status, code, Detail::default())
    }

    #[test]
    fn error_codes_are_classified_as_design_says() {
        assert!(matches!(
            class(400, "InvalidArgumentException"),
            Answer::Invalid(_)
        ));
        assert!(matches!(
            class(400, "ThrottlingException"),
            Answer::Retry {
                throttled: true,
                ..
            }
        ));
        assert!(matches!(
            class(503, "ServiceUnavailableException"),
            Answer::Retry {
                outcome: CallOutcome::Unavailable,
                throttled: true,
                ..
            }
        ));
        assert!(matches!(
            class(500, "InternalFailure"),
            Answer::Retry {
                throttled: false,
                ..
            }
        ));
        assert!(matches!(
            class(500, "ServiceUnavailableException"),
            Answer::Retry { .. }
        ));
        assert!(matches!(
            class(502, "Whatever"),
            Answer::Retry {
                outcome: CallOutcome::ServerError,
                ..
            }
        ));
        assert!(matches!(
            class(400, "ResourceNotFoundException"),
            Answer::Config { .. }
        ));
        assert!(matches!(
            class(400, "AccessDeniedException"),
            Answer::Config { .. }
        ));
        assert!(matches!(
            class(403, "ExpiredTokenException"),
            Answer::Config { .. }
        ));
    }

    /// A proxy's answers carry no Firehose code; the status alone decides, and no
    /// status wedges shipping.
    #[test]
    fn answers_without_a_firehose_code_are_classified_on_status() {
        assert!(matches!(class(413, ""), Answer::TooLarge(_)));
        assert!(matches!(class(413, "SomethingElse"), Answer::TooLarge(_)));
        assert!(matches!(
            class(429, ""),
            Answer::Retry {
                throttled: true,
                maybe_delivered: false,
                ..
            }
        ));
        for status in [500, 502, 503, 504] {
            assert!(matches!(
                class(status, ""),
                Answer::Retry {
                    outcome: CallOutcome::ServerError,
                    maybe_delivered: false,
                    ..
                }
            ));
        }
        assert!(matches!(
            class(200, ""),
            Answer::Retry {
                outcome: CallOutcome::BadResponse,
                maybe_delivered: true,
                ..
            }
        ));
        assert!(matches!(class(403, ""), Answer::Config { .. }));
    }

    fn what(answer: Answer) -> &'static str {
        match answer {
            Answer::Config { what, .. } => what,
            other => panic!("not a configuration error: {other:?}"),
        }
    }

    /// Each configuration error tells the operator what to check, not just "unexpected".
    #[test]
    fn configuration_errors_say_what_to_check() {
        assert!(what(class(400, "ResourceNotFoundException")).contains("does not exist"));
        assert!(what(class(400, "AccessDeniedException")).contains("access denied"));
        assert!(what(class(403, "ExpiredTokenException")).contains("access denied"));
        assert!(what(class(400, "InvalidKMSResourceException")).contains("KMS key"));
        assert!(what(class(403, "")).contains("not Firehose's"));
        assert!(what(class(400, "SomethingNew")).contains("unexpected"));
        assert!(matches!(
            class(500, "InternalFailure"),
            Answer::Retry {
                outcome: CallOutcome::Unavailable,
                ..
            }
        ));
    }

    fn response(status: u16) -> HttpResponse {
        let mut r = HttpResponse::new(status.try_into().unwrap(), SdkBody::empty());
        r.headers_mut().insert("x-amzn-RequestId", "req-1");
        r
    }

    /// Every shape the SDK hands back is classified with its status and request id.
    #[test]
    fn every_shape_of_sdk_error_is_classified() {
        let meta = ErrorMetadata::builder()
            .code("InvalidArgumentException")
            .message("too\nbig")
            .build();
        let service = SdkError::service_error(PutRecordBatchError::generic(meta), response(400));
        let Answer::Invalid(d) = classify(Err(service)) else {
            panic!("a Firehose code is classified on the code")
        };
        let want = (
            "InvalidArgumentException",
            Some(400),
            Some("req-1"),
            Some("too big"),
        );
        let got = (
            d.kind.as_str(),
            d.status,
            d.request_id.as_deref(),
            d.message.as_deref(),
        );
        assert_eq!(got, want);

        let page = SdkError::response_error("<html>", response(502));
        let Answer::Retry {
            outcome, detail, ..
        } = classify(Err(page))
        else {
            panic!("a proxy's 502 is retried")
        };
        assert_eq!(
            (outcome, detail.kind.as_str()),
            (CallOutcome::ServerError, "not_firehose_json")
        );

        match classify(Err(SdkError::timeout_error("slow"))) {
            Answer::Retry {
                outcome: CallOutcome::Timeout,
                maybe_delivered: true,
                detail,
                ..
            } => assert_eq!(detail.kind, "timeout"),
            other => panic!("{other:?}"),
        }

        let reset = ConnectorError::io("connection reset by peer".into());
        match classify(Err(SdkError::dispatch_failure(reset))) {
            Answer::Retry {
                outcome: CallOutcome::Network,
                maybe_delivered: true,
                detail,
                ..
            } => assert!(detail.kind.contains("connection reset by peer"), "{detail}"),
            other => panic!("{other:?}"),
        }

        let bad_endpoint = ConnectorError::user("invalid endpoint URL".into());
        let answer = classify(Err(SdkError::dispatch_failure(bad_endpoint)));
        assert!(
            what(answer).contains("AWS_ENDPOINT_URL"),
            "not retried as the network"
        );
        let no_region = SdkError::construction_failure("no region configured");
        match classify(Err(no_region)) {
            Answer::Config { what, detail } => {
                assert!(what.contains("AWS_REGION"), "{what}");
                assert!(detail.kind.contains("no region configured"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn details_are_one_line() {
        let d = Detail {
            kind: "not_firehose_json".into(),
            status: Some(413),
            request_id: Some("abc".into()),
            message: Some(one_line("two\nlines\r\n")),
        };
        let s = d.to_string();
        assert!(!s.contains('\n') && !s.contains('\r'), "{s}");
        assert_eq!(
            s,
            "not_firehose_json (HTTP 413): two lines   [request id abc]"
        );
        assert_eq!(one_line(&"x".repeat(500)).chars().count(), MESSAGE_MAX + 1);
        assert_eq!(one_line(&"x".repeat(MESSAGE_MAX)), "x".repeat(MESSAGE_MAX));
    }
}
