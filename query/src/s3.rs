//! Reading a query's result file from S3 with one SigV4-signed GET.
//!
//! Why not page through GetQueryResults: it returns at most 1,000 rows a call, so the
//! ids of a large chaos test (say 500,000) would take 500 sequential calls — minutes.
//! Athena has already written the whole result as one CSV file at the query's
//! OutputLocation; one GET reads it, whatever its size. Why not aws-sdk-s3: a very large
//! crate for one call. The request goes through the SDK's own HTTP connector (rustls,
//! the same TLS as the Athena client), signed with aws-sigv4 and the credentials of the
//! default chain, so it needs nothing the Athena client does not already have.

use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::http::{HttpConnector, HttpConnectorSettings};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::body::SdkBody;
use http_body_util::BodyExt as _;

/// Connect timeout of the GET.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest pause between two reads of the body (not the whole transfer).
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The whole GET, body included: a result file of a few hundred MB still fits.
const GET_TIMEOUT: Duration = Duration::from_secs(600);

/// `s3://bucket/key` split in two; None when it is not such a URL.
pub fn parse_s3_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/')?;
    (!bucket.is_empty() && !key.is_empty()).then_some((bucket, key))
}

/// The object's body, or an error that says what failed (HTTP status and S3's message,
/// or the connection problem).
pub async fn get_object(config: &SdkConfig, url: &str) -> Result<Vec<u8>, String> {
    let (bucket, key) = parse_s3_url(url).ok_or_else(|| format!("{url:?} is not an s3:// URL"))?;
    let region = config.region().ok_or("no AWS region")?.to_string();
    let uri = object_uri(endpoint(config).as_deref(), &region, bucket, key);
    let mut request = http::Request::get(&uri)
        .body(SdkBody::empty())
        .map_err(|e| format!("bad request for {uri}: {e}"))?;
    sign_request(config, &region, &mut request).await?;
    let request = HttpRequest::try_from(request).map_err(|e| e.to_string())?;
    let settings = HttpConnectorSettings::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .build();
    let sleep = aws_smithy_async::rt::sleep::default_async_sleep();
    let connector = aws_smithy_http_client::default_connector(&settings, sleep)
        .ok_or("no HTTP connector available")?;
    let fetch = async {
        let response = connector
            .call(request)
            .await
            .map_err(|e| format!("GET {uri}: {}", crate::athena::error_chain(&e)))?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await;
        let body = body.map_err(|e| format!("GET {uri}: reading the body: {e}"))?;
        let bytes = body.to_bytes().to_vec();
        if status != 200 {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(500)]).into_owned();
            return Err(format!("GET {uri}: HTTP {status}: {}", text.trim()));
        }
        Ok(bytes)
    };
    tokio::time::timeout(GET_TIMEOUT, fetch)
        .await
        .map_err(|_| format!("GET {uri}: no answer within {GET_TIMEOUT:?}"))?
}

/// `AWS_ENDPOINT_URL_S3`, else the configuration's endpoint (`AWS_ENDPOINT_URL`), else
/// none (S3's regional endpoint).
fn endpoint(config: &SdkConfig) -> Option<String> {
    std::env::var("AWS_ENDPOINT_URL_S3")
        .ok()
        .filter(|e| !e.is_empty())
        .or_else(|| config.endpoint_url().map(str::to_string))
}

/// Path-style under a custom endpoint (emulators do not resolve bucket host names);
/// virtual-hosted on AWS, path-style there too when the bucket name has a dot (its TLS
/// certificate would not match the host).
fn object_uri(endpoint: Option<&str>, region: &str, bucket: &str, key: &str) -> String {
    let key = encode_key(key);
    match endpoint {
        Some(e) => format!("{}/{bucket}/{key}", e.trim_end_matches('/')),
        None if bucket.contains('.') => format!("https://s3.{region}.amazonaws.com/{bucket}/{key}"),
        None => format!("https://{bucket}.s3.{region}.amazonaws.com/{key}"),
    }
}

/// Percent-encode a key for the path, keeping `/` and RFC 3986's unreserved characters
/// (S3's rule: the key is encoded once, and signed as sent).
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// SigV4 for S3: the payload hash in `x-amz-content-sha256`, the path neither normalised
/// nor encoded twice.
async fn sign_request(
    config: &SdkConfig,
    region: &str,
    request: &mut http::Request<SdkBody>,
) -> Result<(), String> {
    let provider = config
        .credentials_provider()
        .ok_or("no AWS credentials provider")?;
    let credentials = provider
        .provide_credentials()
        .await
        .map_err(|e| format!("no AWS credentials: {e}"))?;
    let identity = credentials.into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("s3")
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .map_err(|e| format!("cannot sign: {e}"))?
        .into();
    let uri = request.uri().to_string();
    let signable = SignableRequest::new("GET", &uri, std::iter::empty(), SignableBody::Bytes(&[]))
        .map_err(|e| format!("cannot sign: {e}"))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| format!("cannot sign: {e}"))?
        .into_parts();
    instructions.apply_to_request_http1x(request);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_keys() {
        assert_eq!(
            parse_s3_url("s3://b/athena-results/q.csv"),
            Some(("b", "athena-results/q.csv"))
        );
        assert_eq!(parse_s3_url("s3://b/"), None);
        assert_eq!(parse_s3_url("https://b/k"), None);
        assert_eq!(
            object_uri(
                Some("http://127.0.0.1:5000/"),
                "us-east-1",
                "b",
                "r/a b+c.csv"
            ),
            "http://127.0.0.1:5000/b/r/a%20b%2Bc.csv"
        );
        assert_eq!(
            object_uri(None, "eu-west-1", "logs", "r/q.csv"),
            "https://logs.s3.eu-west-1.amazonaws.com/r/q.csv"
        );
        assert_eq!(
            object_uri(None, "eu-west-1", "my.logs", "q.csv"),
            "https://s3.eu-west-1.amazonaws.com/my.logs/q.csv"
        );
    }
}
