"""The package shape holds: dependencies between sealkit's packages run one way, and torch never
reaches the inference path. Read from the source's import statements (static, so it sees imports
inside functions too), plus one live check that `import sealkit` and its public names stay light.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from no_torch import assert_ok, run_without_torch

PACKAGE = Path(__file__).resolve().parent.parent / "sealkit"
# The layers, lowest first: a package may import only packages listed before it (and itself).
# Top-level modules (errors, fileio, __init__) are below every package.
LAYERS = ["seal", "data", "corpora", "adapters", "runtime", "compile", "train", "serve", "cli"]
# Packages on the device's inference path: never torch, at any depth.
TORCH_FREE = ["seal", "data", "corpora", "adapters", "runtime", "serve"]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in the file (function bodies included, `if TYPE_CHECKING:` left out)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            node.body = []
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {i for i in _imports(path) if i in modules or i.split(".")[0] != "sealkit"} for name, path in modules.items()}


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()) else None


def test_every_package_is_in_a_layer():
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages == set(LAYERS), "add the new package to LAYERS (and docs/architecture.md)"


def test_packages_import_only_lower_layers():
    wrong = []
    for module, imported in _graph().items():
        own = _package(module)
        for target in imported:
            theirs = _package(target) if target.startswith("sealkit.") else None
            if own and theirs and theirs != own and LAYERS.index(theirs) > LAYERS.index(own):
                wrong.append(f"{module} imports {target}")
            if own is None and theirs is not None and module not in ("sealkit", "sealkit.__main__"):
                wrong.append(f"top-level {module} imports {target}")
    assert not wrong, "\n".join(sorted(wrong))


def test_the_import_check_catches_an_upward_import(tmp_path):
    """Control: the check sees `from sealkit.train import x` inside a function of a lower package."""
    source = tmp_path / "bad.py"
    source.write_text("def f():\n    from sealkit.train.pack import AdapterPack\n")
    assert "sealkit.train.pack" in _imports(source)


def _reaches_torch(start: str, graph: dict[str, set[str]]) -> list[str] | None:
    """An import chain from `start` to torch, or None."""
    seen, stack = {start}, [[start]]
    while stack:
        chain = stack.pop()
        for target in sorted(graph.get(chain[-1], ())):
            if target == "torch" or target.startswith("torch."):
                return chain + [target]
            module = target if target in graph else target.rsplit(".", 1)[0]
            if module in graph and module not in seen:
                seen.add(module)
                stack.append(chain + [module])
    return None


@pytest.mark.parametrize("package", TORCH_FREE)
def test_torch_never_reaches_the_inference_path(package):
    graph = _graph()
    chains = [chain for module in graph if _package(module) == package for chain in [_reaches_torch(module, graph)] if chain]
    assert not chains, " -> ".join(chains[0])


def test_import_sealkit_is_light_and_its_inference_names_need_no_torch():
    assert_ok(
        run_without_torch(
            """
            import sealkit
            assert "onnxruntime" not in sys.modules, "import sealkit loaded onnxruntime"
            for name in ["open_seal", "Seal", "load_dataset", "Dataset", "AdapterConfig", "TaskSpec", "TrainConfig", "TaskRuntime", "read_adapter_file"]:
                getattr(sealkit, name)
            assert set(sealkit.__all__) >= {"adapt", "evaluate", "open_seal", "TaskRuntime"}
            """
        )
    )


def test_the_public_training_names_resolve():
    import sealkit
    from sealkit.train.api import adapt, evaluate

    assert sealkit.adapt is adapt and sealkit.evaluate is evaluate
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        sealkit.nonsense  # noqa: B018


def test_the_wheel_lists_every_package():
    """pyproject lists packages explicitly (export/ ships as sealkit.recipes), so a new package must be added there."""
    import tomllib

    config = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert set(config["packages"]) == {"sealkit", "sealkit.recipes", *(f"sealkit.{name}" for name in LAYERS)}
    assert config["package-dir"] == {"sealkit.recipes": "export"} and (PACKAGE.parent / "export" / "__init__.py").is_file()
