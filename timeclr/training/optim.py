"""Optimisation: the learning-rate schedule, LARS, and the optimizer named by ``train.optimizer``.

Shared by pretraining (``timeclr.train``) and fine-tuning (``timeclr.finetune``); the names in
``OPTIMIZERS`` are the one list of allowed values (the config checks against it).
"""
import math

import torch

from timeclr.errors import ConfigError


def lr_at(step: int, total: int, cfg) -> float:
    """Linear warm-up to cfg.lr over cfg.warmup_steps, then cosine decay to cfg.min_lr.

        lr(s) = lr · (s + 1) / W                                   for s < W
        lr(s) = min_lr + ½ (lr − min_lr) (1 + cos(π · min(1, (s − W) / (total − W))))   after
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def set_lr(optimizer, lr: float):
    """Every parameter group's learning rate to ``lr`` times the group's ``lr_scale`` (default 1),
    which fine-tuning uses for per-layer rates."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise trust ratio (You et al. 2017), as SimCLR trains with.
    Biases and BN parameters (1-D) get neither weight decay nor the trust ratio."""

    def __init__(self, params, lr, momentum=0.9, weight_decay=0.0, eta=0.001):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if p.ndim > 1:
                    d = d.add(p, alpha=group["weight_decay"])
                    w_norm, d_norm = p.norm(), d.norm()
                    # no host sync: the trust ratio stays a tensor
                    trust = torch.where((w_norm > 0) & (d_norm > 0), group["eta"] * w_norm / d_norm, 1.0)
                    d = d.mul(trust)
                buf = self.state[p].setdefault("momentum", torch.zeros_like(p))
                buf.mul_(group["momentum"]).add_(d)
                p.add_(buf, alpha=-group["lr"])


OPTIMIZERS = {
    "adamw": lambda params, cfg: torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay),
    "sgd": lambda params, cfg: torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                                               weight_decay=cfg.weight_decay),
    "lars": lambda params, cfg: LARS(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay),
}


def build_optimizer(model, cfg, params=None):
    """``cfg.optimizer`` (a key of ``OPTIMIZERS``) over ``model``'s parameters, or over ``params``
    (param groups with their own ``lr_scale``, as fine-tuning's per-layer rates) when given.

    Raises:
        ConfigError: an optimizer name that is not in ``OPTIMIZERS``.
    """
    if cfg.optimizer not in OPTIMIZERS:
        raise ConfigError(f"train.optimizer must be one of {tuple(OPTIMIZERS)}, got {cfg.optimizer!r}")
    return OPTIMIZERS[cfg.optimizer](model.parameters() if params is None else params, cfg)
