"""`mkdocs serve` as a user runs it, following a run that is still writing step files."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from conftest import simple_run, tok, trajectory, write_step


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode("utf-8")
    except (urllib.error.URLError, ConnectionError):
        return ""


def wait_for(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.3)
    return False


def test_serve_picks_up_new_and_completed_step_files(tmp_path: Path):
    runs = tmp_path / "results"
    simple_run(runs, "exp", (1, 2))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text("# Home\n")
    port = free_port()
    config = {"site_name": "live", "theme": {"name": "material", "font": False},
              "plugins": ["search", {"trajdocs": {"runs": "results"}}]}
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    log_path = tmp_path / "serve.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen([sys.executable, "-m", "mkdocs", "serve", "-a", f"127.0.0.1:{port}"],
                                  cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}/runs/exp/"
    try:
        assert wait_for(lambda: "step-2/" in fetch(base)), log_path.read_text()

        # a half-written file: listed as unreadable, the server keeps serving
        full = json.dumps([trajectory(3, 0, [tok("new", True, 2.0)])], indent=2)
        path = write_step(runs, "exp", 3, full[: len(full) // 2])
        assert wait_for(lambda: "unreadable" in fetch(base)), log_path.read_text()
        assert "step-1/" in fetch(base)

        # the trainer finishes writing: the next rebuild reads it
        path.write_text(full)
        assert wait_for(lambda: "unreadable" not in fetch(base) and "step-3/" in fetch(base)), log_path.read_text()
        assert 'data-e="2"' in fetch(base + "step-3/")
        assert wait_for(lambda: re.search(r"1 read, 2 from cache", log_path.read_text()) is not None), \
            "unchanged steps should come from the cache on rebuilds"
        assert str(path) in log_path.read_text()  # the half-written file was named in a warning
        assert "new steps: exp step 3" in log_path.read_text()
    finally:
        server.terminate()
        server.wait(timeout=10)
