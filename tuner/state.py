"""What the tuning loop knows of one task: its space, the configs tried, the best ones."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TaskState:
    """A task's search space, the configs measured (``seen``, as JSON), its ``top_k`` best measured
    configs (``best``: (mean cost, config JSON), best first) and the best of each family of configs."""

    task: object
    space: object
    top_k: int = 4
    target_trials: int = 0  # set by the task scheduler
    seen: set = field(default_factory=set)
    best: list = field(default_factory=list)
    family_best: dict = field(default_factory=dict)  # the space's family -> (cost_s, config_json) of its best
    trials: int = 0
    exhausted: bool = False
    history: list = field(default_factory=list)  # (trials, best_s) after each batch

    @property
    def best_s(self) -> float | None:
        return self.best[0][0] if self.best else None

    def best_configs(self) -> list:
        """The best measured configs (``search_spaces.Config``), best first."""
        import search_spaces

        return [search_spaces.Config.from_json(config) for _, config in self.best]

    def observe(self, config_json: str, result) -> None:
        self.seen.add(config_json)
        self.trials += 1
        if result.ok:
            self.best.append((result.mean_s, config_json))
            self.best.sort()
            del self.best[self.top_k:]
            family = self._family(config_json)
            if family is not None and (family not in self.family_best or result.mean_s < self.family_best[family][0]):
                self.family_best[family] = (result.mean_s, config_json)

    def best_families(self, count: int) -> list:
        """The best measured config (JSON) of each of the ``count`` best families, best first."""
        return [config for _, config in sorted(self.family_best.values())[:count]]

    def _family(self, config_json: str):
        import search_spaces

        if self.space is None:
            return None
        try:
            config = search_spaces.Config.from_json(config_json)
            self.space.validate(config)
        except search_spaces.InvalidConfigError:  # a record of an older space
            return None
        return self.space.family(config)

    def end_batch(self) -> None:
        if self.best:
            self.history.append((self.trials, self.best_s))


def load_state(task, space, cache, backend, top_k: int) -> TaskState:
    """A task's state from what ``cache`` holds for it on ``backend``."""
    state = TaskState(task, space, top_k)
    for record in cache.records(backend.key, task.workload_key):
        state.observe(record.config, record.result)
    state.end_batch()
    return state
