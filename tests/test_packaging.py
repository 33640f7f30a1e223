"""A wheel built from the repo installs into a fresh venv and imports all four packages."""

import subprocess
import sys
import venv

from conftest import REPO


def test_wheel_installs_and_imports_all_four(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels), str(REPO)], check=True, capture_output=True)
    (wheel,) = wheels.glob("depthart-*.whl")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True)
    # no torch, numpy or click in this venv: the package imports must not need them
    code = ("import depthart, depthart.runtime, depthart.export, depthart.calibration, os;"
            "print(*[os.path.relpath(m.__file__, os.path.dirname(depthart.__file__)) for m in "
            "(depthart.runtime, depthart.export, depthart.calibration)])")
    r = subprocess.run([str(py), "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["runtime/__init__.py", "export/__init__.py", "calibration/__init__.py"]
    # nothing generic lands at the top of site-packages
    site = next((env_dir / "lib").glob("python*/site-packages"))
    top = {p.name for p in site.iterdir()} - {"pip", "_distutils_hack", "distutils-precedence.pth"}
    assert {n for n in top if not n.startswith(("pip-", "setuptools", "pkg_resources", "__pycache__"))} == {
        "depthart", "depthart-0.1.0.dist-info"}
