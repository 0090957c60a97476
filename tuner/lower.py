"""One lowering of a config: task function + config -> scheduled function -> prepack split.

Measuring (``workers.build_candidate``), feature extraction (``features``) and the
model build (``build``) all go through ``lower``, so that what is timed, what the
cost model sees and what is deployed are the same schedule.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Lowered:
    """A task's function scheduled with one config."""

    config: object  # the search_spaces.Config applied
    rule: str
    func: object  # the scheduled tvm.tirx.PrimFunc, as a model build inlines it

    def split(self):
        """The weight prepacking split off the schedule (``prepack.Split``): ``compute`` is what
        is timed and what the cost model scores; ``module()`` is what a candidate's build compiles."""
        from .prepack import split_prepack

        return split_prepack(self.func)


def lower(func, config, target, space=None) -> Lowered:
    """Schedule the task function ``func`` with ``config`` (a ``search_spaces.Config``; None: the
    space's default) for ``target`` (a ``tvm.target.Target``). ``space``: ``func``'s search space
    when the caller has it already. Raises ``InvalidConfigError`` for a config that does not fit."""
    import search_spaces

    space = space if space is not None else search_spaces.space_for(func, target)
    config = config if config is not None else space.default_config()
    return Lowered(config, space.rule, space.apply(config).mod["main"])
