"""The real-dataset configs in pipelines/: they load, take their root from the environment, and
a dataset that is not set up yet gives the set-up steps instead of a traceback."""
import pytest

from timeclr.config import ConfigError, load_config
from timeclr.evaluate import main as evaluate_main
from timeclr.pipelines.ingest.datasets import DATASETS
from timeclr.train import main as train_main

CONFIGS = {"kinetics": "kinetics400", "ucf101": "ucf101", "hmdb51": "hmdb51", "ssv2": "ssv2"}


@pytest.mark.parametrize("name", CONFIGS)
def test_config_loads_with_its_root_from_the_environment(name, monkeypatch, tmp_path):
    dataset = DATASETS[CONFIGS[name]]
    monkeypatch.delenv(dataset.env, raising=False)
    cfg = load_config(f"pipelines/{name}.yaml")
    assert cfg.data.dataset == CONFIGS[name]
    assert cfg.data.root == f"data/{CONFIGS[name]}", cfg.data.root
    monkeypatch.setenv(dataset.env, str(tmp_path))
    cfg = load_config(f"pipelines/{name}.yaml")
    assert cfg.data.root == str(tmp_path), f"{dataset.env} did not override data.root: {cfg.data.root}"
    assert cfg.data.manifest.startswith(str(tmp_path)), cfg.data.manifest
    assert cfg.model.backbone in ("r2plus1d_18", "r3d_18") and cfg.data.views[0].frames == 16


@pytest.mark.parametrize("name", CONFIGS)
def test_missing_dataset_says_what_to_download_and_run(name, monkeypatch, tmp_path, capsys):
    dataset = DATASETS[CONFIGS[name]]
    monkeypatch.setenv(dataset.env, str(tmp_path / "nowhere"))
    with pytest.raises(SystemExit) as e:
        train_main([f"pipelines/{name}.yaml", "data.device=cpu"])
    message = str(e.value)
    for part in (dataset.title, dataset.download.split()[0], f"{tmp_path}/nowhere/raw",
                 f"python -m timeclr.data prepare {tmp_path}/nowhere/raw", f"--layout {dataset.annotation_format}",
                 "--codec jpeg", dataset.env):
        assert part in message, f"{part!r} missing from the message:\n{message}"
    assert "Traceback" not in message


def test_evaluate_names_the_missing_test_split(monkeypatch, tmp_path):
    monkeypatch.setenv("TIMECLR_UCF101", str(tmp_path))
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "train1.csv").write_text("# root: .\n")
    with pytest.raises(SystemExit, match=r"eval.test_manifest: .*test1.csv does not exist: UCF101"):
        evaluate_main(["pipelines/ucf101.yaml", "checkpoint=random", "data.device=cpu"])


def test_unknown_dataset_is_an_error_naming_the_key():
    with pytest.raises(ConfigError, match="data.dataset"):
        load_config("pipelines/debug.yaml", ["data.dataset=kinetics9000"])


def test_a_config_is_its_recipe_plus_a_thin_delta(tmp_path):
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "base.yaml").write_text("train:\n  lr: 0.5\n  epochs: 7\nmodel:\n  proj_dim: 32\n")
    (tmp_path / "recipes" / "more.yaml").write_text("base: base.yaml\ntrain:\n  epochs: 9\n")
    (tmp_path / "exp.yaml").write_text("base: [recipes/more.yaml]\ntrain:\n  lr: 0.25\n")
    cfg = load_config(str(tmp_path / "exp.yaml"), ["model.proj_dim=64"])
    # defaults <- base <- more <- exp <- override, each layer winning over the one before
    assert (cfg.train.lr, cfg.train.epochs, cfg.model.proj_dim) == (0.25, 9, 64), (cfg.train, cfg.model)
    assert "base" not in cfg, "the base key is consumed, not saved with the run"


def test_bad_bases_are_errors_that_name_the_files(tmp_path):
    (tmp_path / "a.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(ConfigError, match=r"missing.yaml does not exist \(the base of .*a.yaml\)"):
        load_config(str(tmp_path / "a.yaml"))
    (tmp_path / "x.yaml").write_text("base: y.yaml\n")
    (tmp_path / "y.yaml").write_text("base: x.yaml\n")
    with pytest.raises(ConfigError, match=r"cycle: .*x.yaml -> .*y.yaml -> .*x.yaml"):
        load_config(str(tmp_path / "x.yaml"))


@pytest.mark.parametrize("name", ["kinetics", "ucf101", "hmdb51", "ssv2", "ucf101_finetune", "hmdb51_finetune",
                                  "synthetic", "synthetic_finetune", "synthetic_v1", "synthetic_v1_finetune",
                                  "synthetic_v2"])
def test_shipped_configs_name_a_recipe_and_stay_thin(name):
    text = open(f"pipelines/{name}.yaml").read()
    chain = [name]  # a recipe, named directly or by the experiment it builds on (synthetic.yaml: synthetic_v2.yaml)
    while "base: recipes/" not in open(f"pipelines/{chain[-1]}.yaml").read() and len(chain) < 3:
        base = [line.split(":", 1)[1].strip() for line in open(f"pipelines/{chain[-1]}.yaml") if line.startswith("base:")]
        assert base, f"pipelines/{chain[-1]}.yaml names no base"
        chain.append(base[0].removesuffix(".yaml"))
    assert "base: recipes/" in open(f"pipelines/{chain[-1]}.yaml").read(), f"pipelines/{name}.yaml reaches no recipe: {chain}"
    body = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    # ssv2 and the synthetic configs restate their views (a list replaces the recipe's whole list)
    assert len(body) <= 45, f"pipelines/{name}.yaml has {len(body)} lines: move shared settings to its recipe"


def test_names_outside_their_registry_are_errors():
    for key, value in (("train.optimizer", "adam"), ("model.backbone", "resnet50"), ("train.loss_backend", "cuda")):
        with pytest.raises(ConfigError, match=f"{key} must be one of"):
            load_config("pipelines/debug.yaml", [f"{key}={value}"])


BAD_CONFIGS = [  # (YAML text or None for synthetic_v2.yaml: TimeCLR's pair, overrides, what the one-line error must say)
    ("a: [1\n", [], "is not valid YAML at line 2, column 1"),
    (None, ["train.epochs=0"], "train.epochs must be at least 1, got 0"),
    (None, ["train.epochs=-1"], "train.epochs must be at least 1, got -1"),
    (None, ["data.views.5.frames=3"], "data.views has 2 items (0 to 1), not item 5"),
    (None, ["data.views.1.nosuchkey=3"], "nosuchkey"),
    (None, ["data.views.1.start=later"], "data.views[1].start must be one of ('random', 'spread', 'near', 'overlap')"),
    (None, ["data.views.1.start=near"], "data.views[1].start='near' measures from the anchor's start: views[0] must"),
]


@pytest.mark.parametrize("text,overrides,message", BAD_CONFIGS, ids=[m for _, _, m in BAD_CONFIGS])
def test_bad_configs_end_in_one_line_naming_the_problem(text, overrides, message, tmp_path, capsys):
    path = "pipelines/synthetic_v2.yaml"
    if text is not None:
        path = str(tmp_path / "bad.yaml")
        open(path, "w").write(text)
    with pytest.raises(ConfigError) as e:
        load_config(path, overrides)
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)
    with pytest.raises(SystemExit) as e:  # the command: the same line, no traceback
        train_main([path, *overrides, f"out_dir={tmp_path}/run"])
    assert message in str(e.value.code) and str(e.value.code).startswith("timeclr.train: "), e.value.code


PROBE = """
import sys
from timeclr.{cmd} import main
try:
    main({argv!r})
except SystemExit as e:
    print("exit", e.code)
print("torch loaded:", "torch" in sys.modules)
"""


@pytest.mark.parametrize("cmd,argv", [("train", ["--help"]), ("evaluate", ["--help"]), ("finetune", ["--help"]),
                                      ("train", ["pipelines/synthetic.yaml", "train.epochz=3"]),
                                      ("train", ["pipelines/synthetic.yaml", "train.epochs=0"])])
def test_help_and_config_errors_answer_before_torch_loads(cmd, argv):
    """--help and a mistyped key or bad value must not wait seconds for torch (and DALI) to import."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", PROBE.format(cmd=cmd, argv=argv)], capture_output=True, text=True,
                       timeout=120)
    assert "torch loaded: False" in r.stdout, r.stdout + r.stderr


def test_the_wide_synthetic_config_is_synthetic_v1_yaml_but_for_its_backbone():
    from omegaconf import OmegaConf

    wide = OmegaConf.to_container(load_config("pipelines/synthetic_v1_wide.yaml"))
    base = OmegaConf.to_container(load_config("pipelines/synthetic_v1.yaml"))
    assert (wide["model"].pop("backbone"), base["model"].pop("backbone")) == ("small_wide", "small")
    assert (wide.pop("out_dir"), base.pop("out_dir")) == ("runs/synthetic_v1-wide", "runs/synthetic_v1")
    assert wide == base


def test_the_main_job_is_synthetic_v2_yaml_with_the_chosen_views():
    """synthetic.yaml is the v2 set's recipe (synthetic_v2.yaml) but for its views, two segment
    views, which the validation split chose (docs/results.md); each keeps the pair's augmentation."""
    from omegaconf import OmegaConf

    main = OmegaConf.to_container(load_config("pipelines/synthetic.yaml"))
    v2 = OmegaConf.to_container(load_config("pipelines/synthetic_v2.yaml"))
    assert [v["kind"] for v in main["data"]["views"]] == ["segment", "segment"]
    assert [v["kind"] for v in v2["data"]["views"]] == ["segment", "interval"]
    assert main["data"]["views"][0] == main["data"]["views"][1] == v2["data"]["views"][0]
    assert (main.pop("out_dir"), v2.pop("out_dir")) == ("runs/synthetic", "runs/synthetic_v2")
    main["data"].pop("views"), v2["data"].pop("views")
    assert main == v2
    assert (v2["synthetic"]["set"], v2["model"]["input"], v2["train"]["epochs"]) == ("v2", "difference", 40)


def test_every_view_design_is_a_config_that_selects_frames():
    """pipelines/view_designs.yaml's designs load as data.views of the synthetic config (V >= 2)
    and select every view's frames in train and eval mode."""
    import numpy as np
    from omegaconf import OmegaConf
    from timeclr.pipelines.loader.frame_selection import select_views

    designs = OmegaConf.to_container(OmegaConf.load("pipelines/view_designs.yaml"))
    assert {"interval", "segment", "timeclr", "timeclr_overlap", "cvrl", "rho3"} <= set(designs), list(designs)
    for name, design in designs.items():
        views = design["views"]
        cfg = load_config("pipelines/synthetic.yaml", [f"data.views={views}".replace("'", "")])
        assert len(cfg.data.views) == len(views) >= 2, name
        plain = OmegaConf.to_container(cfg.data.views)
        for train in (True, False):
            frames = select_views(plain, 32, train, np.random.default_rng(0))
            assert [len(f) for f in frames] == [v["frames"] for v in views], (name, frames)
