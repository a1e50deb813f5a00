"""The tree shows the architecture; old import paths keep working for one release, with a warning."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pytest

from ragprune._moved import MOVED


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_module_paths_resolve_to_the_new_modules_with_a_warning(old: str) -> None:
    code = (
        "import importlib, sys, warnings\n"
        "warnings.simplefilter('error', DeprecationWarning)\n"
        f"try:\n    importlib.import_module({old!r})\n"
        "except DeprecationWarning as w:\n    print('warned', w)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("warned") and MOVED[old] in out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert importlib.import_module(old) is importlib.import_module(MOVED[old])


def test_old_training_names_resolve_with_a_warning() -> None:
    import ragprune.training
    from ragprune.training.pruner import train_pruner

    with pytest.warns(DeprecationWarning, match="ragprune.training.pruner"):
        assert ragprune.training.train_pruner is train_pruner
    with pytest.raises(AttributeError):
        ragprune.training.no_such_name  # noqa: B018


@pytest.mark.parametrize("package", ["ragprune", "ragprune.runtime", "ragprune.stages", "ragprune.text",
                                     "ragprune.tools", "ragprune.training", "ragprune.training.datasets",
                                     "ragprune.bench"])
def test_rooms_import_light(package: str) -> None:
    code = f"import sys, {package}; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
