#!/usr/bin/env python3
"""Helper for demo.sh: moto set-up, a Rails-style access-log writer, and the final count.

Runs in the repo's .venv (boto3). Talks only to 127.0.0.1.

Subcommands:
  free-port                      print a free TCP port on 127.0.0.1
  wait-moto  --endpoint URL      wait until moto's server answers (bounded)
  setup      --endpoint URL --stream S --bucket B
                                 create the S3 bucket and a DirectPut delivery stream into it
  wait-http  --url URL           wait until URL answers 200 (bounded); exit 1 if it never does
  write-log  --path FILE --lines N [--rate LINES_PER_S] [--seed N] [--start N] [--ruby-header]
                                 append N access-log lines (one JSON object per line), the way
                                 a Rails app with a JSON log formatter writes them
  count      --endpoint URL --bucket B --log FILE [--json OUT]
                                 compare the log with what is in S3 and print a summary;
                                 exit 1 if any line of the log is missing from S3
"""

import argparse
import collections
import datetime as dt
import json
import os
import random
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

# Loopback only, never through a proxy (boto3 and urllib both honour these).
for _var in ("NO_PROXY", "no_proxy"):
    os.environ[_var] = "127.0.0.1,localhost"

REGION = "us-east-1"
ROLE_ARN = "arn:aws:iam::123456789012:role/firetail-demo-firehose"
RUBY_HEADER_PREFIX = b"# Logfile created on "


def _client(service, endpoint):
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 3, "mode": "standard"}, proxies={}),
    )


def cmd_free_port(_args):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])


def _get(url, timeout=1.0):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as resp:
        return resp.status, resp.read()


def cmd_wait_moto(args):
    deadline = time.monotonic() + args.timeout
    last = None
    while time.monotonic() < deadline:
        try:
            status, body = _get(args.endpoint + "/")
            if status == 200 and b"ListAllMyBucketsResult" in body:
                return 0
        except (OSError, urllib.error.URLError) as e:
            last = e
        time.sleep(0.1)
    print(f"moto did not answer at {args.endpoint} within {args.timeout}s ({last})", file=sys.stderr)
    return 1


def cmd_wait_http(args):
    deadline = time.monotonic() + args.timeout
    last = None
    while time.monotonic() < deadline:
        try:
            status, _ = _get(args.url)
            if status == 200:
                return 0
            last = f"HTTP {status}"
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}"
        except (OSError, urllib.error.URLError) as e:
            last = e
        time.sleep(0.1)
    print(f"{args.url} did not answer 200 within {args.timeout}s (last: {last})", file=sys.stderr)
    return 1


def cmd_setup(args):
    s3 = _client("s3", args.endpoint)
    firehose = _client("firehose", args.endpoint)
    s3.create_bucket(Bucket=args.bucket)
    firehose.create_delivery_stream(
        DeliveryStreamName=args.stream,
        DeliveryStreamType="DirectPut",
        ExtendedS3DestinationConfiguration={
            "RoleARN": ROLE_ARN,
            "BucketARN": f"arn:aws:s3:::{args.bucket}",
            "Prefix": "access-logs/",
            "BufferingHints": {"SizeInMBs": 5, "IntervalInSeconds": 60},
        },
    )
    desc = firehose.describe_delivery_stream(DeliveryStreamName=args.stream)
    status = desc["DeliveryStreamDescription"]["DeliveryStreamStatus"]
    if status != "ACTIVE":
        print(f"delivery stream {args.stream} is {status}, not ACTIVE", file=sys.stderr)
        return 1
    return 0


# --- a Rails app's access log -------------------------------------------------------

ROUTES = [
    # weight, method, path template, controller#action, typical ms
    (30, "GET", "/", "HomeController#index", 18),
    (20, "GET", "/products/{id}", "ProductsController#show", 35),
    (12, "GET", "/products", "ProductsController#index", 60),
    (8, "GET", "/cart", "CartsController#show", 25),
    (6, "POST", "/cart/items", "CartItemsController#create", 45),
    (3, "DELETE", "/cart/items/{id}", "CartItemsController#destroy", 30),
    (4, "POST", "/checkout", "CheckoutsController#create", 240),
    (5, "GET", "/api/v1/orders/{id}", "Api::V1::OrdersController#show", 22),
    (3, "PATCH", "/api/v1/orders/{id}", "Api::V1::OrdersController#update", 55),
    (4, "GET", "/search", "SearchController#index", 120),
    (2, "POST", "/users/sign_in", "Devise::SessionsController#create", 180),
    (3, "GET", "/up", "Rails::HealthController#show", 1),
]
USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "okhttp/4.12.0",
    "curl/8.5.0",
]
SEARCH_TERMS = ["shoes", "rain jacket", "café au lait mug", "usb-c cable", "naïve art print", "📦 gift box"]


def _status_for(rng, method, template, action):
    r = rng.random()
    if action.startswith("Rails::Health"):
        return 200
    if r < 0.01:
        return 500
    if r < 0.04:
        return 404
    if r < 0.06 and method != "GET":
        return 422
    if method == "POST" and r < 0.5:
        return 302 if template in ("/users/sign_in", "/checkout") else 201
    return 200


def _line(rng, now):
    """One request as a JSON object: exactly the columns of the Glue table in
    deploy/terraform/glue.tf (a key the table lacks would be dropped by Firehose's
    format conversion; deploy/tests checks the two agree)."""
    weights = [r[0] for r in ROUTES]
    _, method, template, action, typical = rng.choices(ROUTES, weights=weights)[0]
    path = template.replace("{id}", str(rng.randint(1, 99999)))
    if template == "/search":
        path += "?q=" + urllib.parse.quote(rng.choice(SEARCH_TERMS))
    status = _status_for(rng, method, template, action)
    duration = round(rng.lognormvariate(0, 0.6) * typical, 2)
    if status in (201, 302) or method == "DELETE":
        size = rng.randint(0, 120)
    elif path.startswith("/api/") or action.startswith("Rails::Health"):
        size = rng.randint(60, 4000)
    else:
        size = int(rng.lognormvariate(10, 0.5))
    event = {
        "time": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
        "level": "ERROR" if status >= 500 else "INFO",
        "request_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "method": method,
        "path": path,
        "status": status,
        "duration_ms": duration,
        "bytes": size,
        "remote_ip": rng.choice(
            [f"203.0.113.{rng.randint(1, 254)}", f"198.51.100.{rng.randint(1, 254)}", f"192.0.2.{rng.randint(1, 254)}"]
        ),
        "user_agent": "kube-probe/1.31" if template == "/up" else rng.choice(USER_AGENTS),
    }
    return (json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def cmd_write_log(args):
    rng = random.Random(f"{args.seed}:{args.start}")
    # O_APPEND + one write(2) per line, as Ruby's Logger::LogDevice does.
    new_file = not os.path.exists(args.path) or os.path.getsize(args.path) == 0
    fd = os.open(args.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        if new_file and args.ruby_header:
            stamp = dt.datetime.now().strftime("%Y-%m-%dT%H:%M:%S.%f")
            os.write(fd, f"# Logfile created on {stamp} by logger.rb/v1.6.4\n".encode())
        start = time.monotonic()
        for n in range(args.lines):
            if args.rate > 0:
                # Bursty traffic: a steady rate overall, a few lines at a time.
                due = start + n / args.rate
                delay = due - time.monotonic()
                if delay > 0.002:
                    time.sleep(delay)
            os.write(fd, _line(rng, dt.datetime.now(dt.timezone.utc)))
    finally:
        os.close(fd)
    return 0


# --- the count ----------------------------------------------------------------------


def _log_lines(path):
    with open(path, "rb") as f:
        data = f.read()
    lines = []
    headers = 0
    for raw in data.split(b"\n"):
        if not raw:
            continue
        if raw.startswith(RUBY_HEADER_PREFIX):
            headers += 1
            continue
        lines.append(raw)
    return lines, headers, data.endswith(b"\n") or not data


def _s3_lines(endpoint, bucket):
    s3 = _client("s3", endpoint)
    objects = 0
    lines = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            objects += 1
            lines.extend(raw for raw in body.split(b"\n") if raw)
    return lines, objects


def cmd_count(args):
    written, headers, complete = _log_lines(args.log)
    shipped, objects = _s3_lines(args.endpoint, args.bucket)
    want = collections.Counter(written)
    got = collections.Counter(shipped)
    missing = want - got
    extra = got - want
    lost = sum(missing.values())
    unexpected = sum(n for line, n in extra.items() if line not in want)
    duplicated = sum(extra.values()) - unexpected
    invalid = 0
    for raw in shipped:
        try:
            json.loads(raw)
        except ValueError:
            invalid += 1
    summary = {
        "lines_written": len(written),
        "ruby_header_lines": headers,
        "log_ends_with_newline": complete,
        "s3_objects": objects,
        "lines_in_s3": len(shipped),
        "distinct_lines_in_s3": len(got),
        "lost": lost,
        "duplicated": duplicated,
        "unexpected": unexpected,
        "invalid_json_in_s3": invalid,
    }
    width = 26
    print(f"{'lines written by the app':<{width}} {len(written)}" + (f"  (+{headers} Ruby Logger header line)" if headers else ""))
    print(f"{'lines found in S3':<{width}} {len(shipped)}  (in {objects} objects = PutRecordBatch calls)")
    print(f"{'lost':<{width}} {lost}")
    print(f"{'duplicated':<{width}} {duplicated}")
    if unexpected:
        print(f"{'unexpected (not in log)':<{width}} {unexpected}")
    if invalid:
        print(f"{'not valid JSON in S3':<{width}} {invalid}")
    if lost:
        for line in [l for l in written if l in missing][:3]:
            print(f"  missing: {line[:160].decode('utf-8', 'replace')}", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f)
    return 1 if lost else 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    sp = sub.add_parser("free-port")
    sp.set_defaults(func=cmd_free_port)

    sp = sub.add_parser("wait-moto")
    sp.add_argument("--endpoint", required=True)
    sp.add_argument("--timeout", type=float, default=30.0)
    sp.set_defaults(func=cmd_wait_moto)

    sp = sub.add_parser("wait-http")
    sp.add_argument("--url", required=True)
    sp.add_argument("--timeout", type=float, default=30.0)
    sp.set_defaults(func=cmd_wait_http)

    sp = sub.add_parser("setup")
    sp.add_argument("--endpoint", required=True)
    sp.add_argument("--stream", required=True)
    sp.add_argument("--bucket", required=True)
    sp.set_defaults(func=cmd_setup)

    sp = sub.add_parser("write-log")
    sp.add_argument("--path", required=True)
    sp.add_argument("--lines", type=int, required=True)
    sp.add_argument("--rate", type=float, default=0.0, help="lines per second (0: as fast as possible)")
    sp.add_argument("--seed", type=int, default=1)
    sp.add_argument("--start", type=int, default=0, help="index of the first line (varies the random stream)")
    sp.add_argument("--ruby-header", action="store_true", help="start a new file with Ruby Logger's header line")
    sp.set_defaults(func=cmd_write_log)

    sp = sub.add_parser("count")
    sp.add_argument("--endpoint", required=True)
    sp.add_argument("--bucket", required=True)
    sp.add_argument("--log", required=True)
    sp.add_argument("--json", help="also write the summary as JSON to this file")
    sp.set_defaults(func=cmd_count)

    args = p.parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
