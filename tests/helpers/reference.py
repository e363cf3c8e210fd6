"""Independent float64 references for the tests, written from the formulas, not from our code paths."""
import math

import torch
import torch.nn.functional as F


def nt_xent_rows_f64(z: torch.Tensor, tau: float) -> torch.Tensor:
    """Row losses (V, N) of NT-Xent, literally: for row i, logsumexp over j != i of s_ij minus the
    mean of s_ip over the other views p of the same item. Python loops over rows, float64."""
    V, N, D = z.shape
    zh = F.normalize(z.double().reshape(V * N, D), dim=1)
    s = zh @ zh.T / tau
    rows = []
    for i in range(V * N):
        negatives = [j for j in range(V * N) if j != i]
        positives = [j for j in range(V * N) if j != i and j % N == i % N]
        rows.append(torch.logsumexp(s[i, negatives], 0) - s[i, positives].mean())
    return torch.stack(rows).view(V, N)


def simclr_f64(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> torch.Tensor:
    """SimCLR's loss as usually written (and as lightly's NTXentLoss computes it without a memory
    bank): cross entropy of each of the 2N rows against its positive, self-similarity removed."""
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).double(), dim=1)
    sim = z @ z.T / tau
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    labels = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, labels)


def closed_form_aligned(V: int, N: int, tau: float) -> float:
    """Row loss when the V views of each item are identical and different items are orthogonal:
    V−1 positives at s = 1/τ and V·N − V negatives at s = 0, so
    L = log((V−1)e^{1/τ} + VN − V) − 1/τ = log(V−1 + (VN−V)e^{−1/τ})."""
    return math.log(V - 1 + (V * N - V) * math.exp(-1.0 / tau))
