"""A built wheel, installed into a fresh virtual environment, works from any directory: conf/ ships inside the package.

The wheel is built offline from a copy of the source (the build writes build/ and *.egg-info/ next to it) and
installed with `pip install --no-index`: pip must find every dependency already installed, so the wheel's
requirements are checked too. The fresh environment sees this environment's packages (torch, MLflow, Hydra...)
through a folder of links that leaves out this environment's own (editable) searcher.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from conftest import REPO

pytestmark = pytest.mark.slow

SOURCE = ("pyproject.toml", "README.md", "conf", "searcher")  # what the build reads


def run(*command, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}  # nothing leads back to the checkout
    return subprocess.run([str(c) for c in command], cwd=cwd, env=env | {"COLUMNS": "120"}, capture_output=True, text=True, timeout=timeout)


def checked(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(the wheel, the fresh environment's bin/ folder, an empty working directory outside the checkout)."""
    root = tmp_path_factory.mktemp("install")
    source = root / "source"
    source.mkdir()
    for name in SOURCE:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(REPO / name, source / name)
    checked(run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", root / "dist", source, cwd=root))
    (wheel,) = (root / "dist").glob("searcher-*.whl")

    venv = root / "venv"
    checked(run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=root))
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    site = Path(checked(run(bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=root)).stdout.strip())
    packages = root / "packages"
    packages.mkdir()
    for folder in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}:
        for entry in Path(folder).iterdir():
            if not entry.name.startswith(("searcher", "__editable__")) and not (packages / entry.name).exists():
                (packages / entry.name).symlink_to(entry)
    (site / "this_environments_packages.pth").write_text(f"{packages}\n")
    checked(run(sys.executable, "-m", "pip", "--python", bin_dir / "python", "install", "--no-index", "-q", wheel, cwd=root))
    work = root / "elsewhere"
    work.mkdir()
    return wheel, bin_dir, work


def test_the_wheel_holds_every_module_and_every_config_file(installed):
    wheel, _, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {str(p.relative_to(REPO)) for p in (REPO / "searcher").rglob("*.py")}
    expected |= {f"searcher/conf/{p.relative_to(REPO / 'conf')}" for p in (REPO / "conf").rglob("*.yaml")}
    missing = sorted(expected - names)
    assert not missing, f"not in the wheel (list their packages in pyproject.toml's [tool.setuptools] packages): {missing}"


def test_the_installed_command_finds_its_config_from_any_directory(installed):
    _, bin_dir, work = installed
    where = checked(run(bin_dir / "python", "-c", "import searcher.cli as c; print(c.__file__); print(c.CONF_DIR)", cwd=work)).stdout.split()
    assert all(path.startswith(str(bin_dir.parent)) for path in where)  # the installed package and the conf/ inside it
    job = checked(run(bin_dir / "searcher", "--cfg", "job", cwd=work))
    assert "search:" in job.stdout and "preset: default" in job.stdout
    shown = checked(run(bin_dir / "python", "-m", "searcher", "--help", cwd=work))
    assert "synthetic_hard" in shown.stdout and "Most used settings" in shown.stdout


def test_the_installed_command_runs_a_tiny_search(installed):
    _, bin_dir, work = installed
    result = checked(
        run(
            bin_dir / "searcher",
            "search=quick",
            "+dataset=digits",
            "dataset.classes=[0,1]",
            "search.width.cap=16",
            "search.depth.cap=2",
            "search.regularization.trials=0",
            "search.final.seeds=1",
            "train.stability.min_epochs=2",
            "train.stability.max_epochs=2",
            "report.enabled=false",
            cwd=work,
        )
    )
    assert "models:/searcher-digits/1" in result.stdout
    assert (work / "mlflow.db").exists() and list(work.glob("outputs/*/*/decisions.md"))
