"""Dataset annotation formats for the indexer (timeclr.pipelines.ingest.annotation_formats, ``index
--layout``): tiny trees of each dataset, with annotation files written as the datasets ship them,
indexed end to end.

Every video is a copy of one tiny VP9 clip; what a test checks is which files land in the
manifest with which label, which are rejected and why, and the class list, against expectations
written out by hand here rather than derived from the annotation files."""
import csv
import json
import shutil
from pathlib import Path

import pytest

from timeclr import data
from timeclr.errors import ManifestError
from timeclr.pipelines.ingest import annotation_formats
from timeclr.pipelines.storage import manifest
from timeclr.pipelines.ingest.index import index_tree
from timeclr.pipelines.storage.manifest import read_manifest
from tests.helpers.videos import make_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """One tiny VP9 video (8 frames, 32x32) that every tree copies."""
    return Path(make_video(tmp_path_factory.mktemp("clip") / "clip.webm", 8, width=32, height=32, gop=4))


def place(clip, root, *rels):
    """Copy ``clip`` to each ``root/rel``."""
    for rel in rels:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(clip, root / rel)


def write(path, lines, newline="\n"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(line + newline for line in lines).encode())
    return path


def index(root, out, **annotated):
    return index_tree(root, out, device="cpu", workers=1, progress=False, **annotated)


def outputs(out):
    """({path: (label, class_name)}, {path: reason}, classes) as written."""
    _, rejects_path = manifest.sidecar_paths(out)
    with open(out, newline="") as f:
        rows = {r["path"]: (int(r["label"]), r["class_name"])
                for r in csv.DictReader(f)}
    with open(rejects_path, newline="") as f:
        rejects = {r["path"]: r["reason"] for r in csv.DictReader(f)}
    return rows, rejects, read_manifest(out)[1]


def reasons(rejects):
    """{path: the reason's keyword}."""
    return {path: reason.split(":")[0] for path, reason in rejects.items()}


# ----------------------------------------------------------------------------------------------
# UCF101


@pytest.fixture
def ucf101(tmp_path, clip):
    """UCF101 as shipped: ucfTrainTestlist (CRLF) and a prepared tree under ROOT/UCF-101."""
    lists = tmp_path / "annotations" / "ucfTrainTestlist"
    # classInd's order, not the names' sorted order, gives the labels; YoYo has no video at all.
    write(lists / "classInd.txt", ["1 ApplyEyeMakeup", "2 Archery", "3 HandstandPushups", "4 Basketball",
                                   "5 YoYo"], "\r\n")
    write(lists / "trainlist01.txt", [
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1",
        "Archery/v_Archery_g08_c01.avi 2",
        "HandstandPushups/v_HandStandPushups_g08_c01.avi 3",
        "Basketball/v_Basketball_g08_c01.avi 4",  # not under ROOT
        "Archery/v_Archery_g09_c01.avi 2",  # zero bytes
    ], "\r\n")
    write(lists / "testlist01.txt", ["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi",
                                     "Basketball/v_Basketball_g01_c01.avi"], "\r\n")
    write(lists / "trainlist02.txt", ["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 1",
                                      "Basketball/v_Basketball_g01_c01.avi 4"], "\r\n")
    write(lists / "testlist02.txt", ["Archery/v_Archery_g08_c01.avi"], "\r\n")
    root = tmp_path / "prepared"
    place(clip, root / "UCF-101",
          "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.webm",  # .avi in the lists: a prepared tree
          "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.webm",
          "Archery/v_Archery_g08_c01.avi",  # still the original extension
          "HandstandPushups/v_HandstandPushups_g08_c01.webm",  # the lists write HandStand
          "Basketball/v_Basketball_g01_c01.webm")
    (root / "UCF-101" / "Archery" / "v_Archery_g09_c01.webm").touch()
    return root, tmp_path / "annotations"


def test_ucf101_train_and_test_manifests(ucf101, tmp_path, capsys):
    root, annotations = ucf101
    classes = ["ApplyEyeMakeup", "Archery", "HandstandPushups", "Basketball", "YoYo"]

    assert index(root, tmp_path / "train1.csv", annotation_format="ucf101", annotations=annotations, split=1,
                 subset="train") == (3, 2)
    rows, rejects, written_classes = outputs(tmp_path / "train1.csv")
    assert written_classes == classes
    assert rows == {"UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.webm": (0, "ApplyEyeMakeup"),
                    "UCF-101/Archery/v_Archery_g08_c01.avi": (1, "Archery"),
                    "UCF-101/HandstandPushups/v_HandstandPushups_g08_c01.webm": (2, "HandstandPushups")}
    assert reasons(rejects) == {"Basketball/v_Basketball_g08_c01": "missing",
                                "UCF-101/Archery/v_Archery_g09_c01.webm": "zero bytes"}
    assert "trainlist01.txt:4" in rejects["Basketball/v_Basketball_g08_c01"]
    printed = capsys.readouterr().out
    assert "3 accepted, 2 rejected, 5 classes" in printed
    assert "5 videos listed, 1 missing under ROOT; 2 other files under ROOT are not in this split" in printed

    assert index(root, tmp_path / "test1.csv", annotation_format="ucf101", annotations=annotations, split=1,
                 subset="test") == (2, 0)
    rows, rejects, written_classes = outputs(tmp_path / "test1.csv")
    assert written_classes == classes  # the same labels as the train manifest's
    assert rows == {"UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.webm": (0, "ApplyEyeMakeup"),
                    "UCF-101/Basketball/v_Basketball_g01_c01.webm": (3, "Basketball")}
    assert rejects == {}

    assert index(root, tmp_path / "test2.csv", annotation_format="ucf101", annotations=annotations, split=2,
                 subset="test") == (1, 0)
    assert outputs(tmp_path / "test2.csv")[0] == {"UCF-101/Archery/v_Archery_g08_c01.avi": (1, "Archery")}


def test_ucf101_annotations_read_as_shipped(ucf101):
    _, annotations = ucf101
    listed = annotation_formats.read_ucf101(annotations / "ucfTrainTestlist", 1, "test")
    assert listed.classes == ["ApplyEyeMakeup", "Archery", "HandstandPushups", "Basketball", "YoYo"]
    assert [(e.key, e.class_name) for e in listed.entries] == [
        ("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01", "ApplyEyeMakeup"),
        ("Basketball/v_Basketball_g01_c01", "Basketball")]
    assert listed.entries[1].where.endswith("testlist01.txt:2")


def test_ucf101_bad_lists_name_file_and_line(ucf101, tmp_path):
    root, annotations = ucf101
    lists = annotations / "ucfTrainTestlist"
    write(lists / "trainlist03.txt", ["Archery/v_Archery_g08_c01.avi 2", "Archery/v_Archery_g09_c01.avi 1"], "\r\n")
    with pytest.raises(ManifestError, match=r"trainlist03\.txt:2: index 1 disagrees with .*classInd\.txt"):
        index(root, tmp_path / "m.csv", annotation_format="ucf101", annotations=annotations, split=3, subset="train")
    write(lists / "testlist03.txt", ["Archery/v_Archery_g08_c01.avi", "Skiing/v_Skiing_g01_c01.avi"], "\r\n")
    with pytest.raises(ManifestError, match=r"testlist03\.txt:2: class 'Skiing' is not in"):
        index(root, tmp_path / "m.csv", annotation_format="ucf101", annotations=annotations, split=3, subset="test")
    write(lists / "classInd.txt", ["1 ApplyEyeMakeup", "Archery"], "\r\n")
    with pytest.raises(ManifestError, match=r"classInd\.txt:2: expected '<index> <class name>'"):
        annotation_formats.read_ucf101(lists, 1, "train")


# ----------------------------------------------------------------------------------------------
# HMDB51


def test_hmdb51_splits_tags_and_sorted_labels(tmp_path, clip):
    splits = tmp_path / "annotations" / "testTrainMulti_7030_splits"  # as test_train_splits.rar extracts
    shipped = {  # class -> split -> lines as shipped (a trailing space after the tag)
        "ride_bike": {1: ["Bike_ride_u_cm_np1_fr_med_0.avi 1 ", "Bike_ride_u_cm_np1_fr_med_1.avi 2 ",
                          "Bike_ride_u_cm_np1_fr_med_2.avi 0 "],
                      2: ["Bike_ride_u_cm_np1_fr_med_0.avi 2 ", "Bike_ride_u_cm_np1_fr_med_1.avi 1 ",
                          "Bike_ride_u_cm_np1_fr_med_2.avi 1 "]},
        "brush_hair": {1: ["April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1 ",
                           "April_09_brush_hair_u_nm_np1_ba_goo_1.avi 2 "],
                       2: ["April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1 ",
                           "April_09_brush_hair_u_nm_np1_ba_goo_1.avi 2 "]},
        "cartwheel": {1: ["#122_Cartwheel_FLIP_cart_f_cm_np1_le_med_0.avi 1 ", "Gone_cart_f_cm_np1_ri_bad_3.avi 1 "],
                      2: ["#122_Cartwheel_FLIP_cart_f_cm_np1_le_med_0.avi 2 ", "Gone_cart_f_cm_np1_ri_bad_3.avi 0 "]},
    }
    for cls, by_split in shipped.items():
        for split, lines in by_split.items():
            write(splits / f"{cls}_test_split{split}.txt", lines)
    root = tmp_path / "hmdb51"
    place(clip, root, "ride_bike/Bike_ride_u_cm_np1_fr_med_0.webm", "ride_bike/Bike_ride_u_cm_np1_fr_med_1.webm",
          "ride_bike/Bike_ride_u_cm_np1_fr_med_2.webm", "brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi",
          "cartwheel/#122_Cartwheel_FLIP_cart_f_cm_np1_le_med_0.webm")
    (root / "brush_hair" / "April_09_brush_hair_u_nm_np1_ba_goo_1.avi").touch()
    annotations = tmp_path / "annotations"  # the folder the archive was extracted into

    assert index(root, tmp_path / "train1.csv", annotation_format="hmdb51", annotations=annotations, split=1,
                 subset="train") == (3, 1)
    rows, rejects, classes = outputs(tmp_path / "train1.csv")
    assert classes == ["brush_hair", "cartwheel", "ride_bike"]
    assert rows == {"ride_bike/Bike_ride_u_cm_np1_fr_med_0.webm": (2, "ride_bike"),
                    "brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi": (0, "brush_hair"),
                    "cartwheel/#122_Cartwheel_FLIP_cart_f_cm_np1_le_med_0.webm": (1, "cartwheel")}
    assert reasons(rejects) == {"cartwheel/Gone_cart_f_cm_np1_ri_bad_3": "missing"}

    assert index(root, tmp_path / "test1.csv", annotation_format="hmdb51", annotations=annotations, split=1,
                 subset="test") == (1, 1)
    rows, rejects, classes = outputs(tmp_path / "test1.csv")
    assert classes == ["brush_hair", "cartwheel", "ride_bike"]
    assert rows == {"ride_bike/Bike_ride_u_cm_np1_fr_med_1.webm": (2, "ride_bike")}
    assert reasons(rejects) == {"brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_1.avi": "zero bytes"}

    assert index(root, tmp_path / "train2.csv", annotation_format="hmdb51", annotations=annotations, split=2,
                 subset="train") == (3, 0)
    assert sorted(outputs(tmp_path / "train2.csv")[0]) == [
        "brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi", "ride_bike/Bike_ride_u_cm_np1_fr_med_1.webm",
        "ride_bike/Bike_ride_u_cm_np1_fr_med_2.webm"]

    write(splits / "ride_bike_test_split3.txt", ["Bike_ride_u_cm_np1_fr_med_0.avi 1"])
    with pytest.raises(ManifestError, match="no brush_hair_test_split3.txt, though other splits of class brush_hair"):
        annotation_formats.read_hmdb51(annotations, 3, "train")
    write(splits / "brush_hair_test_split1.txt", ["April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1",
                                                  "April_09_brush_hair_u_nm_np1_ba_goo_1.avi train"])
    with pytest.raises(ManifestError, match=r"brush_hair_test_split1\.txt:2: expected '<video file> <tag>'"):
        annotation_formats.read_hmdb51(annotations, 1, "train")


# ----------------------------------------------------------------------------------------------
# Kinetics


KINETICS_HEADER = "label,youtube_id,time_start,time_end,split"


@pytest.fixture
def kinetics(tmp_path, clip):
    """Kinetics CSVs as the release ships them (an unlabelled test.csv, as Kinetics-700-2020's),
    videos in per-split folders, per-class below train/."""
    annotations = tmp_path / "k400"
    write(annotations / "train.csv", [KINETICS_HEADER,
                                      "abseiling,-3B32lodo2M,59,69,train",
                                      '"passing American football (in game)",a_b-c_D1234,0,10,train',
                                      "zumba,zzzzzzzzzz1,120,130,train",
                                      "zumba,Zzzzzzzzzz2,5,15,train"])  # not downloaded
    write(annotations / "validate.csv", [KINETICS_HEADER,
                                         "air drumming,--6bJUbfpnQ,17,27,val",
                                         "zumba,vvvvvvvvvv1,0,10,val",
                                         "zumba,vvvvvvvvvv2,30,40,val"])
    write(annotations / "test.csv", ["youtube_id,time_start,time_end,split", "tttttttttt1,3,13,test"])
    root = tmp_path / "kinetics"
    place(clip, root, "train/abseiling/-3B32lodo2M_000059_000069.webm",
          "train/passing American football (in game)/a_b-c_D1234_000000_000010.webm",
          "train/zumba/zzzzzzzzzz1_000120_000130.mp4",
          "val/--6bJUbfpnQ_000017_000027.webm", "val/vvvvvvvvvv1_000000_000010.webm",
          "val/vvvvvvvvvv1_000000_000010.mkv",  # the same video twice
          "test/tttttttttt1_000003_000013.webm")
    return root, annotations


KINETICS_CLASSES = ["abseiling", "air drumming", "passing American football (in game)", "zumba"]


def test_kinetics_subsets_from_folder_and_file(kinetics, tmp_path):
    root, annotations = kinetics
    assert index(root, tmp_path / "train.csv", annotation_format="kinetics", annotations=annotations,
                 subset="train") == (3, 1)
    rows, rejects, classes = outputs(tmp_path / "train.csv")
    assert classes == KINETICS_CLASSES  # the classes of train and val together, sorted
    assert rows == {"train/abseiling/-3B32lodo2M_000059_000069.webm": (0, "abseiling"),
                    "train/passing American football (in game)/a_b-c_D1234_000000_000010.webm":
                        (2, "passing American football (in game)"),
                    "train/zumba/zzzzzzzzzz1_000120_000130.mp4": (3, "zumba")}
    assert reasons(rejects) == {"Zzzzzzzzzz2_000005_000015": "missing"}

    assert index(root, tmp_path / "val.csv", annotation_format="kinetics", annotations=annotations, subset="val") == (1, 3)
    rows, rejects, classes = outputs(tmp_path / "val.csv")
    assert classes == KINETICS_CLASSES
    assert rows == {"val/--6bJUbfpnQ_000017_000027.webm": (1, "air drumming")}
    assert reasons(rejects) == {"val/vvvvvvvvvv1_000000_000010.webm": "duplicate",
                                "val/vvvvvvvvvv1_000000_000010.mkv": "duplicate",
                                "vvvvvvvvvv2_000030_000040": "missing"}
    assert "validate.csv:4" in rejects["vvvvvvvvvv2_000030_000040"]

    # One CSV file instead of the folder: the same manifest (the classes still come from both files).
    assert index(root, tmp_path / "val_file.csv", annotation_format="kinetics",
                 annotations=annotations / "validate.csv") == (1, 3)
    assert outputs(tmp_path / "val_file.csv") == outputs(tmp_path / "val.csv")


def test_kinetics_unlabelled_and_malformed_annotations(kinetics, tmp_path):
    root, annotations = kinetics
    with pytest.raises(ManifestError, match=r"test\.csv: no 'label' column .*unlabelled"):
        index(root, tmp_path / "m.csv", annotation_format="kinetics", annotations=annotations, subset="test")
    with pytest.raises(ManifestError, match=r"train\.csv: no row of subset val \(split column values: train\)"):
        annotation_formats.read_kinetics(annotations / "train.csv", "val")
    bad = write(tmp_path / "bad" / "train.csv", [KINETICS_HEADER, "abseiling,xyz,12.5,22,train"])
    with pytest.raises(ManifestError, match=r"bad/train\.csv:2: time_start '12\.5' is not a whole number"):
        annotation_formats.read_kinetics(bad)
    write(bad, ["label,id,start,end", "abseiling,xyz,12,22"])
    with pytest.raises(ManifestError, match=r"bad/train\.csv:1: not a Kinetics annotation CSV: no youtube_id"):
        annotation_formats.read_kinetics(bad)
    write(bad, [KINETICS_HEADER, "abseiling,xyz,12,22,train", "zumba,xyz,12,22,train"])
    with pytest.raises(ManifestError, match=r"bad/train\.csv:3: xyz_000012_000022 is listed as 'zumba', but "):
        annotation_formats.read_kinetics(bad)


# ----------------------------------------------------------------------------------------------
# Something-Something v2


@pytest.fixture
def ssv2(tmp_path, clip):
    annotations = tmp_path / "labels"
    # Labels are labels.json's numbers, not the names' sorted order.
    (annotations).mkdir()
    (annotations / "labels.json").write_text(json.dumps({
        "Pushing something from left to right": "0",
        "Holding something next to something": "1",
        "Putting something, something and something on the table": "2",
    }, indent=1))

    def item(id_, template):
        return {"id": id_, "label": "filled-in text, not the class", "template": template,
                "placeholders": ["a cup"] * template.count("[")}

    (annotations / "train.json").write_text(json.dumps([
        item("78687", "Holding [something] next to [something]"),
        item("42326", "Putting [something], [something] and [something] on the table"),
        item("3", "Holding [something] next to [something]"),  # not under ROOT
        item("100", "Holding [something] next to [something]"),  # zero bytes
    ]))
    (annotations / "validation.json").write_text(json.dumps([item("24", "Pushing [something] from left to right")]))
    (annotations / "test.json").write_text(json.dumps([{"id": "1420"}]))
    root = tmp_path / "20bn-something-something-v2"
    place(clip, root, "78687.webm", "42326.webm", "24.webm", "1420.webm")
    (root / "100.webm").touch()
    return root, annotations


SSV2_CLASSES = ["Pushing something from left to right", "Holding something next to something",
                "Putting something, something and something on the table"]


def test_ssv2_train_and_val(ssv2, tmp_path):
    root, annotations = ssv2
    assert index(root, tmp_path / "train.csv", annotation_format="ssv2", annotations=annotations, subset="train") == (2, 2)
    rows, rejects, classes = outputs(tmp_path / "train.csv")
    assert classes == SSV2_CLASSES
    assert rows == {"78687.webm": (1, "Holding something next to something"),
                    "42326.webm": (2, "Putting something, something and something on the table")}
    assert reasons(rejects) == {"3": "missing", "100.webm": "zero bytes"}

    assert index(root, tmp_path / "val.csv", annotation_format="ssv2", annotations=annotations, subset="val") == (1, 0)
    rows, _, classes = outputs(tmp_path / "val.csv")
    assert classes == SSV2_CLASSES and rows == {"24.webm": (0, "Pushing something from left to right")}


def test_ssv2_unlabelled_test_and_bad_json(ssv2, tmp_path):
    root, annotations = ssv2
    with pytest.raises(ManifestError, match=r"test\.json entry 0 \(id 1420\): no 'template' .*unlabelled"):
        index(root, tmp_path / "m.csv", annotation_format="ssv2", annotations=annotations, subset="test")
    (annotations / "validation.json").write_text('[\n {"id": "24", "template": "Pushing [something]"}\n]')
    with pytest.raises(ManifestError, match=r"validation\.json entry 0 \(id 24\): class 'Pushing something' "
                                            r"\(its template without brackets\) is not in .*labels\.json"):
        annotation_formats.read_ssv2(annotations, "val")
    (annotations / "labels.json").write_text('{\n "Pushing something": "0",\n "Holding": 1,\n}')
    with pytest.raises(ManifestError, match=r"labels\.json:4: not valid JSON"):
        annotation_formats.read_ssv2(annotations, "val")


# ----------------------------------------------------------------------------------------------
# The command line


def test_cli_indexes_an_annotation_format(ucf101, tmp_path, capsys):
    root, annotations = ucf101
    out = tmp_path / "lists" / "test1.csv"
    assert data.main(["index", str(root), "-o", str(out), "--layout", "ucf101", "--annotations", str(annotations),
                      "--split", "1", "--subset", "test", "--device", "cpu", "--workers", "2"]) == 0
    assert "2 accepted, 0 rejected, 5 classes" in capsys.readouterr().out
    rows, classes = read_manifest(out)
    assert [(r["path"], r["label"]) for r in rows] == [
        ("UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.webm", 0),
        ("UCF-101/Basketball/v_Basketball_g01_c01.webm", 3)]
    assert Path(rows[0]["abs_path"]) == (root / rows[0]["path"]).resolve()


@pytest.mark.parametrize("args, message", [
    (["--layout", "ucf101", "--split", "1", "--subset", "train"], "--layout ucf101 needs --annotations"),
    (["--layout", "ucf101", "--annotations", "{ann}"], "--layout ucf101 needs --split"),
    (["--layout", "ucf101", "--annotations", "{ann}", "--split", "1"], "--layout ucf101 needs --subset"),
    (["--layout", "ucf101", "--annotations", "{ann}", "--split", "1", "--subset", "val"],
     "--subset val: ucf101 has no val subset"),
    (["--layout", "kinetics", "--annotations", "{ann}", "--split", "1", "--subset", "train"],
     "--split 1: kinetics has a single official split"),
    (["--annotations", "{ann}"], "--annotations: only for an annotated layout"),
    (["--layout", "ssv2", "--annotations", "{ann}/nope", "--subset", "train"], "nope: no such file or folder"),
    (["--layout", "hmdb51", "--annotations", "{ann}", "--split", "1", "--subset", "train"],
     "not HMDB51 annotations: expected <class>_test_split<N>.txt"),
    (["--layout", "ucf101", "--annotations", "{ann}", "--split", "3", "--subset", "train"],
     "no trainlist03.txt"),
])
def test_cli_annotation_format_errors(ucf101, tmp_path, args, message):
    root, annotations = ucf101
    args = [a.replace("{ann}", str(annotations)) for a in args]
    with pytest.raises(SystemExit, match="^timeclr.data index: error: .*" + message.replace("(", r"\(")):
        data.main(["index", str(root), "-o", str(tmp_path / "m.csv"), "--device", "cpu", *args])
    assert not (tmp_path / "m.csv").exists()


def test_cli_bad_annotation_line_and_wrong_root(ucf101, tmp_path, clip):
    root, annotations = ucf101
    write(annotations / "ucfTrainTestlist" / "testlist01.txt", ["ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi",
                                                                "v_Basketball_g01_c01.avi"], "\r\n")
    with pytest.raises(SystemExit, match=r"testlist01\.txt:2: expected '<class>/<video file>', got "
                                         r"'v_Basketball_g01_c01\.avi'"):
        data.main(["index", str(root), "-o", str(tmp_path / "m.csv"), "--layout", "ucf101",
                   "--annotations", str(annotations), "--split", "1", "--subset", "test", "--device", "cpu"])
    other = tmp_path / "other"
    place(clip, other, "Archery/v_Archery_g01_c01.webm")
    with pytest.raises(SystemExit, match=r"none of the 2 videos of ucf101 split 2 train .* is under it"):
        data.main(["index", str(other), "-o", str(tmp_path / "m.csv"), "--layout", "ucf101",
                   "--annotations", str(annotations), "--split", "2", "--subset", "train", "--device", "cpu"])


@pytest.mark.parametrize("args", [["--layout", "yt8m"], ["--layout", "ucf101", "--split", "4"],
                                  ["--layout", "kinetics", "--subset", "validate"]])
def test_cli_rejects_unknown_choices(tmp_path, capsys, args):
    with pytest.raises(SystemExit) as exit_:
        data.main(["index", str(tmp_path), "-o", str(tmp_path / "m.csv"), *args])
    assert exit_.value.code == 2 and "invalid choice" in capsys.readouterr().err
