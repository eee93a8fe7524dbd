"""The package is grouped by stage; the earlier flat module names still import, as the very same modules."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import anomaly


@pytest.mark.parametrize("earlier", sorted(anomaly._MOVED))
def test_an_earlier_module_name_imports_the_module_at_its_new_home(earlier):
    new = importlib.import_module(f"anomaly.{anomaly._MOVED[earlier]}.{earlier}")
    assert importlib.import_module(f"anomaly.{earlier}") is new  # one module: one set of classes and settings


def test_a_module_under_an_earlier_package_name_is_not_loaded_twice():
    from anomaly.detectors.shesd import SHESD
    from anomaly.model.detectors import REGISTRY

    assert REGISTRY["shesd"] is SHESD
    assert sys.modules["anomaly.detectors.shesd"] is sys.modules["anomaly.model.detectors.shesd"]


def test_the_commands_run_as_modules_where_the_readme_says():
    for command in ("anomaly.evaluate", "anomaly.feedback", "anomaly.client", "anomaly.spark"):
        result = subprocess.run([sys.executable, "-m", command, "--help"], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and "usage:" in result.stdout, (command, result.stderr[-500:])
