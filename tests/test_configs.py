"""The real-dataset configs in pipelines/: they load, take their root from the environment, and
a dataset that is not set up yet gives the set-up steps instead of a traceback."""
import pytest

from timeclr.config import ConfigError, load_config
from timeclr.evaluate import main as evaluate_main
from timeclr.pipelines.datasets import DATASETS
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
                 f"python -m timeclr.data prepare {tmp_path}/nowhere/raw", f"--layout {dataset.layout}",
                 "--codec vp9", dataset.env):
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
