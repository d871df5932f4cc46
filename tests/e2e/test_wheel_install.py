"""The package as a platform engineer installs it: a wheel built from a clean copy, in its own virtual environment.

No ``--system-site-packages`` and no source tree on ``sys.path``: a file the wheel
forgets (generated code, a contract, a template) fails here. Dependencies come from
the configured package index (and whatever local wheel cache pip is set up with).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIP_DIRS = {".git", ".venv", "_pb", "__pycache__", "build", "dist", ".gateway-demo", "node_modules",
             "test-artifacts", ".pytest_cache", ".ruff_cache", ".hypothesis", ".mypy_cache"}  # fmt: skip

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _clean_copy(dest: Path) -> None:
    """What a fresh clone holds (tracked and not-ignored files), without generated code or a venv."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                                cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        listed = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file()]
    for name in filter(None, listed):
        src = ROOT / name
        if set(Path(name).parts) & SKIP_DIRS or not src.is_file():
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return env | {"PYTHONNOUSERSITE": "1"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A virtual environment holding only the wheel and its dependencies; yields its bin folder."""
    base = tmp_path_factory.mktemp("wheel")
    src, dist, env_dir = base / "src", base / "dist", base / "venv"
    _clean_copy(src)
    assert not (src / "gateway" / "_pb").exists()
    venv.create(env_dir, with_pip=True, system_site_packages=False)
    pip = [str(env_dir / "bin" / "python"), "-m", "pip", "--quiet"]
    subprocess.run([*pip, "wheel", "--no-deps", "--wheel-dir", str(dist), str(src)], check=True, env=_env())
    wheels = sorted(dist.glob("passerelle-*.whl"))
    assert len(wheels) == 1, wheels
    subprocess.run([*pip, "install", str(wheels[0])], check=True, env=_env())
    yield env_dir / "bin"


def test_the_wheel_carries_generated_code_stubs_and_contracts(installed: Path) -> None:
    code = ("import importlib.resources as r, gateway; p = r.files('gateway');"
            "print((p / '_pb/registry/population/v1/population_pb2.pyi').is_file(),"
            " (p / 'proto/registry/population/v1/population.proto').is_file())")  # fmt: skip
    out = subprocess.run([str(installed / "python"), "-c", code], capture_output=True, text=True, check=True,
                         cwd=installed.parent, env=_env())  # fmt: skip
    assert out.stdout.split() == ["True", "True"]


def test_grpcio_tools_is_not_installed_at_run_time(installed: Path) -> None:
    result = subprocess.run([str(installed / "python"), "-c", "import grpc_tools"], capture_output=True,
                            cwd=installed.parent, env=_env(), check=False)  # fmt: skip
    assert result.returncode != 0


def _wait_ready(proc: subprocess.Popen[str], timeout: float) -> None:
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if "Passerelle ready" in line:
            return
    proc.kill()
    raise AssertionError("gateway did not start:\n" + "".join(seen)[-4000:])


def test_the_installed_gateway_answers_the_readme_first_call(installed: Path, tmp_path: Path) -> None:
    """`gateway serve --demo` from an empty folder, then the README's first call."""
    rest, grpc_port = _free_port(), _free_port()
    gateway = str(installed / "gateway")
    proc = subprocess.Popen([gateway, "serve", "--demo", "--persons", "300", "--rest-port", str(rest),
                             "--grpc-port", str(grpc_port)], cwd=tmp_path, env=_env(), text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        _wait_ready(proc, 120)
        token = subprocess.run([gateway, "token", "--consumer", "cedies"], cwd=tmp_path, env=_env(),
                               capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        request = urllib.request.Request(
            f"http://127.0.0.1:{rest}/v1/population/persons/1991062434054",
            headers={"Authorization": f"Bearer {token}", "x-purpose": "student-aid", "x-case-id": "dossier-2026-0042"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            person = json.loads(response.read())
        with urllib.request.urlopen(f"http://127.0.0.1:{rest}/docs", timeout=30) as response:
            docs = response.read().decode()
    finally:
        proc.terminate()
        proc.wait(30)
    assert person.get("familyName") and "birthPlace" not in person, person   # only what the mandate allows
    assert "cdn" not in docs.lower()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".gateway-demo"]   # the demo keeps to its data folder


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
