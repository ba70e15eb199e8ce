import os

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one pytest worker per core (pytest-xdist): each keeps to one thread,
    # or two workers' torch threads contend for the same cores.
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def seed():
    """Every test starts from the same global RNG state; runs seed themselves anyway."""
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def results():
    """`results(key, fn)`: fn() computed once per test module, so the tests of one science
    claim share their coordinate checks."""
    done = {}

    def cached(key, fn):
        if key not in done:
            done[key] = fn()
        return done[key]

    return cached


@pytest.fixture
def one_thread():
    """In-process runs on one thread: models this small run many times slower when two
    threads contend with a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
