"""Training data, generated in-process or read from local files so nothing is ever downloaded.

Every batch is a pure function of (data seed, batch index): the same across widths, so
widths differ only in the model; each run seed starts at its own index (RunSpec.data_offset),
so seeds differ in their data as well as their init. Negative indices are held-out batches
(evaluation and the fixed probe batch), which for a real corpus come from its last 10%,
a region training windows never touch."""

import functools
import hashlib
import os
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError

VOCAB = 256
MLP_IN = 32
MLP_CLASSES = 10
DATA_SEED = 1234
PROBE_INDEX = -1


def _generator(index: int) -> torch.Generator:
    return torch.Generator().manual_seed(DATA_SEED * 1_000_003 + index)


# A sparse Markov chain: each token has 4 likely successors (and a little uniform noise),
# so there is structure to learn and the loss really falls.
_SUCCESSORS = torch.randint(0, VOCAB, (VOCAB, 4), generator=_generator(-1000))
_CUMULATIVE = torch.tensor([0.5, 0.75, 0.9, 0.98])


def token_batch(index: int, batch_size: int, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = _generator(index)
    choice = torch.searchsorted(_CUMULATIVE, torch.rand(batch_size, seq_len, generator=g))
    noise = torch.randint(0, VOCAB, (batch_size, seq_len + 1), generator=g)
    tokens, follows, rank = noise.clone(), choice < 4, choice.clamp_max(3)
    for t in range(seq_len):
        tokens[:, t + 1] = torch.where(follows[:, t], _SUCCESSORS[tokens[:, t], rank[:, t]], noise[:, t + 1])
    return tokens[:, :-1], tokens[:, 1:]


_TEACHER = torch.randn(MLP_IN, MLP_CLASSES, generator=_generator(-2000))


def mlp_batch(index: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(batch_size, MLP_IN, generator=_generator(index))
    return x, (x @ _TEACHER).argmax(1)


SOURCE_FORMS = '"synthetic", "stdlib", "text:PATH" or "tokens:PATH"'
STDLIB_CAP = 8 * 2**20  # bytes: enough text for short runs, read in well under a second
_STDLIB_SKIP = {"site-packages", "test", "tests", "idlelib"}


@dataclass(frozen=True, eq=False)
class Source:
    """A token stream that batches are cut from; `tokens` is None for the synthetic chain.

    `fingerprint` names the content, not the path: the stdlib corpus differs between
    Python versions and a file can change under the same name."""

    name: str
    vocab: int
    fingerprint: str
    tokens: np.ndarray | None = field(default=None, repr=False)

    def check(self, seq_len: int) -> None:
        """Raise before a run starts if the stream cannot hold one window in each region."""
        if self.tokens is None:
            return
        n = len(self.tokens)
        held_out = n - self._split
        if min(self._split, held_out) < seq_len + 1:
            raise InputError(
                "--data",
                f"'{self.name}' has {n} tokens, {held_out} of them held out, too few for "
                f"seq_len {seq_len} (each region needs seq_len + 1)",
                f"use seq_len < {min(self._split, held_out)} or a corpus of at least {10 * (seq_len + 1)} tokens",
            )

    @property
    def _split(self) -> int:
        return len(self.tokens) * 9 // 10

    def batch(self, index: int, batch_size: int, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.tokens is None:
            return token_batch(index, batch_size, seq_len)
        self.check(seq_len)
        lo, hi = (0, self._split) if index >= 0 else (self._split, len(self.tokens))
        starts = torch.randint(lo, hi - seq_len, (batch_size,), generator=_generator(index)).numpy()
        windows = torch.from_numpy(self.tokens[starts[:, None] + np.arange(seq_len + 1)].astype(np.int64))
        return windows[:, :-1], windows[:, 1:]


def resolve_source(name: str) -> Source:
    if name == "synthetic":
        return Source(name, VOCAB, "synthetic")
    if name == "stdlib":
        return _stdlib()
    kind, sep, path = name.partition(":")
    if sep and kind == "text":
        return _text(name, _existing(name, path))
    if sep and kind == "tokens":
        return _token_file(name, _existing(name, path))
    raise InputError("--data", f"unknown data source '{name}'", f"use {SOURCE_FORMS}")


def _byte_source(name: str, raw: bytes) -> Source:
    return Source(name, VOCAB, hashlib.sha1(raw).hexdigest()[:16], np.frombuffer(raw, dtype=np.uint8))


@functools.cache
def _stdlib() -> Source:
    root = Path(sysconfig.get_paths()["stdlib"])
    paths = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in _STDLIB_SKIP]
        paths += [Path(folder, f).relative_to(root).as_posix() for f in files if f.endswith(".py")]
    chunks, size = [], 0
    for rel in sorted(paths):
        if size >= STDLIB_CAP:
            break
        chunks.append((root / rel).read_bytes())
        size += len(chunks[-1])
    raw = b"".join(chunks)[:STDLIB_CAP]
    if not raw:
        raise InputError("--data", f"no Python sources found under {root}", 'use "text:PATH" or "synthetic"')
    return _byte_source("stdlib", raw)


def _existing(name: str, path: str) -> Path:
    if not path or not Path(path).exists():  # Path("") would quietly mean the current directory
        raise InputError("--data", f"'{name}': path '{path}' does not exist", "give an existing file or directory")
    return Path(path)


def _text(name: str, path: Path) -> Source:
    return _text_at(name, path, _modified(path))


def _modified(path: Path) -> tuple[int, int]:
    """The newest modification time and the file count under `path`: a changed corpus is a new key."""
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    return max((p.stat().st_mtime_ns for p in files), default=0), len(files)


@functools.cache
def _text_at(name: str, path: Path, modified: tuple[int, int]) -> Source:
    """Read once per process (a sweep's runs share a worker), again only after a change."""
    if path.is_dir():
        files = sorted((p for p in path.rglob("*") if p.is_file()), key=lambda p: p.relative_to(path).as_posix())
        raw = b"".join(p.read_bytes() for p in files)
    else:
        raw = path.read_bytes()
    if not raw:
        raise InputError("--data", f"'{name}' is empty", "point at a file or directory with text in it")
    return _byte_source(name, raw)


# llm.c's (and modded-nanogpt's) token shards: 256 int32 of header (magic, version, token
# count), then the tokens; version 1 holds uint16 tokens (GPT-2), version 2 uint32 (Llama 3).
LLMC_MAGIC, LLMC_HEADER = 20240520, 256 * 4
LLMC_DTYPES = {1: np.uint16, 2: np.uint32}


def _layout(name: str, path: Path, size: int) -> tuple[type, int]:
    """(token dtype, byte offset of the first token): an llm.c shard, else bare uint16 tokens."""
    with path.open("rb") as f:
        head = f.read(LLMC_HEADER)
    if head.startswith(b"\x93NUMPY"):
        raise InputError(
            "--data",
            f"'{name}' is a .npy file, whose header would be read as tokens",
            "write the bare array (arr.astype(np.uint16).tofile(path)) or an llm.c shard",
        )
    words = np.frombuffer(head[: len(head) // 4 * 4], dtype="<i4")
    if not len(words) or words[0] != LLMC_MAGIC:
        if size % 2:
            raise InputError(
                "--data",
                f"'{name}' has an odd size ({size} bytes), so it is not uint16 tokens",
                "write tokens as a flat numpy uint16 array (nanoGPT's .bin format) or an llm.c shard",
            )
        return np.uint16, 0
    if len(head) < LLMC_HEADER or words[1] not in LLMC_DTYPES:
        version = words[1] if len(words) > 1 else "missing"
        raise InputError(
            "--data",
            f"'{name}' has an llm.c header (magic {LLMC_MAGIC}) of version {version}, which muscale does not read",
            "write version 1 (uint16 tokens) or 2 (uint32 tokens)",
        )
    dtype = LLMC_DTYPES[int(words[1])]
    held = (size - LLMC_HEADER) / np.dtype(dtype).itemsize
    if held != words[2] or not held:
        raise InputError(
            "--data",
            f"'{name}''s llm.c header says {words[2]} tokens but the file holds {held:g}",
            "point at a whole shard, as llm.c's data scripts write it",
        )
    return dtype, LLMC_HEADER


def _token_file(name: str, path: Path) -> Source:
    if not path.is_file():
        raise InputError(
            "--data", f"'{name}' is not a file", "point at a flat uint16 .bin token file or an llm.c shard"
        )
    stat = path.stat()
    if stat.st_size == 0:
        raise InputError("--data", f"'{name}' is empty", "point at a non-empty uint16 .bin token file")
    dtype, offset = _layout(name, path, stat.st_size)
    tokens = np.memmap(path, dtype=dtype, mode="r", offset=offset)
    with path.open("rb") as f:
        fingerprint = hashlib.sha1(str(stat.st_size).encode() + f.read(2**20)).hexdigest()[:16]
    top = _max_token(str(path.resolve()), stat.st_size, stat.st_mtime_ns, np.dtype(dtype).str, offset)
    return Source(name, top + 1, fingerprint, tokens)


@functools.cache
def _max_token(path: str, size: int, mtime_ns: int, dtype: str, offset: int) -> int:
    """Scans the whole file once per process; size and mtime in the key notice a rewrite."""
    tokens = np.memmap(path, dtype=dtype, mode="r", offset=offset)
    chunk = 2**26
    return max(int(tokens[i : i + chunk].max()) for i in range(0, len(tokens), chunk))
