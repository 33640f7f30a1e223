"""Progress bars for loops that can take more than a few seconds: tqdm on stderr, off when stderr is not a
terminal (logs and pipes get no bar debris) or with a command's --quiet.

    for item in bar(items, desc="evaluating nyu"):
        ...
"""

from __future__ import annotations

import os
import sys

import click

QUIET = os.environ.get("DEPTHART_QUIET", "") not in ("", "0")


def enabled() -> bool:
    return not QUIET and sys.stderr.isatty()


def bar(iterable=None, *, total=None, desc=None, unit="it", disable=False, **kw):
    """A tqdm bar on stderr (a silent pass-through when not enabled() or `disable`). Same arguments as tqdm."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, disable=disable or not enabled(),
                dynamic_ncols=True, leave=False, **kw)


def _set_quiet(ctx, param, value):
    global QUIET
    if value:
        QUIET = True


quiet_option = click.option("-q", "--quiet", is_flag=True, expose_value=False, is_eager=True, callback=_set_quiet,
                            help="No progress bars (they are off anyway when stderr is not a terminal).")
