"""What ships: the sdist carries the dashboards, deploy examples and docs; the lock files pin
every runtime dependency with hashes; the LICENSE is the one pyproject declares."""

import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SKIP = shutil.ignore_patterns(".git", ".venv*", "__pycache__", "*.pyc", ".pytest_cache", "*.egg-info", "build", "dist",
                              ".benchmarks", ".hypothesis")


def test_sdist_carries_dashboards_deploy_examples_and_docs(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=SKIP)
    out = tmp_path / "dist"
    out.mkdir()
    res = subprocess.run([sys.executable, "-c", "import sys, setuptools.build_meta as b; print(b.build_sdist(sys.argv[1]))",
                          str(out)], cwd=src, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    name = res.stdout.strip().splitlines()[-1]
    with tarfile.open(out / name) as tar:
        members = {m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name}
    wanted = {str(p.relative_to(ROOT)) for d in ("dashboards", "deploy", "docs", "examples")
              for p in (ROOT / d).rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    wanted |= {"LICENSE", "README.md", "config.yaml", "requirements.lock", "Dockerfile", "atess_exporter/cli.py"}
    assert "docs/deploy.md" in wanted and "deploy/kubernetes.yaml" in wanted
    assert not wanted - members, f"missing from the sdist: {sorted(wanted - members)}"
    assert not [m for m in members if m.endswith("state.json") or m.startswith(".venv")]


def test_lock_pins_every_runtime_dependency_with_hashes():
    lock = (ROOT / "requirements.lock").read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", lock, re.M))
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]

    def norm(name):
        return re.sub(r"[-_.]+", "-", name).lower()

    for dep in declared:
        assert norm(re.match(r"[A-Za-z0-9_.-]+", dep).group(0)) in {norm(p) for p in pins}, dep
    # every requirement line is followed by at least one hash
    blocks = re.split(r"^(?=[A-Za-z0-9_.-]+==)", lock, flags=re.M)[1:]
    assert len(blocks) == len(pins) and all("--hash=sha256:" in b for b in blocks)
    assert "setuptools" not in pins and "pip" not in pins   # build tools live in requirements-build.lock
    assert re.search(r"^setuptools==\S+ \\\n\s+--hash=sha256:", (ROOT / "requirements-build.lock").read_text(), re.M)


def test_license_is_the_declared_apache_2():
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text      # the full text, not a stub
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    assert 'org.opencontainers.image.licenses="Apache-2.0"' in (ROOT / "Dockerfile").read_text()


def test_make_demo_installs_only_the_exporter_and_takes_a_port(tmp_path):
    make = shutil.which("make")
    if not make:
        pytest.skip("make not installed")
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=SKIP)
    res = subprocess.run([make, "-n", "demo", "PORT=9999"], cwd=src, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    installs = [line for line in res.stdout.splitlines() if "pip install" in line]
    assert installs and all("[test]" not in line for line in installs), installs
    assert "--demo --web.listen-address 127.0.0.1:9999" in res.stdout
    res = subprocess.run([make, "-n", "test"], cwd=src, capture_output=True, text=True, timeout=60)
    assert any("pip install" in line and "'.[test]'" in line for line in res.stdout.splitlines())


def test_the_image_and_kubernetes_configs_load(tmp_path, monkeypatch):
    """The image's built-in config needs only ATESS_TOKEN; the Kubernetes ConfigMap only its token file."""
    import yaml

    from atess_exporter.config import ConfigError, load_config

    builtin = str(ROOT / "deploy" / "container" / "config.yaml")
    monkeypatch.delenv("ATESS_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="ATESS_TOKEN is not set"):
        load_config(builtin, writes_state=False)
    monkeypatch.setenv("ATESS_TOKEN", "a-token-from-the-environment")
    # (the state directory exists in the image, not here: the image test checks it is writable)
    config = load_config(builtin, writes_state=False)
    assert config.discovery.enabled and not config.devices
    assert config.state_file == "/var/lib/atess-exporter/atess-exporter-state.json"

    docs = [d for d in yaml.safe_load_all((ROOT / "deploy" / "kubernetes.yaml").read_text()) if d]
    text = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["config.yaml"]
    token = tmp_path / "token"
    token.write_text("a-token-from-a-secret\n")
    (tmp_path / "config.yaml").write_text(text.replace("/run/secrets/atess/token", str(token)))
    assert load_config(str(tmp_path / "config.yaml"), writes_state=False).discovery.enabled
