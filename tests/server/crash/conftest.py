"""Where the crash test finds fot-server and its model: FOT_SERVER and
FOT_MODEL, as ctest sets them (CMakeLists.txt, crash_tests), with PYTHONPATH
on the build's python folder (the fotserve package and its stubs), like
tests/client/python."""

import os
import sys
from pathlib import Path

import pytest

# The harness lives in tools/ (tools/crash_test.py and its two modules).
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tools"))


def _required(variable: str) -> str:
    value = os.environ.get(variable)
    if not value:
        pytest.fail(f"{variable} is not set: run through ctest (crash_tests), or set FOT_SERVER, "
                    "FOT_MODEL and PYTHONPATH=build/python as CMakeLists.txt does")
    return value


@pytest.fixture
def fot_server() -> str:
    return _required("FOT_SERVER")


@pytest.fixture
def fot_model() -> str:
    return _required("FOT_MODEL")
