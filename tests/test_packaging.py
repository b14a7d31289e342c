"""mreg installs as one package, `mreg`: a real wheel, checked by its metadata and installed in a fresh venv
beside python-daemon (whose import name, `daemon`, mreg's daemon/ folder must not take)."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP_FOLDERS = ("registry", "daemon", "cli", "migrations")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    return next(out.glob("mreg-*.whl"))


def test_every_package_folder_is_listed() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"mreg." + ".".join(init.parent.relative_to(ROOT).parts)
             for top in TOP_FOLDERS for init in (ROOT / top).rglob("__init__.py")}
    assert listed == found


def test_the_wheel_installs_one_top_level_name(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        info = next(n for n in archive.namelist() if n.endswith(".dist-info/top_level.txt"))
        assert archive.read(info).decode().split() == ["mreg"]
        record = next(n for n in archive.namelist() if n.endswith(".dist-info/RECORD"))
        paths = [row[0] for row in csv.reader(io.StringIO(archive.read(record).decode()))]
    tops = {p.split("/")[0] for p in paths}
    assert tops == {"mreg", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}
    assert "mreg/migrations/script.py.mako" in paths and "mreg/migrations/versions/0001_initial.py" in paths
    assert "mreg/daemon/catalog/templates/index.html" in paths
    assert not any(p.startswith("mreg/__init__") for p in paths)  # a namespace: nothing at mreg/ itself


def test_installed_beside_python_daemon(wheel: Path, tmp_path: Path) -> None:
    """A fresh venv (mreg's dependencies borrowed from this environment) with python-daemon and the wheel."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    borrowed = [p for p in sys.path if p.endswith("site-packages")]  # with any a .pth of this venv added
    (Path(purelib) / "borrowed.pth").write_text("\n".join(borrowed) + "\n")
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "python-daemon", "lockfile",
                              str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    work = tmp_path / "elsewhere"
    work.mkdir()
    script = ("import daemon, mreg.daemon\n"
              "assert daemon.__file__ != mreg.daemon.__file__\n"
              "print(daemon.DaemonContext.__name__)\n")
    both = subprocess.run([str(python), "-c", script], cwd=work, capture_output=True, text=True, timeout=60)
    assert both.returncode == 0 and both.stdout.strip() == "DaemonContext", both.stderr
    helped = subprocess.run([str(venv / "bin" / "mreg"), "--help"], cwd=work, capture_output=True, text=True,
                            timeout=60)
    assert helped.returncode == 0 and "pull" in helped.stdout, helped.stderr
    # the catalog's migrations are found inside the installed package, from another working folder
    home = tmp_path / "home"
    listed = subprocess.run([str(venv / "bin" / "mreg"), "ls", "--json"], cwd=work, capture_output=True, text=True,
                            timeout=60, env={"MREG_HOME": str(home), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
    assert listed.returncode == 0 and listed.stdout.strip() == "[]", listed.stderr
    assert (home / "catalog.db").is_file()


def test_ci_runs_the_readme_test_command() -> None:
    """A newcomer and CI run the same thing: the README's test command, which installs what it needs."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("# run the tests", 1)[1].split("```", 1)[0]
    command = block.splitlines()[1].strip()
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith(("#", "set ", "cd "))]
    assert ci == [command] == ["scripts/test --all"]
    script = (ROOT / "scripts" / "test").read_text()
    assert "apt_install chromium" in script and "pip install -q -e '.[test]'" in script
