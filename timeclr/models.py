"""Video backbones and the TimeCLR model (backbone + projection head).

All models take clips laid out (B, C, T, H, W): float, C = 3, normalised (mean/std per channel).

Backbones return pooled features (B, feature_dim) and carry no classifier:

- ``r3d_18``, ``r2plus1d_18``: the 18-layer video ResNets of Tran et al. 2018, "A Closer Look at
  Spatiotemporal Convolutions for Action Recognition" (arXiv:1711.11248), exactly as defined in
  ``torchvision.models.video`` minus the final ``fc``. When torchvision imports, its definitions
  are used (``fc`` replaced by ``nn.Identity``); otherwise the compact copies below, which have
  the same modules, the same parameter counts (33,166,272 and 31,300,125 without the 400-class
  fc) and the same state_dict key names, so torchvision / Kinetics checkpoints load into either
  (see :func:`load_torchvision_state_dict`, which drops the checkpoint's ``fc.*``).
- ``small_3d``: a 4-conv 3D CNN (~0.3M parameters) for CPU demos and tests, (B, 128).

:class:`ProjectionHead` is a SimCLR v2 / MoCo v3 style MLP; :class:`TimeCLRModel` puts the two
together: ``forward`` gives the projection z used by the contrastive loss, ``features`` the
backbone features used by linear evaluation and fine-tuning.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Tuple, Type, Union

import torch
from torch import nn

__all__ = [
    "BACKBONES",
    "ProjectionHead",
    "TimeCLRModel",
    "VideoResNet",
    "build_backbone",
    "load_torchvision_state_dict",
    "r2plus1d_18",
    "r3d_18",
    "small_3d",
]


# ---------------------------------------------------------------------------------------------
# Video ResNets, with torchvision.models.video's module structure (and so its state_dict keys)
# ---------------------------------------------------------------------------------------------

class Conv3DSimple(nn.Conv3d):
    """Full 3x3x3 convolution (R3D). Stride ``s`` applies to T, H and W alike.

    Shape: (B, in_planes, T, H, W) -> (B, out_planes, T/s, H/s, W/s).
    ``midplanes`` is accepted, and ignored, so every conv builder has one signature.
    """

    def __init__(self, in_planes: int, out_planes: int, midplanes: Optional[int] = None,
                 stride: int = 1, padding: int = 1) -> None:
        super().__init__(in_planes, out_planes, kernel_size=(3, 3, 3), stride=stride,
                         padding=padding, bias=False)

    @staticmethod
    def get_downsample_stride(stride: int) -> Tuple[int, int, int]:
        return stride, stride, stride


class Conv2Plus1D(nn.Sequential):
    """(2+1)D convolution: a 1x3x3 spatial conv to ``midplanes`` channels, BN, ReLU, then a 3x1x1
    temporal conv to ``out_planes``. Spatial stride on the first conv, temporal on the second.

    A Sequential (children 0..3: conv, BN, ReLU, conv) because torchvision's is one: its keys are
    ``...conv1.0.0.weight`` (spatial conv), ``...conv1.0.1.*`` (its BN), ``...conv1.0.3.weight``.

    Shape: (B, in_planes, T, H, W) -> (B, out_planes, T/s, H/s, W/s).
    """

    def __init__(self, in_planes: int, out_planes: int, midplanes: int, stride: int = 1,
                 padding: int = 1) -> None:
        super().__init__(
            nn.Conv3d(in_planes, midplanes, kernel_size=(1, 3, 3), stride=(1, stride, stride),
                      padding=(0, padding, padding), bias=False),
            nn.BatchNorm3d(midplanes),
            nn.ReLU(inplace=True),
            nn.Conv3d(midplanes, out_planes, kernel_size=(3, 1, 1), stride=(stride, 1, 1),
                      padding=(padding, 0, 0), bias=False),
        )

    @staticmethod
    def get_downsample_stride(stride: int) -> Tuple[int, int, int]:
        return stride, stride, stride


ConvBuilder = Union[Type[Conv3DSimple], Type[Conv2Plus1D]]


def _midplanes(inplanes: int, planes: int) -> int:
    """Width of the (2+1)D intermediate layer: the M that makes a (1x3x3: in->M) + (3x1x1: M->out)
    pair have (about) the parameters of one 3x3x3 in->out conv, M = 27·in·out / (9·in + 3·out),
    so R(2+1)D and R3D compare at equal capacity (Tran et al. 2018, Sec. 3.5) while (2+1)D gets an
    extra ReLU. Floor division, as in torchvision (it fixes the parameter count)."""
    return (inplanes * planes * 3 * 3 * 3) // (inplanes * 3 * 3 + 3 * planes)


class BasicBlock(nn.Module):
    """ResNet basic block: conv-BN-ReLU, conv-BN, + shortcut, ReLU.

    As in torchvision, ``midplanes`` is computed once from (inplanes, planes) and used by *both*
    convs, also conv2 (planes -> planes); e.g. 230, not 288, in layer2.0.conv2 of R(2+1)D-18.
    That quirk is part of the published parameter count and of the checkpoints' shapes.

    Shape: (B, inplanes, T, H, W) -> (B, planes, T/stride, H/stride, W/stride).
    """

    expansion = 1

    def __init__(self, inplanes: int, planes: int, conv_builder: ConvBuilder, stride: int = 1,
                 downsample: Optional[nn.Module] = None) -> None:
        super().__init__()
        midplanes = _midplanes(inplanes, planes)
        self.conv1 = nn.Sequential(conv_builder(inplanes, planes, midplanes, stride),
                                   nn.BatchNorm3d(planes), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(conv_builder(planes, planes, midplanes), nn.BatchNorm3d(planes))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.conv2(self.conv1(x))
        return self.relu(out + residual)


class BasicStem(nn.Sequential):
    """R3D stem: Conv3d(3, 64, (3,7,7), stride (1,2,2)) - BN - ReLU. (B,3,T,H,W) -> (B,64,T,H/2,W/2)."""

    def __init__(self) -> None:
        super().__init__(
            nn.Conv3d(3, 64, kernel_size=(3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
            nn.BatchNorm3d(64),
            nn.ReLU(inplace=True),
        )


class R2Plus1dStem(nn.Sequential):
    """R(2+1)D stem: the 3x7x7 conv factorised as 1x7x7 (3 -> 45) - BN - ReLU - 3x1x1 (45 -> 64) -
    BN - ReLU. The 45 is fixed, not :func:`_midplanes`' formula (which gives 83 for a 3->64
    3x7x7 conv): it is the width of the authors' original (Caffe2) release, which torchvision and
    its checkpoints keep. (B,3,T,H,W) -> (B,64,T,H/2,W/2)."""

    def __init__(self) -> None:
        super().__init__(
            nn.Conv3d(3, 45, kernel_size=(1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
            nn.BatchNorm3d(45),
            nn.ReLU(inplace=True),
            nn.Conv3d(45, 64, kernel_size=(3, 1, 1), stride=(1, 1, 1), padding=(1, 0, 0), bias=False),
            nn.BatchNorm3d(64),
            nn.ReLU(inplace=True),
        )


def _init_weights(model: nn.Module) -> None:
    """torchvision's video ResNet init: Kaiming-normal (fan_out, ReLU) convs, BN weight 1 bias 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm3d, nn.BatchNorm1d)) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class VideoResNet(nn.Module):
    """torchvision's ``VideoResNet`` without ``fc``: stem, layer1..layer4 (64/128/256/512 channels;
    layer2..4 start with stride 2 in T, H and W and a 1x1x1 conv + BN shortcut), global average
    pool, flatten.

    Shape: (B, 3, T, H, W) -> (B, 512). T, H, W are reduced 8x, 16x, 16x before the pool, so
    (2, 3, 8, 112, 112) reaches layer4 as (2, 512, 1, 7, 7).
    """

    feature_dim = 512

    def __init__(self, block: Type[BasicBlock], conv_makers: Sequence[ConvBuilder],
                 layers: Sequence[int], stem: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.inplanes = 64
        self.stem = stem()
        self.layer1 = self._make_layer(block, conv_makers[0], 64, layers[0], stride=1)
        self.layer2 = self._make_layer(block, conv_makers[1], 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, conv_makers[2], 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, conv_makers[3], 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        _init_weights(self)

    def _make_layer(self, block: Type[BasicBlock], conv_builder: ConvBuilder, planes: int,
                    blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv3d(self.inplanes, planes * block.expansion, kernel_size=1,
                          stride=conv_builder.get_downsample_stride(stride), bias=False),
                nn.BatchNorm3d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, conv_builder, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, conv_builder) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)


def _torchvision_video():
    """torchvision.models.video, or None where torchvision is missing or broken. Imported at call
    time, so installing it later needs no code change. A torchvision built for another torch
    fails at import with RuntimeError / AttributeError / OSError (missing C++ operators or
    shared libraries), not only ImportError, so those count as "not usable" too."""
    try:
        from torchvision.models import video
    except (ImportError, RuntimeError, AttributeError, OSError):
        return None
    return video


def _video_resnet(arch: str, use_torchvision: Optional[bool], **kwargs) -> nn.Module:
    tv = _torchvision_video() if use_torchvision in (None, True) else None
    if tv is None and use_torchvision:
        raise ImportError("use_torchvision=True but torchvision.models.video cannot be imported")
    if tv is not None:
        model = getattr(tv, arch)()  # random init (no weights) under both old and new APIs
        model.fc = nn.Identity()  # (B, 512) features; no fc.* in the state_dict, as ours
        model.feature_dim = 512
        return model
    return VideoResNet(**kwargs)


def r3d_18(use_torchvision: Optional[bool] = None) -> nn.Module:
    """R3D-18 (full 3x3x3 convs): (B, 3, T, H, W) -> (B, 512). 33,166,272 parameters.

    Args:
        use_torchvision: None (default) uses torchvision's definition when it imports, else ours;
            True requires torchvision; False always uses ours. Both have the same state_dict.
    """
    return _video_resnet("r3d_18", use_torchvision, block=BasicBlock,
                         conv_makers=[Conv3DSimple] * 4, layers=[2, 2, 2, 2], stem=BasicStem)


def r2plus1d_18(use_torchvision: Optional[bool] = None) -> nn.Module:
    """R(2+1)D-18 ((2+1)D factorised convs): (B, 3, T, H, W) -> (B, 512). 31,300,125 parameters.

    Args:
        use_torchvision: as for :func:`r3d_18`.
    """
    return _video_resnet("r2plus1d_18", use_torchvision, block=BasicBlock,
                         conv_makers=[Conv2Plus1D] * 4, layers=[2, 2, 2, 2], stem=R2Plus1dStem)


def load_torchvision_state_dict(backbone: nn.Module, state_dict: dict, strict: bool = True):
    """Load a torchvision ``r3d_18`` / ``r2plus1d_18`` checkpoint (e.g. the Kinetics-400 weights)
    into a backbone from this module, dropping the checkpoint's classifier (``fc.weight``,
    ``fc.bias``). Returns what ``load_state_dict`` returns."""
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
    return backbone.load_state_dict(state_dict, strict=strict)


# ---------------------------------------------------------------------------------------------
# Small 3D CNN for CPU demos
# ---------------------------------------------------------------------------------------------

class Small3DCNN(nn.Module):
    """Four 3x3x3 conv-BN-ReLU stages, 16/32/64/128 channels, then global average pool.

    Strides (T, H, W): (1,2,2), (1,2,2), (2,2,2), (2,2,2): space is halved at every stage (the
    early, wide maps are where the compute goes), time only in the last two, so short clips keep
    their temporal resolution through the first half. An (8, 64, 64) clip reaches the pool as
    (2, 4, 4). ~0.3M parameters; no residuals (4 layers do not need them).

    Speed: forward+backward of a (32, 3, 8, 64, 64) batch (16 two-view clips), training mode,
    fp32, torch 2.13 CPU, 2 threads on a 2-core AMD EPYC VM: 0.11-0.30 s at best (min over runs),
    0.4-0.6 s median while another CPU benchmark shared the two cores. Most of it is the first
    two stages' convolutions (forward and backward) and BN over the 32x32 and 16x16 maps.

    Shape: (B, 3, T, H, W) -> (B, 128).
    """

    feature_dim = 128

    def __init__(self, in_channels: int = 3, widths: Sequence[int] = (16, 32, 64, 128),
                 strides: Sequence[Tuple[int, int, int]] = ((1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2))
                 ) -> None:
        super().__init__()
        layers, c = [], in_channels
        for w, s in zip(widths, strides):
            layers += [nn.Conv3d(c, w, kernel_size=3, stride=s, padding=1, bias=False),
                       nn.BatchNorm3d(w), nn.ReLU(inplace=True)]
            c = w
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.feature_dim = c
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.avgpool(self.features(x)).flatten(1)


def small_3d() -> Small3DCNN:
    """The small CPU-demo backbone, :class:`Small3DCNN`: (B, 3, T, H, W) -> (B, 128)."""
    return Small3DCNN()


def small_3d_wide() -> Small3DCNN:
    """:class:`Small3DCNN` plus a stride-1 128-channel stage: (B, 3, T, H, W) -> (B, 128). A pooled
    unit of ``small`` sees 1 + 2 (1 + 2 + 4 + 8) = 31 pixels (11 frames), less than a large object
    turning in a 56-pixel crop (benchmarks/rotation_ceiling.py); this one 63 (19 frames)."""
    return Small3DCNN(widths=(16, 32, 64, 128, 128),
                      strides=((1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2), (1, 1, 1)))


# ---------------------------------------------------------------------------------------------
# Registry, projection head, full model
# ---------------------------------------------------------------------------------------------

INPUTS = ("rgb", "difference")
BACKBONES = {"r3d_18": (r3d_18, 512), "r2plus1d_18": (r2plus1d_18, 512), "small": (small_3d, 128),
             "small_wide": (small_3d_wide, 128)}


def build_backbone(name: str) -> Tuple[nn.Module, int]:
    """Backbone by name -> (module mapping (B, 3, T, H, W) to (B, feature_dim), feature_dim).

    Names: 'r3d_18', 'r2plus1d_18' (512-d; torchvision's definitions when it imports) and
    'small' and 'small_wide' (128-d). Any other name raises ValueError listing these.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
    factory, dim = BACKBONES[name]
    return factory(), dim


class ProjectionHead(nn.Module):
    """SimCLR v2 / MoCo v3 projection MLP: ``num_layers - 1`` hidden layers Linear(bias=False) -
    BatchNorm1d - ReLU, then an output Linear(bias=False) - BatchNorm1d(affine=False).

    Why this form: BN in the hidden layers is what SimCLR v2 (3-layer) and MoCo v3 use and trains
    markedly better than a plain MLP at large batch; linear biases are redundant before BN. The
    output BN without affine (MoCo v3) standardises z per dimension over the batch, which keeps
    the contrastive loss from being dominated by a few high-variance dimensions; it has no
    parameters, and z is L2-normalised by the loss anyway. SimCLR v1 (Linear-ReLU-Linear) is not
    offered. The BNs need batches of more than one sample in training mode.

    Shape: (B, in_dim) -> (B, out_dim).
    """

    def __init__(self, in_dim: int, hidden_dim: int = 2048, out_dim: int = 128,
                 num_layers: int = 2) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        layers, d = [], in_dim
        for _ in range(num_layers - 1):
            layers += [nn.Linear(d, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim),
                       nn.ReLU(inplace=True)]
            d = hidden_dim
        layers += [nn.Linear(d, out_dim, bias=False), nn.BatchNorm1d(out_dim, affine=False)]
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class FrameDifference(nn.Module):
    """The backbone applied to the differences of consecutive frames (``model.input: difference``).

    d[t] = x[t+1] - x[t] for t = 0 .. T-2 (per channel, on the normalised frames): motion and
    change survive, whatever stays still (background, the object's colour and texture where it
    does not move) is zero. Residual frames as an input, after Tao et al., "Rethinking Motion
    Representation: Residual Frames with 3D ConvNets" (2020). No parameters: the state dict is the
    wrapped backbone's under ``net.``.

    Shape: (B, C, T, H, W) -> backbone((B, C, T - 1, H, W)); T >= 2 (ValueError otherwise).
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[2] < 2:  # a shape, known on the host: no sync
            raise ValueError(f"model.input=difference needs clips of at least 2 frames, got {x.shape[2]} "
                             f"(input of shape {tuple(x.shape)})")
        return self.net(x[:, :, 1:] - x[:, :, :-1])


class TimeCLRModel(nn.Module):
    """Backbone + projection head.

    Args:
        backbone_name: see :func:`build_backbone` ('r3d_18', 'r2plus1d_18', 'small', 'small_wide').
        proj_hidden: hidden width of the projection MLP.
        proj_dim: output (embedding) dimension, what the contrastive loss sees.
        proj_layers: number of Linear layers in the head (>= 1).
        input: 'rgb', or 'difference' (the backbone sees consecutive-frame differences,
            :class:`FrameDifference`; it is part of ``backbone``, so features and fine-tuning see them too).

    Input: (B, C, T, H, W) float clips, normalised. ``forward`` -> z (B, proj_dim), for training;
    ``features`` -> backbone features (B, feature_dim), for linear evaluation and fine-tuning
    (the head is discarded after pre-training, as in SimCLR).
    """

    def __init__(self, backbone_name: str, proj_hidden: int = 2048, proj_dim: int = 128,
                 proj_layers: int = 2, input: str = "rgb") -> None:
        super().__init__()
        if input not in INPUTS:
            raise ValueError(f"input must be one of {INPUTS}, got {input!r}")
        self.backbone, self.feature_dim = build_backbone(backbone_name)
        if input == "difference":
            self.backbone = FrameDifference(self.backbone)
        self.head = ProjectionHead(self.feature_dim, proj_hidden, proj_dim, proj_layers)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, feature_dim)."""
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, proj_dim)."""
        return self.head(self.backbone(x))


def batchnorm_to_groupnorm(module: nn.Module, groups: int = 8) -> nn.Module:
    """Replace every BatchNorm1d/3d in ``module`` by a GroupNorm over the same channels (in place).

    GroupNorm normalises each sample on its own, so a step does not depend on how the batch is
    split across processes: the choice for DDP on CPU, where torch's SyncBatchNorm is unavailable,
    and for tiny per-device batches.
    """
    for name, child in module.named_children():
        if isinstance(child, (nn.BatchNorm1d, nn.BatchNorm3d)):
            c = child.num_features
            setattr(module, name, nn.GroupNorm(math.gcd(groups, c), c, eps=child.eps, affine=child.affine))
        else:
            batchnorm_to_groupnorm(child, groups)
    return module


def build_model(cfg) -> TimeCLRModel:
    """The model a config's ``model`` section describes (backbone, head, ``norm``: 'batch' | 'group',
    ``input``: 'rgb' | 'difference'; a config saved before ``input`` existed is 'rgb')."""
    model = TimeCLRModel(cfg.backbone, cfg.proj_hidden, cfg.proj_dim, input=getattr(cfg, "input", None) or "rgb")
    if cfg.norm == "group":
        batchnorm_to_groupnorm(model)
    return model
