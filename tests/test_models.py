"""timeclr.models: video ResNets equal to torchvision's (parameter counts, state_dict names and
shapes), the small CPU backbone, the projection head and the full model. CPU, a few seconds.

The r3d_18 / r2plus1d_18 tests use this module's own definitions (use_torchvision=False), so they
test the same code whether or not torchvision is installed; where torchvision imports, one more
test checks that the two agree key for key."""
import numpy as np
import pytest
import torch
from torch import nn

from timeclr.errors import ConfigError
from timeclr.loss import nt_xent
from timeclr.models import (BACKBONES, FrameDifference, ProjectionHead, TimeCLRModel, _torchvision_video,
                            build_backbone, load_torchvision_state_dict, r2plus1d_18, r3d_18,
                            small_3d, small_3d_wide)

FC400 = 512 * 400 + 400  # torchvision's Kinetics-400 classifier, which our backbones leave out
# torchvision's published counts (weights meta 'num_params'), with the fc
TV_PARAMS = {"r3d_18": 33_371_472, "r2plus1d_18": 31_505_325}


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.fixture(scope="module")
def resnets():
    torch.manual_seed(0)
    return {"r3d_18": r3d_18(use_torchvision=False), "r2plus1d_18": r2plus1d_18(use_torchvision=False)}


def test_parameter_counts_match_torchvision(resnets):
    assert n_params(resnets["r3d_18"]) == 33_166_272
    assert n_params(resnets["r2plus1d_18"]) == 31_300_125
    for name, m in resnets.items():
        assert n_params(m) + FC400 == TV_PARAMS[name], name


@pytest.mark.parametrize("name", ["r3d_18", "r2plus1d_18"])
def test_resnet_output_shape(resnets, name):
    m = resnets[name].eval()
    with torch.no_grad():
        y = m(torch.randn(2, 3, 8, 112, 112))
    assert y.shape == (2, 512)
    assert torch.isfinite(y).all()


def test_state_dict_keys_follow_torchvision(resnets):
    r3d = {k: tuple(v.shape) for k, v in resnets["r3d_18"].state_dict().items()}
    r21 = {k: tuple(v.shape) for k, v in resnets["r2plus1d_18"].state_dict().items()}
    # R3D: stem Sequential(conv, BN, ReLU); block convs are Sequential(Conv3d, BN[, ReLU])
    assert r3d["stem.0.weight"] == (64, 3, 3, 7, 7)
    assert r3d["stem.1.running_mean"] == (64,)
    assert r3d["layer1.0.conv1.0.weight"] == (64, 64, 3, 3, 3)
    assert r3d["layer1.0.conv2.1.weight"] == (64,)
    assert r3d["layer2.0.downsample.0.weight"] == (128, 64, 1, 1, 1)
    assert r3d["layer2.0.downsample.1.num_batches_tracked"] == ()
    assert r3d["layer4.1.conv2.0.weight"] == (512, 512, 3, 3, 3)
    assert "layer1.0.downsample.0.weight" not in r3d  # layer1 keeps 64 channels, stride 1
    assert not any(k.startswith("fc.") for k in r3d)
    # R(2+1)D: the block conv is itself a Sequential(conv 1x3x3, BN, ReLU, conv 3x1x1)
    assert r21["stem.0.weight"] == (45, 3, 1, 7, 7)
    assert r21["stem.3.weight"] == (64, 45, 3, 1, 1)
    assert r21["layer1.0.conv1.0.0.weight"] == (144, 64, 1, 3, 3)
    assert r21["layer1.0.conv1.0.1.running_var"] == (144,)
    assert r21["layer1.0.conv1.0.3.weight"] == (64, 144, 3, 1, 1)
    assert r21["layer1.0.conv1.1.weight"] == (64,)
    assert r21["layer2.0.conv1.0.0.weight"] == (230, 64, 1, 3, 3)
    # torchvision reuses the block's midplanes (from 64->128) in conv2 (128->128): 230, not 288
    assert r21["layer2.0.conv2.0.0.weight"] == (230, 128, 1, 3, 3)
    assert r21["layer2.0.downsample.0.weight"] == (128, 64, 1, 1, 1)
    assert r21["layer4.1.conv2.0.3.weight"] == (512, 1152, 3, 1, 1)


def test_torchvision_checkpoint_loads(resnets):
    """A torchvision checkpoint (same keys plus fc.*) loads strictly after dropping fc.*."""
    src = resnets["r2plus1d_18"]
    ckpt = {k: v.clone() for k, v in src.state_dict().items()}
    ckpt["fc.weight"], ckpt["fc.bias"] = torch.zeros(400, 512), torch.zeros(400)
    dst = r2plus1d_18(use_torchvision=False)
    load_torchvision_state_dict(dst, ckpt)
    for k, v in dst.state_dict().items():
        assert torch.equal(v, ckpt[k]), k


@pytest.mark.skipif(_torchvision_video() is None, reason="torchvision not importable")
@pytest.mark.parametrize("name", ["r3d_18", "r2plus1d_18"])
def test_same_state_dict_as_torchvision(resnets, name):
    tv = getattr(_torchvision_video(), name)()
    want = {k: v.shape for k, v in tv.state_dict().items() if not k.startswith("fc.")}
    got = {k: v.shape for k, v in resnets[name].state_dict().items()}
    assert got == want
    assert build_backbone(name)[0].state_dict().keys() == want.keys()  # the torchvision path


def test_torchvision_path(monkeypatch):
    """Where torchvision.models.video imports, build_backbone takes its model and drops its fc;
    use_torchvision=False keeps ours. (A stand-in module, so this runs without torchvision.)"""
    import sys
    import types

    class TVNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.fc = nn.Linear(3, 512), nn.Linear(512, 400)

        def forward(self, x):
            return self.fc(self.body(x))

    video = types.ModuleType("torchvision.models.video")
    video.r3d_18 = video.r2plus1d_18 = TVNet
    models = types.ModuleType("torchvision.models")
    models.video = video
    tv = types.ModuleType("torchvision")
    tv.models = models
    for name, mod in [("torchvision", tv), ("torchvision.models", models),
                      ("torchvision.models.video", video)]:
        monkeypatch.setitem(sys.modules, name, mod)
    m, dim = build_backbone("r2plus1d_18")
    assert isinstance(m, TVNet) and isinstance(m.fc, nn.Identity) and dim == 512
    assert m(torch.randn(2, 3)).shape == (2, 512)
    assert isinstance(r3d_18(use_torchvision=True), TVNet)
    assert not isinstance(r3d_18(use_torchvision=False), TVNet)


@pytest.mark.skipif(_torchvision_video() is not None, reason="torchvision importable")
def test_use_torchvision_true_requires_it():
    with pytest.raises(ImportError):
        r3d_18(use_torchvision=True)


def test_small_3d_shape():
    m = small_3d()
    assert m.feature_dim == 128
    y = m(torch.randn(4, 3, 8, 64, 64))
    assert y.shape == (4, 128)


@pytest.mark.parametrize("factory, rf_hw, rf_t", [(small_3d, 31, 11), (small_3d_wide, 63, 19)])
def test_small_3d_receptive_field_matches_its_closed_form(factory, rf_hw, rf_t):
    # closed form (docstrings): 1 + sum over convs of (k - 1) * product of the strides before it.
    # Measured: the input region with a non-zero gradient of one pooled-map cell away from the
    # borders, with positive weights and input (every ReLU open) and BN in eval mode (no coupling
    # across positions), so the region is exactly what the cell sees
    m = factory().eval()
    with torch.no_grad():
        for conv in (c for c in m.modules() if isinstance(c, nn.Conv3d)):
            conv.weight.fill_(1.0 / conv.weight[0].numel())
    x = torch.ones(1, 3, 48, 160, 160, requires_grad=True)
    y = m.features(x)
    y[0, 0, y.shape[2] // 2, y.shape[3] // 2, y.shape[4] // 2].backward()
    seen = x.grad[0, 0].abs() > 0
    extent = [int(seen.any(dim=d).sum()) for d in ((1, 2), (0, 2), (0, 1))]  # T, H, W
    assert extent == [rf_t, rf_hw, rf_hw], (extent, [rf_t, rf_hw, rf_hw])


def test_small_3d_wide_shape():
    m = small_3d_wide()
    assert m.feature_dim == 128
    assert m(torch.randn(2, 3, 8, 56, 56)).shape == (2, 128)


def test_build_backbone():
    m, dim = build_backbone("small")
    assert dim == 128 and m.feature_dim == 128
    assert set(BACKBONES) == {"r3d_18", "r2plus1d_18", "small", "small_wide"}
    with pytest.raises(ValueError, match=r"unknown backbone 'r50'.*r2plus1d_18.*r3d_18.*small.*small_wide"):
        build_backbone("r50")


def test_projection_head_structure():
    head = ProjectionHead(128, hidden_dim=64, out_dim=32, num_layers=3)
    kinds = [type(m) for m in head.mlp]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU] * 2 + [nn.Linear, nn.BatchNorm1d]
    assert all(m.bias is None for m in head.mlp if isinstance(m, nn.Linear))
    assert not head.mlp[-1].affine  # MoCo v3 output BN: no scale/shift parameters
    assert head(torch.randn(5, 128)).shape == (5, 32)
    assert [type(m) for m in ProjectionHead(16, out_dim=8, num_layers=1).mlp] == [nn.Linear, nn.BatchNorm1d]
    with pytest.raises(ValueError):
        ProjectionHead(16, num_layers=0)


def test_model_forward_features_and_gradients():
    """Two views through small_3d + head, NT-Xent, backward: every parameter gets a finite,
    non-zero gradient (the loss, not a sum of BN outputs, whose gradient would vanish)."""
    torch.manual_seed(0)
    model = TimeCLRModel("small", proj_hidden=64, proj_dim=32).train()
    v1, v2 = torch.randn(2, 4, 3, 8, 32, 32)
    z = model(torch.cat([v1, v2]))
    assert z.shape == (8, 32)
    loss = nt_xent(z[:4], z[4:], temperature=0.5, backend="torch")
    loss.backward()
    params = dict(model.named_parameters())
    assert any(k.startswith("backbone.") for k in params) and any(k.startswith("head.") for k in params)
    for k, p in params.items():
        assert p.grad is not None, k
        assert torch.isfinite(p.grad).all(), k
        assert p.grad.abs().sum() > 0, k
    model.eval()
    with torch.no_grad():
        assert model.features(v1).shape == (4, 128)
        assert model(v1).shape == (4, 32)


def test_difference_input_feeds_the_backbone_consecutive_frame_differences():
    """model.input=difference: features equal the rgb backbone's (same weights) on differences
    computed independently in float64; a still clip gives the features of an all-zero clip."""
    from timeclr.config import load_config
    from timeclr.models import build_model

    torch.manual_seed(0)
    model = TimeCLRModel("small", proj_hidden=64, proj_dim=32, input="difference").eval()
    rgb = TimeCLRModel("small", proj_hidden=64, proj_dim=32).eval()
    missing = rgb.load_state_dict({k.replace("backbone.net.", "backbone."): v for k, v in model.state_dict().items()})
    assert not missing.missing_keys and not missing.unexpected_keys, missing
    x = torch.randn(3, 3, 8, 32, 32)
    d = torch.from_numpy(np.diff(x.double().numpy(), axis=2)).float()  # x[t+1] - x[t], independently
    with torch.no_grad():
        got, want = model.features(x), rgb.features(d)
        assert got.shape == (3, 128) and torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
        still = x[:, :, :1].expand(-1, -1, 8, -1, -1)
        zero = rgb.features(torch.zeros(3, 3, 7, 32, 32))
        assert torch.allclose(model.features(still), zero, atol=1e-6), "a still clip must look like no change at all"
    with pytest.raises(ValueError, match="at least 2 frames, got 1"):
        model.features(x[:, :, :1])
    cfg = load_config("pipelines/synthetic.yaml", ["model.input=difference"])
    assert isinstance(build_model(cfg.model).backbone, FrameDifference)
    with pytest.raises(ConfigError, match=r"model.input must be one of \('rgb', 'difference'\)"):
        load_config("pipelines/synthetic.yaml", ["model.input=flow"])
