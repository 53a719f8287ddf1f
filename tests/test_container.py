"""The image, built from the Dockerfile and run with podman.

Runs where ATESS_REQUIRE_PODMAN=1 (CI: .ci/run installs podman, mmdebstrap and
runc and sets it); skipped elsewhere, since it builds a Debian base image. The
base image is made from Debian packages with mmdebstrap (python3, python3-venv,
python-is-python3, ca-certificates, from the mirror apt is configured with) and
`podman import`, then given to the Dockerfile as PYTHON_IMAGE. Both the base and
the build layers stay in podman's store, so a second run only rebuilds what
changed.

Set ATESS_CONTAINER_REPORT=PATH to get the timings (base, build, image size,
start to first scrape, stop) written there; .ci/run prints them.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import resource
import shutil
import ssl
import subprocess
import time
import uuid
from pathlib import Path

import bcrypt
import pytest
import yaml
from support import free_port, server_certificate, wait_for

ROOT = Path(__file__).resolve().parent.parent
BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
STATE_DIR = "/var/lib/atess-exporter"
USER, PASSWORD = "prometheus", "container health password"
REPORT: dict[str, object] = {}

pytestmark = pytest.mark.podman

if os.environ.get("ATESS_REQUIRE_PODMAN") != "1":
    pytest.skip("the image test builds a Debian base image with mmdebstrap and podman: it runs in CI "
                "(.ci/run sets ATESS_REQUIRE_PODMAN=1)", allow_module_level=True)


def tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.fail(f"{name} is required (ATESS_REQUIRE_PODMAN=1) but not on PATH; .ci/run installs it")
    return path


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    # No systemd on these machines: cgroupfs, events in a file, runc; health checks are run by hand.
    cmd = [tool("podman"), "--runtime", "runc", "--cgroup-manager", "cgroupfs", "--events-backend", "file", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        pytest.fail(f"podman {' '.join(args[:3])} ... exited {res.returncode}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return res


def ulimits() -> list[str]:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return ["--ulimit", f"nofile={hard}:{hard}", "--ulimit", "nproc=32768:32768"]


def apt_sources() -> tuple[str, str]:
    """(suite, sources file) of the host's apt: the base comes from the same mirror."""
    release = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().split("\n") if "=" in line)
    suite = release.get("VERSION_CODENAME", "").strip('"')
    for candidate in ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"):
        if Path(candidate).is_file() and Path(candidate).read_text().strip():
            return suite, candidate
    pytest.fail("no apt sources (/etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list)")


def report(key: str, value) -> None:
    REPORT[key] = value
    path = os.environ.get("ATESS_CONTAINER_REPORT")
    if path:
        Path(path).write_text(json.dumps(REPORT, indent=1) + "\n")


@pytest.fixture(scope="module")
def base_image() -> str:
    suite, sources = apt_sources()
    key = hashlib.sha256(f"{suite}\n{Path(sources).read_text()}\n{BASE_PACKAGES}".encode()).hexdigest()[:12]
    tag = f"localhost/atess-exporter-base:{suite}-{key}"
    if podman("image", "exists", tag, check=False).returncode == 0:
        report("base_image_seconds", "cached")
        return tag
    start = time.monotonic()
    tarball = Path("/var/tmp") / f"atess-exporter-base-{key}-{os.getpid()}.tar"
    try:
        res = subprocess.run([tool("mmdebstrap"), "--variant=minbase", "--mode=root",
                              "--include=" + ",".join(BASE_PACKAGES), suite, str(tarball), sources],
                             capture_output=True, text=True, timeout=1200)
        assert res.returncode == 0, res.stderr[-3000:]
        podman("import", str(tarball), tag, timeout=600)
    finally:
        tarball.unlink(missing_ok=True)
    report("base_image_seconds", round(time.monotonic() - start, 1))
    return tag


@pytest.fixture(scope="module")
def image(base_image) -> str:
    tag = "localhost/atess-exporter:ci"
    start = time.monotonic()
    # The host's CA bundle is mounted for RUN steps only (pip reaches the index through
    # this network's TLS); nothing of it stays in a layer.
    podman("build", "--format", "docker", "--network", "host", *ulimits(),
           "--build-arg", f"PYTHON_IMAGE={base_image}", "-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro",
           "-t", tag, str(ROOT), timeout=1800)
    report("build_seconds", round(time.monotonic() - start, 1))
    size = int(podman("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip())
    base = int(podman("image", "inspect", "--format", "{{.Size}}", base_image).stdout.strip())
    report("image_mb", round(size / 1e6, 1))
    report("image_over_base_mb", round((size - base) / 1e6, 1))
    return tag


@pytest.fixture
def containers():
    """run(*args) -> name of a started container; all removed afterwards."""
    names = []

    def run(*args: str, detach: bool = True) -> str:
        name = f"atess-test-{uuid.uuid4().hex[:10]}"
        names.append(name)
        podman("run", *(["-d"] if detach else []), "--name", name, "--network", "host", *ulimits(), *args)
        return name

    yield run
    for name in names:
        podman("rm", "-f", "-t", "0", name, check=False)


def get(port: int, path: str, context: ssl.SSLContext | None = None, auth: str | None = None,
        timeout: float = 5) -> tuple[int, bytes]:
    conn = (http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=context) if context
            else http.client.HTTPConnection("127.0.0.1", port, timeout=timeout))
    try:
        headers = {"Authorization": auth} if auth else {}
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def state(name: str, field: str) -> str:
    return podman("inspect", "--format", "{{." + field + "}}", name).stdout.strip()


def stop(name: str) -> float:
    start = time.monotonic()
    podman("stop", "-t", "10", name, timeout=60)
    return time.monotonic() - start


def healthcheck(name: str) -> tuple[int, str]:
    res = podman("healthcheck", "run", name, check=False, timeout=60)
    health = json.loads(podman("inspect", "--format", "{{json .State.Health}}", name).stdout or "{}") or {}
    log = health.get("Log") or [{}]
    return res.returncode, log[-1].get("Output", "")


# ------------------------------------------------------------------ the image itself

def test_image_metadata(image):
    inspected = json.loads(podman("image", "inspect", image).stdout)[0]
    config = inspected["Config"]
    assert config["User"] == "10036:0"
    assert config["Entrypoint"] == ["atess-exporter"] and not config.get("Cmd")
    assert "ATESS_CONFIG_FILE=/etc/atess-exporter/config.yaml" in config["Env"]
    assert inspected["Healthcheck"]["Test"] == ["CMD", "atess-exporter", "healthcheck"]   # kept by --format docker
    assert config["Labels"]["org.opencontainers.image.licenses"] == "Apache-2.0"


def test_runtime_venv_has_no_pip_nor_setuptools_and_carries_the_license(image, containers):
    script = ("import importlib.metadata as m, importlib.util as u, os, sys; "
              "print(json.dumps({'pip': bool(u.find_spec('pip')), 'setuptools': bool(u.find_spec('setuptools')), "
              "'pip_script': os.path.exists('/opt/venv/bin/pip'), 'prefix': sys.prefix, "
              "'license': [str(f) for f in m.files('atess-exporter') if 'LICENSE' in str(f)], "
              "'versions': {d.metadata['Name'].lower(): d.version for d in m.distributions()}}))")
    out = podman("run", "--rm", *ulimits(), "--entrypoint", "python", image, "-c", "import json; " + script).stdout
    facts = json.loads(out.strip().splitlines()[-1])
    assert facts["prefix"] == "/opt/venv"
    assert not facts["pip"] and not facts["setuptools"] and not facts["pip_script"]
    assert facts["license"], "the wheel carries no LICENSE"
    locked = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "requirements.lock").read_text(), re.M))
    def norm(name):     # PEP 503 names: prometheus_client == prometheus-client
        return re.sub(r"[-_.]+", "-", name).lower()

    installed = {norm(k): v for k, v in facts["versions"].items() if norm(k) != "atess-exporter"}
    assert installed == {norm(k): v for k, v in locked.items()}


def test_config_path_survives_flags_and_a_token_is_all_it_needs(image):
    """`docker run IMAGE --web.listen-address :9999` still reads the built-in config."""
    no_token = podman("run", "--rm", *ulimits(), image, "--web.listen-address", ":9999", "--check-config", check=False)
    assert no_token.returncode == 1
    assert ("/etc/atess-exporter/config.yaml: atess.token: environment variable ATESS_TOKEN is not set"
            in no_token.stderr)
    ok = podman("run", "--rm", *ulimits(), "-e", "ATESS_TOKEN=only-a-token", image,
                "--web.listen-address", ":9999", "--check-config")
    assert ok.stdout.startswith("/etc/atess-exporter/config.yaml: OK")
    assert "only-a-token" not in ok.stdout + ok.stderr


def test_an_arbitrary_uid_in_group_0_can_write_the_state_directory(image):
    script = (f"import os; p = os.path.join({STATE_DIR!r}, 'atess-exporter-state.json'); "
              "open(p + '.tmp', 'w').write('{}'); os.replace(p + '.tmp', p); "
              "print(os.getuid(), os.getgid(), os.getcwd(), open(p).read())")
    out = podman("run", "--rm", *ulimits(), "--user", "123457:0", "--entrypoint", "python", image, "-c", script).stdout
    assert out.split() == ["123457", "0", STATE_DIR, "{}"]


# ------------------------------------------------------------------ running it

def test_demo_on_another_port_scrapes_is_healthy_and_stops_cleanly(image, containers):
    port = free_port()
    start = time.monotonic()
    name = containers(image, "--demo", "--log.format", "json", "--web.listen-address", f"127.0.0.1:{port}")

    def scraped():
        status, body = get(port, "/metrics")
        return status == 200 and b"atess_device_up{" in body and body

    body = wait_for(scraped, "/metrics with the demo devices")
    report("start_to_first_scrape_seconds", round(time.monotonic() - start, 2))
    assert b'atess_device_up{' in body
    assert get(port, "/healthz") == (200, b"ok\n")

    rc, output = healthcheck(name)
    assert rc == 0, output
    assert f"http://127.0.0.1:{port}/healthz answered 200" in output
    # the same check against a port nobody serves fails: it is no constant "healthy"
    wrong = podman("exec", name, "atess-exporter", "healthcheck", "--web.listen-address", f"127.0.0.1:{free_port()}",
                   check=False)
    assert wrong.returncode == 1 and "unhealthy" in wrong.stderr

    uid = podman("exec", name, "cat", "/proc/1/status").stdout
    [real, *_] = re.search(r"^Uid:\s+(.*)$", uid, re.M).group(1).split()
    assert real == "10036"
    res = podman("logs", name)
    records = [json.loads(line) for line in (res.stdout + res.stderr).splitlines() if line.startswith("{")]
    assert any(r.get("msg") and r.get("level") for r in records), "--log.format json: no JSON log line"

    took = stop(name)
    report("stop_seconds", round(took, 2))
    assert took < 2, f"podman stop took {took:.2f}s"
    assert state(name, "State.ExitCode") == "0"


def test_stop_right_after_start_is_quick_and_clean(image, containers):
    name = containers(image, "--demo", "--web.listen-address", f"127.0.0.1:{free_port()}")
    time.sleep(0.1)   # the scenario itself: a stop 0.1 s into the start-up, not a wait for something
    took = stop(name)
    report("stop_at_0.1s_seconds", round(took, 2))
    assert took < 2, f"podman stop 0.1 s after start took {took:.2f}s"
    assert state(name, "State.ExitCode") == "0"


def make_web_config(d: Path) -> Path:
    server_certificate(d, "server")
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    (d / "web.yml").write_text(yaml.safe_dump({"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key"},
                                               "basic_auth_users": {USER: hashed}}))
    (d / "password").write_text(PASSWORD + "\n")
    for f in d.iterdir():
        f.chmod(0o644)     # read by the image's user, uid 10036 (test files only)
    d.chmod(0o755)
    return d


@pytest.mark.parametrize("login", [True, False], ids=["with-credentials", "challenge-only"])
def test_healthcheck_under_tls_and_basic_auth(image, containers, tmp_path, login):
    (tmp_path / "web").mkdir()
    web = make_web_config(tmp_path / "web")
    port = free_port()
    env = ["-e", "ATESS_HEALTHCHECK_USERNAME=" + USER,
           "-e", "ATESS_HEALTHCHECK_PASSWORD_FILE=/etc/atess-exporter/web/password"] if login else []
    # the web config comes by variable and the port by flag: the check must find both
    name = containers("-v", f"{web}:/etc/atess-exporter/web:ro", "-e",
                      "ATESS_WEB_CONFIG_FILE=/etc/atess-exporter/web/web.yml", *env,
                      image, "--demo", "--web.listen-address", f"127.0.0.1:{port}")
    context = ssl.create_default_context(cafile=str(web / "server.crt"))
    wait_for(lambda: get(port, "/healthz", context)[0] == 401, "https /healthz asking for basic auth")
    import base64
    auth = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert get(port, "/healthz", context, auth) == (200, b"ok\n")

    rc, output = healthcheck(name)
    assert rc == 0, output
    assert f"https://127.0.0.1:{port}/healthz answered {200 if login else 401}" in output
    assert PASSWORD not in output
    took = stop(name)
    assert took < 2 and state(name, "State.ExitCode") == "0"
