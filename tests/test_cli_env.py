"""The command line a container user meets: ATESS_* defaults, the sub-commands in --help,
and a stop that works from the very start."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from atess_exporter.cli import SUBCOMMANDS, build_parser, env_name

ROOT = Path(__file__).resolve().parent.parent
MODES = ("--check-config", "--once", "--list-metrics", "--help", "--version")


def options():
    return [a for a in build_parser(environ={})._actions
            if a.option_strings and a.option_strings[0] not in MODES and a.option_strings[0] != "-h"]


def test_every_option_has_its_variable_named_in_help_and_readme():
    help_text = " ".join(build_parser(environ={}).format_help().split())
    readme = (ROOT / "README.md").read_text()
    names = [env_name(a.option_strings[0]) for a in options()]
    assert "ATESS_WEB_LISTEN_ADDRESS" in names and "ATESS_CONFIG_FILE" in names and "ATESS_LOG_LEVEL" in names
    for name in names:
        assert f"[env {name}]" in help_text
        assert f"`{name}`" in readme, f"{name} missing from the README's flag table"


def test_variables_set_the_defaults_and_flags_win():
    env = {"ATESS_WEB_LISTEN_ADDRESS": ":9999", "ATESS_CONFIG_FILE": "/etc/x.yaml", "ATESS_LOG_LEVEL": "debug",
           "ATESS_LOG_FORMAT": "json", "ATESS_SHARD": "1/3", "ATESS_DEMO": "true",
           "ATESS_WEB_CONFIG_FILE": "/etc/web.yml", "ATESS_WEB_TELEMETRY_PATH": "/m"}
    args = build_parser(environ=env).parse_args([])
    assert (args.listen_address, args.config_file, args.log_level, args.log_format, args.shard, args.demo,
            args.web_config_file, args.telemetry_path) == (":9999", "/etc/x.yaml", "debug", "json", "1/3", True,
                                                           "/etc/web.yml", "/m")
    args = build_parser(environ=env).parse_args(["--web.listen-address", "127.0.0.1:1", "--log.level", "warn"])
    assert (args.listen_address, args.log_level) == ("127.0.0.1:1", "warn")
    assert build_parser(environ={"ATESS_DEMO": "0"}).parse_args([]).demo is False


@pytest.mark.parametrize("name, value", [("ATESS_LOG_LEVEL", "verbose"), ("ATESS_LOG_FORMAT", "xml"),
                                         ("ATESS_DEMO", "maybe")])
def test_a_bad_variable_is_a_one_line_error_naming_it(name, value):
    res = subprocess.run([sys.executable, "-m", "atess_exporter", "--check-config"], capture_output=True, text=True,
                         timeout=60, env={**os.environ, name: value})
    assert res.returncode == 2
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith(f"atess-exporter: error: {name}='{value}': expected ")


def test_variables_reach_the_exporter(tmp_path):
    """ATESS_CONFIG_FILE alone points the exporter at its config."""
    config = tmp_path / "c.yaml"
    config.write_text("atess: {token: t0ken-value, base_url: 'http://127.0.0.1:9'}\n"
                      "devices: [{sn: YKD0F1022A, type: hps_central}]\n")
    res = subprocess.run([sys.executable, "-m", "atess_exporter", "--check-config"], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "ATESS_CONFIG_FILE": str(config)}, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"{config}: OK (1 devices")


def test_help_lists_the_sub_commands_one_line_each():
    res = subprocess.run([sys.executable, "-m", "atess_exporter", "--help"], capture_output=True, text=True, timeout=60)
    lines = res.stdout.splitlines()
    for name in ("backfill", "healthcheck", "probe"):
        assert name in SUBCOMMANDS
        [line] = [ln for ln in lines if ln.split()[:1] == [name]]
        assert len(line.split()) > 3


# ------------------------------------------------------------------ a stop during start-up

def catches_sigterm(pid: int) -> bool:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc/PID/status (Linux)")
def test_sigterm_during_start_up_ends_it_with_exit_0(tmp_path):
    """The exporter is held inside its start-up (reading a web config from a FIFO) when SIGTERM comes:
    it must already handle it, finish the start-up at once and exit 0, not die of the signal
    (in a container, PID 1 without a handler would ignore it until the kill timeout)."""
    fifo = tmp_path / "web.yml"
    os.mkfifo(fifo)
    proc = subprocess.Popen([sys.executable, "-m", "atess_exporter", "--demo", "--web.listen-address", "127.0.0.1:0",
                             "--web.config.file", str(fifo)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        # Wait until the exporter is inside its start-up, blocked opening the FIFO.
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "the exporter never read its web config"
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)     # ENXIO until the exporter opens it
                break
            except OSError:
                time.sleep(0.01)
        assert catches_sigterm(proc.pid), "no SIGTERM handler during start-up"
        proc.send_signal(signal.SIGTERM)
        with os.fdopen(fd, "w") as fh:
            fh.write("http_server_config: {headers: {X-Frame-Options: deny}}\n")
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_backfill_reads_the_config_the_image_points_at(monkeypatch):
    """In the image, ATESS_CONFIG_FILE names the config; `IMAGE backfill --from ...` must find it too."""
    from atess_exporter import backfill

    monkeypatch.setenv("ATESS_CONFIG_FILE", "/etc/atess-exporter/config.yaml")
    assert backfill.build_parser().parse_args(["--from", "2024-05-01"]).config_file == "/etc/atess-exporter/config.yaml"
    args = backfill.build_parser().parse_args(["--from", "2024-05-01", "--config.file", "mine.yaml"])
    assert args.config_file == "mine.yaml"


# ------------------------------------------------------------------ Ctrl-C at any point of start-up

def start_demo() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "atess_exporter", "--demo", "--web.listen-address", "127.0.0.1:0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for_line(proc: subprocess.Popen, marker: str, timeout: float = 60) -> None:
    """Read stderr until `marker` appears (the exporter's own readiness line), bounded in time."""
    deadline = time.monotonic() + timeout
    for line in proc.stderr:
        if marker in line:
            return
        assert time.monotonic() < deadline, f"no {marker!r} within {timeout}s"
    pytest.fail(f"the exporter exited (rc {proc.wait()}) before {marker!r}")


def worker_threads(pid: int) -> list[int]:
    """Thread ids other than the main one, oldest first (the long-lived ones: servers, poller)."""
    return sorted(int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid)


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc/PID/task (Linux)")
def test_sigint_caught_by_a_worker_thread_stops_the_exporter():
    """kill(TID) hands the signal to that thread: the exporter used to sleep on until a second Ctrl-C
    when a worker thread, not the main one, caught it (the main thread never woke up to run the handler)."""
    proc = start_demo()
    try:
        wait_for_line(proc, "serving metrics")
        workers = worker_threads(proc.pid)
        assert workers, "expected the poller's and the server's threads"
        os.kill(workers[0], signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc/PID/task (Linux)")
def test_sigint_at_every_point_of_start_up_ends_the_exporter():
    """One Ctrl-C at increasing delays across the whole start-up (interpreter, imports, simulator, first
    discovery and poll, serving): every run ends by itself. Before main() has its handler, Python's own
    KeyboardInterrupt ends it (exit 1 or -SIGINT, by the interpreter); from then on it is a clean exit 0."""
    delays = [0.0] + [0.02 * 1.35 ** i for i in range(14)]      # 0 .. ~1 s, a bounded count
    outcomes = []
    for delay in delays:
        proc = start_demo()
        try:
            if delay:
                time.sleep(delay)   # a point in start-up, not a wait for something to happen
            proc.send_signal(signal.SIGINT)
            try:
                rc = proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                rc = "still running 20 s after Ctrl-C"
            outcomes.append((round(delay, 3), rc))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            proc.stderr.close()
    assert all(isinstance(rc, int) for _, rc in outcomes), outcomes
    assert outcomes[-1][1] == 0 and outcomes[-2][1] == 0, outcomes     # well into start-up: the exporter's own exit
