"""The recorder under torch.distributed on CPU (gloo, two processes): DDP and FSDP2 runs
record what one process records on the whole batch, to floating-point tolerance, only rank 0
writes, and ranks that disagree on the run stop in one line."""

import socket
from pathlib import Path

import polars as pl
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import muscale
from muscale.errors import InputError
from muscale.run import recorded

pytestmark = pytest.mark.integration
WIDTH, STEPS, BATCH = 48, 5, 8


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.input, self.hidden, self.head = nn.Linear(12, WIDTH), nn.Linear(WIDTH, WIDTH), nn.Linear(WIDTH, 3)

    def forward(self, x):
        return self.head(torch.relu(self.hidden(torch.relu(self.input(x)))))


def data():
    gen = torch.Generator().manual_seed(7)
    return torch.randn(BATCH, 12, generator=gen), torch.randint(0, 3, (BATCH,), generator=gen)


def train(run_dir: Path, engine: str, rank: int = 0, size: int = 1, width: int = WIDTH):
    torch.manual_seed(0)
    net = Net()
    model = net
    if engine == "ddp":
        model = nn.parallel.DistributedDataParallel(net)
    elif engine == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for layer in (net.input, net.hidden, net.head):
            fully_shard(layer)
        fully_shard(net)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = data()
    share = slice(rank * BATCH // size, (rank + 1) * BATCH // size)
    rec = muscale.Recorder(model, run_dir, width=width, optimizer=opt, every=1, family="net")
    for step in range(STEPS):
        loss = nn.functional.cross_entropy(model(x[share]), y[share])
        opt.zero_grad()
        loss.backward()
        opt.step()
        rec.step(step, loss=loss)
    rec.close()


def worker(rank: int, port: int, out: str, engine: str, widths: tuple[int, int]):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        train(Path(out) / engine, engine, rank, 2, widths[rank])
    except InputError as error:
        (Path(out) / f"error-{rank}.txt").write_text(str(error))
    finally:
        dist.destroy_process_group()


def two_processes(out: Path, engine: str, widths=(WIDTH, WIDTH)):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(worker, args=(port, str(out), engine, widths), nprocs=2)


@pytest.mark.parametrize("engine", ["ddp", "fsdp"])
def test_two_processes_record_what_one_process_records_on_the_whole_batch(engine, tmp_path):
    train(tmp_path / "one" / "single", "none")
    two_processes(tmp_path / "two", engine)
    one = recorded.read(tmp_path / "one")[0]
    two = recorded.read(tmp_path / "two")[0]
    assert sorted((tmp_path / "two" / engine / "records").iterdir()) and not list(tmp_path.glob("two/error-*"))
    joined = one.join(two, on=["step", "module", "metric"], suffix="_two")
    assert joined.height == one.height == two.height
    assert {"act_l1", "act_rms", "update_fro", "weight_spec", "eps_share", "loss"} <= set(joined["metric"])
    off = joined.filter((pl.col("value") - pl.col("value_two")).abs() > 1e-6 + 1e-4 * pl.col("value").abs())
    assert off.height == 0, off.select("step", "module", "metric", "value", "value_two")


def test_ranks_that_disagree_on_the_run_stop_on_every_rank_in_one_line(tmp_path):
    two_processes(tmp_path, "ddp", widths=(WIDTH, 12))
    errors = [(tmp_path / f"error-{r}.txt").read_text() for r in (0, 1)]
    assert all(e.startswith("width: differs across the 2 ranks (48 on rank 0, 12 on rank 1)") for e in errors), errors
    assert not (tmp_path / "ddp").exists()
