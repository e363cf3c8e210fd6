"""Evaluation protocols against answers known in advance: perfect features, chance-level features,
a case small enough to work out by hand, separable blobs, bad inputs and repeatability."""
import math

import pytest
import torch

from timeclr.evaluation.metrics import evaluate_features, knn_top1, linear_probe_top1, retrieval_recall

EVAL_KEYS = {"linear_top1", "knn_top1", "retrieval_r1", "retrieval_r5", "retrieval_r10", "retrieval_r20"}


def one_hot_split(num_classes=10, n_train=300, n_test=100, dim=16, seed=0):
    """Features = one_hot(label) in the first num_classes of dim dims, plus noise of std 0.01."""
    g = torch.Generator().manual_seed(seed)

    def make(n):
        y = torch.arange(n) % num_classes
        x = torch.zeros(n, dim)
        x[torch.arange(n), y] = 1.0
        return x + 0.01 * torch.randn(n, dim, generator=g), y

    return (*make(n_train), *make(n_test))


def random_split(num_classes=10, n_train=2000, n_test=1000, dim=32, seed=0):
    """Gaussian features with balanced labels that are independent of them."""
    g = torch.Generator().manual_seed(seed)

    def make(n):
        y = (torch.arange(n) % num_classes)[torch.randperm(n, generator=g)]
        return torch.randn(n, dim, generator=g), y

    return (*make(n_train), *make(n_test))


def circle(angles_deg, radii):
    a = torch.tensor(angles_deg, dtype=torch.float64) * math.pi / 180
    r = torch.tensor(radii, dtype=torch.float64)
    return torch.stack((r * a.cos(), r * a.sin()), dim=1).float()


# Hand-made: 4 train points on a circle (different norms: only the angle may count), 2 queries.
#   train  0°: class 0 (norm 5)    90°: class 1 (norm 10)    180°: class 0 (norm 1)    270°: class 1 (norm 2)
#   query 30°: cos sims 0°  .866,  90°  .500, 270° -.500, 180° -.866
#   query 200°: cos sims 180° .940, 270° .342,  90° -.342,   0° -.940
# A raw dot product would rank the 90° point (norm 10) first for the 30° query.
HAND_TRAIN_X = circle([0, 90, 180, 270], [5, 10, 1, 2])
HAND_TRAIN_Y = torch.tensor([0, 1, 0, 1])
HAND_TEST_X = circle([30, 200], [3, 0.5])


@pytest.mark.parametrize(
    "k, temperature, expected",
    [
        (1, 0.07, 100.0),  # nearest: 0° and 180°, both class 0
        (2, 0.07, 100.0),  # class 0 at .866 (.940) outweighs class 1 at .5 (.342)
        (3, 1.0, 100.0),   # 30°: e^.866 = 2.38 > e^.5 + e^-.5 = 2.26; 200°: e^.940 = 2.56 > e^.342 + e^-.342 = 2.12
        (3, 10.0, 0.0),    # nearly equal weights: class 1's two votes beat class 0's one, for both queries
        (4, 10.0, 100.0),  # every point votes: class 0 gets 2cosh(.866/T) > class 1's 2cosh(.5/T) (and .940 > .342)
        (50, 10.0, 100.0),  # k is clamped to Ntr = 4: same as k = 4
    ],
)
def test_knn_by_hand(k, temperature, expected):
    test_y = torch.tensor([0, 0])
    assert knn_top1(HAND_TRAIN_X, HAND_TRAIN_Y, HAND_TEST_X, test_y, k=k, temperature=temperature) == expected


def test_retrieval_by_hand():
    # Query 30° is class 0: its first retrieved clip (0°) is class 0, a hit at rank 1.
    # Query 200° is class 1: ranking 180° (0), 270° (1), ..., so its first hit is at rank 2.
    test_y = torch.tensor([0, 1])
    r = retrieval_recall(HAND_TRAIN_X, HAND_TRAIN_Y, HAND_TEST_X, test_y, ks=(1, 2, 3, 20))
    assert r == {1: 50.0, 2: 100.0, 3: 100.0, 20: 100.0}
    # A class that no train clip has is never retrieved, whatever k.
    assert retrieval_recall(HAND_TRAIN_X, HAND_TRAIN_Y, HAND_TEST_X, torch.tensor([2, 2]), ks=(1, 4)) == {1: 0.0, 4: 0.0}


def test_one_hot_features_score_100_everywhere():
    result = evaluate_features(*one_hot_split())
    assert set(result) == EVAL_KEYS
    assert all(isinstance(v, float) for v in result.values())
    assert result == {key: 100.0 for key in EVAL_KEYS}


def test_random_features_score_chance():
    C, n_train, n_test = 10, 2000, 1000
    result = evaluate_features(*random_split(C, n_train, n_test))
    for key in ("linear_top1", "knn_top1", "retrieval_r1"):
        assert 3.0 <= result[key] <= 20.0, (key, result)
    # Labels are independent of features, so the top k of a query are a uniform k-subset of
    # the balanced train labels: P(no hit) = prod_{i<k} (Ntr - Ntr/C - i) / (Ntr - i) (≈ (1-1/C)^k).
    # With 1000 queries the std of R@k is at most 1.6 points; the tolerance is over 4 std.
    per_class = n_train // C
    for k in (1, 5, 10, 20):
        miss = math.prod((n_train - per_class - i) / (n_train - i) for i in range(k))
        chance = 100.0 * (1.0 - miss)
        assert abs(result[f"retrieval_r{k}"] - chance) <= 7.0, (k, result[f"retrieval_r{k}"], chance)


def test_linear_probe_separates_far_blobs():
    # Two Gaussian blobs 10 std apart along a random direction: not one-hot, but linearly
    # separable with a wide margin, so the probe gets every test point right.
    g = torch.Generator().manual_seed(1)
    direction = torch.nn.functional.normalize(torch.randn(24, generator=g), dim=0)

    def make(n):
        y = torch.arange(n) % 2
        return torch.randn(n, 24, generator=g) + 5.0 * (2 * y[:, None] - 1) * direction + 3.0, y

    train_x, train_y = make(200)
    test_x, test_y = make(200)
    assert linear_probe_top1(train_x, train_y, test_x, test_y) == 100.0
    # and the same with a feature scale far from 1: standardisation makes it irrelevant
    assert linear_probe_top1(1e-3 * train_x, train_y, 1e-3 * test_x, test_y) == 100.0
    assert linear_probe_top1(1e3 * train_x, train_y, 1e3 * test_x, test_y) == 100.0


def test_linear_probe_constant_feature_column():
    # A column constant over the train split is left unscaled, so a test value off that constant
    # cannot be blown up by a near-zero std.
    train_x, train_y, test_x, test_y = one_hot_split(num_classes=3, n_train=30, n_test=30)
    train_x[:, -1] = 7.0
    test_x[:, -1] = 7.5
    assert linear_probe_top1(train_x, train_y, test_x, test_y) == 100.0


def test_repeatable_and_chunk_independent():
    split = random_split(num_classes=5, n_train=300, n_test=200, dim=8, seed=3)
    first = evaluate_features(*split)
    assert evaluate_features(*split) == first
    assert knn_top1(*split, chunk_size=7) == first["knn_top1"]
    assert retrieval_recall(*split, chunk_size=7) == {k: first[f"retrieval_r{k}"] for k in (1, 5, 10, 20)}


def test_label_dtypes_and_no_grad():
    # int32 labels and float64 features work; so does calling under no_grad (the probe trains).
    train_x, train_y, test_x, test_y = one_hot_split(num_classes=4, n_train=40, n_test=20)
    with torch.no_grad():
        result = evaluate_features(train_x.double(), train_y.int(), test_x.double(), test_y.int(), k=5)
    assert result == {key: 100.0 for key in EVAL_KEYS}


X4, Y4 = torch.randn(4, 3), torch.tensor([0, 1, 0, 1])


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((X4, Y4[:3], X4, Y4), {}, "train_y"),  # lengths differ
        ((X4, Y4, X4[:2], Y4), {}, "test_y"),
        ((X4[0], Y4, X4, Y4), {}, "train_x"),  # not 2-D
        ((X4, Y4, X4[None], Y4), {}, "test_x"),
        ((X4, Y4, torch.randn(4, 5), Y4), {}, "feature dimension"),
        ((X4[:0], Y4[:0], X4, Y4), {}, "train_x"),  # empty
        ((X4, Y4, X4[:0], Y4[:0]), {}, "test_x"),
        ((X4[:, :0], Y4, X4[:, :0], Y4), {}, "train_x"),
        ((X4, Y4.float(), X4, Y4), {}, "train_y"),  # labels not integer
        ((X4, Y4, X4, Y4.bool()), {}, "test_y"),
        ((X4, Y4[:, None], X4, Y4), {}, "train_y"),  # labels not 1-D
        ((X4, Y4 - 1, X4, Y4), {}, "train_y"),  # negative label
        ((X4.long(), Y4, X4, Y4), {}, "train_x"),  # integer features
        ((X4, Y4, torch.full((4, 3), float("nan")), Y4), {}, "test_x"),
    ],
)
@pytest.mark.parametrize("fn", [knn_top1, linear_probe_top1, retrieval_recall, evaluate_features])
def test_bad_inputs_name_the_argument(fn, args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fn(*args, **kwargs)


@pytest.mark.parametrize(
    "fn, kwargs, match",
    [
        (knn_top1, {"k": 0}, "k"),
        (knn_top1, {"temperature": 0.0}, "temperature"),
        (knn_top1, {"num_classes": 1}, "num_classes"),
        (linear_probe_top1, {"num_classes": 2.0}, "num_classes"),
        (linear_probe_top1, {"weight_decay": -1.0}, "weight_decay"),
        (linear_probe_top1, {"epochs": 0}, "epochs"),
        (retrieval_recall, {"ks": ()}, "ks"),
        (retrieval_recall, {"ks": (1, 0)}, "ks"),
        (evaluate_features, {"k": 0}, "k"),
    ],
)
def test_bad_options_name_the_argument(fn, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fn(X4, Y4, X4, Y4, **kwargs)


def test_non_tensor_inputs():
    with pytest.raises(TypeError, match="train_x"):
        knn_top1(X4.tolist(), Y4, X4, Y4)
    with pytest.raises(TypeError, match="test_y"):
        retrieval_recall(X4, Y4, X4, Y4.tolist())


def test_groups_score_the_same_classifiers_on_their_classes_test_videos_only():
    # classes 0 and 1 have their own directions; 2 and 3 share one, so at most one of them can be
    # right per direction: the group scores must be 100 and 50, the overall one 75
    torch.manual_seed(0)
    dirs = torch.eye(8)[[0, 1, 2, 2]]

    def split(n):
        y = torch.arange(4).repeat_interleave(n)
        return dirs[y] + 0.01 * torch.randn(len(y), 8), y

    train_x, train_y = split(10)
    test_x, test_y = split(5)
    out = evaluate_features(train_x, train_y, test_x, test_y, k=5, groups={"apart": [0, 1], "shared": [2, 3]})
    for metric in ("knn_top1", "linear_top1"):
        got = (out[metric], out[f"{metric}_apart"], out[f"{metric}_shared"])
        assert got == pytest.approx((75.0, 100.0, 50.0), abs=10.01), (metric, got)
        assert out[f"{metric}_apart"] == 100.0, (metric, got)
        # the group numbers are the overall one split by test video: 10 of 20 each
        assert (out[f"{metric}_apart"] + out[f"{metric}_shared"]) / 2 == pytest.approx(out[metric]), (metric, got)


def test_a_group_without_test_videos_is_an_error():
    x, y = torch.eye(4), torch.arange(4)
    with pytest.raises(ValueError, match="group 'none'"):
        evaluate_features(x, y, x, y, k=1, groups={"none": [7]})
