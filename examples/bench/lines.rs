//! The benchmark's input: unique, realistic JSON access-log lines of about 300 bytes,
//! generated once into one buffer so every scenario writes slices of it.

use std::io::Write as _;

/// Every line, back to back, each ending in `\n`; `ends[i]` is where line `i` ends.
pub struct Lines {
    pub data: Vec<u8>,
    pub ends: Vec<usize>,
}

const METHODS: [&str; 4] = ["GET", "GET", "POST", "PUT"];
const ROUTES: [&str; 6] = [
    "/api/v1/orders",
    "/api/v1/carts",
    "/api/v1/products",
    "/api/v1/customers",
    "/checkout/confirm",
    "/healthcheck",
];
const AGENTS: [&str; 4] = [
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Mobile/15E148",
    "okhttp/4.12.0",
    "kube-probe/1.30",
];
const STATUSES: [u16; 8] = [200, 200, 200, 200, 201, 204, 404, 500];

impl Lines {
    /// `n` lines; line `i` carries `"seq":i` and a request id derived from it, so no two
    /// lines are equal. Deterministic: the same `n` gives the same bytes.
    pub fn generate(n: usize) -> Lines {
        let mut data = Vec::with_capacity(n * 310);
        let mut ends = Vec::with_capacity(n);
        let mut rng = fastrand::Rng::with_seed(0xf17e_7a11);
        for i in 0..n {
            let ms = i as u64 / 5; // ~5,000 lines per second of log time
            let (h, m, s, milli) = (
                (ms / 3_600_000) % 24,
                (ms / 60_000) % 60,
                (ms / 1000) % 60,
                ms % 1000,
            );
            let route = ROUTES[rng.usize(..ROUTES.len())];
            let status = STATUSES[rng.usize(..STATUSES.len())];
            write!(
                data,
                r#"{{"time":"2026-05-04T{h:02}:{m:02}:{s:02}.{milli:03}Z","level":"INFO","msg":"request completed","seq":{i},"request_id":"{:016x}","remote_ip":"10.{}.{}.{}","method":"{}","path":"{route}/{}","status":{status},"bytes":{},"duration_ms":{}.{:03},"user_agent":"{}"}}"#,
                rng.u64(..) ^ i as u64,
                rng.u8(..),
                rng.u8(..),
                rng.u8(1..255),
                METHODS[rng.usize(..METHODS.len())],
                rng.u32(1..999_999),
                rng.u32(0..250_000),
                rng.u32(0..900),
                rng.u32(0..1000),
                AGENTS[rng.usize(..AGENTS.len())],
            )
            .expect("writing to a Vec cannot fail");
            data.push(b'\n');
            ends.push(data.len());
        }
        Lines { data, ends }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Byte offset where line `i` starts.
    pub fn start_of(&self, i: usize) -> usize {
        if i == 0 {
            0
        } else {
            self.ends[i - 1]
        }
    }

    /// Lines `from..to`, as one slice.
    pub fn slice(&self, from: usize, to: usize) -> &[u8] {
        &self.data[self.start_of(from)..self.start_of(to)]
    }

    /// Bytes of the first `n` lines.
    pub fn bytes(&self, n: usize) -> usize {
        self.start_of(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_unique_json_of_about_300_bytes() {
        let lines = Lines::generate(2000);
        let avg = lines.bytes(2000) / 2000;
        assert!((280..=330).contains(&avg), "{avg}");
        let mut seen = std::collections::HashSet::new();
        for i in 0..2000 {
            let line = lines.slice(i, i + 1);
            let _: serde_json::Value = serde_json::from_slice(line).unwrap();
            assert!(seen.insert(line));
        }
    }
}
