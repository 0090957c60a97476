"""Cost model: features of scheduled TIR, an XGBoost ranking model, its metrics.

It works on scheduled TIR and plain numpy arrays (features, throughputs, task
groups) and knows nothing of search, storage or measuring.

    X = extract([schedule.mod, ...], target, task_func=func)   # (n, d) float32
    model = XGBCostModel().fit(X, flops / costs_s, groups)    # higher y = faster
    scores = model.predict(X_new)                              # higher = predicted faster
    model.save("model.json", backend="...");  XGBCostModel.load("model.json")

``CostModel`` is the role's interface; ``create_cost_model(kind)`` and
``load_cost_model(path)`` make one of any kind (``COST_MODELS``).
"""

from .base import COST_MODELS, CostModel, RandomCostModel, create_cost_model, load_cost_model
from .errors import CostModelError
from .features import FEATURE_VERSION, extract, feature_names, task_features
from .metrics import pairwise_accuracy, top1_score, top_k_recall
from .model import XGBCostModel

__all__ = [
    "COST_MODELS",
    "CostModel",
    "CostModelError",
    "RandomCostModel",
    "create_cost_model",
    "load_cost_model",
    "FEATURE_VERSION",
    "XGBCostModel",
    "extract",
    "feature_names",
    "pairwise_accuracy",
    "task_features",
    "top1_score",
    "top_k_recall",
]
