"""Zero-shot depth evaluation: benchmark loaders, the two protocols, the runner and `depthart eval`.

- `datasets`: readers for the benchmarks' own on-disk formats -> `Sample(image, depth, valid)`.
- `protocol`: per (protocol, dataset) settings (ranges, crops, resizing, alignment) and `prepare`.
- `runner`: predictions (from a model or from saved files) -> per-sample metrics -> summary files.
- `report`: an HTML page and a PNG grid of the worst and best samples.
- `cli`: the click command `eval_cmd`.

The metrics themselves are in `depthart.metrics`. Nothing here imports torch at module level:
re-evaluating saved predictions works on a torch-free install.
"""
