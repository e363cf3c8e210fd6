"""Typed configuration, in layers: defaults (these dataclasses) <- a shared recipe <- the
experiment YAML <- ``key=value`` overrides from the command line.

An experiment YAML names its recipe with ``base: recipes/NAME.yaml`` (a path relative to the YAML's
own folder, or a list of them, merged in order; a recipe may have a base of its own), so a
per-dataset config holds only what is its own: the dataset, its manifests, the schedule's length.
An unknown key, a value of the wrong type or a name outside its list of allowed values is an error
that names the key. The resolved config (every layer merged, interpolations filled in) is what
runs save beside their outputs.
"""
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Dict, List

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from timeclr.errors import ConfigError
from timeclr.pipelines.ingest.datasets import DATASETS
from timeclr.pipelines.loader.frame_selection import VIEW_KINDS, check_starts

BASE_KEY = "base"
# the one list of allowed values of each key that names a choice: the registries of the modules
# that implement them
def choices() -> dict:
    """Keys whose value must be one of a registry's names -> the names. The registries live with
    their code (models, optimizers, loss backends), which imports torch: they are read only here,
    after the structural checks, so a typo in a key or the YAML answers before torch loads."""
    from timeclr.loss import BACKENDS
    from timeclr.models import BACKBONES, INPUTS
    from timeclr.training.optim import OPTIMIZERS

    return {
        "data.device": ("cpu", "gpu"),
        "data.dataset": ("", *DATASETS),
        "model.backbone": tuple(BACKBONES),
        "model.norm": ("batch", "group"),
        "model.input": INPUTS,
        "train.optimizer": tuple(OPTIMIZERS),
        "train.loss_backend": BACKENDS,
        "eval.split": ("test", "val"),
    }


@dataclass
class ViewConfig:
    """One view of a video: which frames (temporal selection) and how they are augmented."""

    kind: str = "segment"  # 'segment' (one frame from each of `frames` segments) or 'interval'
    frames: int = 8  # K segments, or T frames of the interval
    strides: list[int] = field(default_factory=lambda: [2, 4])  # interval: drawn per sample in train mode; eval uses the first
    # interval, train mode: where the clip starts (pipelines/loader/frame_selection.py): 'random',
    # 'spread' (ρBYOL: the spread views evenly spaced), 'near' (CVRL: likelier near view `anchor`'s
    # start), 'overlap' (centred on one of view `anchor`'s frames); anchor: an earlier view's index
    start: str = "random"
    anchor: int = 0
    crop_size: int = 112
    # random resized crop: fraction of the frame's area and aspect ratio of the crop
    scale: list[float] = field(default_factory=lambda: [0.2, 1.0])
    ratio: list[float] = field(default_factory=lambda: [0.75, 1.3333])
    flip_prob: float = 0.5
    jitter_prob: float = 0.8  # colour jitter applied with this probability, all four together
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1  # fraction of a half turn: 0.1 = up to ±18 degrees
    grayscale_prob: float = 0.2
    blur_prob: float = 0.0  # Gaussian blur with this probability (0 leaves the op out)
    blur_sigma: list[float] = field(default_factory=lambda: [0.1, 2.0])
    # Multi-view testing (eval mode only; timeclr.finetune sets these): the view is temporal clip
    # `clip` of `clips` spread uniformly over the video (pipelines/loader/frame_selection.py) and spatial
    # crop `crop` of `crops` along the long side, first = left/top. 0 of 1: the centred clip and crop.
    clip: int = 0
    clips: int = 1
    crop: int = 0
    crops: int = 1


@dataclass
class DataConfig:
    manifest: str = "???"  # CSV written by `python -m timeclr.data index`
    # a shard set written by `python -m timeclr.data shard` (folder or http(s)/s3 URL prefix): read
    # instead of data.manifest's files, each rank its share (pipelines/storage/shard_stream.py)
    shards: str = ""
    shuffle_buffer: int = 64  # samples a rank shuffles among when reading shards (training)
    root: str = "data"  # where the dataset lives (or is generated)
    dataset: str = ""  # a real dataset of pipelines/ingest/datasets.py: a missing manifest then says how to set it up
    device: str = "cpu"  # 'cpu' or 'gpu' (DALI's mixed backend: NVDEC decode, GPU augmentation)
    augment: bool = True  # false: no random spatial or colour augmentation, deterministic resize + centre crop
    batch_size: int = 8
    num_threads: int = 2  # DALI CPU threads
    seed: int = 0  # shuffling and augmentation
    train: bool = True  # train: random temporal positions and shuffling; false: deterministic, manifest order
    short_side: int = 128  # eval / augment=false: resize the short side to this, then centre crop
    mean: list[float] = field(default_factory=lambda: [0.45, 0.45, 0.45])  # RGB, in [0, 1]
    std: list[float] = field(default_factory=lambda: [0.225, 0.225, 0.225])
    drop_last: bool = False  # true: every shard yields the same number of full batches (DDP training)
    # CPU decoding of VP8/VP9: hand DALI only the GOPs the views need (pipelines/storage/gop.py): same
    # pixels, 1.6x the clips/s here. Not applied on the GPU (unmeasured whether NVDEC needs it).
    trim_gops: bool = True
    views: list[ViewConfig] = field(default_factory=lambda: [
        ViewConfig(kind="segment", frames=8), ViewConfig(kind="interval", frames=8)])


@dataclass
class ModelConfig:
    backbone: str = "small"  # 'small' / 'small_wide' (CPU demo), 'r3d_18' or 'r2plus1d_18'
    proj_hidden: int = 512  # projection head (MLP with BN), used only for the contrastive loss
    proj_dim: int = 128
    # 'batch': BatchNorm (synchronised across GPUs under DDP, as SimCLR's global BN);
    # 'group': GroupNorm, per sample: DDP on CPU (no SyncBatchNorm there) or tiny per-device batches
    norm: str = "batch"
    # what the backbone sees: 'rgb' frames, or 'difference': the T-1 differences of consecutive
    # frames, x[t+1] - x[t] (timeclr.models.FrameDifference). A difference cancels whatever stays
    # still, so an encoder cannot tell videos apart by their look alone (the appearance shortcut
    # of contrastive pretraining, docs/results.md); views need at least 2 frames.
    input: str = "rgb"


@dataclass
class TrainConfig:
    epochs: int = 10
    optimizer: str = "adamw"  # 'adamw', 'sgd' or 'lars'
    lr: float = 1e-3  # peak learning rate, reached after warmup_steps
    min_lr: float = 1e-5  # end of the cosine decay
    warmup_steps: int = 20
    weight_decay: float = 0.05
    momentum: float = 0.9  # sgd / lars
    temperature: float = 0.1  # τ of NT-Xent
    loss_backend: str = "auto"  # nt_xent backend: 'auto', 'triton', 'torch'
    grad_clip: float = 1.0  # max gradient norm; 0 disables clipping
    bf16: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    seed: int = 0
    log_every: int = 1  # steps between metrics.jsonl lines
    ckpt_every: int = 50  # steps between checkpoints (one is always written at the end)
    evaluate: bool = True  # evaluate the encoder (and a random-init one) when training ends
    knn_every: int = 0  # epochs between kNN top-1 on the validation split, logged (0: off; needs eval.val_fraction)


@dataclass
class EvalConfig:
    train_manifest: str = ""  # features to fit on ('' = data.manifest)
    test_manifest: str = ""  # features to score ('' = no evaluation)
    view: int = 0  # which of data.views the evaluation clips follow (eval mode: deterministic)
    batch_size: int = 16
    knn_k: int = 20
    random_init: bool = True  # also evaluate the same architecture untrained, as a baseline
    # class groups scored on their own as well (knn_top1_<group>, linear_top1_<group>): {group: [class names]}
    groups: Dict[str, List[str]] = field(default_factory=dict)
    # a validation split carved from the train manifest (per class, fixed by val_seed, not by the
    # run's seed): split=val fits on the rest and scores on it; choose hyperparameters there
    val_fraction: float = 0.0
    val_seed: int = 0
    split: str = "test"  # 'test' (train manifest -> test manifest) or 'val'
    # also score each of data.views's clips alone and all of them side by side (eval.json: by_clip),
    # from the same pass of the pipeline; the main numbers stay eval.view's
    per_view: bool = False


@dataclass
class FinetuneConfig:
    """Supervised fine-tuning (``python -m timeclr.finetune``): the backbone plus a linear classifier,
    trained on one labelled view of each video. The schedule and optimizer are ``train``'s keys
    (epochs, optimizer, lr, warmup_steps, ...), the test split is ``eval.test_manifest``."""

    view: int = 0  # which of data.views the training clips follow, and the test clips in eval mode
    num_classes: int = 0  # 0: the length of the train manifest's class list (NAME.classes.txt)
    # learning rates: the classifier gets train.lr, the backbone train.lr * backbone_lr; with
    # layer_decay < 1 stage i of the backbone's S stages (input side first) gets a further
    # layer_decay ** (S - i), so the stem moves least
    backbone_lr: float = 1.0
    layer_decay: float = 1.0
    label_smoothing: float = 0.0
    dropout: float = 0.0  # on the pooled features, before the classifier
    # testing: test_clips clips uniformly over each video x test_crops crops along its long side,
    # softmax averaged over the views (1 x 1: the centred clip and crop)
    test_clips: int = 10
    test_crops: int = 3


@dataclass
class SyntheticConfig:
    """The embedded motion dataset (timeclr.synthetic.dataset), generated under data.root if absent."""

    enabled: bool = False
    set: str = "v1"  # which set: v1 (timeclr.synthetic.render) or v2 (timeclr.synthetic.render_v2)
    train_per_class: int = 40
    test_per_class: int = 20
    frames: int = 32
    size: int = 64


@dataclass
class DistConfig:
    # every collective (gradient all-reduce, the loss's all-gather, barriers) fails after this
    # long, so one dead or stuck rank ends the job instead of holding it (gloo's own default: 30
    # min). A rank-0-only phase the others wait through (generating the synthetic set) must fit.
    timeout_s: float = 600.0


@dataclass
class Config:
    out_dir: str = "runs/debug"
    checkpoint: str = ""  # timeclr.evaluate / finetune: a checkpoint path, or 'random' for an untrained encoder
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    dist: DistConfig = field(default_factory=DistConfig)


@contextmanager
def _named_errors(where):
    try:
        yield
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or getattr(e, "key", None)
        raise ConfigError(f"config error {where}: key {key!r}: {str(e).splitlines()[0]}") from None


def _check_list_index(cfg, key: str, item: str):
    """An override into a list (``data.views.5.frames``) names an item that exists: OmegaConf's
    own error for one past the end says only that a dict is not a ViewConfig."""
    parts = key.split(".")
    node = cfg
    for i, part in enumerate(parts):
        if OmegaConf.is_list(node) and part.isdigit():
            if int(part) >= len(node):
                raise ConfigError(f"override {item!r}: {'.'.join(parts[:i])} has {len(node)} items "
                                  f"(0 to {len(node) - 1}), not item {part}")
            node = node[int(part)]
        elif OmegaConf.is_dict(node) and part in node:
            node = node[part]
        else:
            return  # a missing key gets OmegaConf's own message, which names it


def load_layers(path: str, _seen: tuple = ()) -> DictConfig:
    """The YAML at ``path`` merged over its ``base`` recipes (paths relative to ``path``'s folder),
    recursively; the ``base`` key itself is consumed.

    Raises:
        ConfigError: a missing base file or a cycle of bases, naming the files.
    """
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path} does not exist" +
                          (f" (the base of {_seen[-1]})" if _seen else ""))
    if os.path.abspath(path) in map(os.path.abspath, _seen):
        raise ConfigError(f"config bases form a cycle: {' -> '.join([*_seen, path])}")
    with _named_errors(f"in {path}"):
        try:
            node = OmegaConf.load(path)
        except yaml.YAMLError as e:  # the parser's own message names the line and column
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError(f"{path} is not valid YAML{where}: {getattr(e, 'problem', None) or e}") from None
        bases = node.pop(BASE_KEY, None) if isinstance(node, DictConfig) else None
    if bases is None:
        return node
    bases = [bases] if isinstance(bases, str) else list(bases)
    layers = [load_layers(os.path.join(os.path.dirname(path), b), (*_seen, path)) for b in bases]
    with _named_errors(f"in {path}"):
        return OmegaConf.merge(*layers, node)


def load_config(path: str | None = None, overrides: list[str] = (), schema=Config) -> DictConfig:
    """Defaults <- the YAML at ``path`` over its ``base`` recipes <- ``key=value`` overrides,
    checked against ``schema`` and ``choices()``.

    Raises:
        ConfigError: the message names the file or key at fault.
    """
    cfg = OmegaConf.structured(schema)
    if path is not None:
        layers = load_layers(path)
        with _named_errors(f"in {path}"):
            cfg = OmegaConf.merge(cfg, layers)
    for item in overrides:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        _check_list_index(cfg, key, item)
        try:  # the value is YAML, as in a dotlist
            parsed = OmegaConf.from_dotlist([f"v={value}"]).v
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({str(e).splitlines()[0]}; "
                              "in a YAML mapping a colon needs a space after it: {a: [x, y]})") from None
        with _named_errors(f"in override {item!r}"):
            OmegaConf.update(cfg, key, parsed, merge=True)  # update() also reaches list items (data.views.0.frames)
    if not cfg.dist.timeout_s > 0:
        raise ConfigError(f"dist.timeout_s must be a positive number of seconds, got {cfg.dist.timeout_s}")
    if cfg.train.epochs < 1:
        raise ConfigError(f"train.epochs must be at least 1, got {cfg.train.epochs}")
    for i, view in enumerate(cfg.data.views):
        if view.kind not in VIEW_KINDS:
            raise ConfigError(f"data.views[{i}].kind must be 'segment' or 'interval', got {view.kind!r}")
    try:
        check_starts(OmegaConf.to_container(cfg.data.views))
    except ValueError as e:
        raise ConfigError(f"data.{e}") from None
    if not 0.0 <= cfg.eval.val_fraction < 1.0:
        raise ConfigError(f"eval.val_fraction must be in [0, 1), got {cfg.eval.val_fraction}")
    if (cfg.eval.split == "val" or cfg.train.knn_every > 0) and cfg.eval.val_fraction == 0:
        raise ConfigError("eval.split=val and train.knn_every need a validation split: set eval.val_fraction, e.g. 0.2")
    for key, allowed in choices().items():
        if OmegaConf.select(cfg, key) not in allowed:
            raise ConfigError(f"{key} must be one of {allowed}, got {OmegaConf.select(cfg, key)!r}")
    return cfg
