"""What a training step minimises: ``loss_fn(net, batch) -> (loss, out)`` for ``run.train_step``.

The forward pass runs under bf16 autocast on CUDA. The contrastive loss takes the embeddings in
bf16 there too: the Triton kernel multiplies bf16 tiles on tensor cores and accumulates, takes
exponentials and sums in fp32, while fp32 input takes its exact, tensor-core-free path. The
classification loss is computed in fp32.
"""
import torch
import torch.nn.functional as F

from timeclr.loss import nt_xent
from timeclr.training.distributed import amp_dtype, autocast, to_device


def contrastive(train_cfg, device, world: int = 1):
    """TimeCLR pretraining: every view of the batch through the model, NT-Xent over the V views
    (negatives gathered from every rank under DDP). ``out`` is z, (V, B, proj_dim)."""
    amp, z_dtype = autocast(device, train_cfg.bf16), amp_dtype(device, train_cfg.bf16)

    def loss_fn(net, batch):
        views = [to_device(v, device) for v in batch["views"]]
        with amp:
            z = torch.stack([net(v) for v in views])
        loss = nt_xent(z.to(z_dtype), temperature=train_cfg.temperature, backend=train_cfg.loss_backend,
                       gather_distributed=world > 1)
        return loss, z.detach()

    return loss_fn


def classification(train_cfg, device, label_smoothing: float = 0.0):
    """Fine-tuning: the first view through the classifier, cross-entropy with the batch's labels.
    ``out`` is (logits, labels) for the accuracy a log step reports."""
    amp = autocast(device, train_cfg.bf16)

    def loss_fn(net, batch):
        clips, labels = to_device(batch["views"][0], device), to_device(batch["label"], device)
        with amp:
            logits = net(clips)
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
        return loss, (logits.detach(), labels)

    return loss_fn
