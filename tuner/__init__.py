"""ML-guided auto-tuning of ONNX models with Apache TVM.

    import tuner
    model = tuner.load("model.onnx", shapes={"x": [1, 3, 224, 224]})
    backend = tuner.resolve_backend("host")
    for task in tuner.partition(model, backend).tasks: ...
    with tuner.Cache() as cache:
        built = tuner.build(model, backend, cache)
    built.export("model.so")
    outputs = tuner.load_module("model.so").run(x)
"""

from .backend import Backend, resolve_backend
from .bench import BenchReport, bench
from .build import BuiltModel, Coverage, build
from .cache import Cache, default_cache_path
from .errors import (BuildError, CacheError, ModelError, ShapeError, TargetError, TunerError,
                     UnsupportedOperatorError)
from .model import InputSpec, Model, load
from .records import MeasureResult, Record
from .runtime import CompiledModel, load_module
from .tasks import Partition, Task, partition
from .tune import TuneReport, TuneSettings, tune
from .measure import LocalMeasurer, MeasureSettings

__version__ = "0.1.0"

__all__ = [
    "Backend", "BenchReport", "BuildError", "BuiltModel", "Cache", "CacheError", "CompiledModel", "Coverage",
    "InputSpec", "MeasureResult", "Model", "ModelError", "Partition", "Record", "ShapeError", "TargetError",
    "Task", "TunerError", "UnsupportedOperatorError", "bench", "build", "default_cache_path", "load",
    "load_module", "partition", "resolve_backend", "LocalMeasurer", "MeasureSettings", "TuneReport",
    "TuneSettings", "tune",
]
