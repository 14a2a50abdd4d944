"""Linear probes: multinomial logistic regression on fixed features, L2 strength chosen on a
validation split.

Objective (identical to scikit-learn's ``LogisticRegression(C=C)`` up to the factor ``C * n``,
so both have the same minimiser): for standardised features ``x_i`` [D], labels ``y_i``,
weights ``W`` [D, K] and intercept ``b`` [K] (not penalised)

    J(W, b) = (1/n) sum_i CE(x_i W + b, y_i) + ||W||_F^2 / (2 C n).

Standardisation: ``x <- (x - mu) / sigma`` with the per-dimension mean and standard deviation
of the TRAINING rows only (sigma = 1 where a dimension is constant); the same transform is
applied to validation and test rows.

The torch solver is full-batch L-BFGS (history 10, strong-Wolfe line search, stopping at
max |grad J| <= ``DEFAULT_TOL``; its first step is the exact minimiser of the quadratic model
along the gradient, see ``_first_step``) with an explicit gradient, on any device. Its matrix
products run in float32 (the reference path) or with float16 operands (``precision="fp16"``,
float32 accumulation; the default on CUDA, opt-in on CPU). Every C of a grid is fitted from
zero, like scikit-learn (a warm start can meet the gradient tolerance while still far from the
optimum when C is large). The scikit-learn solver (``backend="sklearn"``) fits the same
objective as a cross-check; ``benchmarks/probe.py`` compares all three.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import VlmprobeError

DEFAULT_CS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
# Stop at max |grad J| <= DEFAULT_TOL (both backends). scikit-learn's own default, 1e-4, lets
# weakly regularised fits (large C) stop 20-60% above the minimum of J on 20k x 1024 features.
DEFAULT_TOL = 1e-5
REL_CHANGE = 0.1  # ... or when an iteration changes J by less than REL_CHANGE * tol (relative): at
# tol = 1e-5 that is ~8 float32 ulps of J, where line searches only see rounding noise
SMALL_PROBLEM = 2_000_000  # n * D * K below which CPU fits run on one thread
PRECISIONS = ("fp32", "fp16")
TRANSPOSE_COPY_BYTES = 4 << 30  # keep a transposed copy of the training rows below this size (CPU)


@dataclass
class Standardizer:
    """``(x - mean) / std`` with statistics of the training rows (float32 tensors [D])."""

    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def fit(cls, x: torch.Tensor) -> "Standardizer":
        x = x.float()
        mean = x.mean(0)
        std = x.std(0, unbiased=False)
        std = torch.where(std > 1e-6 * std.max().clamp(min=1e-12), std, torch.ones_like(std))
        return cls(mean, std)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x.to(self.mean.device, torch.float32) - self.mean) / self.std


@dataclass
class LinearProbe:
    """A fitted probe: ``logits = standardise(x) @ weight + bias`` ([N, D] -> [N, K])."""

    weight: torch.Tensor  # [D, K]
    bias: torch.Tensor  # [K]
    scaler: Standardizer
    C: float
    n_iter: int = 0
    info: dict = field(default_factory=dict)

    @torch.no_grad()
    def logits(self, x, batch_size: int = 65536) -> torch.Tensor:
        x = torch.as_tensor(x)
        out = [self.scaler(x[i:i + batch_size]) @ self.weight + self.bias for i in range(0, len(x), batch_size)]
        return torch.cat(out).cpu() if out else torch.zeros(0, self.weight.shape[1])


def objective(z: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, C: float) -> torch.Tensor:
    """J(W, b) of the module docstring on standardised rows ``z`` [n, D], labels ``y`` [n]."""
    n = z.shape[0]
    return F.cross_entropy(z @ weight + bias, y) + weight.pow(2).sum() / (2.0 * C * n)


@contextmanager
def _cpu_threads_for(x: torch.Tensor, num_classes: int, device: str):
    """Small CPU problems run single-threaded: many tiny ops gain nothing from threads, and
    thread spin-waits on a busy machine can make them 10-100x slower."""
    small = torch.device(device).type == "cpu" and x.numel() * num_classes < SMALL_PROBLEM
    old = torch.get_num_threads()
    if small:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if small:
            torch.set_num_threads(old)


class _LossGrad:
    """J and its exact gradient, without autograd (``dJ/dW = z^T (P - Y) / n + W / (C n)``,
    ``dJ/db = sum_i (P - Y)_i / n`` with ``P`` the softmax probabilities, ``Y`` one-hot labels).

    ``precision="fp32"``: the reference path, all float32. ``"fp16"``: the two matrix products
    ``z W`` and ``z^T (P - Y)`` take float16 operands (float32 accumulation inside the kernel,
    results rounded to float16: relative error ~2^-11, like a float16 feature cache), which runs
    on tensor cores (GPU) or AVX512-FP16/AMX units (recent CPUs) several times faster;
    intercept, log-softmax, loss, L2 term, gradient sums and the optimiser state stay float32.
    """

    def __init__(self, z: torch.Tensor, y: torch.Tensor, C: float, precision: str):
        if precision not in PRECISIONS:
            raise VlmprobeError(f"unknown probe precision {precision!r}: {', '.join(PRECISIONS)}")
        self.n, self.C, self.y = z.shape[0], C, y
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        self.z = z.to(self.dtype)
        # Class-major layout: logits^T = W^T z^T [K, n] and grad_W^T = (P - Y)^T z [K, D]. With
        # few classes (K << D) these products are 3-6x faster on CPU than z W [n, K] and
        # z^T (P - Y), which MKL runs as skinny matrix products; GPUs transpose for free.
        small = self.z.numel() * self.z.element_size() < TRANSPOSE_COPY_BYTES
        self.zT = self.z.T.contiguous() if z.device.type == "cpu" and small else self.z.T
        self.rows = torch.arange(self.n, device=z.device)

    def __call__(self, w: torch.Tensor, b: torch.Tensor):
        wT = w.T.contiguous().to(self.dtype)  # [K, D]
        logits = (wT @ self.zT).float().add_(b[:, None])  # [K, n], the intercept in float32
        logp = torch.log_softmax(logits, dim=0)
        loss = -logp[self.y, self.rows].mean() + w.pow(2).sum() / (2.0 * self.C * self.n)
        g = logp.exp_()
        g[self.y, self.rows] -= 1.0  # (P - Y)^T [K, n]
        gw = (g.to(self.dtype) @ self.z).float().T.div_(self.n).add_(w, alpha=1.0 / (self.C * self.n))
        return loss, gw, g.sum(1).div_(self.n)


def _first_step(f: "_LossGrad", gw: torch.Tensor, gb: torch.Tensor, num_classes: int) -> float:
    """Exact minimiser along -grad of the quadratic model of J at W = 0, b = 0 (so that L-BFGS's
    first line search starts at the right scale instead of extrapolating from a tiny step).
    There P = 1/K, the logit Hessian of each row is A = I/K - 11^T/K^2, the rows of ``z`` have
    zero mean (standardised) and the columns of grad sum to zero over classes, so
    ``g^T H g = ||z g_W||^2 / (n K) + ||g_W||^2 / (C n) + ||g_b||^2 / K``."""
    zg = (f.z @ gw.to(f.dtype)).float()
    num = gw.pow(2).sum() + gb.pow(2).sum()
    den = zg.pow(2).sum() / (f.n * num_classes) + gw.pow(2).sum() / (f.C * f.n) + gb.pow(2).sum() / num_classes
    return float(num / den) if float(den) > 0 else 1.0


def _lbfgs(z, y, num_classes, C, init=None, max_iter=1000, tol=DEFAULT_TOL, precision="fp32",
           history=10):
    """Minimise J by L-BFGS (two-loop recursion, strong-Wolfe line search from torch.optim) on
    the flat parameter vector [W, b]; stop when max |grad| <= tol, when an iteration changes J by
    less than ``REL_CHANGE * tol`` (relative), or after ``max_iter`` iterations. Returns (W, b,
    iterations, final J evaluated in float32)."""
    from ..compat import strong_wolfe

    d, k = z.shape[1], num_classes
    f = _LossGrad(z, y, C, precision)
    x = torch.zeros(d * k + k, device=z.device)
    if init is not None:
        x[:d * k], x[d * k:] = init[0].reshape(-1), init[1]

    def fg(x_):
        loss, gw, gb = f(x_[:d * k].view(d, k), x_[d * k:])
        return float(loss), torch.cat([gw.reshape(-1), gb])

    def obj(x_, t, dir_):
        return fg(x_ + t * dir_)

    loss, g = fg(x)
    n_iter = 0
    if float(g.abs().max()) > tol:
        t = (_first_step(f, g[:d * k].view(d, k), g[d * k:], k) if init is None
             else min(1.0, 1.0 / float(g.abs().sum())))
        direction = -g
        s_hist, y_hist, rho = [], [], []
        while n_iter < max_iter:
            n_iter += 1
            gtd = float(g.dot(direction))
            if gtd > -1e-12:  # not a descent direction: restart from steepest descent
                s_hist, y_hist, rho, direction = [], [], [], -g
                gtd = float(g.dot(direction))
            new_loss, new_g, t, _ = strong_wolfe(obj, x, t, direction, loss, g, gtd)
            step = t * direction
            x = x + step
            yv = new_g - g
            ys = float(yv.dot(step))
            if ys > 1e-10:
                if len(s_hist) == history:
                    s_hist.pop(0), y_hist.pop(0), rho.pop(0)
                s_hist.append(step), y_hist.append(yv), rho.append(1.0 / ys)
            change = abs(new_loss - loss)
            loss, g = new_loss, new_g
            if float(g.abs().max()) <= tol or change <= REL_CHANGE * tol * max(1.0, abs(loss)):
                break  # converged, or J no longer changes beyond float32 resolution
            q = -g  # two-loop recursion: direction = -H g
            alphas = []
            for s_, y_, r in zip(reversed(s_hist), reversed(y_hist), reversed(rho)):
                a_ = r * float(s_.dot(q))
                alphas.append(a_)
                q = q - a_ * y_
            if s_hist:
                q = q * (float(s_hist[-1].dot(y_hist[-1])) / float(y_hist[-1].dot(y_hist[-1])))
            for s_, y_, r, a_ in zip(s_hist, y_hist, rho, reversed(alphas)):
                q = q + (a_ - r * float(y_.dot(q))) * s_
            direction, t = q, 1.0
    w, b = x[:d * k].view(d, k).clone(), x[d * k:].clone()
    with torch.no_grad():
        final = float(objective(z, y, w, b, C))
    return w, b, n_iter, final


def _sklearn_fit(z, y, C, max_iter=1000, tol=DEFAULT_TOL):
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=C, max_iter=max_iter, tol=tol)
    clf.fit(z.cpu().numpy(), y.cpu().numpy())
    w = torch.as_tensor(clf.coef_.T.copy(), dtype=torch.float32, device=z.device)
    b = torch.as_tensor(clf.intercept_.copy(), dtype=torch.float32, device=z.device)
    if w.shape[1] == 1:  # binary: sklearn keeps one column; expand to two logits
        w, b = torch.cat([-w / 2, w / 2], 1), torch.cat([-b / 2, b / 2])
    return w, b, int(np.max(clf.n_iter_))


def fit_probe(x, y, num_classes: int, C: float, backend: str = "torch", device: str = "cpu",
              scaler: Standardizer | None = None, init: LinearProbe | None = None, max_iter: int = 1000,
              tol: float | None = None, precision: str = "auto") -> LinearProbe:
    """Fit one probe on rows ``x`` [n, D] (array or tensor), integer labels ``y`` [n] in [0, K).

    ``scaler``: reuse a standardiser (default: fit on ``x``). ``init``: warm start (torch only).
    ``tol``: stop when max |dJ/dtheta| <= tol (default ``DEFAULT_TOL``, for both backends).
    ``precision`` (torch): fp32 (reference) | fp16 (see ``_LossGrad``) | auto (fp16 on CUDA,
    fp32 on CPU).
    """
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if precision == "auto":
        precision = "fp16" if torch.device(device).type == "cuda" else "fp32"
    with _cpu_threads_for(x, num_classes, device):
        return _fit_probe(x, y, num_classes, C, backend, device, scaler, init, max_iter, tol, precision)


def _fit_probe(x, y, num_classes, C, backend, device, scaler, init, max_iter, tol, precision) -> LinearProbe:
    y = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y).long().to(device)
    if x.ndim != 2 or len(x) != len(y) or len(x) == 0:
        raise VlmprobeError(f"probe: features {tuple(x.shape)} and labels {tuple(y.shape)} do not match")
    if int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise VlmprobeError(f"probe: labels must lie in [0, {num_classes})")
    if not torch.isfinite(x).all():
        raise VlmprobeError("probe: features contain NaN/inf (drop skipped rows first)")
    scaler = scaler or Standardizer.fit(x.to(device))
    z = scaler(x.to(device))
    if backend == "torch":
        w, b, it, final = _lbfgs(z, y, num_classes, C, init=(init.weight, init.bias) if init else None,
                                 max_iter=max_iter, tol=DEFAULT_TOL if tol is None else tol, precision=precision)
    elif backend == "sklearn":
        precision = "float64/float32 (scikit-learn)"
        w, b, it = _sklearn_fit(z, y, C, max_iter=max_iter, tol=tol if tol is not None else DEFAULT_TOL)
        # classes absent from the training rows get no sklearn column: rebuild a K-column probe
        present = torch.unique(y)
        if len(present) != num_classes:
            full_w = torch.zeros(z.shape[1], num_classes, device=z.device)
            full_b = torch.full((num_classes,), -1e4, device=z.device)
            full_w[:, present], full_b[present] = w, b
            w, b = full_w, full_b
        with torch.no_grad():
            final = float(objective(z, y, w, b, C))
    else:
        raise VlmprobeError(f"unknown probe backend {backend!r}: torch or sklearn")
    return LinearProbe(w, b, scaler, C, it, {"backend": backend, "precision": precision, "objective": final})


def accuracy(logits: torch.Tensor, y) -> float:
    y = torch.as_tensor(np.asarray(y)).long()
    return float((logits.argmax(1).cpu() == y).float().mean()) if len(y) else float("nan")


def carve_validation(labels: Sequence[int], fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded split of training rows -> (train_idx, val_idx): in every class a
    ``fraction`` of its rows (at least one when it has two or more) goes to validation."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        k = int(round(fraction * len(idx)))
        k = max(k, 1) if len(idx) >= 2 else 0
        val.extend(idx[:k].tolist())
    val = np.sort(np.array(val, dtype=np.int64))
    train = np.setdiff1d(np.arange(len(labels)), val)
    if len(val) == 0 or len(train) == 0:
        raise VlmprobeError(f"cannot carve a validation split from {len(labels)} training rows")
    return train, val


@dataclass
class Selection:
    """Outcome of choosing C on validation: the grid, its validation accuracies, the choice,
    and the final probe (refit on train + validation when ``refit``)."""

    C: float
    val_accuracy: float
    val_curve: dict
    probe: LinearProbe
    refit: bool


def select_probe(x_train, y_train, x_val, y_val, num_classes: int, Cs: Sequence[float] = DEFAULT_CS,
                 backend: str = "torch", device: str = "cpu", refit: bool = True, **fit_kw) -> Selection:
    """Fit one probe per C on train, score each on validation, keep the best C (ties -> the
    smaller C, i.e. stronger regularisation). With ``refit`` the returned probe is refit on
    train + validation at that C. Test rows are not an argument: selection cannot see them."""
    Cs = sorted(float(c) for c in Cs)
    if not Cs:
        raise VlmprobeError("probe: empty C grid")
    x_train = torch.as_tensor(np.asarray(x_train)) if not isinstance(x_train, torch.Tensor) else x_train
    x_val = torch.as_tensor(np.asarray(x_val)) if not isinstance(x_val, torch.Tensor) else x_val
    with _cpu_threads_for(x_train, num_classes, device):
        return _select(x_train, y_train, x_val, y_val, num_classes, Cs, backend, device, refit, fit_kw)


def _select(x_train, y_train, x_val, y_val, num_classes, Cs, backend, device, refit, fit_kw) -> Selection:
    scaler = Standardizer.fit(x_train.to(device))
    curve, best = {}, None
    for C in Cs:  # cold starts: a warm start can already meet the gradient tolerance far from the optimum
        probe = fit_probe(x_train, y_train, num_classes, C, backend=backend, device=device, scaler=scaler, **fit_kw)
        acc = accuracy(probe.logits(x_val), y_val)
        curve[C] = acc
        if best is None or acc > best[1]:
            best = (C, acc, probe)
    C, acc, probe = best
    if refit:
        x_all = torch.cat([x_train, x_val])
        y_all = np.concatenate([np.asarray(y_train), np.asarray(y_val)])
        probe = fit_probe(x_all, y_all, num_classes, C, backend=backend, device=device, **fit_kw)
    return Selection(C, acc, {str(k): v for k, v in curve.items()}, probe, refit)
