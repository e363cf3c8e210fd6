"""The fine-tuning model: a pretrained backbone, dropout and a linear classifier, and the
parameter groups that give the backbone's stages their own learning rates (layer-wise decay)."""
import torch
from omegaconf import OmegaConf
from torch import nn

from timeclr.errors import ConfigError
from timeclr.models import FrameDifference
from timeclr.training.run import load_model


class VideoClassifier(nn.Module):
    """Backbone -> dropout -> linear classifier: (B, C, T, H, W) clips -> (B, num_classes) logits.

    The classifier starts at small random weights (std 0.01) and zero bias, so the first steps'
    gradients reaching the pretrained backbone are small rather than those of a random projection.
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(feature_dim, num_classes)
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.backbone(x)))


def backbone_stages(backbone: nn.Module) -> list[list[nn.Parameter]]:
    """The backbone's parameters in stages, input side first, for layer-wise learning rates: a
    video ResNet's stem, layer1 .. layer4; the small CNN's conv stages (each conv with the norm
    after it). Every parameter is in exactly one stage. A ``FrameDifference`` backbone has the
    stages of the backbone it wraps (the difference has no parameters)."""
    if isinstance(backbone, FrameDifference):
        backbone = backbone.net
    names = ("stem", "layer1", "layer2", "layer3", "layer4")
    if all(hasattr(backbone, n) for n in names):
        stages = [list(getattr(backbone, n).parameters()) for n in names]
    else:  # a Sequential of conv, norm, ReLU, ...: a conv starts a stage
        stages = []
        for module in backbone.features:
            if isinstance(module, nn.Conv3d) or not stages:
                stages.append([])
            stages[-1] += list(module.parameters())
    missed = {id(p) for p in backbone.parameters()} - {id(p) for s in stages for p in s}
    if missed:
        raise ValueError(f"{type(backbone).__name__}: {len(missed)} parameters belong to no stage")
    return stages


def param_groups(model: VideoClassifier, ft) -> list[dict]:
    """Optimizer parameter groups, each with its ``lr_scale`` (the step's lr is lr_at(...) x scale):
    the classifier 1, backbone stage i of S ``ft.backbone_lr * ft.layer_decay ** (S - i)``."""
    stages = backbone_stages(model.backbone)
    groups = [{"params": params, "lr_scale": ft.backbone_lr * ft.layer_decay ** (len(stages) - i)}
              for i, params in enumerate(stages)]
    return groups + [{"params": list(model.fc.parameters()), "lr_scale": 1.0}]


def build_classifier(cfg, num_classes: int, device) -> VideoClassifier:
    """The encoder of ``cfg.checkpoint`` ('random': untrained) without its projection head, plus a
    classifier initialised from ``train.seed``."""
    try:
        encoder = load_model(cfg, device)
    except RuntimeError as e:  # load_state_dict: keys or shapes that no TimeCLR pretraining model has
        raise ConfigError(f"checkpoint: {cfg.checkpoint} does not hold a TimeCLR pretraining model of "
                          f"{OmegaConf.to_container(cfg.model)}: {str(e).splitlines()[0]}") from None
    torch.manual_seed(cfg.train.seed)
    return VideoClassifier(encoder.backbone, encoder.feature_dim, num_classes, cfg.finetune.dropout).to(device)
