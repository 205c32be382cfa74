#!/usr/bin/env python3
"""The application container of the chaos suite (tests/it/chaos.rs): a stand-in for a
Rails + Sidekiq process that writes a JSON-lines access log into the pod's emptyDir.

It behaves the way the real thing does on its way out of a pod:

  serving    requests and jobs, one JSON line each (one write(2) per line, O_APPEND,
             as Ruby's Logger does), at --rate lines a second;
  SIGTSTP    (the preStop hook's `kill -TSTP`): quiet, no new work is fetched; the jobs
             already running still log;
  SIGTERM    finish the running jobs for --tail seconds, logging meanwhile (steadily,
             or with --tail-gap: a burst of --tail-burst lines every gap, as jobs
             complete), rotating the log --rotations-in-tail times the way Logger does
             (access.log.N -> .N+1, access.log -> access.log.0, a new access.log with
             the "# Logfile created on" header); then exit 0.

Run it through `sh -c 'exec python3 access_log_app.py ...'`, as an image's entrypoint
should: with `exec` the signals reach this process, not the shell.

Every line carries a fresh uuid and a sequence number. The ledger (--ledger, on the
app's own disk, not in the emptyDir) gets each uuid right after its line was written,
so it is exactly what the app wrote; it is fsynced at exit. The test's oracle compares
it with what the sink received. On stdout: "ready" once the log is open and the signal
handlers are installed, and a JSON summary at exit.
"""

import argparse
import datetime
import json
import os
import signal
import sys
import time
import uuid

HEADER = "# Logfile created on {} by logger.rb/v1.6.0\n"
TICK = 0.005


class App:
    def __init__(self, args):
        self.args = args
        self.log = args.log
        self.fd = self.create_log()
        self.ledger = os.open(args.ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.seq = 0
        self.rotations = 0
        self.quiet_at = None
        self.term_at = None

    def create_log(self):
        """Logger's create_logfile: a new file (O_EXCL) that starts with the header."""
        fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
        now = datetime.datetime.now(datetime.timezone.utc)
        os.write(fd, HEADER.format(now.strftime("%Y-%m-%d %H:%M:%S %z")).encode())
        return fd

    def rotate(self):
        """Logger's shift_log_age: .N -> .N+1 (oldest first), then the file -> .0."""
        for i in range(self.args.shift_age - 3, -1, -1):
            older = "{}.{}".format(self.log, i)
            if os.path.exists(older):
                os.rename(older, "{}.{}".format(self.log, i + 1))
        os.close(self.fd)
        os.rename(self.log, self.log + ".0")
        self.fd = self.create_log()
        self.rotations += 1

    def phase(self):
        if self.term_at is not None:
            return "finishing"
        if self.quiet_at is not None:
            return "quiet"
        return "serving"

    def write_line(self):
        line_id = str(uuid.uuid4())
        phase = self.phase()
        kind = "request" if phase == "serving" and self.seq % 4 else "job"
        record = {
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "level": "INFO",
            "app": self.args.tag,
            "uuid": line_id,
            "seq": self.seq,
            "phase": phase,
            "kind": kind,
            "method": "GET" if kind == "request" else None,
            "path": "/orders/{}".format(self.seq) if kind == "request" else None,
            "job_class": "InvoiceMailerJob" if kind == "job" else None,
            "status": 200,
            "duration_ms": round(3.5 + (self.seq % 97) * 0.75, 2),
            "remote_ip": "10.0.{}.{}".format(self.seq % 7, self.seq % 250),
        }
        os.write(self.fd, (json.dumps(record, separators=(",", ":")) + "\n").encode())
        os.write(self.ledger, (line_id + "\n").encode())
        self.seq += 1

    def run(self):
        args = self.args
        period = 1.0 / args.rate
        due = time.monotonic()
        bursts = 0
        rotated_in_tail = 0
        while True:
            now = time.monotonic()
            if self.term_at is None:
                # Serving or quiet: a steady stream (catching up in a burst if we were
                # descheduled, as a real process does).
                while due <= now:
                    self.write_line()
                    due += period
            else:
                since = now - self.term_at
                if args.rotations_in_tail and rotated_in_tail < args.rotations_in_tail:
                    at = args.tail * (rotated_in_tail + 1) / (args.rotations_in_tail + 1)
                    if since >= at:
                        self.rotate()
                        rotated_in_tail += 1
                if args.tail_gap > 0:
                    while (bursts + 1) * args.tail_gap <= min(since, args.tail) + 1e-9:
                        bursts += 1
                        for _ in range(args.tail_burst):
                            self.write_line()
                else:
                    while due <= min(now, self.term_at + args.tail):
                        self.write_line()
                        due += period
                if since >= args.tail:
                    return
            time.sleep(TICK)

    def close(self):
        os.fsync(self.fd)
        os.fsync(self.ledger)
        os.close(self.fd)
        os.close(self.ledger)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--log", required=True, help="the access log (in the emptyDir)")
    p.add_argument("--ledger", required=True, help="one uuid per line written")
    p.add_argument("--rate", type=float, default=500.0, help="lines a second")
    p.add_argument("--tail", type=float, default=2.0, help="seconds of work after TERM")
    p.add_argument("--tail-gap", type=float, default=0.0,
                   help="after TERM, a burst every this many seconds instead of a stream")
    p.add_argument("--tail-burst", type=int, default=20, help="lines per burst")
    p.add_argument("--rotations-in-tail", type=int, default=0,
                   help="Logger-style rotations, evenly spread over the tail")
    p.add_argument("--shift-age", type=int, default=5, help="Logger's shift_age")
    p.add_argument("--tag", default="app", help="the app field of every line")
    args = p.parse_args()

    app = App(args)

    def on_tstp(_signum, _frame):
        if app.quiet_at is None:
            app.quiet_at = time.monotonic()

    def on_term(_signum, _frame):
        if app.term_at is None:
            app.term_at = time.monotonic()

    signal.signal(signal.SIGTSTP, on_tstp)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    print("ready", flush=True)
    app.run()
    app.close()
    print(json.dumps({"written": app.seq, "rotations": app.rotations}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
