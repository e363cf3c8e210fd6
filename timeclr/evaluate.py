"""Evaluate a video encoder on frozen features: ``python -m timeclr.evaluate CONFIG checkpoint=PATH|random``.

Features come from the eval pipeline (deterministic frame selection, short-side resize, centre
crop) for every video of the train split (``eval.train_manifest``, default ``data.manifest``) and
the test split (``eval.test_manifest``). Protocols (``timeclr.evaluation.metrics``): linear probe top-1,
kNN top-1 (cosine, k = ``eval.knn_k``) and retrieval R@1/5/10/20 (test queries against train).
Writes ``eval.json`` (percentages) in ``out_dir``.
"""
import os
import sys

from timeclr.training.command import command_main
from timeclr.errors import ConfigError
from timeclr.pipelines.ingest.datasets import require_manifest


def evaluate(cfg) -> dict:
    """The six metrics of ``cfg.checkpoint``'s encoder, written to ``out_dir/eval.json``."""
    # Imported here, not at the top: `--help` and config errors answer before torch and DALI load.
    import torch

    from timeclr.training import run
    from timeclr.files.atomic import write_json
    from timeclr.evaluation.features import EvalSplits, describe_split, evaluate_model, print_table
    from timeclr.synthetic.dataset import chosen_manifests, prepare_synthetic

    if not cfg.checkpoint:
        raise ConfigError("say which encoder to evaluate: checkpoint=PATH or checkpoint=random")
    if cfg.synthetic.enabled:  # the embedded dataset's manifests, unless the config names its own
        cfg.data.manifest, cfg.eval.test_manifest = chosen_manifests(cfg, *prepare_synthetic(cfg, rank=0))
    if not cfg.eval.test_manifest:
        raise ConfigError("eval.test_manifest is empty: which split should the features be scored on?")
    require_manifest(cfg.eval.train_manifest or cfg.data.manifest, cfg.data,
                     "eval.train_manifest" if cfg.eval.train_manifest else "data.manifest")
    require_manifest(cfg.eval.test_manifest, cfg.data, "eval.test_manifest")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = os.path.basename(str(cfg.checkpoint))
    encoder = run.load_model(cfg, device)
    splits = EvalSplits(cfg)  # each manifest read once
    metrics = evaluate_model(cfg, encoder, device, name, splits)
    os.makedirs(cfg.out_dir, exist_ok=True)
    path = run.RunDir(cfg.out_dir).eval_results
    write_json(path, metrics)
    print_table({name: metrics}, describe_split(cfg, splits), path)
    return metrics


def main(argv=None):
    return command_main("evaluate", __doc__.split("\n")[0], evaluate, argv, config_help="experiment YAML, e.g. pipelines/synthetic.yaml",
                            overrides_help="checkpoint=PATH|random, eval.knn_k=10 ...")


if __name__ == "__main__":
    sys.exit(main())
