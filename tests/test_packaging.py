"""The wheel as a user installs it: built from the checkout, installed into a new virtual
environment, run from a directory that is not the checkout.

It must leave the tooling (benchmarks, demo) out and still find the templates, the static files
and the migrations inside the installed package. The environment reuses the dev environment's
dependencies (a path in a ``.pth`` file), so the test runs offline and in seconds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
import venv
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from backend.tooling.bench.processes import free_port

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "backend", "templates", "static")


@dataclass(frozen=True)
class Installed:
    wheel: Path
    bin: Path
    site_packages: Path
    workdir: Path  # neither the checkout nor on its path
    env: dict[str, str]

    def clicktrail(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / "clicktrail"), *args],
            cwd=self.workdir, env=self.env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("packaging")
    source = root / "source"  # a clean copy: no build/ or egg-info of earlier builds leaks in
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__")
            shutil.copytree(ROOT / name, source / name, symlinks=True, ignore=ignore)
        else:
            shutil.copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    dist = root / "dist"
    subprocess.run([*pip, "wheel", "-q", "--no-deps", "-w", dist, source], check=True)
    (wheel,) = dist.glob("clicktrail-*.whl")

    target = root / "venv"
    venv.create(target, with_pip=False)
    python = target / "bin" / "python"
    site_packages = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    )  # fmt: skip
    # The dev environment's dependencies; its editable clicktrail is not seen (the .pth files
    # of a directory added this way are not run).
    (site_packages / "dev-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([*pip, "--python", python, "install", "-q", "--no-deps", wheel], check=True)

    workdir = root / "work"
    workdir.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CLICKTRAIL_", "PYTHON", "VIRTUAL_ENV"))
    }
    return Installed(wheel, target / "bin", site_packages, workdir, env)


def test_the_wheel_leaves_the_tooling_out_and_carries_the_files_it_reads(
    installed: Installed,
) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())

    assert not [name for name in names if name.startswith("backend/tooling/")]
    assert not (installed.site_packages / "backend" / "tooling").exists()
    assert "backend/web/templates/admin/merchants.html" in names
    assert not package_files() - names


def package_files() -> set[str]:
    """Every file of the checkout's package (templates and static files through their links),
    named as in a wheel, the tooling left out."""
    files: set[str] = set()
    for directory, subdirectories, names in os.walk(ROOT / "backend", followlinks=True):
        subdirectories[:] = [name for name in subdirectories if name != "__pycache__"]
        files.update((Path(directory) / name).relative_to(ROOT).as_posix() for name in names)
    return {name for name in files if not name.startswith("backend/tooling/")}


def test_the_installed_command_runs_and_the_tooling_says_it_needs_a_checkout(
    installed: Installed,
) -> None:
    assert "bench" in installed.clicktrail("--help").stdout

    for command in ("bench", "demo"):
        answer = installed.clicktrail(command)
        assert answer.returncode == 1
        assert answer.stderr.strip().splitlines() == [
            f"clicktrail {command} runs from a checkout (pip install -e .): "
            "the installed package leaves the benchmarks and the demo out"
        ]


@pytest.fixture
def web(installed: Installed) -> Iterator[str]:
    """``clicktrail web`` of the installed copy (embedded Redis) on a migrated SQLite file."""
    migrated = installed.clicktrail("db", "upgrade")
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout.strip() == "database is up to date"
    port = free_port()
    process = subprocess.Popen(
        [str(installed.bin / "clicktrail"), "web", "--port", str(port)],
        cwd=installed.workdir, env=installed.env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz").status_code == 200:  # migrations ran
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, "the installed web server ended"
            assert time.monotonic() < deadline, "the installed web server did not become ready"
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=60)


def test_the_installed_copy_serves_pages_and_static_files_of_its_own(
    installed: Installed, web: str
) -> None:
    login = httpx.get(f"{web}/login")
    assert login.status_code == 200
    assert 'type="password"' in login.text
    css = httpx.get(f"{web}/static/app.css")
    assert css.status_code == 200
    assert css.content == (installed.site_packages / "backend/web/static/app.css").read_bytes()
    where = subprocess.run(
        [str(installed.bin / "python"), "-c", "import backend; print(backend.__file__)"],
        cwd=installed.workdir, env=installed.env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert Path(where.stdout.strip()).is_relative_to(installed.site_packages)
