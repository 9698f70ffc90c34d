"""A user's files are never lost: dangerous output folders refused, temporary folders removed on
every way out, and the one-off commands as fast the second time."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mkdocs.exceptions import Abort

from conftest import build_site, read, simple_run

ENV = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}


def run(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env or ENV, capture_output=True, text=True)


def tree_hash(folder: Path) -> dict[str, str]:
    """Every file and link under a folder with a hash of its bytes (or its link target)."""
    found = {}
    for here, dirs, names in os.walk(folder):
        for name in dirs + names:
            path = Path(here) / name
            rel = str(path.relative_to(folder))
            if path.is_symlink():
                found[rel] = "link:" + os.readlink(path)
            elif path.is_file():
                found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                found[rel] = "folder"
    return found


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder as a user has it: runs, notes, a paper folder."""
    simple_run(tmp_path / "results", "exp", (1, 2))
    (tmp_path / "notes.md").write_text("hours of GPU time\n")
    (tmp_path / "paper").mkdir()
    (tmp_path / "paper" / "draft.tex").write_text("\\section{Results}\n")
    (tmp_path / "paper" / "fig.png").write_bytes(b"\x89PNG not really")
    return tmp_path


def wait_for_page(server: subprocess.Popen, url: str, text: bytes, log: Path) -> None:
    """Until the served page at `url` holds `text` (a minute at most, while the server runs)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if text in r.read():
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(read(log))


@pytest.mark.parametrize("output, why", [
    ("results", "is the runs folder"),
    ("results/exp", "lies inside the runs folder"),
    ("results/new-site", "lies inside the runs folder"),
    (".", "holds the runs folder"),
    ("..", "holds the runs folder"),
    ("paper", "does not look like a site"),
])
def test_dangerous_output_folders_are_refused_and_nothing_is_touched(project, output, why):
    before = tree_hash(project.parent)
    refused = run("trajdocs", "build", "results", "-o", output, cwd=project)
    assert refused.returncode == 1, refused.stderr
    assert "refusing to build" in refused.stderr and why in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    assert tree_hash(project.parent) == before


def test_output_folder_is_compared_by_real_path(project, tmp_path):
    (tmp_path / "alias").symlink_to(project / "results")
    (project / "paper" / "runs-link").symlink_to(project / "results")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("keep")
    before = tree_hash(project)
    for output in ("alias", "alias/sub"):
        refused = run("trajdocs", "build", "results", "-o", output, cwd=project)
        assert refused.returncode == 1 and "runs folder" in refused.stderr, refused.stderr
    # the current folder, even when the runs are elsewhere
    refused = run("trajdocs", "build", str(project / "results"), "-o", ".", "--force", cwd=elsewhere)
    assert refused.returncode == 1 and "current folder" in refused.stderr, refused.stderr
    assert read(elsewhere / "keep.txt") == "keep"
    # the temporary configuration folder, even with --force
    refused = run("trajdocs", "build", str(project / "results"), "-o", str(elsewhere), "--force", cwd=project,
                  env={**ENV, "TMPDIR": str(elsewhere)})
    assert refused.returncode == 1 and "temporary configuration folder" in refused.stderr, refused.stderr
    assert read(elsewhere / "keep.txt") == "keep" and sorted(os.listdir(elsewhere)) == ["keep.txt"]
    assert tree_hash(project) == before


def test_force_replaces_a_folder_of_other_files(project):
    before = tree_hash(project / "results")
    forced = run("trajdocs", "build", "results", "-o", "paper", "--force", cwd=project)
    assert forced.returncode == 0, forced.stderr
    assert (project / "paper" / "runs" / "exp" / "step-2" / "index.html").exists()
    assert not (project / "paper" / "draft.tex").exists()
    assert tree_hash(project / "results") == before
    # --clean is the same option
    (project / "other").mkdir()
    (project / "other" / "a.txt").write_text("a")
    assert run("trajdocs", "build", "results", "-o", "other", "--clean", cwd=project).returncode == 0


def test_previous_sites_are_replaced_as_before(project):
    built = run("trajdocs", "build", "results", "-o", "site", cwd=project)
    assert built.returncode == 0, built.stderr
    assert (project / "site" / ".trajdocs-site").exists()
    simple_run(project / "results", "exp", (3,))
    again = run("trajdocs", "build", "results", "-o", "site", cwd=project)
    assert again.returncode == 0, again.stderr
    assert (project / "site" / "runs" / "exp" / "step-3" / "index.html").exists()
    # a site built before the marker existed (or by plain MkDocs) is recognised by its files
    (project / "site" / ".trajdocs-site").unlink()
    old = run("trajdocs", "build", "results", "-o", "site", cwd=project)
    assert old.returncode == 0, old.stderr
    # ... unless something in it is not a web file
    (project / "site" / ".trajdocs-site").unlink()
    (project / "site" / "runs" / "exp" / "checkpoint.pt").write_bytes(b"weights")
    refused = run("trajdocs", "build", "results", "-o", "site", cwd=project)
    assert refused.returncode == 1 and "does not look like a site" in refused.stderr
    assert (project / "site" / "runs" / "exp" / "checkpoint.pt").exists()


def test_plugin_refuses_runs_and_site_dir_inside_each_other(tmp_path, caplog):
    simple_run(tmp_path / "results", "exp", (1,))
    before = tree_hash(tmp_path / "results")
    for plugin, site_dir, why in (({"runs": "results"}, "results", "is the runs folder"),
                                  ({"runs": "results"}, "results/site", "lies inside the runs folder"),
                                  ({"runs": "."}, "site", "lies inside the runs folder"),
                                  ({"runs": ["results", "results/exp"]}, "results/exp/out", "lies inside"),
                                  ({"runs": "results/exp"}, "results", "holds the runs folder"),
                                  ({"runs": "results"}, "linked-site", "is the runs folder")):
        if site_dir == "linked-site":
            (tmp_path / "linked-site").symlink_to(tmp_path / "results")
        caplog.clear()
        with pytest.raises(Abort):
            build_site(tmp_path, plugin=plugin, site_dir=str(tmp_path / site_dir))
        assert any(f"site_dir {tmp_path / site_dir} {why}" in r.getMessage() for r in caplog.records), caplog.text
        assert tree_hash(tmp_path / "results") == before
    # site_dir at the folder of mkdocs.yml, with the docs and the runs elsewhere
    (tmp_path / "own-docs").mkdir()
    (tmp_path / "own-docs" / "index.md").write_text("# Home\n")
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "notes.md").write_text("mine\n")
    caplog.clear()
    with pytest.raises(Abort):
        build_site(tmp_path / "project", plugin={"runs": str(tmp_path / "results")}, site_dir=str(tmp_path / "project"),
                   docs_dir=str(tmp_path / "own-docs"))
    assert "holds mkdocs.yml" in caplog.text, caplog.text
    assert read(tmp_path / "project" / "notes.md") == "mine\n"
    site = build_site(tmp_path, plugin={"runs": "results"})
    assert (site / ".trajdocs-site").exists()


def test_second_one_off_build_reads_from_the_cache(tmp_path):
    simple_run(tmp_path / "results", "exp", (1, 2, 3))
    env = {**ENV, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    first = run("trajdocs", "build", "results", "-o", "site", cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    assert "3 read" in first.stderr and "0 from cache" in first.stderr, first.stderr
    second = run("trajdocs", "build", "results", "-o", "site", cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stderr
    assert "0 read, 3 from cache" in second.stderr, second.stderr
    assert list((tmp_path / "cache" / "trajdocs").iterdir())
    page = read(tmp_path / "site" / "runs" / "exp" / "index.html")
    assert "Folder <code>results/exp/trajectories</code>" in page
    assert "tmp" not in page.split("Folder <code>")[1].split("</code>")[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_stopped_serve_leaves_no_temporary_folder(tmp_path, stop):

    simple_run(tmp_path / "results", "exp", (1, 2))
    temp = tmp_path / "tmp"  # the command's own temporary folder: nothing else writes there
    temp.mkdir()
    port = free_port()
    env = {**ENV, "XDG_CACHE_HOME": str(tmp_path / "cache"), "TMPDIR": str(temp)}
    with open(tmp_path / "serve.log", "w") as log:
        server = subprocess.Popen([sys.executable, "-m", "trajdocs", "serve", "results", "-a", f"127.0.0.1:{port}"],
                                  cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_page(server, f"http://127.0.0.1:{port}/runs/exp/", b"step-2", tmp_path / "serve.log")
        assert any(p.name.startswith("trajdocs-site-") for p in temp.iterdir()), list(temp.iterdir())
        server.send_signal(stop)
        server.wait(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
    assert not list(temp.iterdir()), (list(temp.iterdir()), read(tmp_path / "serve.log"))
    assert "Traceback" not in read(tmp_path / "serve.log")


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_stopped_build_leaves_no_temporary_folder(tmp_path, stop):
    simple_run(tmp_path / "results", "exp", range(1, 160), per_step=40)  # a build of a few seconds
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**ENV, "XDG_CACHE_HOME": str(tmp_path / "cache"), "TMPDIR": str(temp)}
    build = subprocess.Popen([sys.executable, "-m", "trajdocs", "build", "results", "-o", "site"], cwd=tmp_path,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 30
    def started() -> bool:
        return any(p.name.startswith("trajdocs-site-") for p in temp.iterdir())

    while not started() and time.monotonic() < deadline and build.poll() is None:
        time.sleep(0.02)
    if not started():
        pytest.fail(f"no temporary configuration seen: {build.communicate(timeout=30)[0].decode()}")
    os.killpg(build.pid, stop)  # as a terminal does: the build and its worker processes
    output = build.communicate(timeout=30)[0].decode()
    assert not list(temp.iterdir()), output
    assert "Traceback" not in output, output


def test_serve_on_a_busy_port_fails_before_building(tmp_path):
    simple_run(tmp_path / "results", "exp", (1,))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        started = time.monotonic()
        failed = run("trajdocs", "serve", "results", "-a", f"127.0.0.1:{port}", cwd=tmp_path)
    assert failed.returncode == 1 and f"127.0.0.1:{port}" in failed.stderr, failed.stderr
    assert "Building documentation" not in failed.stderr and "Traceback" not in failed.stderr
    assert time.monotonic() - started < 20


def test_every_option_of_every_command_is_described():
    from trajdocs.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse has no public way
    for name, sub in commands.items():
        for action in sub._actions:  # noqa: SLF001
            assert action.help, f"trajdocs {name} {action.option_strings or action.dest} has no help"


def test_init_in_place_says_no_cd(tmp_path):
    made = run("trajdocs", "init", cwd=tmp_path)
    assert made.returncode == 0 and "next: mkdocs serve" in made.stdout and "cd ." not in made.stdout
    (tmp_path / "sub").mkdir()
    elsewhere = run("trajdocs", "init", "sub", cwd=tmp_path)
    assert "next: cd sub && mkdocs serve" in elsewhere.stdout


def test_counts_are_in_the_singular_for_one(tmp_path):
    simple_run(tmp_path / "results", "exp", (1,), per_step=1)
    checked = run("trajdocs", "check", "results", cwd=tmp_path)
    assert "1 experiment," in checked.stdout and "1 step file," in checked.stdout, checked.stdout
    assert "exp: 1 step (1–1)" in checked.stdout, checked.stdout
    built = run("trajdocs", "build", "results", "-o", "site", cwd=tmp_path,
                env={**ENV, "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert "1 experiment, 1 step (" in built.stderr, built.stderr
    page = read(tmp_path / "site" / "runs" / "exp" / "index.html")
    assert "· 1 step (1–1) · 1 trajectory" in page


def wrong_runs(root: Path) -> Path:
    """A folder a user might point `runs` at by mistake: JSON files, none a step file."""
    (root / "exp" / "trajectories").mkdir(parents=True)
    (root / "exp" / "trajectories" / "step5.json").write_text("[]")
    (root / "exp" / "config.json").write_text("{}")
    (root / ".old" / "trajectories").mkdir(parents=True)
    (root / ".old" / "trajectories" / "trajectories_step_3.json").write_text("[]")
    (root / "rollouts.jsonl").write_text("{}\n")
    return root


def test_check_fails_on_an_empty_or_wrong_runs_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    wrong_runs(tmp_path / "wrong")
    simple_run(tmp_path / "good", "exp", (1,))
    empty = run("trajdocs", "check", "empty", cwd=tmp_path)
    assert empty.returncode == 1, empty.stdout
    assert "no step files in the runs folder empty" in empty.stdout and "The folder is empty" in empty.stdout
    assert "_step_<N>.json" in empty.stdout and "<N>.jsonl" in empty.stdout
    wrong = run("trajdocs", "check", "wrong", cwd=tmp_path)
    assert wrong.returncode == 1 and "no step files in the runs folder wrong" in wrong.stdout, wrong.stdout
    for miss in ("exp/trajectories/step5.json (not a step file name)", "exp/config.json", "rollouts.jsonl",
                 ".old/trajectories/trajectories_step_3.json (inside a folder trajdocs skips",
                 "exp/trajectories/ (a trajectories folder without step files)"):
        assert miss in wrong.stdout, (miss, wrong.stdout)
    both = run("trajdocs", "check", "good", "wrong", cwd=tmp_path)
    assert both.returncode == 1 and "runs folder wrong" in both.stdout and "runs folder good" not in both.stdout
    assert run("trajdocs", "check", "good", cwd=tmp_path).returncode == 0


def test_builds_warn_on_an_empty_or_wrong_runs_folder(tmp_path, warnings_logged):
    wrong_runs(tmp_path / "results")
    site = build_site(tmp_path)  # a plain build works: training may not have written a step yet
    assert "No step files found yet" in read(site / "runs" / "index.html")
    assert any("no step files in the runs folder" in m and "step5.json" in m for m in warnings_logged), warnings_logged
    with pytest.raises(Abort):
        build_site(tmp_path, strict=True)
    (tmp_path / "empty").mkdir()
    env = {**ENV, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    plain = run("trajdocs", "build", "empty", "-o", "site-a", cwd=tmp_path, env=env)
    assert plain.returncode == 0 and "no step files in the runs folder" in plain.stderr, plain.stderr
    strict = run("trajdocs", "build", "empty", "-o", "site-b", "--strict", cwd=tmp_path, env=env)
    assert strict.returncode == 1, strict.stderr


STOPPED_IN_A_CALLBACK = """
import sys, time, weakref
import trajdocs.cli as cli

def fake_mkdocs(arguments):
    class Thing:
        pass
    thing = Thing()
    def callback(_):
        print("in callback", flush=True)
        time.sleep(3)  # the signal comes now: Python prints and drops what a callback raises
    ref = weakref.ref(thing, callback)
    del thing
    while True:
        time.sleep(0.05)

cli._mkdocs = fake_mkdocs
sys.exit(cli.main(["build", sys.argv[1], "-o", sys.argv[2]]))
"""


def test_a_signal_dropped_by_python_still_stops_the_command(tmp_path):
    simple_run(tmp_path / "results", "exp", (1,))
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**ENV, "TMPDIR": str(temp), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-c", STOPPED_IN_A_CALLBACK, "results", "site"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "in callback"
        proc.send_signal(signal.SIGTERM)
        _, errors = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, errors
    assert not list(temp.iterdir()) and "Traceback" not in errors, errors


def test_serve_is_not_refused_for_a_site_dir_it_never_writes(tmp_path):
    """`mkdocs serve` builds into a fresh temporary folder: a site_dir that a build would refuse
    does not stop it."""

    import yaml

    simple_run(tmp_path, "exp", (1,))  # runs: "." holds site/
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text("# Home\n")
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump({"site_name": "x", "theme": {"name": "material", "font": False},
                                                         "plugins": ["search", {"trajdocs": {"runs": "."}}]}))
    assert run("mkdocs", "build", cwd=tmp_path).returncode == 1
    port = free_port()
    with open(tmp_path / "serve.log", "w") as log:
        server = subprocess.Popen([sys.executable, "-m", "mkdocs", "serve", "-a", f"127.0.0.1:{port}"], cwd=tmp_path,
                                  env=ENV, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_page(server, f"http://127.0.0.1:{port}/runs/exp/", b"step-1", tmp_path / "serve.log")
    finally:
        server.terminate()
        server.wait(timeout=30)
