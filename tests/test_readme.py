"""The README's commands: every `depthart` line parses against the CLI (templates, marked <...>, included);
the literal ones that need no external files run as written, from a fresh folder holding the clone's samples/."""

import os
import re
import shlex
import subprocess
import sys

import pytest
from click.testing import CliRunner

from conftest import REPO
from depthart.cli import main

# literal commands that run for hours (training) or render for long: parsed here, run by their own recipes
LONG = ("depthart render-data", "depthart train", "bash scripts/train_default.sh")


def _blocks(lang):
    text = (REPO / "README.md").read_text()
    return [body for kind, body in re.findall(r"```(\w*)\n(.*?)```", text, re.S) if kind == lang]


def _commands():
    """(line, is_template) for every shell command in the README's bash blocks, comments stripped."""
    out = []
    for body in _blocks("bash"):
        for line in body.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            for part in (p.strip() for p in line.split("&&")):
                if part:
                    out.append((part, "<" in part or "..." in part))
    return out


def _depthart_args(line):
    """A `depthart ...` line -> its arguments; each <placeholder> becomes one dummy argument."""
    return shlex.split(re.sub(r"<[^>]*>", "PLACEHOLDER", line))[1:]


def _parse(args):
    """Parse a command line the way click would before running it (options, choices, types), without running."""
    ctx = main.make_context("depthart", list(args))
    with ctx:
        name, cmd, rest = main.resolve_command(ctx, ctx._protected_args + ctx.args)
        cmd.make_context(name, rest, parent=ctx).close()
    return name


OUTPUT_OPTIONS = ("-o", "--output", "--output-dir")


def _outputs(args):
    return [args[i + 1] for i, a in enumerate(args[:-1]) if a in OUTPUT_OPTIONS]


def test_every_readme_depthart_command_parses(tmp_path, monkeypatch):
    """In README order; what earlier commands write (their -o) exists when a later one reads it."""
    monkeypatch.chdir(tmp_path)
    for name in ("samples", "scripts"):
        os.symlink(REPO / name, tmp_path / name)
    names = set()
    lines = [line for line, _ in _commands() if line.startswith("depthart ")]
    assert len(lines) >= 20
    for line in lines:
        args = _depthart_args(line)
        names.add(_parse(args))
        for out in _outputs(args):
            if os.path.splitext(out.rstrip("/"))[1]:
                os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
                open(out, "a").close()
            else:
                os.makedirs(out, exist_ok=True)
    assert {"demo", "predict", "export", "run", "calibrate", "bench", "doctor", "eval", "train"} <= names


def test_readme_literal_commands_need_no_external_files():
    """A literal command (no <...>) names only files the clone has or that an earlier README command writes;
    anything else must be a visible template."""
    made = []
    for line, template in _commands():
        if not line.startswith("depthart "):
            continue
        args = _depthart_args(line)
        if not template:
            for i, arg in enumerate(args):
                if i and args[i - 1] in OUTPUT_OPTIONS:
                    continue
                path = arg.split(":", 1)[1] if re.match(r"^[a-z]+:", arg) else arg
                if arg.startswith("-") or re.fullmatch(r"[0-9.e+-]+", arg) or not ("/" in path or
                                                                                 re.search(r"\.[a-z0-9]+$", path)):
                    continue
                norm = path.rstrip("/")
                assert (REPO / norm).exists() or any(norm == m or norm.startswith(m + "/") for m in made), (line, arg)
        made += [o.rstrip("/") for o in _outputs(args)]


@pytest.fixture
def fresh_clone_dir(tmp_path, monkeypatch):
    """A working folder with the clone's samples/ and scripts/, as the README's commands expect."""
    for name in ("samples", "scripts"):
        os.symlink(REPO / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run_in_process(line):
    r = CliRunner().invoke(main, _depthart_args(line))
    assert r.exit_code == 0, (line, r.output)


def test_readme_quick_commands_run_as_written(fresh_clone_dir):
    quick = [line for line, t in _commands() if not t and line.startswith(("depthart predict", "depthart eval -d middlebury"))]
    assert len(quick) == 2
    for line in quick:
        _run_in_process(line)
    assert (fresh_clone_dir / "out" / "coffee_color.png").is_file()
    assert (fresh_clone_dir / "eval" / "middlebury" / "summary.json").is_file()
    (snippet,) = [b for b in _blocks("python") if "depthart.load()" in b]
    exec(compile(snippet, "README.md", "exec"), {})


@pytest.mark.slow
def test_readme_literal_commands_run_as_written(fresh_clone_dir):
    """All literal commands but the hours-long ones (LONG), in README order, as a user types them, then the
    runtime snippet on the bundle they made."""
    bindir = os.path.dirname(sys.executable)
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
    ran = []
    for line, template in _commands():
        if template or not line.startswith("depthart ") or line.startswith(LONG):
            continue
        p = subprocess.run(shlex.split(line), cwd=fresh_clone_dir, env=env, capture_output=True, text=True)
        assert p.returncode == 0, (line, p.stdout[-2000:], p.stderr[-2000:])
        ran.append(line.split()[1])
    assert {"demo", "predict", "export", "run", "calibrate", "bench", "doctor", "eval"} <= set(ran)
    for snippet in _blocks("python"):
        if "<" not in snippet:
            exec(compile(snippet, "README.md", "exec"), {})
