"""finetune_synthetic.py's manifests (finetune_manifests.py), run folders and summary (issue #30):
the labelled subsets of each subset seed, the train-minus-validation and validation manifests of
``--split val``, and the v2 fine-tuning config. No training: manifests on disk and configs only."""
import csv
from types import SimpleNamespace

import numpy as np
import pytest
from omegaconf import OmegaConf

from timeclr.benchmarks.experiments.finetune_manifests import labelled_manifest, validation_manifests
from timeclr.benchmarks.experiments.finetune_synthetic import group_names, group_top1, run_dir, summarise
from timeclr.config import load_config
from timeclr.evaluation.features import EvalSplits
from timeclr.pipelines.storage.manifest import COLUMNS

SIZES = {0: 40, 1: 30, 2: 25}  # videos per class: unequal, so a per-class count cannot pass by accident


@pytest.fixture
def manifest(tmp_path):
    """A manifest that read_manifest accepts (the files need not exist), classes interleaved."""
    rows = [dict(path=f"c{c}/{i:03d}.webm", label=c, class_name=f"c{c}", num_frames=32, fps=25.0, duration=1.28,
                 width=64, height=64, codec="vp9", vfr=0, bytes=1000 + i, crc32=i, root="videos")
            for i in range(max(SIZES.values())) for c in SIZES if i < SIZES[c]]
    path = tmp_path / "train.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    (tmp_path / "train.classes.txt").write_text("".join(f"c{c}\n" for c in SIZES))
    return path


def read(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def expected_subset(rows, fraction, seed) -> set:
    """The paths a class-balanced subset should hold, computed here: per class, in file order,
    the first k of a permutation drawn by (subset seed, label)."""
    out = set()
    for c in sorted({int(r["label"]) for r in rows}):
        members = [r["path"] for r in rows if int(r["label"]) == c]
        k = max(1, round(fraction * len(members)))
        out |= {members[j] for j in np.random.default_rng([seed, c]).permutation(len(members))[:k]}
    return out


def test_each_subset_seed_draws_its_own_class_balanced_subset(manifest):
    full = read(manifest)
    assert labelled_manifest(manifest, 1.0, 101) == str(manifest), "100 %: the manifest itself, one 'subset'"
    for fraction in (0.1, 0.01):
        subsets = {}
        for seed in (101, 102, 103):
            path = labelled_manifest(manifest, fraction, seed)
            assert path.endswith(f"train_labels{fraction:g}_s{seed}.csv"), path
            got = read(path)
            assert len(got) == len(full), "repeated to the full length: the same steps per epoch"
            distinct = {r["path"] for r in got}
            for c, n in SIZES.items():
                assert sum(p.startswith(f"c{c}/") for p in distinct) == max(1, round(fraction * n)), (fraction, c)
            assert distinct == expected_subset(full, fraction, seed)
            assert labelled_manifest(manifest, fraction, seed) == path and read(path) == got, "same seed, same subset"
            assert open(path.replace(".csv", ".classes.txt")).read() == manifest.with_suffix(".classes.txt").read_text()
            subsets[seed] = distinct
        assert len({frozenset(s) for s in subsets.values()}) == 3, f"{fraction}: the seeds drew the same subset"


def test_the_validation_manifests_are_the_librarys_split_and_partition_the_train_manifest(manifest):
    full = read(manifest)
    fit_path, val_path = validation_manifests(manifest, 0.2, 0)
    assert fit_path.endswith("train_minus_val0.2_valseed0.csv") and val_path.endswith("train_val0.2_valseed0.csv")
    fit, val = read(fit_path), read(val_path)
    fit_paths, val_paths = [r["path"] for r in fit], [r["path"] for r in val]
    assert not set(fit_paths) & set(val_paths), "disjoint"
    assert sorted(fit_paths + val_paths) == sorted(r["path"] for r in full), "together: the train manifest"
    assert fit == [r for r in full if r["path"] not in val_paths], "rows as they were, in the manifest's order"
    assert val == [r for r in full if r["path"] in val_paths]
    # computed here: per class, the first k of a permutation drawn by (val_seed, label)
    want = set()
    for c, n in SIZES.items():
        members = [r["path"] for r in full if int(r["label"]) == c]
        k = min(max(1, round(0.2 * n)), n - 1)
        want |= {members[j] for j in np.random.default_rng([0, c]).permutation(n)[:k]}
    assert set(val_paths) == want
    # and the split that timeclr.train's evaluation holds out (EvalSplits), by the same keys
    cfg = OmegaConf.create({"data": {"manifest": str(manifest)}, "eval": {
        "train_manifest": "", "test_manifest": "", "val_fraction": 0.2, "val_seed": 0, "groups": {}}})
    lib_fit, lib_val = EvalSplits(cfg).validation
    root = manifest.parent / "videos"
    assert [v.path for v in lib_val] == [str((root / p).resolve()) for p in val_paths]
    assert [v.path for v in lib_fit] == [str((root / p).resolve()) for p in fit_paths]
    for path in (fit_path, val_path):
        assert open(path.replace(".csv", ".classes.txt")).read() == manifest.with_suffix(".classes.txt").read_text()
    # the labelled subsets of --split val come from the fit part only
    for seed in (101, 102):
        subset = {r["path"] for r in read(labelled_manifest(fit_path, 0.1, seed))}
        assert subset <= set(fit_paths) and not subset & set(val_paths)
        assert subset == expected_subset(fit, 0.1, seed)
    other = read(validation_manifests(manifest, 0.2, 1)[1])
    assert {r["path"] for r in other} != set(val_paths), "eval.val_seed draws another split, in another file"


def test_run_folders_keep_their_old_names_at_full_labels_on_the_test_split():
    args = SimpleNamespace(out_root="runs/x", split="test")
    assert run_dir(args, "pretrained", 0, 20, 20).name == "pretrained-seed0"
    assert run_dir(args, "random", 1, 10, 20).name == "random-seed1-e10"
    assert run_dir(args, "random", 2, 20, 20, 0.1, 101).name == "random-seed2-l10-s101"
    assert run_dir(args, "random", 2, 20, 20, 0.01, 103).name == "random-seed2-l1-s103"
    args.split = "val"
    assert run_dir(args, "pretrained", 0, 20, 20).name == "pretrained-seed0-val"
    assert run_dir(args, "pretrained", 0, 20, 20, 0.1, 102).name == "pretrained-seed0-l10-s102-val"


def test_the_summary_pools_seeds_and_subsets_and_gives_the_margin():
    groups = {"g": ["a", "b"]}
    rows = [dict(kind="run", init=init, seed=seed, subset=subset, epochs=20, labels=0.1, split="test",
                 top1=base + seed + subset / 10, top5=100.0, mean_class_accuracy=base, single_view_top1=base,
                 **group_top1({"a": base, "b": base + 2}, groups), seconds=1.0, clips_per_s=1.0, final_loss=1.0)
            for init, base in (("pretrained", 60.0), ("random", 50.0)) for seed in range(3) for subset in (1, 2, 3)]
    pre, rand = summarise(rows, groups)
    assert (pre["init"], rand["init"], pre["n"], rand["n"]) == ("pretrained", "random", 9, 9)
    assert pre["top1"] == pytest.approx(np.mean([r["top1"] for r in rows[:9]]))
    assert pre["top1_std"] == pytest.approx(np.std([r["top1"] for r in rows[:9]], ddof=1))
    assert pre["top1_ci95"] == pytest.approx(2.306 * pre["top1_std"] / 3)  # t(0.975, 8 df)
    assert pre["top1_margin"] == rand["top1_margin"] == pytest.approx(10.0)
    assert pre["top1_g"] == 61.0 and pre["top1_g_margin"] == pytest.approx(10.0)


def test_the_groups_are_the_pretraining_configs():
    v2_groups = {"fast", "order", "both", "slow_translation", "slow_rotation", "slow_scale"}
    assert set(group_names()) == set(load_config("pipelines/synthetic.yaml").eval.groups) == v2_groups
    assert set(group_names("pipelines/synthetic_v1.yaml")) == {"global_context", "sequence", "translation",
                                                                "rotation", "scale"}


def test_the_finetune_config_is_v1s_recipe_on_the_main_jobs_set_and_model():
    text = open("pipelines/synthetic_finetune.yaml").read()
    assert "base: recipes/synthetic_cpu.yaml" in text
    body = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(body) <= 45, f"{len(body)} lines: tests/test_configs.py's limit for a shipped config"
    v2ft = OmegaConf.to_container(load_config("pipelines/synthetic_finetune.yaml"))
    v2 = OmegaConf.to_container(load_config("pipelines/synthetic.yaml"))
    v1ft = OmegaConf.to_container(load_config("pipelines/synthetic_v1_finetune.yaml"))
    assert v2ft["synthetic"] == v2["synthetic"] and v2ft["data"]["root"] == v2["data"]["root"] == "data/synthetic_v2"
    assert (v2ft["synthetic"]["set"], v2ft["synthetic"]["train_per_class"], v2ft["synthetic"]["test_per_class"]) == \
        ("v2", 30, 15)
    assert v2ft["model"] == v2["model"], "the pretraining's architecture: the checkpoint must load"
    view = v2ft["data"]["views"][v2ft["finetune"]["view"]]
    assert (view["kind"], view["frames"]) == ("segment", 8)
    assert (v2ft.pop("out_dir"), v1ft.pop("out_dir")) == ("runs/synthetic-finetune", "runs/synthetic_v1-finetune")
    for cfg in (v2ft, v1ft):  # the rest is synthetic_v1_finetune.yaml's recipe
        for key in ("out_dir", "synthetic", "model"):
            cfg.pop(key, None)
        cfg["data"].pop("root")
    assert v2ft == v1ft


def test_epochs_that_would_change_nothing_are_an_error():
    """Below 100 % labels the config's budget runs: --epochs alone there is refused, naming the fix."""
    from timeclr.benchmarks.experiments.finetune_synthetic import main

    with pytest.raises(SystemExit) as e:
        main(["--epochs", "40", "--label-fractions", "0.1"])
    assert "use --set train.epochs=N" in str(e.value.code), e.value.code
