"""nanoGPT's train.py, cut down to its loop, with muscale.Recorder added: the lines marked
`# muscale` are all that a real train.py needs.

    python examples/nanogpt_train.py --n_embd 128 --out runs/gpt   # one width per run
    python examples/nanogpt_train.py --n_embd 256 --out runs/gpt
    muscale fit runs/gpt

The loop is nanoGPT's shape: micro-steps of gradient accumulation, a warm-up and cosine
learning-rate schedule, gradient clipping, and an evaluation under torch.no_grad every
`eval_interval` iterations (the recorder ignores forwards without gradients, so evaluation
never lands in the records). Data are random tokens from a fixed generator: no download."""

import argparse
import math

import torch
from torch import nn
from torch.nn import functional as F

import muscale  # muscale


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int):
        super().__init__()
        self.c_attn, self.c_proj, self.n_head = nn.Linear(n_embd, 3 * n_embd), nn.Linear(n_embd, n_embd), n_head

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        return self.c_proj(F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, c))


class MLP(nn.Module):
    def __init__(self, n_embd: int):
        super().__init__()
        self.c_fc, self.c_proj = nn.Linear(n_embd, 4 * n_embd), nn.Linear(4 * n_embd, n_embd)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int):
        super().__init__()
        self.ln_1, self.attn = nn.LayerNorm(n_embd), CausalSelfAttention(n_embd, n_head)
        self.ln_2, self.mlp = nn.LayerNorm(n_embd), MLP(n_embd)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """nanoGPT's module names (transformer.h.0.attn.c_attn, …), which muscale reads roles from."""

    def __init__(self, n_embd: int, n_layer: int = 2, n_head: int = 4, vocab_size: int = 256, block_size: int = 32):
        super().__init__()
        self.transformer = nn.ModuleDict(
            {
                "wte": nn.Embedding(vocab_size, n_embd),
                "wpe": nn.Embedding(block_size, n_embd),
                "h": nn.ModuleList(Block(n_embd, n_head) for _ in range(n_layer)),
                "ln_f": nn.LayerNorm(n_embd),
            }
        )
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)

    def forward(self, idx, targets=None):
        t = self.transformer
        x = t.wte(idx) + t.wpe(torch.arange(idx.shape[1], device=idx.device))
        for block in t.h:
            x = block(x)
        logits = self.lm_head(t.ln_f(x))
        loss = None if targets is None else F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n_embd", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max_iters", type=int, default=60)
    parser.add_argument("--out", default="runs/gpt")
    args = parser.parse_args()
    batch_size, block_size, gradient_accumulation_steps = 4, 32, 2
    learning_rate, min_lr, warmup_iters, eval_interval, grad_clip = 3e-3, 3e-4, 10, 20, 1.0

    torch.manual_seed(args.seed)
    data = torch.randint(0, 256, (100_000,), generator=torch.Generator().manual_seed(1337))

    def get_batch():
        ix = torch.randint(len(data) - block_size - 1, (batch_size,))
        x = torch.stack([data[i : i + block_size] for i in ix])
        return x, torch.stack([data[i + 1 : i + 1 + block_size] for i in ix])

    def get_lr(it):
        if it < warmup_iters:
            return learning_rate * (it + 1) / (warmup_iters + 1)
        ratio = (it - warmup_iters) / max(1, args.max_iters - warmup_iters)
        return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (learning_rate - min_lr)

    model = GPT(args.n_embd)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.1, betas=(0.9, 0.95))
    recorder = muscale.Recorder(  # muscale
        model,
        f"{args.out}/w{args.n_embd}-s{args.seed}",
        width=args.n_embd,
        seed=args.seed,
        depth=2,
        optimizer=optimizer,
    )  # muscale

    for iter_num in range(args.max_iters):
        for group in optimizer.param_groups:
            group["lr"] = get_lr(iter_num)
        if iter_num % eval_interval == 0:
            model.eval()
            with torch.no_grad():
                val = torch.stack([model(*get_batch())[1] for _ in range(4)]).mean()
            model.train()
            print(f"iter {iter_num}: val loss {val.item():.4f}")
        for _ in range(gradient_accumulation_steps):
            _, loss = model(*get_batch())
            (loss / gradient_accumulation_steps).backward()
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        recorder.step(iter_num, loss=loss)  # muscale
    recorder.close()  # muscale


if __name__ == "__main__":
    main()
