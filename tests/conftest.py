import base64
import io
import os

import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image

from muscale.report import figures

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


@pytest.fixture
def undrawn(request, monkeypatch):
    """Figures are built but not rasterised: Agg's draw and the PNG encoding are most of a report's
    time, and a test that reads the report's HTML never looks at its pixels. The blank stands in at
    the figure's own pixel size, so scrubbed golden reports read the same. A test marked `drawn`
    rasterises as users' reports do."""
    if not request.node.get_closest_marker("drawn"):
        monkeypatch.setattr(figures, "to_png", _blank_png)


def _blank_png(fig) -> str:
    buf = io.BytesIO()
    Image.new("1", FigureCanvasAgg(fig).get_width_height()).save(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")
