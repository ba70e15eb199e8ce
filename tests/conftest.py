import pytest
import torch


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
