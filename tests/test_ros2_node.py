"""depthart.ros2 without ROS 2: one line saying ROS 2 is needed (the node's conversions are runtime/robot.py's,
tested in test_bag.py)."""

import subprocess
import sys

import pytest


def test_without_rclpy_one_line():
    try:
        import rclpy  # noqa: F401
        pytest.skip("rclpy is installed here")
    except ImportError:
        pass
    r = subprocess.run([sys.executable, "-m", "depthart.ros2", "--ros-args", "-p", "bundle:=b"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and "needs ROS 2" in r.stderr
