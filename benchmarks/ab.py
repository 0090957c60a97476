"""Two or more source trees of the tuner against each other on one model, in one run.

    python -m benchmarks.ab shufflenet /tmp/before . [--repeat 15]
    python -m benchmarks.ab inception_v2 /tmp/before . --cache before.sqlite --cache after.sqlite

Each tree (a checkout, or ``git archive COMMIT | tar -x -C DIR``) builds the model with its own
sources in a worker process of its own (two builds in one process would share kernel symbols of the
same names); the workers and ONNX Runtime, in this process, then time one batch each in turn, round
after round. Per tree it prints the largest output difference relative to the output's largest
magnitude, the median time, the median of the rounds' ratios to ONNX Runtime and to the first tree.
MODEL is a ``benchmarks.zoo`` model or one of ``benchmarks.models.MODELS``. Untuned, or with one
``--cache`` per tree (in the trees' order) each tree builds from the records of its own tuning run:
a change that alters the tasks' workload keys cannot reuse the other tree's records.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# the tree's own sources, so nothing of this file: an older tree does not have it
WORKER = """
import sys
import numpy as np
import tuner
from benchmarks.models import MODELS
from benchmarks.zoo import ZOO, load_zoo_model
from tuner.bench import model_batch_timer, random_inputs
name = sys.argv[1]
model = tuner.load(load_zoo_model(name) if name in ZOO else MODELS[name]())
cache = tuner.Cache(sys.argv[3]) if sys.argv[3] else None
built = tuner.build(model, tuner.resolve_backend("host"), cache)
compiled = built.runner()
arrays = random_inputs(model.inputs, 0)
np.save(sys.argv[2], compiled.run(*arrays)[0])
timer = model_batch_timer(compiled, arrays, 0.2)
print("ready", f"{built.coverage.tasks_tuned}/{built.coverage.tasks}", flush=True)
for _ in sys.stdin:
    print(timer(), flush=True)
"""


def load_model(name: str):
    from benchmarks.models import MODELS
    from benchmarks.zoo import ZOO, load_zoo_model

    return load_zoo_model(name) if name in ZOO else MODELS[name]()


class Worker:
    """A process that builds the model from the sources in ``tree`` and times a batch per request."""

    def __init__(self, tree: Path, model: str, output: Path, cache: Path | None = None):
        self.process = subprocess.Popen([sys.executable, "-c", WORKER, model, str(output),
                                         str(cache.resolve()) if cache else ""], cwd=tree, text=True,
                                        env=dict(os.environ, PYTHONPATH=str(tree)),
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        while (line := self.process.stdout.readline()) and not line.startswith("ready"):
            pass
        if not line:
            raise RuntimeError(f"the worker for {tree} failed to build {model}")
        self.tuned = line.split()[-1]  # tasks with a record of the cache / tasks

    def time_s(self) -> float:
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        return float(self.process.stdout.readline())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def main(argv=None) -> None:
    import tuner
    from tuner.bench import batch_timer, onnxruntime_session, random_inputs

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("trees", nargs="+", type=Path)
    parser.add_argument("--repeat", type=int, default=15, help="rounds of alternation")
    parser.add_argument("--out", type=Path, default=Path("build/bench/ab"), help="where the outputs are saved")
    parser.add_argument("--cache", type=Path, action="append", default=[],
                        help="a tuning cache to build from, once per tree in their order (default: untuned)")
    args = parser.parse_args(argv)
    if args.cache and len(args.cache) != len(args.trees):
        parser.error(f"{len(args.cache)} --cache for {len(args.trees)} trees: give one per tree or none")
    caches = args.cache or [None] * len(args.trees)
    args.out.mkdir(parents=True, exist_ok=True)
    outputs = [args.out.resolve() / f"output{index}.npy" for index in range(len(args.trees))]
    workers = [Worker(tree.resolve(), args.model, out, cache) for tree, out, cache in zip(args.trees, outputs, caches)]
    model = tuner.load(load_model(args.model))
    arrays = random_inputs(model.inputs, 0)
    session = onnxruntime_session(model, tuner.resolve_backend("host").num_cores)
    feeds = {spec.name: array for spec, array in zip(model.inputs, arrays)}
    expected = session.run(None, feeds)[0]
    timers = {"onnxruntime": batch_timer(lambda: session.run(None, feeds), 0.2),
              **{str(tree): worker.time_s for tree, worker in zip(args.trees, workers)}}
    rounds = {name: [] for name in timers}
    for _ in range(args.repeat):
        for name, timer in timers.items():
            time.sleep(0.5)  # the previous batch's spinning threads go to sleep
            rounds[name].append(timer())
    for worker in workers:
        worker.close()
    first = str(args.trees[0])
    for tree, out, worker in zip(map(str, args.trees), outputs, workers):
        difference = float(np.abs(np.load(out) - expected).max() / np.abs(expected).max())
        to_ort = statistics.median(a / b for a, b in zip(rounds[tree], rounds["onnxruntime"]))
        to_first = statistics.median(a / b for a, b in zip(rounds[tree], rounds[first]))
        print(f"{args.model} {tree}: {statistics.median(rounds[tree]) * 1e3:.3f} ms, onnxruntime "
              f"{statistics.median(rounds['onnxruntime']) * 1e3:.3f} ms, ratio {to_ort:.3f}, to the first "
              f"{to_first:.3f}, rel. diff {difference:.1e}, tuned {worker.tuned}")


if __name__ == "__main__":
    main()
