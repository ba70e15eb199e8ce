import pytest
import torch


@pytest.fixture(autouse=True)
def seed():
    """Every test starts from the same global RNG state; runs seed themselves anyway."""
    torch.manual_seed(0)
