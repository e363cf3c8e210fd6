"""The ablation's report (``ablation.py``): one summary row per variant (mean, std and 95 % interval
over seeds, margins over random init of the same seed), the tables, the CSV + JSON sidecar and the
figure (bars: mean ± std over seeds, dots: the seeds; per class group: the 95 % interval).
"""
from timeclr.benchmarks.experiments.ablation_setups import VARIANTS
from timeclr.benchmarks.harness import mean_std, print_meta, print_table, save_figure, write_results
from timeclr.training.plots import pyplot

METRICS = ["knn_top1", "linear_top1", "retrieval_r1", "retrieval_r5", "retrieval_r10", "retrieval_r20"]
SHOWN = [("knn_top1", "kNN top-1"), ("linear_top1", "linear top-1"), ("retrieval_r1", "R@1")]


def group_metrics(rows) -> list:
    """The per-group keys the runs have (``knn_top1_<group>``, ``linear_top1_<group>``), in order."""
    keys = dict.fromkeys(k for r in rows for k in r if k.startswith(("knn_top1_", "linear_top1_"))
                         and not k.endswith(("_margin", "_std", "_ci95")))
    return sorted(keys, key=lambda k: (not k.startswith("knn"), k))


def groups_of(rows) -> list:
    return [k[len("knn_top1_"):] for k in group_metrics(rows) if k.startswith("knn_top1_")]


def summarise(rows):
    """One summary row per variant (and random init): mean, sample std and the 95 % t interval
    over its seeds, and each group's margin over random init (the mean of the per-seed margins:
    random init is seeded like the variant)."""
    out = []
    extra = group_metrics(rows)
    for variant in dict.fromkeys(r["variant"] for r in rows):
        runs = [r for r in rows if r["variant"] == variant and r.get("knn_top1") is not None]
        if not runs:
            continue
        for r in runs:  # margins over the untrained network of the same seed
            base = next((b for b in rows if b["variant"] == "random_init" and b["seed"] == r["seed"]), None)
            if base is not None and variant != "random_init":
                for k in ["knn_top1"] + [g for g in extra if g.startswith("knn_top1_")]:
                    if r.get(k) is not None and base.get(k) is not None:
                        r[f"{k}_margin"] = r[k] - base[k]
        margins = [k for k in dict.fromkeys(k for r in runs for k in r if k.endswith("_margin"))]
        out.append(dict(kind="summary", variant=variant, seed="", epochs=runs[0]["epochs"], n=len(runs), status="",
                        **mean_std(runs, METRICS + extra + margins + ["train_s", "clips_per_s", "final_loss"])))
    return out


def columns(rows) -> list:
    """The CSV's columns: each metric (overall, then per group, then margins over random init)
    with its std and 95 % interval, then the run's bookkeeping."""
    metrics = METRICS + group_metrics(rows)
    margins = [k for k in dict.fromkeys(k for r in rows for k in r if k.endswith("_margin") and not k.endswith(
        ("_std", "_ci95")))]
    return (["kind", "variant", "seed", "epochs", "n", "status"]
            + [c for m in metrics + margins for c in (m, f"{m}_std", f"{m}_ci95")]
            + ["train_s", "train_s_std", "clips_per_s", "clips_per_s_std", "final_loss", "final_loss_std",
               "load_start", "load_end", "out_dir"])


def _f(v, fmt="{:.1f}"):
    return "-" if v is None else fmt.format(v)


def report(rows, summary, meta, stem):
    """Print the tables; write ``STEM.csv`` (one row per run, then one summary row per variant and
    one for random init), ``STEM.json`` (the metadata) and ``STEM.png``."""
    print()
    print_meta(meta)
    print("\nruns:")
    print_table(["variant", "seed", "epochs", "status", *[h for _, h in SHOWN], "train s", "clips/s", "last loss",
                 "load"],
                [[r["variant"], str(r["seed"]), str(r["epochs"]), r["status"], *[_f(r.get(k)) for k, _ in SHOWN],
                  _f(r.get("train_s"), "{:.0f}"), _f(r.get("clips_per_s"), "{:.0f}"), _f(r.get("final_loss"), "{:.3f}"),
                  "-" if r.get("load_start") is None else f"{r['load_start']:.2f}/{r['load_end']:.2f}"]
                 for r in rows])
    print("\nmean ± std over seeds (%), [95 % interval of the mean]:")
    print_table(["variant", "n", *[h for _, h in SHOWN]],
                [[s["variant"], str(s["n"]), *[f"{s[k]:.1f} ± {s[f'{k}_std']:.1f} [±{s[f'{k}_ci95']:.1f}]"
                                               for k, _ in SHOWN]] for s in summary])
    groups = groups_of(rows)
    if groups:
        print("\nkNN top-1 per class group, mean [95 % interval] (margin over random init of the same seeds):")
        print_table(["variant", *groups],
                    [[s["variant"], *[f"{s[f'knn_top1_{g}']:.1f} [±{s[f'knn_top1_{g}_ci95']:.1f}]"
                                      + (f" ({s[f'knn_top1_{g}_margin']:+.1f})" if f"knn_top1_{g}_margin" in s else "")
                                      for g in groups]] for s in summary])

    csv_path, json_path = write_results(stem, meta, columns(rows + summary), rows + summary)
    plot(rows, summary, meta, f"{stem}.png")
    print(f"\nwrote {csv_path}, {json_path} and {stem}.png")


def plot(rows, summary, meta, path):
    """Grouped bars (one group per metric, one bar per variant): mean ± std, the seeds as dots."""
    plt = pyplot()
    names = [s["variant"] for s in summary]
    colors = {"interval": "C0", "segment": "C1", "timeclr": "C3", "timeclr4": "C4", "random_init": "0.6"}
    width = 0.8 / max(1, len(names))
    groups = groups_of(rows)
    fig, axes = plt.subplots(1, 2 if groups else 1, figsize=(15 if groups else 8.5, 5), squeeze=False)
    ax = axes[0][0]
    for i, s in enumerate(summary):
        xs = [g + (i - (len(names) - 1) / 2) * width for g in range(len(SHOWN))]
        label = VARIANTS.get(s["variant"], "random init (untrained)") + f", n={s['n']}"
        ax.bar(xs, [s[k] for k, _ in SHOWN], width * 0.9, yerr=[s[f"{k}_std"] for k, _ in SHOWN], capsize=3,
               color=colors.get(s["variant"], f"C{i}"), alpha=0.85, label=label)
        for x, (k, _) in zip(xs, SHOWN):
            pts = [r[k] for r in rows if r["variant"] == s["variant"] and r.get(k) is not None]
            ax.plot([x] * len(pts), pts, "k.", ms=4)
        for x, (k, _) in zip(xs, SHOWN):
            ax.text(x, s[k] + s[f"{k}_std"] + 0.8, f"{s[k]:.1f}", ha="center", fontsize=7)
    ax.set_xticks(range(len(SHOWN)), [h for _, h in SHOWN])
    ax.set_ylabel("% (test split, frozen features)")
    ax.set_ylim(0, 122)
    ax.set_yticks(range(0, 101, 20))
    ax.axhline(100 / 8, color="0.5", lw=0.8, ls=":")
    ax.text(len(SHOWN) - 0.5, 100 / 8 + 1, "chance", fontsize=7, color="0.4", ha="right")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", ncol=2)  # above the bars (the axis runs to 122 %)
    if groups:
        ax = axes[0][1]
        for i, s in enumerate(summary):
            xs = [g + (i - (len(names) - 1) / 2) * width for g in range(len(groups))]
            keys = [f"knn_top1_{g}" for g in groups]
            ax.bar(xs, [s[k] for k in keys], width * 0.9, yerr=[s[f"{k}_ci95"] for k in keys], capsize=3,
                   color=colors.get(s["variant"], f"C{i}"), alpha=0.85)
            for x, k in zip(xs, keys):
                pts = [r[k] for r in rows if r["variant"] == s["variant"] and r.get(k) is not None]
                ax.plot([x] * len(pts), pts, "k.", ms=4)
        ax.set_xticks(range(len(groups)), groups)
        ax.set_ylabel("kNN top-1 % per class group (bars: 95 % interval of the mean)")
        ax.set_ylim(0, 105)
        ax.grid(axis="y", alpha=0.3)
    save_figure(fig, "TimeCLR view ablation, synthetic motion set", meta, path)
