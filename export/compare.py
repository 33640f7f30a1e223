"""Parity of exported graphs with PyTorch eager, judged by Polygraphy's comparator.

Two checks on the same image:
1. per graph call: every graph gets the eager run's exact inputs (teacher-forced), and each output
   is compared with the eager output (per-output tolerances, max error statistic);
2. free-running: the exported graphs run the whole loop on their own outputs; greedy tokens must be
   identical at every scale and the final depth map within tolerance.
"""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np

from .loop import run_loop

FP32_ATOL = 1e-4


@dataclasses.dataclass
class ParityReport:
    passed: bool
    max_abs: dict  # graph name -> {output name -> max abs diff over all calls}
    tokens_identical: bool
    depth_max_abs: float
    failures: list

    def summary(self) -> str:
        worst = max((v for d in self.max_abs.values() for v in d.values()), default=0.0)
        state = "PASS" if self.passed else "FAIL"
        return (f"{state}: max abs diff {worst:.2e} over all graph outputs; greedy tokens "
                f"{'identical' if self.tokens_identical else 'DIFFER'}; depth max abs diff {self.depth_max_abs:.2e}")


@contextlib.contextmanager
def _quiet_polygraphy():
    from polygraphy.logger import G_LOGGER

    old = G_LOGGER.module_severity
    G_LOGGER.module_severity = G_LOGGER.ERROR
    try:
        yield
    finally:
        G_LOGGER.module_severity = old


def compare_calls(ref_calls, test_calls, atol: float = FP32_ATOL, rtol: float = 0.0):
    """Compare two recorded runs call by call with Polygraphy. Returns (passed, max_abs, failures)."""
    from polygraphy.comparator import Comparator, RunResults
    from polygraphy.comparator.compare import SimpleCompareFunc
    from polygraphy.comparator.struct import IterationResult

    results = RunResults()
    results.append(("eager", [IterationResult(outputs=dict(o), runner_name="eager") for _, _, o in ref_calls]))
    results.append(("onnx", [IterationResult(outputs=dict(o), runner_name="onnx") for _, _, o in test_calls]))
    func = SimpleCompareFunc(atol={"": atol, "tokens": 0.0}, rtol={"": rtol, "tokens": 0.0}, check_error_stat="max")
    with _quiet_polygraphy():
        acc = Comparator.compare_accuracy(results, compare_func=func)
    ((_, per_iter),) = acc.lst[0].items()  # one runner pair -> per-iteration {output: result}
    max_abs, failures = {}, []
    for (name, _, _), outputs in zip(ref_calls, per_iter):
        for out_name, res in outputs.items():
            d = max_abs.setdefault(name, {})
            d[out_name] = max(d.get(out_name, 0.0), float(res.max_absdiff))
            if not res:
                failures.append(f"{name}.{out_name}: max abs diff {float(res.max_absdiff):.3e} > {atol:g}")
    return bool(acc), max_abs, failures


def check_parity(eager_run, test_run, cfg, image_B3HW: np.ndarray, atol: float = FP32_ATOL) -> ParityReport:
    """Both checks of the module docstring for one batch of preprocessed images."""
    ref_calls, forced_calls, free_calls = [], [], []
    ref = run_loop(eager_run, cfg, image_B3HW, record=ref_calls)
    run_loop(test_run, cfg, image_B3HW, record=forced_calls, feeds_from=ref_calls)
    free = run_loop(test_run, cfg, image_B3HW, record=free_calls)
    passed, max_abs, failures = compare_calls(ref_calls, forced_calls, atol)
    same_tokens = all(np.array_equal(a, b) for a, b in zip(ref["tokens"], free["tokens"]))
    depth_err = float(np.abs(ref["depth"] - free["depth"]).max())
    if not same_tokens:
        failures.append("free-running greedy tokens differ from eager")
    if depth_err > atol:
        failures.append(f"free-running depth max abs diff {depth_err:.3e} > {atol:g}")
    return ParityReport(passed and not failures, max_abs, same_tokens, depth_err, failures)
