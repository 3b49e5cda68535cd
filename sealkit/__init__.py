"""sealkit: adapt a sealed foundation model to new tasks without access to its weights.

    import sealkit
    seal = sealkit.open_seal("model.seal", key="keys/seal.key")
    train, val = sealkit.load_dataset("train.csv").split(0.2, seed=0)
    result = sealkit.adapt(seal, train, val, "task.adapter", method="dga")        # needs sealkit[adapt]
    sealkit.TaskRuntime(seal, "task.adapter").classify(["a text"], "text")       # numpy + onnxruntime only

Names load on first use (a module `__getattr__`, as peft does), so `import sealkit` imports
neither torch nor onnxruntime, and the inference names never pull in torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_PUBLIC = {
    # open and run a seal (torch-free)
    "open_seal": "sealkit.runtime.seal",
    "Seal": "sealkit.runtime.seal",
    # data (torch-free)
    "load_dataset": "sealkit.data.readers",
    "Dataset": "sealkit.data.dataset",
    "Example": "sealkit.data.dataset",
    # what an adapter is (torch-free)
    "AdapterConfig": "sealkit.adapters.config",
    "TaskSpec": "sealkit.adapters.config",
    "TrainConfig": "sealkit.train.config",
    "read_adapter_file": "sealkit.adapters.file",
    # deploy a task (torch-free)
    "TaskRuntime": "sealkit.runtime.task",
    "Prediction": "sealkit.runtime.task",
    "evaluate_adapter": "sealkit.runtime.evaluate",
    # train and evaluate (torch: pip install 'sealkit[adapt]')
    "adapt": "sealkit.train.api",
    "evaluate": "sealkit.train.api",
    "AdaptResult": "sealkit.train.api",
    # errors
    "SealkitError": "sealkit.errors",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'sealkit' has no attribute {name!r}")
    try:
        imported = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != "torch":
            raise
        raise ModuleNotFoundError(f"sealkit.{name} needs torch; install it with: pip install 'sealkit[adapt]'", name="torch") from None
    value = getattr(imported, name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # for type checkers and IDEs; never executed
    from sealkit.adapters.config import AdapterConfig as AdapterConfig
    from sealkit.adapters.config import TaskSpec as TaskSpec
    from sealkit.adapters.file import read_adapter_file as read_adapter_file
    from sealkit.data.dataset import Dataset as Dataset
    from sealkit.data.dataset import Example as Example
    from sealkit.data.readers import load_dataset as load_dataset
    from sealkit.errors import SealkitError as SealkitError
    from sealkit.runtime.evaluate import evaluate_adapter as evaluate_adapter
    from sealkit.runtime.seal import Seal as Seal
    from sealkit.runtime.seal import open_seal as open_seal
    from sealkit.runtime.task import Prediction as Prediction
    from sealkit.runtime.task import TaskRuntime as TaskRuntime
    from sealkit.train.api import AdaptResult as AdaptResult
    from sealkit.train.api import adapt as adapt
    from sealkit.train.api import evaluate as evaluate
    from sealkit.train.config import TrainConfig as TrainConfig
