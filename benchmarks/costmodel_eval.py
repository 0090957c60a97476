"""Evaluate the cost model on measured records, against MetaSchedule's XGBoost model on the same data.

    python -m benchmarks.costmodel_eval --cache build/bench/e2e.sqlite [--splits 10] [--task-folds 3] [--json FILE]

The dataset is every successful measurement of this machine's backend in the cache (at least
``--min-records`` over at least ``--min-tasks`` tasks). Two kinds of split:

* held-out configs (``--splits``): a quarter of every task's configs is held out (a new random
  quarter per split);
* held-out tasks: the tasks are dealt into ``--task-folds`` folds and each fold is held out once.

For each split, our ``XGBCostModel`` (our features) and MetaSchedule's ``XGBModel`` (its
PerStoreFeature, its defaults) learn from the same training records and score the same held-out
ones. Metrics per task, averaged over tasks, then over splits (TenSet's): pairwise accuracy,
top-1 score (measured throughput of the predicted best / the best) and top-k recall.

The top-1 score of one split is noisy: a task with 8 records has 2 held-out ones, and over 19 tasks
of ResNet-18 and two single ops the score of one split spread by 0.03 (standard deviation) around
its mean (our model: 0.896 over the first 3 splits, 0.906 over 10). Hence 10 config splits by
default, and beside the means: per split, ours minus MetaSchedule's (the same held-out rows), and
per task, each model's metrics over the config splits, to show where a model mis-ranks.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from dataclasses import dataclass

import numpy as np

import costmodel
import tuner

TOP_K = (1, 5, 10)


@dataclass
class TaskData:
    """The successful records of one task: configs, costs, our features, and the scheduled modules."""

    workload_key: str
    name: str
    flops: float
    costs_s: np.ndarray
    features: np.ndarray
    mods: list

    @property
    def throughput(self) -> np.ndarray:
        return self.flops / self.costs_s


def load_dataset(cache, backend, min_rows_per_task: int = 8) -> list[TaskData]:
    """Every task of ``backend`` in ``cache`` with at least ``min_rows_per_task`` successful records."""
    import tvm

    import search_spaces
    from tuner.features import features_for_records

    target = backend.tvm_target()
    version = str(costmodel.FEATURE_VERSION)
    tasks = []
    for entry in cache.summary():
        if entry["backend_key"] != backend.key:
            continue
        workload = cache.workload(entry["workload_key"])
        records = [r for r in cache.records(backend.key, entry["workload_key"]) if r.result.ok]
        if workload is None or not workload.get("tir_json") or len(records) < min_rows_per_task:
            continue
        func = tvm.ir.load_json(workload["tir_json"])
        space = search_spaces.space_for(func, target)
        features = features_for_records(cache, backend, workload, records, version)
        rows, costs, mods = [], [], []
        for record in records:
            if record.config not in features:
                continue
            lowered = tuner.lower(func, search_spaces.Config.from_json(record.config), target, space)
            rows.append(features[record.config])
            costs.append(record.result.mean_s)
            mods.append(tvm.IRModule({"main": lowered.split().compute}))
        if len(rows) >= min_rows_per_task:
            tasks.append(TaskData(workload["workload_key"], workload["task_name"], workload["flops"],
                                  np.asarray(costs), np.stack(rows), mods))
    return tasks


def config_splits(tasks: list[TaskData], count: int, test_share: float = 0.25):
    """``count`` splits: per task, a random ``test_share`` of rows is held out."""
    for seed in range(count):
        rng = np.random.default_rng(seed)
        train, test = {}, {}
        for task in tasks:
            order = rng.permutation(len(task.costs_s))
            cut = max(1, round(len(order) * test_share))
            test[task.workload_key], train[task.workload_key] = np.sort(order[:cut]), np.sort(order[cut:])
        yield f"configs/{seed}", train, test


def task_splits(tasks: list[TaskData], count: int):
    """``count`` folds of tasks; each fold's tasks are held out whole once."""
    order = np.random.default_rng(0).permutation(len(tasks))
    for fold in range(count):
        held = {tasks[i].workload_key for i in order[fold::count]}
        train = {t.workload_key: np.arange(len(t.costs_s)) for t in tasks if t.workload_key not in held}
        test = {t.workload_key: np.arange(len(t.costs_s)) for t in tasks if t.workload_key in held}
        yield f"tasks/{fold}", train, test


def _stack(tasks, rows: dict):
    picked = [(t, rows[t.workload_key]) for t in tasks if t.workload_key in rows and len(rows[t.workload_key])]
    X = np.concatenate([t.features[index] for t, index in picked])
    y = np.concatenate([t.throughput[index] for t, index in picked])
    groups = np.concatenate([[t.workload_key] * len(index) for t, index in picked])
    return X, y, groups


def ours(tasks, train: dict, test: dict, seed: int) -> np.ndarray:
    """Scores of the test rows (in ``_stack`` order) by our XGBCostModel trained on the train rows."""
    X, y, groups = _stack(tasks, train)
    model = costmodel.XGBCostModel(seed=seed).fit(X, y, groups)
    return model.predict(_stack(tasks, test)[0])


def metaschedule(tasks, train: dict, test: dict, backend) -> np.ndarray:
    """Scores of the test rows by MetaSchedule's XGBModel (defaults) updated task by task with the train rows."""
    from tvm.s_tir import Schedule
    from tvm.s_tir import meta_schedule as ms

    target = backend.tvm_target()
    model = ms.cost_model.XGBModel(num_tuning_cores=backend.num_cores, verbose_eval=0)

    def context_and_candidates(task, index):
        context = costmodel.features.tune_context(target, backend.num_cores, mod=task.mods[0])
        args = ms.arg_info.ArgInfo.from_prim_func(task.mods[0]["main"])
        return context, [ms.MeasureCandidate(Schedule(task.mods[i]), args) for i in index]

    trained = [t for t in tasks if t.workload_key in train and len(train[t.workload_key])]
    for position, task in enumerate(trained):
        index = train[task.workload_key]
        context, candidates = context_and_candidates(task, index)
        results = [ms.runner.RunnerResult([float(task.costs_s[i])], None) for i in index]
        model.adaptive_training = position < len(trained) - 1  # the last update trains on everything
        model.update(context, candidates, results)
    scores = []
    for task in tasks:
        if task.workload_key in test and len(test[task.workload_key]):
            context, candidates = context_and_candidates(task, test[task.workload_key])
            scores.append(model.predict(context, candidates))
    return np.concatenate(scores)


def per_task(y_true, y_pred, groups) -> dict:
    """``{workload key: {"pairwise_accuracy", "top1_score"}}`` of each group's rows."""
    out = {}
    for key in dict.fromkeys(groups):
        rows = groups == key
        out[str(key)] = {"pairwise_accuracy": costmodel.pairwise_accuracy(y_true[rows], y_pred[rows], groups[rows]),
                         "top1_score": costmodel.top1_score(y_true[rows], y_pred[rows], groups[rows])}
    return out


def metrics(y_true, y_pred, groups) -> dict:
    row = {"pairwise_accuracy": costmodel.pairwise_accuracy(y_true, y_pred, groups),
           "top1_score": costmodel.top1_score(y_true, y_pred, groups)}
    row.update({f"top{k}_recall": costmodel.top_k_recall(y_true, y_pred, groups, k) for k in TOP_K})
    return row


def evaluate(tasks, backend, splits: int, task_folds: int) -> list[dict]:
    """A row per split and model: sizes, seconds, the metrics and (``per_task``) each task's."""
    rows = []
    for kind_splits in (config_splits(tasks, splits), task_splits(tasks, task_folds)):
        for index, (name, train, test) in enumerate(kind_splits):
            _, y_test, groups = _stack(tasks, test)
            for model_name in ("ours", "metaschedule"):
                started = time.perf_counter()
                if model_name == "ours":
                    scores = ours(tasks, train, test, seed=index)
                else:
                    scores = metaschedule(tasks, train, test, backend)
                row = {"split": name, "model": model_name, "train_rows": int(sum(len(v) for v in train.values())),
                       "test_rows": int(len(y_test)), "seconds": round(time.perf_counter() - started, 1)}
                row.update(metrics(y_test, scores, groups))
                print(json.dumps(row), flush=True)
                row["per_task"] = per_task(y_test, scores, groups)
                rows.append(row)
    return rows


def _mean(values) -> float:
    """Mean of the values that are not NaN (NaN when none is)."""
    values = [v for v in values if not math.isnan(v)]
    return statistics.mean(values) if values else float("nan")


def summary(rows: list[dict]) -> list[dict]:
    """Mean of each metric over the splits of a kind, per model."""
    out = []
    for kind in ("configs", "tasks"):
        for model_name in ("ours", "metaschedule"):
            picked = [r for r in rows if r["split"].startswith(kind) and r["model"] == model_name]
            if not picked:
                continue
            means = {key: _mean(r[key] for r in picked)
                     for key in picked[0] if key.endswith(("accuracy", "score", "recall"))}
            out.append({"held_out": kind, "model": model_name, "splits": len(picked), **means})
    return out


def paired(rows: list[dict], kind: str = "configs") -> dict:
    """Per metric, ours minus MetaSchedule's over the splits of ``kind`` that both scored: the mean,
    the standard deviation and in how many splits ours was at least as good."""
    by_split = {}
    for row in rows:
        if row["split"].startswith(kind):
            by_split.setdefault(row["split"], {})[row["model"]] = row
    both = [pair for pair in by_split.values() if {"ours", "metaschedule"} <= set(pair)]
    out = {"splits": len(both)}
    for key in ("pairwise_accuracy", "top1_score"):
        diffs = [p["ours"][key] - p["metaschedule"][key] for p in both
                 if not (math.isnan(p["ours"][key]) or math.isnan(p["metaschedule"][key]))]
        out[key] = {"mean": statistics.mean(diffs) if diffs else float("nan"),
                    "stdev": statistics.stdev(diffs) if len(diffs) > 1 else float("nan"),
                    "ours_not_worse": sum(d >= 0 for d in diffs)}
    return out


def task_table(rows: list[dict], tasks: list[TaskData], kind: str = "configs") -> list[dict]:
    """Per task, its records and each model's metrics averaged over the splits of ``kind``."""
    table = []
    for task in tasks:
        entry = {"task": task.name, "workload_key": task.workload_key, "records": len(task.costs_s)}
        for model_name in ("ours", "metaschedule"):
            scored = [r["per_task"][task.workload_key] for r in rows if r["split"].startswith(kind)
                      and r["model"] == model_name and task.workload_key in r["per_task"]]
            for key in ("pairwise_accuracy", "top1_score"):
                entry[f"{model_name}_{key}"] = _mean(s[key] for s in scored)
        table.append(entry)
    return table


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", required=True, help="a tuning cache with this machine's records")
    parser.add_argument("--splits", type=int, default=10, help="held-out config splits")
    parser.add_argument("--task-folds", type=int, default=3, help="folds of held-out tasks")
    parser.add_argument("--min-records", type=int, default=2000)
    parser.add_argument("--min-tasks", type=int, default=10)
    parser.add_argument("--json", help="write all rows and the summary as JSON to this file")
    args = parser.parse_args(argv)
    backend = tuner.resolve_backend("host")
    with tuner.Cache(args.cache) as cache:
        tasks = load_dataset(cache, backend)
    total = sum(len(t.costs_s) for t in tasks)
    print(f"backend {backend}: {total} records over {len(tasks)} tasks")
    if total < args.min_records or len(tasks) < args.min_tasks:
        raise SystemExit(f"need at least {args.min_records} records over {args.min_tasks} tasks; tune more first")
    rows = evaluate(tasks, backend, args.splits, args.task_folds)
    table = summary(rows)
    by_task = task_table(rows, tasks)
    print(f"\nheld-out configs, per task (mean over {args.splits} splits)")
    print(f"{'task':<34} {'records':>7} {'pairwise ours/MS':>17} {'top-1 ours/MS':>14}")
    for entry in sorted(by_task, key=lambda e: -e["records"]):
        print(f"{entry['task'][:34]:<34} {entry['records']:>7} {entry['ours_pairwise_accuracy']:>8.3f}/"
              f"{entry['metaschedule_pairwise_accuracy']:.3f} {entry['ours_top1_score']:>7.3f}/"
              f"{entry['metaschedule_top1_score']:.3f}")
    print(f"\n{'held out':<9} {'model':<13} {'pairwise':>8} {'top-1':>6} " + " ".join(f"{'top' + str(k):>6}" for k in TOP_K))
    for row in table:
        recalls = " ".join(f"{row[f'top{k}_recall']:>6.3f}" for k in TOP_K)
        print(f"{row['held_out']:<9} {row['model']:<13} {row['pairwise_accuracy']:>8.3f} {row['top1_score']:>6.3f} "
              f"{recalls}")
    differences = {kind: paired(rows, kind) for kind in ("configs", "tasks")}
    for kind, diff in differences.items():
        print(f"{kind}: ours - MetaSchedule over {diff['splits']} splits: " + "; ".join(
            f"{key} {diff[key]['mean']:+.3f} (sd {diff[key]['stdev']:.3f}, ours not worse in "
            f"{diff[key]['ours_not_worse']})" for key in ("pairwise_accuracy", "top1_score")))
    if args.json:
        with open(args.json, "w") as stream:
            json.dump({"backend": backend.key, "records": total, "tasks": len(tasks), "rows": rows,
                       "summary": table, "paired": differences, "per_task": by_task}, stream, indent=2)


if __name__ == "__main__":
    main()
