"""Fine-tuning for video classification: ``python -m timeclr.finetune CONFIG checkpoint=PATH|random [key=value ...]``.

The downstream test of a self-supervised video encoder that the literature reports (UCF101,
HMDB51): the pretrained backbone plus a linear classifier, all trained with labels, then scored
with multi-view testing. ``checkpoint=PATH`` takes the encoder of a TimeCLR pretraining
checkpoint (``timeclr.training.run.load_model``: the config's ``model`` must match the checkpoint's,
else the error names both) and drops its projection head, which only served the contrastive
loss; ``checkpoint=random`` starts from the same network untrained, the baseline.

Training: one labelled view of each video (``data.views[finetune.view]``, train mode: random
temporal position, random resized crop and flip as configured), cross-entropy with optional label
smoothing, dropout before the classifier, ``train``'s optimizer and schedule with the learning
rate scaled per parameter group (classifier 1, backbone ``finetune.backbone_lr``, and with
``finetune.layer_decay`` < 1 a further decay towards the input), bf16 autocast on CUDA. The run
mechanics are ``timeclr.training.run``'s, as for pretraining: run directory with the resolved config,
``metrics.jsonl``, progress bar, atomic checkpoints every ``train.ckpt_every`` steps, and rerunning
the same command resumes and reproduces the uninterrupted run's losses (the dropout masks are
drawn from (seed, step), not from a generator whose state a restart would lose).

Testing (``eval.test_manifest``): every test video is seen as C x S views, C = ``test_clips``
clips spread uniformly over it (``frame_selection``: clip k of C) times S = ``test_crops`` square
crops along its long side after the short-side resize (left/centre/right for S = 3), all from one
decode per video; the classifier's softmax is averaged over the views. ``finetune.json`` gets
top-1 and top-5 (percent), the mean per-class accuracy, each class's accuracy, the mean top-1 of a
single view (what the averaging adds) and the protocol; ``confusion.png`` the confusion matrix.
"""
import os
import sys

from timeclr.training.command import command_main
from timeclr.pipelines.ingest.datasets import require_manifest


def finetune(cfg) -> dict:
    """Fine-tune (or resume) according to ``cfg``, then test; returns the test results, if any."""
    # Imported here, not at the top: `--help` and config errors answer before torch and DALI load.
    import torch
    from torch.nn.parallel import DistributedDataParallel as DDP

    from timeclr.training import distributed, objectives, run
    from timeclr.evaluation.classifier import build_classifier, param_groups
    from timeclr.evaluation.finetuning import (check_config, labelled_videos, logged_values, multiview_test, step_seed,
                                    train_data_config, write_results)
    from timeclr.training.optim import build_optimizer, lr_at
    from timeclr.pipelines.loader.video import VideoLoader
    from timeclr.training.plots import plot_loss
    from timeclr.synthetic.dataset import chosen_manifests, prepare_synthetic

    check_config(cfg)
    if not cfg.synthetic.enabled:  # a dataset not set up yet is the likeliest first error: say how
        require_manifest(cfg.data.manifest, cfg.data)
        if cfg.train.evaluate and cfg.eval.test_manifest:
            require_manifest(cfg.eval.test_manifest, cfg.data, "eval.test_manifest")
    world, rank, device = distributed.setup_distributed(cfg)

    # -- data: one labelled view per video
    if cfg.synthetic.enabled:  # the embedded dataset's manifests, unless the config names its own
        cfg.data.manifest, cfg.eval.test_manifest = chosen_manifests(cfg, *prepare_synthetic(cfg, rank))
    train_videos, test_videos, classes = labelled_videos(cfg)  # each manifest read once
    loader = VideoLoader(train_data_config(cfg), train_videos)

    # -- model: the pretrained encoder, projection head dropped, plus a linear classifier
    #    (before the run directory: a checkpoint of another architecture leaves nothing behind)
    model = build_classifier(cfg, len(classes), device)
    if world > 1 and device.type == "cuda" and cfg.model.norm == "batch":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = build_optimizer(model, cfg.train, param_groups(model, cfg.finetune))

    # -- run directory (the resolved config saved beside the run) and resume: the same command
    #    continues from the last checkpoint
    loop = run.Loop(cfg, model, optimizer, loader, device, rank, world)
    net = DDP(model) if world > 1 else model
    loss_fn = objectives.classification(cfg.train, device, cfg.finetune.label_smoothing)

    # -- loop: no host sync except at log and checkpoint steps
    net.train()
    for batch in loop:
        lr = lr_at(loop.step, loop.total, cfg.train)
        torch.manual_seed(step_seed(cfg.train.seed, loop.step, rank))  # this step's dropout masks
        loss, (logits, labels) = run.train_step(net, optimizer, loss_fn, batch, lr, cfg.train.grad_clip)
        loop.end_step(loss, batch, lr, lambda: logged_values(loss, logits, labels, lr, world))

    # -- outputs: loss curve, multi-view test (sharded over the ranks, written by rank 0)
    results = {}
    if rank == 0 and os.path.exists(loop.files.metrics):
        plot_loss(loop.files.metrics, loop.files.loss_plot, ylabel="cross-entropy loss")
    if cfg.train.evaluate and not cfg.eval.test_manifest and rank == 0:
        print("eval.test_manifest is empty: no test")
    if cfg.train.evaluate and cfg.eval.test_manifest:
        results = multiview_test(cfg, model, device, classes, test_videos)
        results["steps"] = loop.total
        if rank == 0:
            write_results(cfg, results)
            loop.log.log_eval({k: results[k] for k in ("top1", "top5", "mean_class_accuracy", "single_view_top1")},
                              loop.total)
    loop.close()
    distributed.barrier()
    return results



def main(argv=None):
    return command_main("finetune", __doc__.split("\n")[0], finetune, argv,
                        config_help="experiment YAML, e.g. pipelines/synthetic_finetune.yaml",
                        overrides_help="checkpoint=PATH|random (required), config overrides, e.g. train.epochs=5")


if __name__ == "__main__":
    sys.exit(main())
