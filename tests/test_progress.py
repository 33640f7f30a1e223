"""Progress bars: on stderr when it is a terminal, silent in pipes and logs and with --quiet."""

import io

from click.testing import CliRunner

import depthart.progress as progress


class _Tty(io.StringIO):
    def isatty(self):
        return True


def _drawn(monkeypatch, stream, quiet=False):
    monkeypatch.setattr(progress.sys, "stderr", stream)
    monkeypatch.setattr(progress, "QUIET", quiet)
    assert list(progress.bar(range(3), desc="evaluating", mininterval=0)) == [0, 1, 2]
    return stream.getvalue()


def test_bar_on_a_terminal_only_and_not_when_quiet(monkeypatch):
    assert "evaluating" in _drawn(monkeypatch, _Tty())
    assert _drawn(monkeypatch, io.StringIO()) == ""  # a pipe or a log: no bar debris
    assert _drawn(monkeypatch, _Tty(), quiet=True) == ""


def test_quiet_option_on_the_long_running_commands(monkeypatch):
    from depthart.cli import main

    monkeypatch.setattr(progress, "QUIET", False)
    for cmd in ("eval", "demo", "bench", "predict", "run"):
        r = CliRunner().invoke(main, [cmd, "--help"])
        assert r.exit_code == 0 and "--quiet" in r.output, cmd
    r = CliRunner().invoke(main, ["eval", "-q", "-d", "middlebury", "--help"])
    assert r.exit_code == 0 and progress.QUIET
