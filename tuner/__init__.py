"""ML-guided auto-tuning of ONNX models with Apache TVM.

    import tuner
    model = tuner.load("model.onnx", shapes={"x": [1, 3, 224, 224]})
    backend = tuner.resolve_backend("host")
    for task in tuner.partition(model, backend).tasks: ...
    with tuner.Cache() as cache:
        tuner.tune(model, backend, cache, tuner.TuneSettings(time_budget_s=600))
        built = tuner.build(model, backend, cache)
    built.export("model.so")
    outputs = tuner.load_module("model.so").run(x)

``search_spaces`` and ``costmodel`` root their errors in ``tuner.errors``, so importing
them runs this file: the modules of ``tuner`` import TVM, ``search_spaces`` and
``costmodel`` inside their functions, never at the top.
"""

from .backend import Backend, resolve_backend
from .bench import BenchReport, bench
from .build import BuiltModel, Coverage, build
from .builder import Builder, LocalBuilder, create_builder
from .cache import Cache, default_cache_path
from .database import Database, create_database
from .errors import (BuildError, CacheError, ModelError, SettingsError, ShapeError, TargetError, TunerError,
                     UnsupportedOperatorError)
from .lower import Lowered, lower
from .measure import MeasureSettings, measure
from .messages import Artifact
from .model import InputSpec, Model, load
from .model_guided import ModelGuidedSearch, ModelGuidedSettings
from .records import ErrorKind, MeasureResult, Record
from .runner import LocalRunner, Runner, create_runner
from .runtime import CompiledModel, load_module
from .state import TaskState
from .strategy import Offer, RandomSearch, RandomSettings, SearchContext, SearchStrategy, create_strategy
from .tasks import Partition, Task, partition
from .training import Trainer, TrainingSettings
from .tune import TuneReport, TuneSettings, tune

__version__ = "0.1.0"

__all__ = [
    "Artifact", "Backend", "BenchReport", "BuildError", "Builder", "BuiltModel", "Cache", "CacheError",
    "CompiledModel", "Coverage", "Database", "ErrorKind", "InputSpec", "LocalBuilder", "LocalRunner", "Lowered",
    "MeasureResult", "MeasureSettings", "Model", "ModelError", "ModelGuidedSearch", "ModelGuidedSettings", "Offer",
    "Partition", "RandomSearch", "RandomSettings", "Record", "Runner", "SearchContext", "SearchStrategy",
    "SettingsError", "ShapeError", "TargetError", "Task", "TaskState", "Trainer", "TrainingSettings",
    "TuneReport", "TuneSettings", "TunerError", "UnsupportedOperatorError", "bench", "build", "create_builder",
    "create_database", "create_runner", "create_strategy", "default_cache_path", "load", "load_module", "lower",
    "measure", "partition", "resolve_backend", "tune",
]
