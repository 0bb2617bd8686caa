"""The PyTorch side of bench/side_by_side.sh: one training step (forward + backward + clip + AdamW) of the same
Mamba 2 language model that mimetic's tests/lm_step_bench.ts times, in plain PyTorch, fp32 throughout.

The model is mimetic's (lib/nn/lm.ts, lib/nn/mamba2.ts): token embedding; per layer a pre-RMSNorm and a Mamba 2
mixer (one input projection to z, x, B, C, dt; a depthwise causal conv with SiLU on x, B, C; dt = softplus(dt +
bias); the SSD scan with the skip D; the gated RMSNorm rmsNorm(y * silu(z)) * w; the output projection) added to
the residual; a final RMSNorm; the head tied to the embedding; mean cross-entropy. AdamW (weight decay 0.1) after
clipping the global gradient norm to 1.

The scan: `chunked` is the SSD chunked algorithm in PyTorch ops (quadratic within chunks of 64, a linear
recurrence over chunk states), so its backward is autograd's; `triton` is mamba_ssm's fused Triton kernel
(mamba_chunk_scan_combined), loaded from MAMBA_REPO: a copy of state-spaces/mamba's `mamba_ssm` folder (or of the
whole repository); only its Python sources are used, no compiled extension. Note: Triton's tl.dot takes fp32 inputs
in TF32 by default, so the Triton scan is not strictly fp32; every other op here is (TF32 is switched off for
matmuls and convolutions).

    python3 bench/torch_lm_step.py --d 1024 --layers 2 --N 128 --P 64 --batch 64 --T 128
    MAMBA_REPO=/path/to/mamba_ssm python3 bench/torch_lm_step.py --suite side --out results/torch.jsonl
    python3 bench/torch_lm_step.py --suite side --tiny --dry-run      # the cases, without torch

Prints (and with --out appends) one JSON object per case and scan: median ms per step over the timed steps.
"""
import argparse
import importlib
import json
import math
import os
import sys
import time
import types

D1024 = dict(d=1024, layers=2, N=128, P=64, vocab=32)
FIG7 = dict(d=256, layers=2, N=64, P=64, vocab=30)


def side_cases(tiny):
    """The PyTorch half of tests/lm_step_bench.ts's `side` set (one run: K = 1), by the same names."""
    cases = [dict(name="d1024", batch=64, T=128, **D1024), dict(name="fig7 K1", batch=32, T=220, **FIG7)]
    for T in [128, 256, 512, 1024, 2048, 4096]:
        cases.append(dict(name=f"fig7 T{T}", batch=8192 // T, T=T, **FIG7))
    if tiny:  # the same shrinking as the Deno side's LM_BENCH_TINY
        cases = [dict(c, d=32, N=16, P=16, batch=min(c["batch"], 2), T=min(32, max(8, round(c["T"] / 32))))
                 for c in cases]
    return cases


def load_triton_scan():
    """mamba_ssm's mamba_chunk_scan_combined from MAMBA_REPO, without running mamba_ssm/__init__.py (which imports
    the compiled CUDA extension): each package on the way is registered as an empty module with its path."""
    root = os.environ.get("MAMBA_REPO")
    if not root:
        return None, "MAMBA_REPO is not set"
    root = os.path.abspath(root)
    pkg = root if os.path.basename(root) == "mamba_ssm" else os.path.join(root, "mamba_ssm")
    if not os.path.isfile(os.path.join(pkg, "ops", "triton", "ssd_combined.py")):
        return None, f"no mamba_ssm/ops/triton/ssd_combined.py under {root}"
    sys.path.insert(0, os.path.dirname(pkg))
    for name in ["mamba_ssm", "mamba_ssm.ops", "mamba_ssm.ops.triton", "mamba_ssm.utils"]:
        if name not in sys.modules:
            mod = types.ModuleType(name)
            mod.__path__ = [os.path.join(os.path.dirname(pkg), *name.split("."))]
            sys.modules[name] = mod
    try:
        return importlib.import_module("mamba_ssm.ops.triton.ssd_combined").mamba_chunk_scan_combined, None
    except Exception as e:  # an import error of the copy: report it, time the rest
        return None, f"import of mamba_ssm's Triton SSD failed: {type(e).__name__}: {e}"


def make_ssd_chunked(torch):
    F = torch.nn.functional

    def ssd_chunked(x, dA, B, C, L):
        """y_t = sum_{s<=t} C_t·B_s exp(sum_{s<r<=t} dA_r) x_s, chunked. x (b, T, h, p) already times dt; dA (b, T, h)
        = dt·A; B, C (b, T, n) shared by the heads (one group). Returns y (b, T, h, p)."""
        b, T, h, p = x.shape
        pad = (-T) % L
        if pad:
            x, dA = F.pad(x, (0, 0, 0, 0, 0, pad)), F.pad(dA, (0, 0, 0, pad))
            B, C = F.pad(B, (0, 0, 0, pad)), F.pad(C, (0, 0, 0, pad))
        c = x.shape[1] // L
        x = x.reshape(b, c, L, h, p)
        B, C = B.reshape(b, c, L, -1), C.reshape(b, c, L, -1)
        dA = dA.reshape(b, c, L, h)
        cum = torch.cumsum(dA, dim=2)  # (b, c, L, h): decay from the chunk start to t, inclusive
        # Within a chunk: the (t, s) decay exp(cum_t - cum_s) for s <= t, 0 above the diagonal.
        diff = cum[:, :, :, None, :] - cum[:, :, None, :, :]  # (b, c, t, s, h)
        causal = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()
        decay = torch.exp(diff.masked_fill(~causal[None, None, :, :, None], -math.inf))
        scores = torch.einsum("bctn,bcsn->bcts", C, B)
        y_in = torch.einsum("bcts,bctsh,bcshp->bcthp", scores, decay, x)
        # Chunk states: the state at each chunk's end from its own inputs, then carried across chunks.
        to_end = torch.exp(cum[:, :, -1:, :] - cum)  # (b, c, L, h)
        local = torch.einsum("bcsn,bcsh,bcshp->bchpn", B, to_end, x)
        total = torch.exp(cum[:, :, -1, :])  # (b, c, h): decay over a whole chunk
        states, carried = [], torch.zeros_like(local[:, 0])
        for i in range(c):  # the state entering chunk i
            states.append(carried)
            carried = carried * total[:, i, :, None, None] + local[:, i]
        entering = torch.stack(states, dim=1)  # (b, c, h, p, n)
        y_carry = torch.einsum("bctn,bchpn,bcth->bcthp", C, entering, torch.exp(cum))
        return (y_in + y_carry).reshape(b, c * L, h, p)[:, :T]

    return ssd_chunked


def check_scans(torch, scan_fn, device):
    """The chunked scan (and the Triton one, if loaded) against the sequential recurrence in float64, on random
    inputs with T not a multiple of the chunk: h_t = exp(dt_t·A)·h_{t-1} + dt_t·x_t ⊗ B_t, y_t = C_t·h_t + D·x_t.
    Returns the worst relative error of each; raises if the chunked one is off (it is what the timings run)."""
    g = torch.Generator(device="cpu").manual_seed(1)
    b, T, h, p, n, L = 2, 150, 3, 8, 16, 64
    x = torch.randn(b, T, h, p, generator=g, dtype=torch.float64)
    dt = torch.rand(b, T, h, generator=g, dtype=torch.float64) * 0.5 + 0.01
    A = -torch.rand(h, generator=g, dtype=torch.float64) * 4 - 0.1
    B = torch.randn(b, T, n, generator=g, dtype=torch.float64)
    C = torch.randn(b, T, n, generator=g, dtype=torch.float64)
    D = torch.randn(h, generator=g, dtype=torch.float64)
    state = torch.zeros(b, h, p, n, dtype=torch.float64)
    ref = torch.empty(b, T, h, p, dtype=torch.float64)
    for t in range(T):
        a = torch.exp(dt[:, t] * A)  # (b, h)
        state = a[:, :, None, None] * state + (dt[:, t, :, None] * x[:, t])[..., None] * B[:, t, None, None, :]
        ref[:, t] = torch.einsum("bhpn,bn->bhp", state, C[:, t]) + D[:, None] * x[:, t]
    scale = ref.abs().max().item()
    errs = {}
    dev = [v.to(device=device, dtype=torch.float32) for v in (x, dt, A, B, C, D)]
    xf, dtf, Af, Bf, Cf, Df = dev
    ssd = make_ssd_chunked(torch)
    y = ssd(xf * dtf[..., None], dtf * Af, Bf, Cf, L) + xf * Df[:, None]
    errs["chunked"] = (y.double().cpu() - ref).abs().max().item() / scale
    if scan_fn is not None and device == "cuda":
        y = scan_fn(xf, dtf, Af, Bf[:, :, None, :], Cf[:, :, None, :], chunk_size=L, D=Df)
        errs["triton"] = (y.double().cpu() - ref).abs().max().item() / scale
    if not errs["chunked"] < 1e-4:
        raise AssertionError(f"chunked SSD off by {errs['chunked']:.2e} of the reference's scale")
    return errs


def build(torch, a, scan_fn):
    nn, F = torch.nn, torch.nn.functional
    ssd_chunked = make_ssd_chunked(torch)

    class RMSNorm(nn.Module):
        def __init__(self, d, eps=1e-5):
            super().__init__()
            self.weight, self.eps = nn.Parameter(torch.ones(d)), eps

        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight

    class Mamba2(nn.Module):
        def __init__(self, d, N, P, layers, expand=2, conv=4):
            super().__init__()
            self.E, self.N, self.P = expand * d, N, P
            self.H = self.E // P
            self.in_proj = nn.Linear(d, 2 * self.E + 2 * N + self.H, bias=False)
            ch = self.E + 2 * N
            self.conv = nn.Conv1d(ch, ch, conv, groups=ch, padding=conv - 1)
            dt = torch.exp(torch.rand(self.H) * (math.log(0.1) - math.log(0.001)) + math.log(0.001)).clamp(min=1e-4)
            self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # softplus⁻¹(dt)
            self.A_log = nn.Parameter(torch.log(torch.empty(self.H).uniform_(1, 16)))
            self.D = nn.Parameter(torch.ones(self.H))
            self.norm = RMSNorm(self.E)
            self.out_proj = nn.Linear(self.E, d, bias=False)
            with torch.no_grad():
                self.out_proj.weight /= math.sqrt(layers)

        def forward(self, u):
            b, T, _ = u.shape
            z, xBC, dt = torch.split(self.in_proj(u), [self.E, self.E + 2 * self.N, self.H], dim=-1)
            xBC = F.silu(self.conv(xBC.transpose(1, 2))[..., :T].transpose(1, 2))
            x, B, C = torch.split(xBC, [self.E, self.N, self.N], dim=-1)
            dt = F.softplus(dt + self.dt_bias)
            A = -torch.exp(self.A_log)
            x = x.reshape(b, T, self.H, self.P)
            if scan_fn is not None:
                y = scan_fn(x, dt, A, B[:, :, None, :], C[:, :, None, :], chunk_size=a.chunk, D=self.D)
            else:
                y = ssd_chunked(x * dt[..., None], dt * A, B, C, a.chunk) + x * self.D[:, None]
            return self.out_proj(self.norm(y.reshape(b, T, self.E) * F.silu(z)))

    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(a.vocab, a.d)
            nn.init.normal_(self.embedding.weight, std=0.02)
            self.norms = nn.ModuleList([RMSNorm(a.d) for _ in range(a.layers)])
            self.mixers = nn.ModuleList([Mamba2(a.d, a.N, a.P, a.layers) for _ in range(a.layers)])
            self.norm_f = RMSNorm(a.d)

        def forward(self, ids):
            h = self.embedding(ids)
            for norm, mixer in zip(self.norms, self.mixers):
                h = h + mixer(norm(h))
            return self.norm_f(h) @ self.embedding.weight.t()

    return LM()


def time_case(torch, a, scan, scan_fn):
    F = torch.nn.functional
    torch.manual_seed(0)
    model = build(torch, a, scan_fn if scan == "triton" else None).to(a.device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
    ids = torch.randint(0, a.vocab, (a.batch, a.T), device=a.device)
    targets = torch.randint(0, a.vocab, (a.batch, a.T), device=a.device)
    sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)

    def step():
        logits = model(ids)
        loss = F.cross_entropy(logits.reshape(-1, a.vocab), targets.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for _ in range(a.warmup):
        step()
    sync()
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    times.sort()
    ms = 1000 * times[len(times) // 2]
    return {"framework": f"pytorch {torch.__version__}", "scan": scan, "device": device_name(torch, a),
            "name": a.name, "d": a.d, "layers": a.layers, "N": a.N, "P": a.P, "vocab": a.vocab, "K": 1,
            "B": a.batch, "T": a.T, "ms_per_step": round(ms, 3), "ms_per_run_step": round(ms, 3),
            "tokens_per_s": round(a.batch * a.T / ms * 1000),
            **({"note": "Triton tl.dot: fp32 inputs in TF32"} if scan == "triton" else {})}


def device_name(torch, a):
    return torch.cuda.get_device_name() if a.device == "cuda" else "cpu"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", choices=["one", "side"], default="one", help="one case (the flags) or the side set")
    ap.add_argument("--tiny", action="store_true", help="with --suite side: the tiny shapes of LM_BENCH_TINY=1")
    ap.add_argument("--name", default="custom")
    ap.add_argument("--d", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--N", type=int, default=128)
    ap.add_argument("--P", type=int, default=64)
    ap.add_argument("--vocab", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--T", type=int, default=128)
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--scan", choices=["chunked", "triton", "all"], default="all",
                    help="all: chunked, and triton when MAMBA_REPO's copy imports")
    ap.add_argument("--triton-cases", default=None,
                    help="with --scan all: time the Triton scan only for these case names (comma-separated; "
                         "each new shape costs Triton's autotuning, ~100 s); default every case")
    ap.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    ap.add_argument("--out", default=None, help="append the JSON lines to this file")
    ap.add_argument("--dry-run", action="store_true", help="print the cases and exit (needs no torch)")
    ap.add_argument("--check", action="store_true", help="only check the scans against float64, then exit")
    a = ap.parse_args()
    cases = side_cases(a.tiny) if a.suite == "side" else [
        dict(name=a.name, d=a.d, layers=a.layers, N=a.N, P=a.P, vocab=a.vocab, batch=a.batch, T=a.T)]
    if a.dry_run:
        for c in cases:
            print(json.dumps(c))
        return 0
    try:
        import torch
    except ImportError:
        print("torch_lm_step.py: PyTorch is not installed (pip install torch); nothing timed", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    a.device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    scans = ["chunked", "triton"] if a.scan == "all" else [a.scan]
    scan_fn = None
    if "triton" in scans:
        scan_fn, why = load_triton_scan()
        if scan_fn is None:
            print(f"torch_lm_step.py: no Triton SSD ({why}); timing the chunked scan only", file=sys.stderr)
            if a.scan == "triton":
                return 2
            scans = ["chunked"]
    errs = check_scans(torch, scan_fn if "triton" in scans else None, a.device)
    print("scan check against a float64 recurrence (max error / max |y|): " +
          ", ".join(f"{k} {v:.1e}" for k, v in errs.items()), file=sys.stderr)
    if a.check:
        return 0
    triton_cases = None if a.triton_cases is None else {n.strip() for n in a.triton_cases.split(",") if n.strip()}
    # Every case with the chunked scan first, then the Triton ones: a run cut short by a time limit still has the
    # whole chunked column.
    for scan in scans:
        for c in cases:
            if scan == "triton" and triton_cases is not None and c["name"] not in triton_cases:
                continue
            args = argparse.Namespace(**{**vars(a), **c})
            try:
                r = time_case(torch, args, scan, scan_fn)
            except (torch.cuda.OutOfMemoryError, MemoryError) as e:
                r = {"framework": "pytorch", "scan": scan, "name": c["name"], "error": f"out of memory: {e}"[:200]}
                if a.device == "cuda":
                    torch.cuda.empty_cache()
            line = json.dumps(r)
            print(line, flush=True)
            if a.out:
                with open(a.out, "a") as f:
                    f.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
