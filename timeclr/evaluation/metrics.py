"""Evaluation protocols for frozen video features: linear probe, weighted kNN and retrieval.

Every function takes one train/test split of features extracted by a frozen encoder:

    train_x: (Ntr, D) floating point    train_y: (Ntr,) integer class labels >= 0
    test_x:  (Nte, D) floating point    test_y:  (Nte,) integer class labels >= 0

and returns percentages (0 to 100) as Python floats. Nothing is trained except the linear
probe's classifier, and every result is deterministic: no random initialisation, no sampling.
Work runs on ``train_x``'s device; the other tensors are moved there.

- ``knn_top1``: weighted k-nearest-neighbour vote on cosine similarity (as DINO evaluates).
- ``linear_probe_top1``: multinomial logistic regression fitted with full-batch L-BFGS.
- ``retrieval_recall``: the UCF101 clip retrieval protocol, R@k for several k.
- ``evaluate_features``: all of them, as the dict the training and eval commands write to eval.json.
"""
import math

import torch
import torch.nn.functional as F

# Queries are compared with the whole train set a chunk at a time: at most this many
# similarities (4 bytes each) are alive at once, so 10k x 10k needs 16 MiB, not 400 MiB.
CHUNK_ELEMENTS = 1 << 22

RETRIEVAL_KS = (1, 5, 10, 20)


# ---------------------------------------------------------------------------------------------
# input checks: every message names the argument
# ---------------------------------------------------------------------------------------------


def _check_features(name, x):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must be 2-D (N, D) features, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be floating point features, got dtype {x.dtype}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(x.shape)}; need at least one sample and one feature")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")


def _check_labels(name, y, n, x_name):
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(y).__name__}")
    if y.dim() != 1:
        raise ValueError(f"{name} must be 1-D (N,) labels, got shape {tuple(y.shape)}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"{name} must be integer class labels, got dtype {y.dtype}")
    if y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} labels but {x_name} has {n} rows")
    if y.numel() and int(y.min()) < 0:
        raise ValueError(f"{name} must be class indices >= 0, got a label {int(y.min())}")


def _check_split(train_x, train_y, test_x, test_y, num_classes=None):
    """Check one split; return (train_x, train_y, test_x, test_y, num_classes).

    Features come back as float32 and labels as int64, all on ``train_x``'s device.
    ``num_classes`` defaults to the largest label seen (train or test) plus one.
    """
    _check_features("train_x", train_x)
    _check_features("test_x", test_x)
    _check_labels("train_y", train_y, train_x.shape[0], "train_x")
    _check_labels("test_y", test_y, test_x.shape[0], "test_x")
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(
            f"train_x and test_x must have the same feature dimension, got {train_x.shape[1]} and {test_x.shape[1]}"
        )
    max_label = max(int(train_y.max()), int(test_y.max()))
    if num_classes is None:
        num_classes = max_label + 1
    elif isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= max_label:
        raise ValueError(f"num_classes must be an int > every label (largest is {max_label}), got {num_classes!r}")
    dev = train_x.device
    return (
        train_x.float(),
        train_y.long(),
        test_x.to(dev, torch.float32),
        test_y.to(dev, torch.long),
        num_classes,
    )


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


def _percent(hits: torch.Tensor) -> float:
    """Percentage of True entries in a 1-D bool tensor."""
    return 100.0 * int(hits.sum()) / hits.numel()


# ---------------------------------------------------------------------------------------------
# nearest neighbours (shared by kNN and retrieval)
# ---------------------------------------------------------------------------------------------


def _nearest(train_x, test_x, k, chunk_size=None):
    """Yield (start, sims, idx) for chunks of queries: each query's k most similar train rows.

    Cosine similarity: both sides are L2-normalised, so the encoder's feature norm (which
    carries no class information under a contrastive loss on normalised embeddings) is ignored.

    Shapes: train_x (Ntr, D), test_x (Nte, D) -> per chunk sims (B, k) sorted descending and
    idx (B, k) int64 indices into train_x, for queries ``start:start+B``.
    """
    train_n = F.normalize(train_x, dim=1)
    test_n = F.normalize(test_x, dim=1)
    if chunk_size is None:
        chunk_size = max(1, CHUNK_ELEMENTS // train_n.shape[0])
    for start in range(0, test_n.shape[0], chunk_size):
        sims = test_n[start:start + chunk_size] @ train_n.T  # (B, Ntr): the only large buffer
        top_sims, top_idx = sims.topk(k, dim=1, largest=True, sorted=True)
        yield start, top_sims, top_idx


# ---------------------------------------------------------------------------------------------
# protocols
# ---------------------------------------------------------------------------------------------


def knn_predict(train_x, train_y, test_x, test_y, k=20, temperature=0.07, num_classes=None, chunk_size=None) -> torch.Tensor:
    """(Nte,) predicted classes of a weighted k-nearest-neighbour classifier on cosine similarity
    (``knn_top1`` scores them; ``test_y`` is only checked, never used to predict).

    DINO's protocol: each test feature finds its k most similar train features, and each
    neighbour votes for its class with weight exp(sim / temperature), so close neighbours count
    far more than the k-th one. The class with the largest total wins; ties go to the lowest
    class index.

    Args:
        train_x: (Ntr, D) features; train_y: (Ntr,) labels.
        test_x: (Nte, D) features; test_y: (Nte,) labels.
        k: neighbours per query, clamped to Ntr.
        temperature: > 0; smaller values sharpen the weighting towards the nearest neighbour.
        num_classes: number of classes; default largest label + 1.
        chunk_size: queries per chunk (memory is chunk_size x Ntr); default keeps it at 16 MiB.
    """
    train_x, train_y, test_x, test_y, num_classes = _check_split(train_x, train_y, test_x, test_y, num_classes)
    k = min(_check_positive_int("k", k), train_x.shape[0])
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (
        math.isfinite(temperature) and temperature > 0
    ):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")

    pred = torch.empty(test_y.shape[0], dtype=torch.long, device=test_y.device)
    for start, sims, idx in _nearest(train_x, test_x, k, chunk_size):
        # exp(sim / T) scaled by exp(-max_sim / T): the same ratios between votes, but the
        # nearest neighbour weighs exactly 1, so a small T can neither overflow nor underflow
        # every weight to zero.
        weights = torch.exp((sims - sims[:, :1]) / temperature)  # (B, k)
        votes = torch.zeros(sims.shape[0], num_classes, device=sims.device)  # (B, C)
        votes.scatter_add_(1, train_y[idx], weights)
        pred[start:start + sims.shape[0]] = votes.argmax(dim=1)  # first maximum: the lowest class wins a tie
    return pred


def knn_top1(train_x, train_y, test_x, test_y, k=20, temperature=0.07, num_classes=None, chunk_size=None) -> float:
    """Top-1 accuracy (%) of ``knn_predict``'s weighted kNN classifier (DINO's protocol; the
    arguments are ``knn_predict``'s)."""
    pred = knn_predict(train_x, train_y, test_x, test_y, k, temperature, num_classes, chunk_size)
    return _percent(pred == test_y.to(pred.device).long())


def retrieval_recall(train_x, train_y, test_x, test_y, ks=RETRIEVAL_KS, chunk_size=None) -> dict:
    """Video retrieval recall R@k (%): the UCF101 protocol of clip-order and VCOP papers.

    Each test clip queries the train set by cosine similarity; R@k is the percentage of queries
    for which at least one of the k most similar train clips has the query's class. A k larger
    than Ntr is scored as Ntr (every train clip retrieved).

    Args:
        train_x: (Ntr, D) features; train_y: (Ntr,) labels.
        test_x: (Nte, D) features; test_y: (Nte,) labels.
        ks: the k values, each >= 1.
        chunk_size: queries per chunk (memory is chunk_size x Ntr); default keeps it at 16 MiB.

    Returns:
        {k: R@k} for each k in ``ks``.
    """
    train_x, train_y, test_x, test_y, _ = _check_split(train_x, train_y, test_x, test_y)
    ks = tuple(ks)
    if not ks:
        raise ValueError("ks must name at least one k")
    for k in ks:
        _check_positive_int("every k in ks", k)
    k_max = min(max(ks), train_x.shape[0])

    # first_hit[i] = rank (1-based) of the first train clip of query i's class, or k_max + 1
    first_hit = torch.empty(test_y.shape[0], dtype=torch.long, device=test_y.device)
    for start, _, idx in _nearest(train_x, test_x, k_max, chunk_size):
        match = train_y[idx] == test_y[start:start + idx.shape[0], None]  # (B, k_max)
        rank = torch.where(match.any(dim=1), match.int().argmax(dim=1) + 1, k_max + 1)
        first_hit[start:start + idx.shape[0]] = rank
    return {k: _percent(first_hit <= k) for k in ks}


def linear_probe_top1(train_x, train_y, test_x, test_y, num_classes=None, weight_decay=1e-4, epochs=100,
                      history_size=10) -> float:
    """Top-1 accuracy (%) of ``linear_probe_predict``'s classifier (the arguments are its)."""
    pred = linear_probe_predict(train_x, train_y, test_x, test_y, num_classes, weight_decay, epochs, history_size)
    return _percent(pred == test_y.to(pred.device).long())


def linear_probe_predict(
    train_x, train_y, test_x, test_y, num_classes=None, weight_decay=1e-4, epochs=100, history_size=10
) -> torch.Tensor:
    """(Nte,) classes predicted by a linear classifier fitted on frozen train features
    (``test_y`` is only checked, never used to predict).

    Multinomial logistic regression: features are standardised with the train split's mean and
    std (so one weight decay suits any encoder's feature scale, and L-BFGS sees a well
    conditioned problem), then W (D, C) and b (C,) minimise

        mean cross entropy(x W + b, y) + weight_decay / 2 * ||W||^2

    by full-batch L-BFGS with a strong Wolfe line search. The objective is convex and W, b start
    at zero, so there is no seed to set: the same inputs give the same classifier.

    Args:
        train_x: (Ntr, D) features; train_y: (Ntr,) labels.
        test_x: (Nte, D) features; test_y: (Nte,) labels.
        num_classes: number of classes C; default largest label + 1.
        weight_decay: L2 penalty on W (not on b), >= 0.
        epochs: L-BFGS iterations, each a pass over the whole train split (the line search may
            add a few more passes). It stops early once the gradient or the loss settles.
        history_size: L-BFGS memory (past updates kept for the curvature estimate).
    """
    train_x, train_y, test_x, test_y, num_classes = _check_split(train_x, train_y, test_x, test_y, num_classes)
    epochs = _check_positive_int("epochs", epochs)
    history_size = _check_positive_int("history_size", history_size)
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or not (
        math.isfinite(weight_decay) and weight_decay >= 0
    ):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")

    # Train statistics only, in float64. A column whose spread is below float32 resolution of
    # its value is constant: dividing by its (rounding-noise) std would blow up test values.
    mean = train_x.double().mean(dim=0)
    std = train_x.double().std(dim=0, unbiased=False)
    std = torch.where(std <= 1e-6 * mean.abs(), torch.ones_like(std), std)
    x_tr = ((train_x - mean) / std).float()
    x_te = ((test_x - mean) / std).float()

    W = torch.zeros(x_tr.shape[1], num_classes, device=x_tr.device, requires_grad=True)
    b = torch.zeros(num_classes, device=x_tr.device, requires_grad=True)
    opt = torch.optim.LBFGS(
        [W, b], lr=1.0, max_iter=epochs, history_size=history_size, line_search_fn="strong_wolfe"
    )

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x_tr @ W + b, train_y) + 0.5 * weight_decay * W.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():  # callers often evaluate under torch.no_grad()
        opt.step(closure)  # one step runs up to `epochs` iterations
    with torch.no_grad():
        return (x_te @ W + b).argmax(dim=1)


def evaluate_features(train_x, train_y, test_x, test_y, k=20, groups=None) -> dict:
    """Every protocol on one split: the dict the training and eval commands write to eval.json.

    Returns percentages under the keys ``linear_top1`` (linear probe), ``knn_top1`` (k-NN with
    ``k`` neighbours, temperature 0.07) and ``retrieval_r1``, ``retrieval_r5``, ``retrieval_r10``,
    ``retrieval_r20`` (retrieval recall at 1, 5, 10, 20). Shapes as in the functions above.

    ``groups`` ({name: [label, ...]}) adds ``knn_top1_<name>`` and ``linear_top1_<name>``: the
    same classifiers (fitted on every class), scored on the test videos of the group's classes
    only, so a group's number says how well its classes are told apart from all the others.
    """
    _check_split(train_x, train_y, test_x, test_y)  # fail before any work, with one message
    _check_positive_int("k", k)
    recall = retrieval_recall(train_x, train_y, test_x, test_y, ks=RETRIEVAL_KS)
    preds = {"linear_top1": linear_probe_predict(train_x, train_y, test_x, test_y),
             "knn_top1": knn_predict(train_x, train_y, test_x, test_y, k=k)}
    test_y = test_y.to(preds["knn_top1"].device).long()
    out = {name: _percent(pred == test_y) for name, pred in preds.items()}
    out.update({f"retrieval_r{r}": recall[r] for r in RETRIEVAL_KS})
    for group, labels in (groups or {}).items():
        member = torch.isin(test_y, torch.as_tensor(list(labels), device=test_y.device))
        if not member.any():
            raise ValueError(f"group {group!r}: no test video has one of its labels {list(labels)}")
        for name, pred in preds.items():
            out[f"{name}_{group}"] = _percent(pred[member] == test_y[member])
    return out


# ---------------------------------------------------------------------------------------------
# classification scores of multi-view testing (timeclr.finetune)
# ---------------------------------------------------------------------------------------------


def average_views(logits: torch.Tensor) -> torch.Tensor:
    """(V, N, K) logits of V views of N videos -> (N, K) class probabilities: the softmax of each
    view, averaged over the views (averaging probabilities, not logits, keeps one overconfident
    view from outvoting the others)."""
    return logits.float().softmax(-1).mean(0)


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Percent of rows of ``scores`` (N, K) whose label is among their ``k`` highest (k capped at K)."""
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices
    return 100.0 * (top == labels[:, None]).any(1).double().mean().item()


def confusion_matrix(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(K, K) counts: row = true class, column = predicted class."""
    return torch.bincount(labels * num_classes + pred, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def summarise(logits: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> dict:
    """The results of V views' logits (V, N, K) against ``labels`` (N,): percentages."""
    probs = average_views(logits)
    pred = probs.argmax(1)
    cm = confusion_matrix(pred, labels, len(classes))
    counts = cm.sum(1)
    per_class = {name: (100.0 * cm[c, c].item() / counts[c].item() if counts[c] else None)
                 for c, name in enumerate(classes)}
    present = [v for v in per_class.values() if v is not None]
    single = [topk_accuracy(view, labels, 1) for view in logits.float()]
    return {"top1": topk_accuracy(probs, labels, 1), "top5": topk_accuracy(probs, labels, 5),
            "mean_class_accuracy": sum(present) / len(present), "single_view_top1": sum(single) / len(single),
            "per_class": per_class, "confusion": cm.tolist()}
