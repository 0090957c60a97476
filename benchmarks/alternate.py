"""Run several tuning runs in turns, so that they see the machine in the same states.

Timings on this machine drift by more than the differences a search comparison looks for:
the same config measured in two runs twenty minutes apart differed by 7 % in the median (up
to 2x). Runs made one after the other therefore compare the machine's moods as much as the
searches. ``alternate`` runs each job in a thread of its own but lets one run at a time: a
job holds the turn from one measurement to the next (its proposing and training included,
so nothing else loads the cores while it measures), and at each measurement the turn goes to
the job furthest behind its own budget. A 512-trial run and a 128-trial run thus measure
four batches to one, from start to end.
"""

from __future__ import annotations

import threading


class Alternation:
    """The turn: who may run now, and how far each job is through its budget (in trials)."""

    def __init__(self, budgets: dict):
        self.budgets = {name: max(1, budget) for name, budget in budgets.items()}
        self.turns: list = []  # (job, trials) of each measurement, in order
        self._finished: set = set()
        self._active = None
        self._cond = threading.Condition()

    def done(self, name) -> int:
        """Trials ``name`` has measured so far."""
        return sum(trials for job, trials in self.turns if job == name)

    def _due(self):
        waiting = [name for name in self.budgets if name not in self._finished]
        return min(waiting, key=lambda name: self.done(name) / self.budgets[name]) if waiting else None

    def take(self, name) -> None:
        """Wait until ``name`` is the job furthest behind and nobody else holds the turn."""
        with self._cond:
            self._cond.wait_for(lambda: self._active is None and self._due() == name)
            self._active = name

    def give(self, name) -> None:
        with self._cond:
            if self._active == name:
                self._active = None
            self._cond.notify_all()

    def finish(self, name) -> None:
        with self._cond:
            self._finished.add(name)
        self.give(name)

    def measured(self, name, trials: int) -> None:
        with self._cond:
            self.turns.append((name, trials))

    def builder(self, name, inner) -> "TurnBuilder":
        return TurnBuilder(self, name, inner)


class TurnBuilder:
    """A builder (``tuner.Builder``) that waits for its job's turn before building a batch; the job
    keeps the turn while its runner times the batch, until its next build (see ``Alternation``)."""

    def __init__(self, alternation: Alternation, name, inner):
        self.alternation = alternation
        self.name = name
        self.inner = inner

    def build(self, task, configs):
        self.alternation.give(self.name)
        self.alternation.take(self.name)
        built = self.inner.build(task, configs)
        self.alternation.measured(self.name, len(configs))
        return built

    def close(self) -> None:
        self.inner.close()


def alternate(jobs: dict) -> tuple[dict, Alternation]:
    """Run ``{name: (budget in trials, fn)}`` in turns; ``fn(alternation, name)`` measures through
    ``alternation.builder(name, builder)``. Returns ``{name: fn's result}`` and the alternation (its
    ``turns``); the first job's exception, if any, is raised once all jobs have ended."""
    alternation = Alternation({name: budget for name, (budget, _) in jobs.items()})
    results, errors = {}, []

    def run(name, fn):
        try:
            alternation.take(name)
            results[name] = fn(alternation, name)
        except BaseException as err:  # re-raised in the caller's thread
            errors.append(err)
        finally:
            alternation.finish(name)

    threads = [threading.Thread(target=run, args=(name, fn), name=f"alternate-{name}")
               for name, (_, fn) in jobs.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results, alternation
