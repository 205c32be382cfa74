//! client: the Firehose client, built once at start — the default credential chain,
//! explicit timeouts, and none of the SDK's own retries (the ship stage has one policy,
//! [`super::call`]'s; docs/design.md#firehose-rules).

use std::time::Duration;

use aws_sdk_firehose::Client;

/// A connection that cannot be set up in this long will not be.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Builds the Firehose client from the default chain (env, IRSA web identity, EKS Pod
/// Identity; `AWS_ENDPOINT_URL[_FIREHOSE]` for emulators) with explicit timeouts — the
/// SDK has no read timeout by default, and a hung call would stall the pipeline — and
/// with the SDK's retries off, because [`super::Shipper`] retries.
pub async fn client(call_timeout: Duration) -> Client {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(call_timeout)
        .operation_timeout(call_timeout)
        .build();
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts)
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    Client::new(&conf)
}
