"""`import depthart` and the runtime must work where torch cannot be imported (a Jetson runtime install)."""

import subprocess
import sys

BLOCK_TORCH = "import sys; sys.modules['torch'] = None; sys.modules['safetensors'] = None; "


def run_py(code):
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH + code], capture_output=True, text=True)


def test_blocking_works():
    r = run_py("import torch")
    assert r.returncode != 0 and "ModuleNotFoundError" in r.stderr


def test_packages_import_without_torch():
    r = run_py(
        "import depthart, depthart.runtime, depthart.export, depthart.calibration;"
        "import depthart.preprocess, depthart.outputs, depthart.config, depthart.cli;"
        "print(depthart.get_preset('d16').seq_len)"
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1360"


def test_cli_help_without_torch_and_a_clear_message_when_torch_is_needed(tmp_path):
    r = run_py("from depthart.cli import main; main(['--help'])")
    assert r.returncode == 0 and "predict" in r.stdout
    r = run_py(f"from depthart.cli import main; main(['predict', 'x.jpg', '-o', r'{tmp_path}', '-c', 'tiny'])")
    assert r.returncode == 1 and "needs PyTorch" in r.stderr and "Traceback" not in r.stderr
