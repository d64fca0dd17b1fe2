"""lthutils as an installable package: the wheel's metadata, its `lthutils` command in a fresh
virtual environment, and the one-line error for a missing extra."""

import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from email.parser import Parser
from pathlib import Path

import pandas as pd
import pytest

from lthutils import cluster
from lthutils.config import ConfigError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of what it packages (setuptools writes build/ beside its source)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "lthutils", source / "lthutils", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", out, source]
    subprocess.run(build, check=True, capture_output=True)
    (path,) = out.glob("lthutils-*.whl")
    return path


def test_the_wheel_declares_its_dependencies_extras_and_command(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = Parser().parsestr(archive.read(next(n for n in names if n.endswith("METADATA"))).decode())
        entry_points = archive.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    requires = metadata.get_all("Requires-Dist")
    pinned = {
        line.split("==")[0].lower() for line in (REPO / "requirements.txt").read_text().splitlines() if "==" in line
    }
    runtime = {re.match(r"[\w.-]+", r)[0].lower() for r in requires if "extra ==" not in r}
    assert {"torch", "torchvision", "pandas", "scipy", "statsmodels", "papermill", "seaborn"} <= runtime
    assert runtime <= pinned  # every runtime dependency is one the lock file pins and the suite runs with
    assert set(metadata.get_all("Provides-Extra")) == {"dask", "notebooks", "trackers", "dev"}
    optional = ("dask", "tensorboard", "mlflow", "wandb")
    assert not any(r.lower().startswith(optional) for r in requires if "extra ==" not in r)  # extras, not musts
    assert "lthutils = lthutils.__main__:main" in entry_points
    assert all(n.startswith(("lthutils/", "lthutils-")) for n in names)  # the package alone: no tests or data


def test_the_wheel_installs_into_a_fresh_environment_and_its_command_runs(wheel, tmp_path):
    """A fresh venv whose dependencies come from this environment's site-packages (no download):
    pip resolves the wheel's requirements against them, and the `lthutils` command it installs
    imports the installed package, not this checkout, and trains a tiny IMP."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.check_output(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    (site / "tested_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index", "-q", str(wheel)]
    subprocess.run(install, check=True, capture_output=True)
    command = venv / "bin" / "lthutils"
    work = tmp_path / "work"
    work.mkdir()
    (work / "data").symlink_to(REPO / "data")  # an installed package reads data/ in the working directory
    help_text = subprocess.run([command, "--help"], cwd=work, check=True, capture_output=True, text=True).stdout
    assert "imp" in help_text and "run-all" in help_text
    where = subprocess.run(
        [python, "-c", "import lthutils; print(lthutils.__file__)"], cwd=work, capture_output=True, text=True
    )
    assert where.stdout.startswith(str(site)), where
    flags = ["--num-train", "200", "--val-size", "100", "--iterations", "20", "--rounds", "1", "--quiet"]
    subprocess.run([command, "imp", "--name", "installed", *flags], cwd=work, check=True, capture_output=True)
    (results,) = (work / "exp_result" / "installed").glob("*/results.csv")
    rows = pd.read_csv(results)
    assert sorted(zip(rows["round"], rows["kind"])) == [(0, "ticket"), (1, "reinit"), (1, "ticket")]
    assert (rows["test_acc"] > 0.2).all()  # 200 real Fashion-MNIST images, 20 steps: above chance (0.1)


def test_a_dask_scheduler_without_dask_is_a_one_line_error_naming_the_extra(monkeypatch):
    real = cluster.importlib.util.find_spec
    monkeypatch.setattr(cluster.importlib.util, "find_spec", lambda name: None if name == "distributed" else real(name))
    with pytest.raises(
        ConfigError,
        match=r"scheduler='local' is not allowed: expected 'none', or Dask installed: pip install 'lthutils\[dask\]'",
    ):
        cluster.check_scheduler("local")
    cluster.check_scheduler("none")  # runs here without Dask
