"""The environment `make` builds: every package in it imports. mup declares torchvision, and
the torchvision that resolves beside a CPU torch fails to import ("operator torchvision::nms
does not exist"), which breaks libraries that probe for it, transformers first; scripts/setup
removes it when it cannot import."""

import subprocess
import sys

import pytest

PROBE = """
import importlib.util
import transformers, mup, muscale
from transformers import LlamaConfig
if importlib.util.find_spec("torchvision") is not None:
    import torchvision
"""


@pytest.mark.integration
def test_transformers_mup_and_muscale_import_in_this_environment():
    """Not skipped without transformers: the quick start's environment has the hf extra."""
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
