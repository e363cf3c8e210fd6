"""Nearest videos by encoder, to look at: ``python -m timeclr.retrieve EMBEDDING [EMBEDDING ...] -k 5 -o OUT``.

Each EMBEDDING is an output folder of ``python -m timeclr.embed``; several (say a pretrained
encoder's and a random one's, of the same videos) are shown side by side. For every video, its
K nearest other videos by cosine similarity of the features (itself left out). Writes, in OUT:

    neighbours.csv     encoder, query, rank, neighbour, similarity, same_class
    retrieval.json     per encoder: neighbour-class agreement at K (the share of the K neighbours
                       in the query's class) and what chance gives (by the class sizes)
    query_NNN.png      a contact sheet per query (``--queries``, spread over the classes):
                       a row per encoder, the query then its K neighbours, three frames each,
                       with the similarity; a neighbour of the query's class is framed green

Agreement needs the videos' classes (a folder per class, or a manifest); without them it is
left out and the sheets are still drawn.
"""
import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from timeclr.errors import ConfigError, ManifestError, VideoError


def load_embedding(folder) -> dict:
    """An embed output folder: {'name', 'feats' (N, F), 'paths' (absolute), 'classes' (N,), 'rel'}."""
    import pandas as pd

    folder = Path(folder)
    needed = [folder / n for n in ("features.npy", "videos.csv", "embed.json")]
    missing = [p.name for p in needed if not p.is_file()]
    if missing:
        raise ManifestError(f"{folder}: not an output of python -m timeclr.embed (no {', '.join(missing)})")
    feats = np.load(needed[0], allow_pickle=False)
    videos = pd.read_csv(needed[1], keep_default_na=False, dtype={"class_name": str})
    meta = json.loads(needed[2].read_text(encoding="utf-8"))
    if len(videos) != len(feats):
        raise ManifestError(f"{folder}: features.npy has {len(feats)} rows, videos.csv {len(videos)}")
    ckpt = str(meta.get("checkpoint", "?"))
    name = "random init" if ckpt == "random" else f"{Path(ckpt).parent.name}/{Path(ckpt).name}"
    root = Path(meta["root"])
    return {"name": name, "feats": feats, "rel": list(videos.path), "classes": list(videos.class_name),
            "paths": [str(root / p) for p in videos.path]}


def neighbours(feats: np.ndarray, k: int, block_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(N, k) indices and cosine similarities of each row's k nearest other rows, nearest first.

    Queries go in blocks of rows (about 512 MB of similarities at a time), so N = 240k videos
    (Kinetics-400) needs no N x N matrix."""
    z = (feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    n = len(z)
    block = block_rows or max(1, (1 << 27) // max(n, 1))
    idx, sims = np.empty((n, k), np.int64), np.empty((n, k), np.float32)
    for a in range(0, n, block):
        sim = z[a:a + block] @ z.T
        sim[np.arange(len(sim)), np.arange(a, a + len(sim))] = -np.inf  # a video is not its own neighbour
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sim, top, 1), axis=1, kind="stable")
        idx[a:a + block] = np.take_along_axis(top, order, 1)
        sims[a:a + block] = np.take_along_axis(sim, idx[a:a + block], 1)
    return idx, sims


def agreement(classes: list, idx: np.ndarray) -> tuple[float, float]:
    """(share of neighbours in the query's class, the share a random ranking gives in expectation:
    the mean over queries of (n_c - 1) / (N - 1))."""
    c = np.asarray(classes)
    same = (c[idx] == c[:, None]).mean()
    counts = {x: int((c == x).sum()) for x in set(c)}
    chance = np.mean([(counts[x] - 1) / (len(c) - 1) for x in c])
    return float(same), float(chance)


def _thumbs(path: str, height: int = 56, n: int = 3) -> np.ndarray:
    """n frames of the video (first, middle, last quarter points) side by side, ``height`` tall."""
    from PIL import Image

    if path.endswith(".tar"):
        from timeclr.pipelines.storage.frame_archive import decode_jpeg, read_frames, read_index

        index = read_index(path)
        total = len(index.sizes)
        picks = [int((i + 0.5) * total / n) for i in range(n)]
        frames = [decode_jpeg(b) for b in read_frames(path, picks, index)]
    else:
        import av

        with av.open(path) as c:
            all_frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        picks = [int((i + 0.5) * len(all_frames) / n) for i in range(n)]
        frames = [all_frames[p] for p in picks]
    out = []
    for f in frames:
        img = Image.fromarray(f)
        out.append(np.asarray(img.resize((max(1, round(img.width * height / img.height)), height))))
    return np.concatenate(out, 1)


def queries(classes: list, count: int) -> list[int]:
    """``count`` query videos spread over the classes: the first of each class in turn, then the second..."""
    order, by_class = [], {}
    for i, c in enumerate(classes):
        by_class.setdefault(c, []).append(i)
    rounds = max(len(v) for v in by_class.values())
    for r in range(rounds):
        order += [v[r] for _, v in sorted(by_class.items()) if r < len(v)]
    return order[:count]


def contact_sheet(path, query: int, embeddings: list, found: list, k: int):
    """One PNG: a row per encoder, the query then its k neighbours."""
    from timeclr.training.plots import pyplot

    plt = pyplot()
    first = embeddings[0]
    fig, axes = plt.subplots(len(embeddings), k + 1, figsize=(2.2 * (k + 1), 1.5 * len(embeddings)), squeeze=False)
    cache = {}

    def thumb(i):
        if i not in cache:
            try:
                cache[i] = _thumbs(first["paths"][i])
            except (OSError, VideoError, ValueError) as e:  # the video moved or changed since embedding
                cache[i] = None
                print(f"warning: {first['paths'][i]}: no frames for the sheet ({e})", file=sys.stderr)
        return cache[i]

    qc = first["classes"][query]
    for row, (emb, (idx, sim)) in enumerate(zip(embeddings, found)):
        cells = [(query, None)] + [(int(j), float(s)) for j, s in zip(idx[query], sim[query])]
        for col, (i, s) in enumerate(cells):
            ax = axes[row][col]
            img = thumb(i)
            if img is not None:
                ax.imshow(img)
            ax.set_xticks([]), ax.set_yticks([])
            label = first["classes"][i] or Path(first["rel"][i]).name
            ax.set_title(f"query: {label}" if s is None else f"{s:.3f} {label}", fontsize=7)
            if s is not None and qc:
                colour = "tab:green" if first["classes"][i] == qc else "tab:red"
                for spine in ax.spines.values():
                    spine.set_edgecolor(colour), spine.set_linewidth(2.5)
        axes[row][0].set_ylabel(emb["name"], fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def retrieve(folders: list, out, k: int = 5, n_queries: int = 4) -> dict:
    """Write OUT's files (module docstring) for the embed folders; returns retrieval.json's dict."""
    from timeclr.files.atomic import atomic_open, write_json

    embeddings = [load_embedding(f) for f in folders]
    if len({e["name"] for e in embeddings}) < len(embeddings):  # two random inits, say: the folders tell them apart
        for e, folder in zip(embeddings, folders):
            e["name"] = f"{e['name']} ({Path(folder).name})"
    first = embeddings[0]
    for emb, folder in zip(embeddings[1:], folders[1:]):
        if emb["rel"] != first["rel"]:
            raise ManifestError(f"{folder}: embeds other videos than {folders[0]} (compare their videos.csv); "
                                "side by side needs the same videos in the same order")
    n = len(first["rel"])
    if n <= k:
        raise ConfigError(f"-k {k}: the embedding has {n} videos, so at most {n - 1} neighbours each")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    found = [neighbours(e["feats"], k) for e in embeddings]
    labelled = all(first["classes"])
    summary = {"k": k, "videos": n, "encoders": {}}
    with atomic_open(out / "neighbours.csv", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("encoder", "query", "rank", "neighbour", "similarity", "same_class"))
        for emb, (idx, sim) in zip(embeddings, found):
            for q in range(n):
                for r in range(k):
                    j = int(idx[q, r])
                    same = int(first["classes"][j] == first["classes"][q]) if labelled else ""
                    writer.writerow((emb["name"], first["rel"][q], r + 1, first["rel"][j], f"{sim[q, r]:.6f}", same))
            entry = {"checkpoint_name": emb["name"]}
            if labelled:
                entry["agreement_at_k"], entry["chance"] = agreement(first["classes"], idx)
            summary["encoders"][emb["name"]] = entry
    write_json(out / "retrieval.json", summary)
    for i, q in enumerate(queries(first["classes"], n_queries)):
        contact_sheet(out / f"query_{i:03d}.png", q, embeddings, found, k)
    for name, e in summary["encoders"].items():
        if labelled:
            print(f"{name}: {100 * e['agreement_at_k']:.1f} % of the {k} nearest share the query's class "
                  f"(chance {100 * e['chance']:.1f} %)")
    print(f"wrote {out / 'neighbours.csv'}, {out / 'retrieval.json'} and {min(n_queries, n)} contact sheets in {out}")
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m timeclr.retrieve", description=__doc__.split("\n")[0])
    parser.add_argument("embeddings", nargs="+", metavar="EMBEDDING", help="output folders of python -m timeclr.embed")
    parser.add_argument("-k", "--neighbours", type=int, default=5, help="neighbours per query (default 5)")
    parser.add_argument("--queries", type=int, default=4, help="contact sheets to draw (default 4)")
    parser.add_argument("-o", "--out", required=True, help="folder for neighbours.csv, retrieval.json and the sheets")
    args = parser.parse_args(argv)
    if args.neighbours < 1 or args.queries < 0:
        parser.error("-k must be at least 1 and --queries at least 0")
    try:
        retrieve(args.embeddings, args.out, args.neighbours, args.queries)
    except (ConfigError, ManifestError, OSError, ValueError) as e:
        raise SystemExit(f"timeclr.retrieve: {e}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
