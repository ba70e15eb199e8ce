import os

import numpy as np
import pytest
import torch

import muscale
from muscale.errors import InputError
from muscale.models import data
from muscale.models.data import PROBE_INDEX, resolve_source
from muscale.run import coordcheck


@pytest.fixture
def split_file(tmp_path):
    """1000 bytes: the first 900 (the training region) are 'a'..'z' cycling, the last 100 are digits,
    so every token says which side of the split it came from."""
    train = bytes(ord("a") + i % 26 for i in range(900))
    held = bytes(ord("0") + i % 10 for i in range(100))
    path = tmp_path / "corpus.txt"
    path.write_bytes(train + held)
    return path


def _equal(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("name", ["synthetic", "stdlib", "text"])
def test_batches_are_a_function_of_the_index(name, split_file):
    source = resolve_source(f"text:{split_file}" if name == "text" else name)
    for index in (0, 7, PROBE_INDEX, -5):
        assert _equal(source.batch(index, 4, 16), source.batch(index, 4, 16))
    assert not _equal(source.batch(0, 4, 16), source.batch(1, 4, 16))
    assert not _equal(source.batch(PROBE_INDEX, 4, 16), source.batch(-2, 4, 16))


def test_synthetic_source_is_token_batch():
    source = resolve_source("synthetic")
    assert source.vocab == data.VOCAB and source.fingerprint == "synthetic"
    for index in (0, 3, PROBE_INDEX):
        assert _equal(source.batch(index, 2, 8), data.token_batch(index, 2, 8))


def test_windows_are_contiguous_slices_of_the_file(split_file):
    raw = split_file.read_bytes()
    source = resolve_source(f"text:{split_file}")
    assert source.vocab == 256
    for index in (0, 1, PROBE_INDEX, -3):
        x, y = source.batch(index, 8, 12)
        assert x.shape == y.shape == (8, 12) and x.dtype == y.dtype == torch.long
        assert torch.equal(x[:, 1:], y[:, :-1])
        for row_x, row_y in zip(x.tolist(), y.tolist()):
            window = bytes(row_x + row_y[-1:])
            assert window in raw


def test_train_and_held_out_windows_stay_on_their_side_of_the_split(split_file):
    source = resolve_source(f"text:{split_file}")
    seq_len = 99  # held-out region is 100 bytes: exactly one window fits, so any spill-over would show
    for index in range(10):  # enough windows that one ending a byte past the split would be drawn
        x, y = source.batch(index, 512, seq_len)
        assert bytes(torch.cat([x, y[:, -1:]], 1).flatten().tolist()).isalpha()
    for index in range(-20, 0):
        x, y = source.batch(index, 8, seq_len)
        assert bytes(torch.cat([x, y[:, -1:]], 1).flatten().tolist()).isdigit()
    with pytest.raises(InputError) as err:
        source.batch(0, 1, seq_len + 1)
    assert err.value.field == "--data" and "seq_len" in str(err.value)


def test_directory_is_read_in_sorted_relative_path_order(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.txt").write_bytes(b"B" * 500)
    (tmp_path / "a.txt").write_bytes(b"A" * 500)
    (tmp_path / "c.txt").write_bytes(b"C" * 1000)
    source = resolve_source(f"text:{tmp_path}")
    assert bytes(source.tokens.tolist()) == b"A" * 500 + b"B" * 500 + b"C" * 1000
    (tmp_path / "c.txt").write_bytes(b"D" * 1000)
    assert resolve_source(f"text:{tmp_path}").fingerprint != source.fingerprint


def test_token_file_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 5000, 4000).astype(np.uint16)
    tokens[1234] = 50256
    path = tmp_path / "train.bin"
    tokens.tofile(path)
    source = resolve_source(f"tokens:{path}")
    assert source.vocab == 50257
    assert isinstance(source.tokens, np.memmap)
    stream = tokens.astype(np.int64)
    split = len(tokens) * 9 // 10
    for index, (lo, hi) in [(0, (0, split)), (5, (0, split)), (PROBE_INDEX, (split, len(tokens)))]:
        x, y = source.batch(index, 4, 32)
        assert x.dtype == torch.long and torch.equal(x[:, 1:], y[:, :-1])
        for row_x, row_y in zip(x.numpy(), y.numpy()):
            window = np.concatenate([row_x, row_y[-1:]])
            starts = [s for s in range(lo, hi - 32) if np.array_equal(stream[s : s + 33], window)]
            assert starts, f"batch {index} has a window that is not a slice of [{lo}, {hi})"


def test_stdlib_source_is_bytes():
    source = resolve_source("stdlib")
    assert resolve_source("stdlib") is source  # read once per process
    assert source.vocab == 256 and 0 < len(source.tokens) <= data.STDLIB_CAP
    x, y = source.batch(0, 4, 64)
    assert x.shape == (4, 64) and int(x.max()) < 256 and int(y.min()) >= 0
    assert b"def " in bytes(source.tokens[:100_000].tolist())


def test_bad_sources_raise_input_errors(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "odd.bin").write_bytes(b"\x01\x00\x02")
    (tmp_path / "empty.bin").write_bytes(b"")
    (tmp_path / "short.txt").write_bytes(b"x" * 50)
    cases = {
        "wikitext": "unknown",
        "text:": "does not exist",
        f"text:{tmp_path / 'missing.txt'}": "does not exist",
        f"tokens:{tmp_path / 'missing.bin'}": "does not exist",
        f"text:{tmp_path / 'empty.txt'}": "empty",
        f"text:{tmp_path / 'empty_dir'}": "empty",
        f"tokens:{tmp_path / 'empty.bin'}": "empty",
        f"tokens:{tmp_path / 'odd.bin'}": "odd size",
        f"tokens:{tmp_path}": "not a file",
    }
    for name, problem in cases.items():
        with pytest.raises(InputError) as err:
            resolve_source(name)
        assert err.value.field == "--data" and problem in err.value.problem, name
    with pytest.raises(InputError) as err:
        resolve_source("wikitext")
    assert all(form in err.value.fix for form in ("synthetic", "stdlib", "text:PATH", "tokens:PATH"))
    short = resolve_source(f"text:{tmp_path / 'short.txt'}")
    with pytest.raises(InputError) as err:
        short.check(16)
    assert err.value.field == "--data"
    short.check(3)


def test_a_text_corpus_is_read_again_after_it_changes(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_bytes(b"a" * 400)
    first = resolve_source(f"text:{path}")
    assert resolve_source(f"text:{path}") is first  # cached: a sweep's runs share one read
    path.write_bytes(b"b" * 500)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert resolve_source(f"text:{path}").fingerprint != first.fingerprint


def _llmc_shard(path, tokens, version: int, count: int | None = None):
    header = np.zeros(256, dtype=np.int32)
    header[:3] = data.LLMC_MAGIC, version, len(tokens) if count is None else count
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(tokens.tobytes())


@pytest.mark.parametrize("version,dtype,top", [(1, np.uint16, 50256), (2, np.uint32, 128_255)])
def test_llmc_shards_are_read_past_their_header(tmp_path, version, dtype, top):
    """llm.c / modded-nanogpt shards: the 256-int32 header is not tokens, and version 2 is uint32."""
    tokens = np.random.default_rng(0).integers(0, 1000, 3000).astype(dtype)
    tokens[17] = top
    path = tmp_path / "shard.bin"
    _llmc_shard(path, tokens, version)
    source = resolve_source(f"tokens:{path}")
    assert source.vocab == top + 1 and len(source.tokens) == len(tokens)
    assert np.array_equal(np.asarray(source.tokens), tokens)


def test_bare_uint16_tokens_are_read_whole(tmp_path):
    tokens = np.arange(2000, dtype=np.uint16) % 300
    path = tmp_path / "bare.bin"
    tokens.tofile(path)
    source = resolve_source(f"tokens:{path}")
    assert source.vocab == 300 and len(source.tokens) == 2000


def test_other_headers_are_refused_in_one_line(tmp_path):
    tokens = np.arange(2000, dtype=np.uint16)
    _llmc_shard(tmp_path / "v7.bin", tokens, 7)
    _llmc_shard(tmp_path / "short.bin", tokens, 1, count=5000)
    np.save(tmp_path / "arr.npy", tokens)
    for name, problem in (("v7.bin", "version 7"), ("short.bin", "says 5000 tokens"), ("arr.npy", ".npy")):
        with pytest.raises(InputError) as err:
            resolve_source(f"tokens:{tmp_path / name}")
        assert err.value.field == "--data" and problem in err.value.problem, name
        assert "\n" not in str(err.value)


def _seeded_runs(data_order: str):
    records = muscale.coord_check(
        "lrm",
        "transformer",
        widths=(16, 32),
        steps=3,
        seeds=2,
        device="cpu",
        data_order=data_order,
        batch_size=2,
        seq_len=8,
        metrics=("act_rms",),
    )
    return {
        (w, s): frame.sort("step", "module", "metric")["value"].to_list()
        for (w, s), frame in records.partition_by("width", "seed", as_dict=True).items()
    }


def test_each_seed_trains_on_its_own_batches_and_sees_the_same_held_out_ones():
    """Seed 0's run is the same either way; seed 1's differs only by the batches it trained on
    (its init is the same in both), so the data order, not the init, makes the difference."""
    own, shared = _seeded_runs("seed"), _seeded_runs("shared")
    assert own[16, 0] == shared[16, 0] and own[32, 0] == shared[32, 0]
    assert own[16, 1] != shared[16, 1] and own[32, 1] != shared[32, 1]
    specs = coordcheck.plan("lrm", "transformer", widths=(16, 32), steps=10, seeds=3)
    assert [s.data_offset for s in specs if s.width == 16] == [0, 10, 20]
    shared_specs = coordcheck.plan("lrm", "transformer", widths=(16, 32), steps=10, seeds=3, data_order="shared")
    assert {s.data_offset for s in shared_specs} == {0}
    assert {s.run_id for s in specs}.isdisjoint(s.run_id for s in shared_specs)


def test_the_long_horizon_trains_token_lms_on_text_and_leaves_other_data_alone():
    assert {s.data for s in coordcheck.plan("lrm", "transformer")} == {"stdlib"}
    assert {s.data for s in coordcheck.plan("mup", "transformer")} == {"synthetic"}
    assert {s.data for s in coordcheck.plan("lrm", "mlp")} == {"synthetic"}
    assert {s.data for s in coordcheck.plan("lrm", "transformer", data="synthetic")} == {"synthetic"}
