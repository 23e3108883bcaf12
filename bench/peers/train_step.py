#!/usr/bin/env python3
"""PyTorch twin of `loom-bench train-step`.

One full training step (zero grad, forward + loss, backward, global-norm clip, AdamW update) of the same
GPT as the C# benchmark: serial pre-norm blocks, exact-GELU MLP (4 * d_model), learned positions,
multi-head attention through scaled_dot_product_attention, LayerNorm with bias, biases everywhere,
output tied to the token embedding with logits scaled by 1/sqrt(d_model) (as Loom does). Same flags,
same defaults and the same markdown table as the C# benchmark, so the two can be run side by side on one
machine (for example a GPU machine with `--device cuda`).

    python3 bench/peers/train_step.py --device cuda --steps 50
"""

import argparse
import datetime
import math
import os
import platform
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# Optimizer settings shared with the C# benchmark (TrainStepSettings.cs).
LEARNING_RATE = 3e-4
BETAS = (0.9, 0.95)
EPSILON = 1e-8
WEIGHT_DECAY = 0.1
CLIP_NORM = 1.0
NORM_EPSILON = 1e-6
DISTINCT_BATCHES = 8
PHASES = ["zero grad", "forward + loss", "backward", "clip grad norm", "optimizer step (+ loss read-back)"]


class CausalSelfAttention(nn.Module):
    def __init__(self, dim, heads, head_dim, fused_qkv):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        if fused_qkv:  # nanoGPT: one GEMM for q, k and v
            self.c_attn = nn.Linear(dim, 3 * heads * head_dim)
        else:          # Loom's layout: three kernels
            self.c_q = nn.Linear(dim, heads * head_dim)
            self.c_k = nn.Linear(dim, heads * head_dim)
            self.c_v = nn.Linear(dim, heads * head_dim)
        self.c_proj = nn.Linear(heads * head_dim, dim)

    def forward(self, x):
        b, t, _ = x.shape
        if hasattr(self, "c_attn"):
            q, k, v = self.c_attn(x).split(self.heads * self.head_dim, dim=2)  # 3 x (B, T, H*Dh)
        else:
            q, k, v = self.c_q(x), self.c_k(x), self.c_v(x)                    # 3 x (B, T, H*Dh)
        q = q.view(b, t, self.heads, self.head_dim).transpose(1, 2)       # (B, H, T, Dh)
        k = k.view(b, t, self.heads, self.head_dim).transpose(1, 2)       # (B, H, T, Dh)
        v = v.view(b, t, self.heads, self.head_dim).transpose(1, 2)       # (B, H, T, Dh)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)       # (B, H, T, Dh)
        y = y.transpose(1, 2).contiguous().view(b, t, -1)                 # (B, T, H*Dh)
        return self.c_proj(y)                                             # (B, T, D)


class Mlp(nn.Module):
    def __init__(self, dim, mlp_dim):
        super().__init__()
        self.c_fc = nn.Linear(dim, mlp_dim)
        self.c_proj = nn.Linear(mlp_dim, dim)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x)))  # (B, T, D) -> (B, T, F) -> (B, T, D)


class Block(nn.Module):
    def __init__(self, dim, heads, head_dim, mlp_dim, fused_qkv):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=NORM_EPSILON)
        self.attn = CausalSelfAttention(dim, heads, head_dim, fused_qkv)
        self.ln_2 = nn.LayerNorm(dim, eps=NORM_EPSILON)
        self.mlp = Mlp(dim, mlp_dim)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))    # (B, T, D)
        return x + self.mlp(self.ln_2(x))  # (B, T, D)


class Gpt(nn.Module):
    def __init__(self, vocab, block_size, layers, heads, head_dim, dim, mlp_dim, fused_qkv):
        super().__init__()
        self.wte = nn.Embedding(vocab, dim)
        self.wpe = nn.Embedding(block_size, dim)
        self.h = nn.ModuleList([Block(dim, heads, head_dim, mlp_dim, fused_qkv) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(dim, eps=NORM_EPSILON)
        self.logit_scale = 1.0 / math.sqrt(dim)  # Loom's scaling of tied logits (PaLM)
        # Loom's initialisation (embeddings N(0, 1), kernels N(0, 1/sqrt(fan_in)), zero biases); it does
        # not change the cost of a step, only keeps the losses comparable with the C# run.
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("wte.weight") or name.endswith("wpe.weight"):
                    p.normal_(0, 1)
                elif p.dim() == 2:
                    p.normal_(0, 1 / math.sqrt(p.shape[1]))

    def forward(self, idx):
        t = idx.shape[1]
        pos = torch.arange(t, dtype=torch.long, device=idx.device)  # (T)
        x = self.wte(idx) + self.wpe(pos)                            # (B, T, D)
        for block in self.h:
            x = block(x)                                             # (B, T, D)
        x = self.ln_f(x)                                             # (B, T, D)
        return F.linear(x, self.wte.weight) * self.logit_scale       # (B, T, V)

    def loss(self, idx, targets):
        logits = self(idx)                                                        # (B, T, V)
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))  # []


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("benchmark", nargs="?", default="train-step", choices=["train-step"])
    p.add_argument("--steps", type=int, default=10, help="timed steps (default 10), after --warmup")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    p.add_argument("--dim", type=int, default=192, help="d_model (default 192); heads = dim / head-dim")
    p.add_argument("--head-dim", type=int, default=64, help="width of each attention head (default 64)")
    p.add_argument("--layers", type=int, default=4, help="decoder blocks (default 4)")
    p.add_argument("--batch", type=int, default=16, help="sequences per step (default 16)")
    p.add_argument("--seq", type=int, default=256, help="tokens per sequence (default 256)")
    p.add_argument("--vocab", type=int, default=258, help="vocabulary size (default 258)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    p.add_argument("--phases", action="store_true", help="time each phase on CUDA too (adds a sync per phase)")
    p.add_argument("--qkv", choices=["fused", "separate"], default="fused",
                   help="q/k/v projection: fused (default, nanoGPT) or separate (Loom's layout)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="fp32 (default) or bf16: torch.autocast to bfloat16 over float32 weights (Loom's training.precision=bf16)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (default: eager)")
    a = p.parse_args()
    if a.dim % a.head_dim != 0:
        p.error(f"--dim {a.dim} must be a multiple of --head-dim {a.head_dim}")
    if min(a.steps, a.dim, a.head_dim, a.layers, a.batch, a.seq, a.vocab) <= 0 or a.warmup < 0:
        p.error("sizes and --steps must be positive, --warmup >= 0")
    return a


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def os_name():
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.platform()


def load_average():
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "n/a"


def git_commit():
    def git(*args):
        try:
            r = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5)
            return r.stdout.strip() if r.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired):
            return None

    head = git("rev-parse", "--short", "HEAD")
    if head is None:
        return "unknown (not a git checkout)"
    return head if not git("status", "--porcelain", "--untracked-files=no") else head + " + uncommitted changes"


def main():
    a = parse_args()
    if a.threads is not None:
        torch.set_num_threads(a.threads)
    if a.device == "auto":
        a.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(a.device)
    is_cuda = device.type == "cuda"
    sync_phases = not is_cuda or a.phases
    heads, mlp_dim, tokens_per_step = a.dim // a.head_dim, 4 * a.dim, a.batch * a.seq
    load_before = load_average()

    def sync():
        if is_cuda:
            torch.cuda.synchronize(device)

    torch.manual_seed(a.seed)
    model = Gpt(a.vocab, a.seq, a.layers, heads, a.head_dim, a.dim, mlp_dim, a.qkv == "fused").to(device)
    model.train()
    params = list(model.parameters())
    # The step's forward: eager or compiled, in float32 or under bf16 autocast (weights stay float32).
    forward = torch.compile(model.loss) if a.compile else model.loss
    autocast = (torch.autocast(device_type=device.type, dtype=torch.bfloat16) if a.precision == "bf16"
                else torch.autocast(device_type=device.type, enabled=False))
    n_params = sum(p.numel() for p in params)
    # nanoGPT's optimizer groups: weight decay on matrices (embeddings included), not on biases or norms.
    optimizer = torch.optim.AdamW(
        [{"params": [p for p in params if p.dim() >= 2], "weight_decay": WEIGHT_DECAY},
         {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
        lr=LEARNING_RATE, betas=BETAS, eps=EPSILON)

    batches = []
    for _ in range(DISTINCT_BATCHES):
        tokens = torch.randint(0, a.vocab, (a.batch, a.seq + 1), device=device)           # (B, T+1)
        batches.append((tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()))          # (B, T) each
    with torch.no_grad():
        initial_loss = model.loss(*batches[0]).item()

    print(f"train-step: {n_params:,} parameters, {a.warmup} warm-up + {a.steps} timed steps on {device}"
          f" ({torch.get_num_threads()} threads)", file=sys.stderr)
    totals, phases, last_loss = [], [], float("nan")
    for step in range(a.warmup + a.steps):
        inputs, targets = batches[step % DISTINCT_BATCHES]
        laps = []
        sync()
        start = time.perf_counter()

        def lap():
            if sync_phases:
                sync()
            laps.append(time.perf_counter())

        optimizer.zero_grad(set_to_none=True)
        lap()
        with autocast:
            loss = forward(inputs, targets)
        lap()
        loss.backward()
        lap()
        torch.nn.utils.clip_grad_norm_(params, CLIP_NORM)
        lap()
        optimizer.step()
        lap()
        last_loss = loss.item()  # waits for the device, as the C# benchmark does
        sync()
        end = time.perf_counter()
        laps[-1] = end  # the read-back belongs to the optimizer phase, as in the C# benchmark
        marks = [start] + laps
        step_phases = [(marks[i + 1] - marks[i]) * 1000 for i in range(len(PHASES))]
        total = (end - start) * 1000
        warm = step >= a.warmup
        if warm:
            totals.append(total)
            phases.append(step_phases)
        label = f"step {step - a.warmup + 1}" if warm else f"warm-up {step + 1}"
        print(f"  {label}: PyTorch {total:.1f} ms (loss {last_loss:.4f})", file=sys.stderr)

    median, fastest = statistics.median(totals), min(totals)
    if is_cuda:
        machine = f"{torch.cuda.get_device_name(device)}; host CPU {cpu_model()}"
    else:
        machine = cpu_model()
    out = [
        "## train-step: PyTorch",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- commit: {git_commit()}",
        f"- machine: {machine}, {os.cpu_count()} logical CPUs, {os_name()}",
        f"- device: {device.type}, torch intra-op threads {torch.get_num_threads()}; PyTorch {torch.__version__},"
        f" Python {platform.python_version()}",
        f"- load average (1 min) before / after: {load_before} / {load_average()}",
        f"- model: GPT, vocab {a.vocab}, d_model {a.dim}, {a.layers} layers, {heads} heads × {a.head_dim},"
        f" MLP {mlp_dim} (GELU), learned positions, LayerNorm + biases, tied embeddings; {n_params:,} parameters",
        f"- step: batch {a.batch} × seq {a.seq} = {tokens_per_step:,} tokens; AdamW (β {BETAS[0]}/{BETAS[1]},"
        f" wd {WEIGHT_DECAY} on matrices), clip {CLIP_NORM:g}, {'bf16 autocast over float32 weights' if a.precision == 'bf16' else 'float32'}",
        f"- timing: {a.steps} steps after {a.warmup} warm-up",
        "",
        "| contender | median ms/step | min ms/step | tokens/s (median) | Loom/plain |",
        "|---|---:|---:|---:|---:|",
        f"| PyTorch ({'torch.compile' if a.compile else 'eager'}, {a.precision}, {a.qkv} q/k/v, torch.optim.AdamW) | {median:.1f} | {fastest:.1f} | {tokens_per_step / (median / 1000):,.0f} | — |",
        "",
        f"Loss on the first batch: {initial_loss:.5f}; after the last step: {last_loss:.5f}.",
    ]
    if sync_phases:
        out += ["", "| phase (median ms) | PyTorch |", "|---|---:|"]
        for i, name in enumerate(PHASES):
            out.append(f"| {name} | {statistics.median(p[i] for p in phases):.2f} |")
    print("\n".join(out))


if __name__ == "__main__":
    main()
