"""Reproduce the "detectors tried" table of docs/eval.md (fourth round): in-sample and LOCO NAB scores.

Not part of the package: an exploration harness in NumPy that reuses
edgewatch's own likelihood and levels steps (``edgewatch.agent.postprocess``)
and NAB scorer (``edgewatch.eval.nab_score``), so its default row equals
``edgewatch eval nab --loco`` (75.90 / 68.01 / 81.37 in-sample, 73.43 /
64.16 / 78.87 LOCO). Run from a source checkout:

    PYTHONPATH=. python docs/scripts/nab_variants.py [--data ../shared/datasets/nab]

About 6 minutes of CPU (the causal sub-sequence PCA refits an SVD every 50
rows and dominates). Each family is scored with its own small grid; LOCO
chooses the grid point and the threshold on three categories and scores the
fourth (edgewatch.eval.loco.choose).
"""

from __future__ import annotations

import argparse
from collections import deque

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view as swv

from edgewatch.agent.postprocess import Levels, Likelihood
from edgewatch.contract.postprocess import LevelsParams, LikelihoodParams
from edgewatch.data.nab import STANDARD_PROFILES, load_corpus
from edgewatch.eval import loco
from edgewatch.eval.nab_score import normalise, row_rewards, sweep

W = 384  # the novelty span; graph-side detectors speak from row W - 1


def nn_dist(x: np.ndarray, m: int, span: int = W, start: int | None = None) -> np.ndarray:
    """Causal nearest-neighbour distance of the last m values within span (the graph's statistic), per lag."""
    n = len(x)
    out = np.full(n, np.inf)
    for lag in range(m, span - m + 1):
        d = np.zeros(n)
        d[lag:] = (x[lag:] - x[:-lag]) ** 2
        c = np.cumsum(d)
        ms = np.full(n, np.inf)
        ms[m:] = c[m:] - c[:-m]
        if start is not None:  # growing history: a lag is usable once its stretch exists
            ms[:min(lag + m - 1, n)] = np.inf
        np.minimum(out, ms, out=out)
    out = np.sqrt(np.maximum(out, 0) / m)
    out[~np.isfinite(out)] = 0
    out[: (W - 1 if start is None else start)] = 0
    return out


def spectral_residual(x: np.ndarray, w: int, q: int = 3, z: int = 21, ext: int = 5) -> np.ndarray:
    """Saliency of the last point of each w-row window (Ren et al., KDD 2019), with their 5-point extension."""
    n = len(x)
    out = np.zeros(n)
    ends = np.arange(W - 1, n)
    for a in range(0, len(ends), 4096):
        e = ends[a:a + 4096]
        win = swv(x, w)[e - (w - 1)]
        g = ((win[:, -1:] - win[:, -6:-1]) / np.arange(5, 0, -1)[None, :]).mean(axis=1, keepdims=True)
        winx = np.concatenate([win, np.repeat(win[:, -5:-4] + g * 5, ext, axis=1)], axis=1)
        f = np.fft.fft(winx, axis=1)
        amp = np.abs(f)
        la = np.log(amp + 1e-8)
        avg = swv(np.pad(la, ((0, 0), (q // 2, q // 2)), mode="edge"), q, axis=1).mean(axis=2)
        sal = np.abs(np.fft.ifft(np.exp(la - avg) * f / (amp + 1e-8), axis=1))[:, :w]
        local = sal[:, -z - 1:-1].mean(axis=1)
        out[e] = (sal[:, -1] - local) / (local + 1e-8)
    return out


def subsequence_pca(x: np.ndarray, m: int = 32, span: int = W, every: int = 50, var: float = 0.95) -> np.ndarray:
    """Causal sub-sequence PCA: residual RMS of the last m values off the principal subspace (95 % of the
    variance) of the earlier stretches within span, refitted every 50 rows."""
    n = len(x)
    out = np.zeros(n)
    subs = swv(x, m)
    basis = None
    for t in range(W - 1, n):
        if basis is None or (t - (W - 1)) % every == 0:
            s = subs[t - span + 1: t - 2 * m + 2]
            mu = s.mean(axis=0)
            _, sv, vt = np.linalg.svd(s - mu, full_matrices=False)
            ev = sv ** 2
            k = int(np.searchsorted(np.cumsum(ev) / max(ev.sum(), 1e-300), var) + 1)
            basis = (mu, vt[:k])
        mu, v = basis
        r = subs[t - m + 1] - mu
        r = r - (r @ v.T) @ v
        out[t] = np.sqrt((r ** 2).mean())
    return out


def lik(raw: np.ndarray, start: int = W - 1, **kw: float) -> np.ndarray:
    p = dict(short=1, long=8640, learning=100, reestimate=100, min_std=1e-9, refractory=30, damp=0.5, alert=0.5,
             hold=100)
    p.update(kw)
    out = np.zeros(len(raw))
    out[start:] = Likelihood(LikelihoodParams(**p)).update_many(np.zeros(len(raw) - start, dtype=np.int64),
                                                                 raw[start:])
    return out


def levels(x: np.ndarray, range_rows: int) -> np.ndarray:
    """The levels step from the first row on (it speaks once its range is known, as in the default file)."""
    return Levels(LevelsParams(range_rows=range_rows)).update_many(np.zeros(len(x), dtype=np.int64), x)


def one_alert(v: np.ndarray, refractory: int = 30, damp: float = 0.5, alert: float = 0.5, hold: int = 100):  # noqa: ANN201
    """The likelihood step's refractory damping and hold, applied to an ensemble's combined output."""
    out = np.empty(len(v))
    held = 0
    recent: deque[float] = deque(maxlen=refractory)
    for i, x in enumerate(v.tolist()):
        peak = max(recent) if recent else 0.0
        recent.append(x)
        if x <= peak:
            x *= damp
        if held > 0:
            held -= 1
            x *= damp
        elif x >= alert:
            held = hold
        out[i] = x
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/datasets/nab")
    args = ap.parse_args()
    files = load_corpus(args.data)
    rewards = [row_rewards(len(f.values), f.windows) for f in files]
    nw = sum(r.n_windows for r in rewards)
    xs = [f.values.astype(np.float32).astype(np.float64) for f in files]

    def mx(*series):  # noqa: ANN001, ANN202
        return [np.maximum.reduce(z) for z in zip(*series)]

    def row(name: str, grid: dict) -> None:
        res = loco.choose(files, {str(k): v for k, v in grid.items()}, STANDARD_PROFILES)
        ins = []
        best = max(grid, key=lambda k: sweep(grid[k], rewards, STANDARD_PROFILES[0]).best()[1])
        for p in STANDARD_PROFILES:
            ins.append(normalise(sweep(grid[best], rewards, p).best()[1], nw, p))
        print(f"| {name} | {len(grid)} | " + " / ".join(f"{v:.2f}" for v in ins) + " | "
              + " / ".join(f"{lp.loco:.2f}" for lp in res.profiles) + f" | {best} |", flush=True)

    nn = {m: [nn_dist(x, m) for x in xs] for m in (16, 32, 48)}
    lv = {rr: [levels(x, rr) for x in xs] for rr in (256, 384)}
    pca = [subsequence_pca(x) for x in xs]
    sr = {w: [spectral_residual(x, w) for x in xs] for w in (128, 384)}
    print("| detector | grid points | in-sample std / low FP / low FN | LOCO std / low FP / low FN | in-sample choice |")
    print("|---|---|---|---|---|")
    g_nn = {(m, h): [lik(d, hold=h) for d in nn[m]] for m in nn for h in (100, 200)}
    row("subsequence NN distance alone (m x hold)", g_nn)
    row("levels alone (range rows)", lv)
    g_pca = {h: [lik(d, hold=h) for d in pca] for h in (100, 200)}
    row("sub-sequence PCA alone (hold)", g_pca)
    g_sr = {(w, h): [lik(d, hold=h) for d in sr[w]] for w in sr for h in (100, 200)}
    row("spectral residual alone (window x hold)", g_sr)
    row("sub-sequence PCA + levels (hold x range)", {(h, rr): mx(v, lv[rr]) for h, v in g_pca.items() for rr in lv})
    row("spectral residual + levels (window x hold x range)",
        {(k, rr): mx(v, lv[rr]) for k, v in g_sr.items() for rr in lv})
    raw = {f"nn{m}": [lik(d, refractory=0, alert=0, hold=0) for d in nn[m]] for m in nn}
    raw["pca32"] = [lik(d, refractory=0, alert=0, hold=0) for d in pca]
    raw["sr384"] = [lik(d, refractory=0, alert=0, hold=0) for d in sr[384]]
    for how in ("mean", "max"):
        members = [("nn16", "nn32", "nn48"), ("nn48", "pca32"), ("nn32", "nn48", "pca32")]
        if how == "mean":
            members.append(("nn48", "sr384"))
        ens = {}
        for names in members:
            for h in (100, 200):
                comb = [np.mean if how == "mean" else np.max][0]
                ens[(names, h)] = [one_alert(comb(np.array([raw[n][i] for n in names]), axis=0), hold=h)
                                   for i in range(len(files))]
        if how == "mean":
            row("likelihood-averaging ensemble alone (members x hold)", ens)
        row(f"likelihood {how} ensemble + levels (members x hold x range)",
            {(k, rr): mx(v, lv[rr]) for k, v in ens.items() for rr in lv})
    row("**default: novelty + levels** (m x hold x range)",
        {(m, h, rr): mx(g_nn[(m, h)], lv[rr]) for m in nn for h in (100, 200) for rr in lv})
    row("the default point alone (threshold only)", {"default": mx(g_nn[(48, 200)], lv[256])})

    def late(series: list[np.ndarray], first: int = W - 1) -> list[np.ndarray]:  # outputs dropped before `first`
        return [np.where(np.arange(len(v)) >= first, v, 0.0) for v in series]

    row("distance in a 384-row graph: levels silent before row 383 (same grid)",
        {(m, h, rr): mx(g_nn[(m, h)], late(lv[rr])) for m in nn for h in (100, 200) for rr in lv})
    grow = {}
    for m in (32, 48):
        for first in (3 * m - 1, 191, W - 1):
            d = nn[m] if first == W - 1 else [nn_dist(x, m, start=first) for x in xs]
            s = [lik(v, start=first, hold=200) for v in d]
            for lfirst in (255, W - 1):
                grow[(m, first, lfirst)] = mx(s, late(lv[256], lfirst))
    row("growing-history novelty + levels (m x first row x levels' first row)", grow)
    old = [a + b for a, b in zip(nn[16], nn[32])]
    row("third-round default (16+32, hold 100, levels 384 from row 383; threshold only)",
        {"third": mx([lik(v) for v in old], late(lv[384]))})


if __name__ == "__main__":
    main()
