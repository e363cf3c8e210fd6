"""TimeCLR pretraining: ``python -m timeclr.train CONFIG [key=value ...]``.

One readable loop, in phases: config -> (synthetic data) -> run directory -> model, optimizer ->
resume -> train -> final checkpoint, plot, evaluation. Rerunning the same command resumes from
the run directory's last checkpoint. Multi-GPU / multi-node through torchrun (DDP; gloo on CPU,
nccl on GPU): each rank reads its shard and the loss takes negatives from every rank. The run
mechanics (set-up, checkpoints, resume, the metrics log, the step itself) are ``timeclr.training.run``'s.
"""
import sys

from timeclr.training.command import command_main
from timeclr.pipelines.ingest.datasets import require_manifest


def train(cfg) -> dict:
    """Pretrain (or resume) according to ``cfg``; returns the evaluation results, if any."""
    # Imported here, not at the top: `--help` and config errors answer before torch and DALI load.
    import torch
    from torch.nn.parallel import DistributedDataParallel as DDP

    from timeclr.training import distributed, objectives, run
    from timeclr.evaluation.features import EvalSplits, OnlineKNN, evaluate_run
    from timeclr.models import build_model
    from timeclr.training.optim import build_optimizer, lr_at
    from timeclr.pipelines.loader.clip_source import read_videos
    from timeclr.pipelines.loader.video import VideoLoader
    from timeclr.training.plots import plot_loss
    from timeclr.synthetic.dataset import chosen_manifests, prepare_synthetic

    if not cfg.synthetic.enabled and not cfg.data.shards:  # a dataset not set up yet: say how
        require_manifest(cfg.data.manifest, cfg.data)
    # -- distributed set-up: torchrun sets WORLD_SIZE / RANK / LOCAL_RANK
    world, rank, device = distributed.setup_distributed(cfg)

    # -- data
    if cfg.synthetic.enabled:  # the embedded dataset's manifests, unless the config names its own
        cfg.data.manifest, cfg.eval.test_manifest = chosen_manifests(cfg, *prepare_synthetic(cfg, rank))
    # a shard set (data.shards) streams its videos; otherwise the manifest lists the files
    loader = VideoLoader(cfg.data) if cfg.data.shards else VideoLoader(cfg.data, read_videos(cfg.data.manifest))
    evaluating = cfg.train.evaluate and cfg.eval.test_manifest
    # the labelled videos every evaluation of the run uses, each manifest read once; a class
    # group naming no class fails now, not after the training
    splits = EvalSplits(cfg) if evaluating or cfg.train.knn_every else None

    # -- model and optimizer
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model)
    if world > 1 and device.type == "cuda" and cfg.model.norm == "batch":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # BN statistics of the global batch
    model = model.to(device)
    optimizer = build_optimizer(model, cfg.train)

    # -- run directory (the resolved config saved beside the run) and resume: the same command
    #    continues from the last checkpoint
    loop = run.Loop(cfg, model, optimizer, loader, device, rank, world)
    net = DDP(model) if world > 1 else model
    loss_fn = objectives.contrastive(cfg.train, device, world)
    knn = OnlineKNN(cfg, splits) if cfg.train.knn_every else None  # representation quality while training
    knn_steps = cfg.train.knn_every * len(loader)

    # -- loop: no host sync except at log and checkpoint steps (and the online kNN's epochs)
    for batch in loop:
        lr = lr_at(loop.step, loop.total, cfg.train)
        loss, _ = run.train_step(net, optimizer, loss_fn, batch, lr, cfg.train.grad_clip)
        loop.end_step(loss, batch, lr, lambda: {"loss": loss.item(), "lr": lr})
        if knn and loop.step % knn_steps == 0:
            loop.log_extra({"val_knn_top1": knn(model, device)})

    # -- outputs: loss curve, evaluation of the encoder against the same encoder untrained
    results = {}
    if rank == 0:
        plot_loss(loop.files.metrics, loop.files.loss_plot)
    if evaluating:  # every rank extracts its shard of the features
        results = evaluate_run(cfg, model, device, splits, rank)
        loop.log.log_eval(results, loop.step)
    loop.close()
    distributed.barrier()
    return results


def main(argv=None):
    return command_main("train", __doc__.split("\n")[0], train, argv, config_help="experiment YAML, e.g. pipelines/synthetic.yaml")


if __name__ == "__main__":
    sys.exit(main())
