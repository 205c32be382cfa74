-- Searches an operator runs over the access log, in the Athena workgroup and
-- table deploy/terraform makes (outputs athena_workgroup, athena_table; the
-- defaults are used below: access_logs.shop_access_log).
--
-- Every query restricts `datepath`, the partition projected over the S3 day
-- folders (app_access_log/yyyy/MM/dd): Athena then lists and reads only those
-- days. Without it a query scans the whole log and the workgroup's scan limit
-- cancels it. datepath is the UTC day Firehose received the line; widen it by
-- a day around midnight and filter on "time" for exact bounds. "time" is
-- quoted: it is a reserved word.
--
-- deploy/tests/test_athena.py checks that every query restricts datepath and
-- names only columns of the Glue table. Each query starts with a `-- name:` line.

-- name: by-request-id
-- One request, when you have its id (from a support ticket or the app's own
-- log) and know roughly when it happened: here, the last two days.
SELECT from_iso8601_timestamp("time") AS at, method, path, status, duration_ms, bytes, remote_ip, user_agent, level
FROM access_logs.shop_access_log
WHERE datepath >= date_format(current_date - interval '1' day, '%Y/%m/%d')
  AND request_id = '6f1c1d8e-3c2b-4f7a-9d51-2a0b5f7e9c11'
ORDER BY at;

-- name: by-status-and-path-over-a-time-range
-- Server errors on one path between two instants (UTC): the day range
-- prunes the folders, the "time" range makes the bounds exact.
SELECT from_iso8601_timestamp("time") AS at, method, path, status, duration_ms, request_id
FROM access_logs.shop_access_log
WHERE datepath BETWEEN '2026/11/25' AND '2026/11/27'
  AND from_iso8601_timestamp("time") >= from_iso8601_timestamp('2026-11-25T22:00:00Z')
  AND from_iso8601_timestamp("time") < from_iso8601_timestamp('2026-11-26T06:00:00Z')
  AND status >= 500
  AND path LIKE '/orders/%'
ORDER BY at
LIMIT 1000;

-- name: status-counts-per-hour
-- How many answers of each status class per hour over the last day: the
-- shape of an incident at a glance.
SELECT date_trunc('hour', from_iso8601_timestamp("time")) AS hour,
       status / 100 AS status_class,
       count(*) AS requests,
       approx_percentile(duration_ms, 0.99) AS p99_ms
FROM access_logs.shop_access_log
WHERE datepath >= date_format(current_date - interval '1' day, '%Y/%m/%d')
GROUP BY 1, 2
ORDER BY 1, 2;

-- name: lines-per-day-and-duplicates
-- Rows against distinct request ids per day: firetail delivers at least once,
-- so a crash or a timed-out call can leave a few duplicates; this shows how
-- many (and is the oracle of a chaos test: docs/chaos.md).
SELECT datepath, count(*) AS rows_stored, count(DISTINCT request_id) AS requests,
       count(*) - count(DISTINCT request_id) AS duplicates
FROM access_logs.shop_access_log
WHERE datepath >= date_format(current_date - interval '7' day, '%Y/%m/%d')
GROUP BY datepath
ORDER BY datepath;

-- name: one-pod-over-a-time-range
-- Every line one pod wrote, as it shipped them: firetail adds the pod's name,
-- namespace and node (from the Downward API) to each record, so a pod that
-- misbehaved, or is gone, can be read back on its own.
SELECT from_iso8601_timestamp("time") AS at, method, path, status, duration_ms, request_id, node
FROM access_logs.shop_access_log
WHERE datepath BETWEEN '2026/11/25' AND '2026/11/27'
  AND from_iso8601_timestamp("time") >= from_iso8601_timestamp('2026-11-26T17:00:00Z')
  AND from_iso8601_timestamp("time") < from_iso8601_timestamp('2026-11-26T18:00:00Z')
  AND namespace = 'shop'
  AND pod = 'shop-web-7d4b9c-x2x8q'
ORDER BY at;

-- name: errors-per-node-and-pod
-- Server errors per node and pod over the last day: one bad node (or one bad
-- pod among its replicas) stands out.
SELECT node, pod, count(*) AS errors, count(DISTINCT path) AS paths
FROM access_logs.shop_access_log
WHERE datepath >= date_format(current_date - interval '1' day, '%Y/%m/%d')
  AND namespace = 'shop'
  AND status >= 500
GROUP BY node, pod
ORDER BY errors DESC
LIMIT 50;
