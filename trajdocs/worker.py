"""A worker process for builds: reads one job per line on stdin, renders that step file into the
cache, answers with its aggregates as one JSON line. Started by `cache.render_jobs`."""

from __future__ import annotations

import signal
import sys

from .cache import job_from_json, json_bytes, render_job


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the build's to handle; stdin closing ends this
    for line in sys.stdin:
        summary = render_job(job_from_json(line))
        sys.stdout.write(json_bytes(summary).decode() + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
