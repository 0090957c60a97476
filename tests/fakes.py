"""Fake roles for tuning-loop tests: a builder that compiles nothing and runners with costs from a formula."""

import hashlib

from tuner.messages import Artifact
from tuner.records import MeasureResult

# The tuner's old defaults, for tests of random search and trial-split scheduling.
RANDOM = {"search": "random", "scheduler": "work-share"}


class NoBuild:
    """A builder that compiles nothing: each config becomes an artifact without a library."""

    def build(self, task, configs):
        return [Artifact(config) for config in configs]

    def close(self):
        pass


class FakeRunner:
    """Deterministic costs from the config's text; every 7th config fails to build."""

    def __init__(self):
        self.measured = []  # (workload key, config JSON), in order

    def run(self, task, artifacts, best_s=None):
        results = []
        for artifact in artifacts:
            config = artifact.config
            self.measured.append((task.workload_key, config.to_json()))
            results.append(self.result(config))
        return results

    def result(self, config):
        digest = int(hashlib.sha256(config.to_json().encode()).hexdigest(), 16)
        if digest % 7 == 0:
            return MeasureResult.error("build", "fake failure")
        return MeasureResult((1e-4 * (1 + digest % 1000),))

    def close(self):
        pass


class KnobFakeRunner(FakeRunner):
    """Costs that depend on each knob's value separately, so that a model can learn them."""

    def result(self, config):
        cost = 1e-4
        for name, value in config.as_dict().items():
            digest = int(hashlib.sha256(f"{name}={value}".encode()).hexdigest(), 16)
            cost *= 1 + (digest % 100) / 100
        return MeasureResult((cost,))


class BatchRecorder(FakeRunner):
    def __init__(self):
        super().__init__()
        self.batches = []  # the size of each batch
        self.best = []  # (workload key, best_s given) of each batch

    def run(self, task, artifacts, best_s=None):
        self.batches.append(len(artifacts))
        self.best.append((task.workload_key, best_s))
        return super().run(task, artifacts, best_s)


def fake(runner):
    """The keyword arguments of ``tune`` that measure with ``runner`` and build nothing."""
    return {"builder": NoBuild(), "runner": runner}


class FlatModel:
    """A trained model's stand-in (``Trainer.score``) that scores every candidate alike."""

    trained = True

    def score(self, state, configs):
        return [(0.0, config) for config in configs]


class ScoresFrom(FlatModel):
    """Scores from a dict of config JSON -> score (0 for the others)."""

    def __init__(self, scores):
        self.scores = scores

    def score(self, state, configs):
        return [(self.scores.get(c.to_json(), 0.0), c) for c in configs]
