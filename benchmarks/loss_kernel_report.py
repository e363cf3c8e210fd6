"""The loss benchmark's report (``loss_kernel.py``): derived numbers (TFLOP/s, the fraction of a
plain matmul's, the speedups, the correctness check) added to the measured rows, the table, the
CSV + JSON sidecar, and the figure (time vs 2N per method, log-log, one panel per D, and a panel of
peak memory).
"""
from timeclr.benchmarks.harness import print_meta, print_table, save_figure, write_results
from timeclr.training.plots import pyplot
from timeclr.benchmarks.loss_kernel_measure import FUSED_ON_CPU

COLUMNS = [  # (CSV field, table header, format)
    ("method", "method", "{}"), ("n2", "2N", "{}"), ("d", "D", "{}"), ("dtype", "dtype", "{}"),
    ("chunk_mb", "chunk MB", "{:g}"), ("status", "status", "{}"), ("time_ms", "time ms", "{:.2f}"),
    ("mem_bytes", "peak MiB", None), ("tflops", "TFLOP/s", "{:.3f}"), ("mm_tflops", "mm TFLOP/s", "{:.3f}"),
    ("frac_mm", "% of mm", None), ("x_eager", "x eager", "{:.2f}"), ("x_compile", "x compile", "{:.2f}"),
    ("dloss", "|dloss| vs fp64", "{:.1e}"), ("dgrad", "|dgrad| vs fp64", "{:.1e}"),
]


def derive(rows, mm, correctness):
    """Add TFLOP/s, the fraction of the matmul's, speedups and the correctness check to the rows."""
    by_key = {(r["method"], r["n2"], r["d"], r["dtype"]): r for r in rows if r["status"] == "ok"}
    for r in rows:
        key = (r["n2"], r["d"], r["dtype"])
        if r["status"] == "ok":
            r["tflops"] = 6 * r["n2"] ** 2 * r["d"] / (r["time_ms"] * 1e-3) / 1e12
            if mm[key]["status"] == "ok":
                r["mm_tflops"] = 2 * r["n2"] ** 2 * r["d"] / (mm[key]["time_ms"] * 1e-3) / 1e12
                r["frac_mm"] = r["tflops"] / r["mm_tflops"]
            if r["method"] in ("chunked", "fused"):
                for ref in ("eager", "compile"):
                    if (ref, *key) in by_key:
                        r[f"x_{ref}"] = by_key[(ref, *key)]["time_ms"] / r["time_ms"]
        check = correctness.get(key, {}).get(r["method"], {})
        r.update({k: check[k] for k in ("dloss", "dgrad") if k in check})


def _cell(r, field, fmt):
    v = r.get(field)
    if v is None:
        return "-"
    if field == "mem_bytes":
        return f"{v / 2**20:.1f}"
    if field == "frac_mm":
        return f"{100 * v:.0f}%"
    return fmt.format(v)


def mm_rows(mm) -> list:
    """The matmul reference as rows of their own (method 'mm')."""
    out = []
    for (n2, d, dt), res in mm.items():
        r = dict(method="mm", n2=n2, d=d, dtype=dt, **res)
        if res["status"] == "ok":
            r["mm_tflops"] = 2 * n2 * n2 * d / (res["time_ms"] * 1e-3) / 1e12
        out.append(r)
    return out


def report(rows, mm, correctness, meta, device, stem):
    """Print the table, the notes and the correctness check; write ``STEM.csv`` (the rows, then the
    matmul reference's), ``STEM.json`` (the metadata) and ``STEM.png``."""
    if not rows:
        print("nothing was measured")
        return
    print()
    print_meta(meta)
    print()
    print_table([h for _, h, _ in COLUMNS], [[_cell(r, f, fmt) for f, _, fmt in COLUMNS] for r in rows])
    notes = [f"{r['method']} 2N={r['n2']} D={r['d']} {r['dtype']}: {r['note']}" for r in rows if r.get("note")]
    if notes:
        print("\nnotes:\n  " + "\n  ".join(notes))
    print("\ncorrectness vs eager_nt_xent in float64 (loss; gradient w.r.t. z1, z2):")
    print_table(["2N", "D", "dtype", "method", "loss (fp64)", "max|dloss|", "max|dgrad|", "max|grad|"],
                [[str(n2), str(d), dt, m, *([f"{c['loss']:.6f}", f"{c['dloss']:.1e}", f"{c['dgrad']:.1e}",
                                             f"{c['gmax']:.1e}"] if "dloss" in c else [c["note"], "-", "-", "-"])]
                 for (n2, d, dt), checks in correctness.items() for m, c in checks.items()])
    if device == "cpu":
        print("\n" + FUSED_ON_CPU)
    csv_path, json_path = write_results(stem, meta, [f for f, _, _ in COLUMNS] + ["note"], rows + mm_rows(mm))
    plot(rows, mm, meta, f"{stem}.png")
    print(f"\nwrote {csv_path}, {json_path} and {stem}.png")


def plot(rows, mm, meta, path):
    """Time vs 2N per method (log-log), one panel per D, and peak memory vs 2N at the largest D."""
    plt = pyplot()
    dims = sorted({r["d"] for r in rows})
    dtypes = list(dict.fromkeys(r["dtype"] for r in rows))
    chunks = {r["chunk_mb"] for r in rows if r["method"] == "chunked"}
    colors = {"eager": "C0", "compile": "C1", "chunked": "C2", "fused": "C3"}
    styles = dict(zip(dtypes, ["-", "--", ":", "-."]))

    def series(d, field):
        """(label, color, style, xs, ys) per (method, chunk, dtype), successful points only."""
        groups = {}
        for r in rows:
            if r["d"] == d and r["status"] == "ok":
                groups.setdefault((r["method"], r["chunk_mb"], r["dtype"]), []).append((r["n2"], r[field]))
        for (m, c, dt), pts in groups.items():
            label = m + (f"@{c:g}MB" if c and len(chunks) > 1 else "") + (f" {dt}" if len(dtypes) > 1 else "")
            color = colors[m] if not (c and len(chunks) > 1) else plt.cm.viridis(sorted(chunks).index(c) / len(chunks))
            yield label, color, styles[dt], *zip(*sorted(pts))

    fig, axes = plt.subplots(1, len(dims) + 1, figsize=(4.8 * (len(dims) + 1), 4.6), squeeze=False)
    for ax, d in zip(axes[0], dims):
        for label, color, style, xs, ys in series(d, "time_ms"):
            ax.loglog(xs, ys, style, marker="o", color=color, label=label)
        for dt in dtypes:  # the matmul reference: (2N, D) @ (D, 2N)
            pts = sorted((k[0], v["time_ms"]) for k, v in mm.items() if k[1:] == (d, dt) and v["status"] == "ok")
            if pts:
                ax.loglog(*zip(*pts), styles[dt], color="0.6", marker=".", label="torch.mm" + (f" {dt}" if len(dtypes) > 1 else ""))
        ax.set(title=f"forward+backward time, D = {d}", xlabel="2N (rows)", ylabel="ms")
        ax.set_xscale("log", base=2)
        ax.grid(True, which="both", alpha=0.3)
    ax = axes[0][-1]
    for label, color, style, xs, ys in series(dims[-1], "mem_bytes"):
        ax.loglog(xs, [y / 2**20 for y in ys], style, marker="o", color=color, label=label)
    ax.set(title=f"peak extra memory, D = {dims[-1]}", xlabel="2N (rows)", ylabel="MiB")
    ax.set_xscale("log", base=2)
    ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    ax.legend(fontsize=7)
    save_figure(fig, "NT-Xent forward+backward, V=2", meta, path, fontsize=8)
