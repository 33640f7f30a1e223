"""A wheel built from the repo installs into a fresh venv and imports all four packages, from anywhere."""

import site
import subprocess
import sys
import venv

import pytest

from conftest import REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    wheels = tmp_path_factory.mktemp("wheels")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels), str(REPO)], check=True, capture_output=True)
    (whl,) = wheels.glob("depthart-*.whl")
    return whl


def _venv_with(wheel, env_dir):
    """A bare venv with the wheel installed (not editable) by this interpreter's pip."""
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True)
    return py, next((env_dir / "lib").glob("python*/site-packages"))


def test_wheel_installs_and_imports_all_four(wheel, tmp_path):
    py, site_dir = _venv_with(wheel, tmp_path / "venv")
    # no torch, numpy or click in this venv: the package imports must not need them
    code = ("import depthart, depthart.runtime, depthart.export, depthart.calibration, os;"
            "print(*[os.path.relpath(m.__file__, os.path.dirname(depthart.__file__)) for m in "
            "(depthart.runtime, depthart.export, depthart.calibration)])")
    r = subprocess.run([str(py), "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["runtime/__init__.py", "export/__init__.py", "calibration/__init__.py"]
    # nothing generic lands at the top of site-packages
    top = {p.name for p in site_dir.iterdir()} - {"_distutils_hack", "distutils-precedence.pth"}
    assert {n for n in top if not n.startswith(("pip", "setuptools", "pkg_resources", "__pycache__"))} == {
        "depthart", "depthart-0.1.0.dist-info"}


def test_non_editable_install_imports_from_the_repo_root(wheel, tmp_path):
    """In the clone, the source folder depthart/ shadows the installed package (the cwd comes first on sys.path)
    and holds none of runtime/, export/, calibration/: they must still import, and `python -m depthart.cli` run
    (torchrun -m depthart.cli train from the clone)."""
    py, site_dir = _venv_with(wheel, tmp_path / "venv")
    # numpy, click, onnxruntime from this interpreter's site-packages; a plain path entry, so no editable finder
    (site_dir / "outer.pth").write_text(site.getsitepackages()[0] + "\n")
    code = ("from depthart.runtime import DepthRuntime; from depthart.export import manifest; "
            "import depthart.calibration, depthart.cli, depthart; print(depthart.__file__)")
    for cwd in (REPO, tmp_path):
        r = subprocess.run([str(py), "-c", code], capture_output=True, text=True, cwd=cwd)
        assert r.returncode == 0, (cwd, r.stderr)
        assert r.stdout.startswith(str(REPO if cwd == REPO else site_dir)), r.stdout
    r = subprocess.run([str(py), "-m", "depthart.cli", "--version"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0 and "0.1.0" in r.stdout, r.stderr
