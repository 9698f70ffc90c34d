"""A worker process for builds: reads one job per line on stdin, renders that step file into the
cache, answers with its aggregates as one JSON line. Started by `build.run_jobs`."""

from __future__ import annotations

import signal
import sys

from .build import worker_answer


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the build's to handle; stdin closing ends this
    for line in sys.stdin:
        sys.stdout.write(worker_answer(line))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
