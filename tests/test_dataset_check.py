"""Tests for src.datasets.check on the demo sets and on deliberately broken copies."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import src  # noqa: F401  (must precede mindspore: sets the oneDNN env var)
from src.datasets.check import (Problem, check_dataset, inspect_dataset, main,
                                require_valid_dataset)
from src.errors import DataError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def copy_of(demo_data, tmp_path):
    """Return a function giving a private, breakable copy of one demo dataset."""
    def _copy(kind):
        dst = tmp_path / kind
        shutil.copytree(demo_data[kind], dst)
        return dst
    return _copy


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "src.datasets.check", *map(str, args)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def _only(problems, needle):
    """The problems whose path contains ``needle``; fails if there is none."""
    hits = [p for p in problems if needle in p.path]
    assert hits, f"no problem about {needle!r} in {[str(p) for p in problems]}"
    return hits


def _assert_one_line(problems):
    for p in problems:
        assert isinstance(p, Problem)
        for part in (p.path, p.message, p.fix):
            assert part and "\n" not in part
        assert str(p).startswith(f"problem: {p.path}: ") and " -> fix: " in str(p)


# ---------------------------------------------------------------- demo sets are fine

@pytest.mark.parametrize("kind, summary", [
    ("cifar10", "train 500 records in 5 files"),
    ("imagenet", "train 400 images in 10 classes"),
    ("coco", "train 48 images / 129 annotations"),
])
def test_demo_sets_are_ok(demo_data, kind, summary):
    report = inspect_dataset(kind, str(demo_data[kind]))
    assert report.ok and report.problems == []
    assert summary in report.summary
    assert check_dataset(kind, str(demo_data[kind]), split="train") == []
    assert check_dataset(kind, str(demo_data[kind]), split="val") == []


def test_cli_ok_and_failure(demo_data, tmp_path):
    ok = _cli("--dataset", "imagenet", "--data_dir", demo_data["imagenet"], "--num_classes", 10)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("OK: imagenet at ") and "500 images decoded" in ok.stdout
    assert len(ok.stdout.strip().splitlines()) == 1

    broken = tmp_path / "coco"
    shutil.copytree(demo_data["coco"], broken)
    (broken / "annotations" / "instances_val2017.json").write_bytes(b"\x00\x01 junk \xff" * 50)
    victim = sorted((broken / "train2017").iterdir())[3]
    victim.unlink()
    bad = _cli("--dataset", "coco", "--data_dir", broken, "--num_classes", 80)
    assert bad.returncode == 1
    lines = bad.stdout.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("problem: ") for line in lines)
    assert any(str(victim) in line and "does not exist" in line for line in lines)
    assert any("instances_val2017.json" in line and "not a JSON object" in line for line in lines)


# ---------------------------------------------------------------- cifar10

def test_cifar_truncated_empty_and_bad_labels(copy_of):
    root = copy_of("cifar10")
    batches = root / "cifar-10-batches-bin"
    data = (batches / "data_batch_3.bin").read_bytes()
    (batches / "data_batch_3.bin").write_bytes(data[:-100])
    (batches / "data_batch_4.bin").write_bytes(b"")
    bad = bytearray((batches / "data_batch_5.bin").read_bytes())
    bad[3073 * 7] = 42
    (batches / "data_batch_5.bin").write_bytes(bytes(bad))
    problems = check_dataset("cifar10", str(root))
    _assert_one_line(problems)
    assert len(problems) == 3
    (trunc,) = _only(problems, "data_batch_3.bin")
    assert f"{len(data) - 100} bytes" in trunc.message and "multiple of 3073" in trunc.message
    assert "binary version" in trunc.fix
    (empty,) = _only(problems, "data_batch_4.bin")
    assert "empty" in empty.message
    (labels,) = _only(problems, "data_batch_5.bin")
    assert "record 7 has label 42" in labels.message


def test_cifar_missing_split_and_num_classes(copy_of):
    root = copy_of("cifar10")
    shutil.move(str(root / "cifar-10-verify-bin" / "test_batch.bin"),
                str(root / "cifar-10-batches-bin" / "test_batch.bin"))
    shutil.rmtree(root / "cifar-10-verify-bin")
    problems = check_dataset("cifar10", str(root), num_classes=100)
    (missing,) = _only(problems, "cifar-10-verify-bin")
    assert "missing" in missing.message and "move cifar-10-batches-bin/test_batch.bin" in missing.fix
    (classes,) = [p for p in problems if "num_classes" in p.message]
    assert classes.path == str(root) and "num_classes: 10" in classes.fix
    assert check_dataset("cifar10", str(root), split="train", num_classes=10) == []


def test_cifar_split_folder_given_directly(demo_data):
    report = inspect_dataset("cifar10", str(demo_data["cifar10"] / "cifar-10-batches-bin"))
    assert report.ok and "found the train split" in report.summary
    assert "cifar-10-verify-bin" in " ".join(report.notes)
    problems = check_dataset("cifar10", str(demo_data["cifar10"] / "cifar-10-batches-bin"), split="val")
    assert len(problems) == 1 and "test_batch.bin" in problems[0].message


def test_cifar_python_version_and_junk(tmp_path):
    py = tmp_path / "py"
    (py / "cifar-10-batches-py").mkdir(parents=True)
    problems = check_dataset("cifar10", str(py))
    assert len(problems) == 1 and "python (pickle) version" in problems[0].message
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("hello")
    (problem,) = check_dataset("cifar10", str(junk))
    assert "no CIFAR-10 binary data" in problem.message and "src.datasets.demo" in problem.fix


# ---------------------------------------------------------------- imagenet

def test_imagenet_missing_class_in_val(copy_of):
    root = copy_of("imagenet")
    shutil.rmtree(root / "val" / "n01514859")
    problems = check_dataset("imagenet", str(root), num_classes=10)
    _assert_one_line(problems)
    (p,) = problems
    assert p.path == str(root / "val" / "n01514859")
    assert "missing from val/" in p.message and "add val/n01514859" in p.fix


def test_imagenet_corrupt_zero_byte_and_truncated_images(copy_of):
    root = copy_of("imagenet")
    files = sorted((root / "train" / "n01443537").iterdir())
    files[0].write_bytes(os.urandom(2000))
    files[1].write_bytes(b"")
    files[2].write_bytes(files[2].read_bytes()[:300])
    nonimage = root / "val" / "n01440764" / "README.txt"
    nonimage.write_text("not an image")
    report = inspect_dataset("imagenet", str(root))
    problems = report.problems
    _assert_one_line(problems)
    assert len(problems) == 3
    assert "cannot decode" in _only(problems, files[0].name)[0].message
    assert "zero-byte" in _only(problems, files[1].name)[0].message
    assert "cannot decode" in _only(problems, files[2].name)[0].message
    assert "1 non-image entries" in " ".join(report.notes)
    # Zero-byte files are found even when decoding is capped.
    capped = check_dataset("imagenet", str(root), split="train", max_decode=0)
    assert [p.path for p in capped] == [str(files[1])]


def test_imagenet_flat_val_folder(copy_of):
    root = copy_of("imagenet")
    for img in list((root / "val").rglob("*.JPEG")):
        shutil.move(str(img), str(root / "val" / img.name))
    for d in [d for d in (root / "val").iterdir() if d.is_dir()]:
        d.rmdir()
    problems = check_dataset("imagenet", str(root))
    (p,) = problems
    assert p.path == str(root / "val")
    assert "100 images directly and no class folders" in p.message
    assert "sort the images into class folders" in p.fix


def test_imagenet_num_classes_and_empty_class(copy_of):
    root = copy_of("imagenet")
    (problem,) = check_dataset("imagenet", str(root), num_classes=5)
    assert problem.path == str(root / "train")
    assert "10 class folders but num_classes is 5" in problem.message
    report = inspect_dataset("imagenet", str(root), num_classes=11)
    assert report.ok and "MobileNetV1" in " ".join(report.notes)

    for f in (root / "train" / "n01518878").iterdir():
        f.unlink()
    (p,) = check_dataset("imagenet", str(root), num_classes=10)
    assert p.path == str(root / "train" / "n01518878") and "no images" in p.message


def test_imagenet_hidden_folder_would_be_a_class(copy_of):
    root = copy_of("imagenet")
    shutil.copytree(root / "train" / "n01440764", root / "train" / ".ipynb_checkpoints")
    (p,) = check_dataset("imagenet", str(root), num_classes=10)
    assert p.path == str(root / "train" / ".ipynb_checkpoints")
    assert "ImageFolderDataset would read it as a class" in p.message
    assert p.fix == "move .ipynb_checkpoints out of train/"


def test_imagenet_missing_split(copy_of):
    root = copy_of("imagenet")
    shutil.rmtree(root / "val")
    (p,) = check_dataset("imagenet", str(root))
    assert p.path == str(root / "val") and "missing" in p.message
    (p,) = check_dataset("imagenet", str(root / "train"))
    assert p.path == str(root / "train") and "looks like a single split folder" in p.message
    assert "point --data_dir at the folder that holds train/ and val/" in p.fix


# ---------------------------------------------------------------- coco

def _load(path):
    return json.loads(Path(path).read_text())


def test_coco_json_points_at_missing_images(copy_of):
    root = copy_of("coco")
    ann = root / "annotations" / "instances_train2017.json"
    doc = _load(ann)
    gone = [root / "train2017" / e["file_name"] for e in doc["images"][:8]]
    for f in gone:
        f.unlink()
    problems = check_dataset("coco", str(root))
    _assert_one_line(problems)
    listed = [p for p in problems if p.path.endswith(".jpg")]
    assert [p.path for p in listed] == [str(f) for f in gone[:5]]
    assert all("instances_train2017.json does not exist" in p.message for p in listed)
    (rest,) = [p for p in problems if p not in listed]
    assert rest.path == str(root / "train2017") and "3 more" in rest.message and "8 in all" in rest.message


def test_coco_annotation_file_not_json(copy_of):
    root = copy_of("coco")
    ann = root / "annotations" / "instances_val2017.json"
    ann.write_text('{"images": [1, 2,')
    (p,) = check_dataset("coco", str(root))
    assert p.path == str(ann) and "not valid JSON" in p.message
    # A binary file saved under the JSON's name (an image here). Plain random bytes
    # start with "{" once in 256 runs, which is a different (also reported) case.
    ann.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(5000))
    (p,) = check_dataset("coco", str(root))
    assert p.path == str(ann) and "not a JSON object" in p.message
    ann.write_bytes(b"{" + bytes(range(256)) * 10)
    (p,) = check_dataset("coco", str(root))
    assert p.path == str(ann) and ("not UTF-8" in p.message or "not valid JSON" in p.message)
    ann.write_text("[1, 2, 3]")
    (p,) = check_dataset("coco", str(root))
    assert "not a JSON object (starts with b'[1, 2, 3]')" in p.message
    ann.write_text('{"images": [], "annotations": [], "categories": {}}')
    (p,) = check_dataset("coco", str(root))
    assert "missing or non-list key(s): categories" in p.message
    ann.unlink()
    (p,) = check_dataset("coco", str(root))
    assert p.path == str(ann) and "missing" in p.message


def test_coco_wrong_types_orphans_and_empty(copy_of):
    root = copy_of("coco")
    ann = root / "annotations" / "instances_val2017.json"
    doc = _load(ann)
    broken_ids = {doc["images"][0]["id"], doc["images"][1]["id"]}
    orphans = 1 + sum(a["image_id"] == doc["images"][0]["id"] for a in doc["annotations"])
    doc["images"][0]["id"] = "seven"    # its annotations become orphans
    doc["images"][1]["width"] = -3      # malformed, but its id still resolves
    doc["images"].append(None)
    anns = [a for a in doc["annotations"] if a["image_id"] not in broken_ids]
    anns[0]["bbox"] = "big"
    anns[1]["image_id"] = 123456789
    anns[2]["category_id"] = 12
    ann.write_text(json.dumps(doc))
    problems = check_dataset("coco", str(root))
    _assert_one_line(problems)
    text = "\n".join(str(p) for p in problems)
    assert "3 of 17 image entries are malformed" in text
    assert "'id' must be an int, got str" in text
    assert "annotation entries are malformed" in text and "'bbox' must be 4 numbers" in text
    assert f"{orphans} annotations refer to image ids that are not in 'images'" in text
    assert "category ids not in 'categories' (first: 12)" in text

    doc = _load(root / "annotations" / "instances_train2017.json")
    doc["annotations"] = []
    (root / "annotations" / "instances_train2017.json").write_text(json.dumps(doc))
    problems = check_dataset("coco", str(root), split="train")
    assert len(problems) == 1 and "has no annotations" in problems[0].message

    for key, value in (("images", {"a": 1}), ("categories", None)):
        broken = dict(doc, **{key: value})
        (root / "annotations" / "instances_train2017.json").write_text(json.dumps(broken))
        (p,) = check_dataset("coco", str(root), split="train")
        assert "missing or non-list key(s): " + key in p.message


def test_coco_num_classes_and_image_problems(copy_of):
    root = copy_of("coco")
    problems = check_dataset("coco", str(root), num_classes=4)
    (p,) = problems
    assert "80 categories but num_classes is 4" in p.message and "num_classes: 80" in p.fix
    doc = _load(root / "annotations" / "instances_val2017.json")
    img = root / "val2017" / doc["images"][0]["file_name"]
    img.write_bytes(b"\xff\xd8\xff\xe0 garbage")
    doc["images"][1]["width"] += 10
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(doc))
    problems = check_dataset("coco", str(root), split="val")
    assert len(problems) == 2
    assert "cannot decode" in _only(problems, img.name)[0].message
    assert "but the annotation file says" in _only(problems, doc["images"][1]["file_name"])[0].message


# ---------------------------------------------------------------- misc

def test_bad_data_dir_and_arguments(tmp_path, capsys):
    (p,) = check_dataset("coco", str(tmp_path / "nope"))
    assert "does not exist" in p.message and "src.datasets.demo" in p.fix
    f = tmp_path / "file"
    f.write_text("x")
    (p,) = check_dataset("imagenet", str(f))
    assert "is a file" in p.message
    with pytest.raises(DataError, match="unknown dataset 'mnist'"):
        check_dataset("mnist", str(tmp_path))
    with pytest.raises(DataError, match="unknown split"):
        check_dataset("coco", str(tmp_path), split="dev")
    assert main(["--dataset", "cifar10", "--data_dir", str(f)]) == 1
    assert capsys.readouterr().out.startswith(f"problem: {f}: data_dir is a file")


def test_require_valid_dataset(demo_data, copy_of):
    assert require_valid_dataset("cifar10", str(demo_data["cifar10"])).ok
    root = copy_of("imagenet")
    shutil.rmtree(root / "val" / "n01440764")
    shutil.rmtree(root / "val" / "n01443537")
    with pytest.raises(DataError) as err:
        require_valid_dataset("imagenet", str(root))
    msg = str(err.value)
    assert "\n" not in msg and "n01440764" in msg and "1 more" in msg


# ---------------------------------------------------------------- data against the config,
# before any work (issue 15): entry points refuse with one line and write nothing

_LAUNCHER_ENV = ("MS_WORKER_NUM", "OMPI_COMM_WORLD_SIZE", "RANK_TABLE_FILE", "RANK_SIZE",
                 "RANK_ID", "MS_ROLE", "MS_SCHED_HOST", "MS_SCHED_PORT", "DEVICE_ID")
CONFIGS = {"cifar10": "config/demo.yaml", "imagenet": "config/tinydarknet_imagenet.yaml",
           "coco": "config/yolov3_tiny_coco.yaml"}


def _tree(path):
    """``{relative path: bytes}`` of every file under ``path``."""
    path = Path(path)
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file()}


def _refused(kind, data_dir, tmp_path, *flags, script="train.py"):
    """Run ``script`` on ``data_dir``; check one error line, rc 2, nothing written; return it."""
    out = tmp_path / "out"
    earlier = out / "earlier_run" / "train.log"
    earlier.parent.mkdir(parents=True, exist_ok=True)
    earlier.write_text("an earlier run's log\n")
    before_out, before_data = _tree(out), _tree(data_dir)
    env = {k: v for k, v in os.environ.items() if k not in _LAUNCHER_ENV}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, script, f"--config_path={CONFIGS[kind]}",
                           f"--data_dir={data_dir}", "--data.demo=False", f"--output_dir={out}",
                           "--epochs=1", *flags], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    both = proc.stdout + proc.stderr
    assert proc.returncode == 2, both[-3000:]
    assert "Traceback" not in both, both[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, both[-3000:]
    assert _tree(out) == before_out, "the refused run wrote into the output folder"
    assert _tree(data_dir) == before_data, "the refused run changed the data"
    return lines[0]


def test_train_refuses_imagenet_class_count_and_val_folders(copy_of, tmp_path):
    root = copy_of("imagenet")
    for name in ("n09999998", "n09999999"):  # 12 class folders in train/ and val/
        for split in ("train", "val"):
            shutil.copytree(root / split / "n01440764", root / split / name)
    line = _refused("imagenet", root, tmp_path, "--num_classes=10")
    assert f"{root / 'train'}: has 12 class folders but num_classes is 10" in line
    assert "--num_classes=12" in line

    shutil.rmtree(root / "val" / "n09999999")  # every later label would shift by one
    line = _refused("imagenet", root, tmp_path, "--num_classes=12")
    assert f"{root / 'val' / 'n09999999'}: class folder missing from val/" in line


def test_empty_val_class_folders_refused_before_training_and_evaluation(copy_of, tmp_path):
    root = copy_of("imagenet")
    for folder in ("n01440764", "n01443537"):
        for image in (root / "val" / folder).iterdir():
            image.unlink()
    line = _refused("imagenet", root, tmp_path, "--num_classes=10",
                    "--checkpoint.eval_every_epochs=1")
    assert f"{root / 'val' / 'n01440764'}: class folder has no images" in line and "1 more" in line
    ckpt = tmp_path / "any.ckpt"
    ckpt.write_bytes(b"never read: the data is checked first")
    line = _refused("imagenet", root, tmp_path, "--num_classes=10", f"--checkpoint_path={ckpt}",
                    script="eval.py")
    assert "n01440764: class folder has no images" in line


def test_train_refuses_cifar_class_count_truncated_and_zero_filled_batches(copy_of, tmp_path):
    root = copy_of("cifar10")
    line = _refused("cifar10", root, tmp_path, "--num_classes=5")
    assert "num_classes is 5 but CIFAR-10 has 10 classes" in line and "--num_classes=10" in line

    test_batch = root / "cifar-10-verify-bin" / "test_batch.bin"
    good = test_batch.read_bytes()
    test_batch.write_bytes(good[:-1000])  # found before the first epoch, not after it
    line = _refused("cifar10", root, tmp_path)
    assert f"{test_batch}: file is {len(good) - 1000} bytes, not a multiple of 3073" in line
    test_batch.write_bytes(good)

    batch = root / "cifar-10-batches-bin" / "data_batch_2.bin"
    batch.write_bytes(bytes(batch.stat().st_size))
    line = _refused("cifar10", root, tmp_path)
    assert f"{batch}: all 100 records are blank images (every pixel 0)" in line


def test_zero_filled_and_oversized_batches_in_the_check(copy_of):
    root = copy_of("cifar10")
    batches = root / "cifar-10-batches-bin"
    (batches / "data_batch_1.bin").write_bytes(bytes(3073 * 10001))
    (p,) = check_dataset("cifar10", str(root))
    assert p.path == str(batches / "data_batch_1.bin")
    assert "all 10001 records are blank images" in p.message and "cifar-10-binary" in p.fix
    big = np.random.default_rng(0).integers(0, 256, (10001, 3073), dtype=np.uint8)
    big[:, 0] %= 10
    big[5, 1:] = 0  # one blank record among real ones: a warning, counted
    (batches / "data_batch_1.bin").write_bytes(big.tobytes())
    report = inspect_dataset("cifar10", str(root))
    assert report.ok, report.problems
    notes = " | ".join(report.notes)
    assert "1 of 10001 records are blank images" in notes
    # 4 demo files of 100 records, 1 of 10001, 1 test file of 200: each counted once.
    assert "of 6 batch file(s), 5 hold fewer and 1 hold more than 10000 records" in notes
    assert "train 10401 records in 5 files" in report.summary


def _coco_doc(root, split="train2017"):
    return json.loads((root / "annotations" / f"instances_{split}.json").read_text())


def _write_coco_doc(root, doc, split="train2017"):
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(doc))


def test_train_refuses_undefined_and_duplicated_coco_category_ids(copy_of, tmp_path):
    root = copy_of("coco")
    doc = _coco_doc(root)
    doc["annotations"][3]["category_id"] = 12  # not a COCO 2017 category
    _write_coco_doc(root, doc)
    line = _refused("coco", root, tmp_path)
    assert "instances_train2017.json: 1 annotations use category ids not in 'categories' " \
           "(first: 12)" in line
    doc = _coco_doc(root)
    doc["annotations"][3]["category_id"] = 1
    doc["categories"].append(dict(doc["categories"][5]))
    _write_coco_doc(root, doc)
    line = _refused("coco", root, tmp_path)
    assert "1 duplicated category id(s) (first: id 6 in categories[5] and categories[80])" in line


def test_boxes_outside_their_images_are_counted_and_refused_when_all_are(copy_of, tmp_path):
    from src.config import load_config
    from src.datasets.check import check_data_or_raise, validate_for_config
    from src.datasets.coco import CocoDetectionReader

    root = copy_of("coco")
    doc = _coco_doc(root)
    widths = {i["id"]: i["width"] for i in doc["images"]}
    first = doc["annotations"][0]
    first["bbox"][0] = widths[first["image_id"]] + 5  # wholly right of its image
    _write_coco_doc(root, doc)
    cfg = load_config(CONFIGS["coco"], overrides=[("data.dir", str(root))])
    usable = sum(1 for a in doc["annotations"]
                 if a["iscrowd"] == 0 and a["bbox"][2] > 1 and a["bbox"][3] > 1)
    found = validate_for_config(cfg, ("train",))
    assert not [p for p in found if p.is_error]
    (outside,) = [p for p in found if "wholly outside" in p.message]
    assert outside.message.startswith(f"1 of {usable} boxes lie wholly outside their image "
                                      f"(first: annotation id {first['id']} ")
    assert outside.message.endswith("they are ignored")
    printed = []  # entry points print the warning, not the check-only notes
    check_data_or_raise(cfg, ("train",), warn=printed.append)
    assert printed == [str(outside)] and printed[0].startswith("warning: ")
    reader = CocoDetectionReader(str(root / "train2017"),
                                 str(root / "annotations" / "instances_train2017.json"), True)
    assert sum(len(r.boxes) for r in reader.records) == usable - 1

    for ann in doc["annotations"]:
        ann["bbox"][1] = -ann["bbox"][3] - 10  # every box above its image
    _write_coco_doc(root, doc)
    line = _refused("coco", root, tmp_path)
    assert "boxes lie wholly outside their image" in line
    assert "there is nothing to learn from or score" in line


def test_zero_byte_coco_training_image_is_one_line_naming_it(copy_of, tmp_path):
    root = copy_of("coco")
    victim = root / "train2017" / _coco_doc(root)["images"][4]["file_name"]
    victim.write_bytes(b"")
    line = _refused("coco", root, tmp_path)
    assert line == (f"error: {victim}: zero-byte image file; fix: replace it from train2017.zip "
                    f"or remove its entry from instances_train2017.json")
    from src.datasets.coco import read_rgb
    with pytest.raises(DataError, match=f"{victim}: zero-byte image file"):
        read_rgb(str(victim))


def _jpeg_claiming_size(path, width, height):
    """A small JPEG whose header (SOF0) says ``width`` x ``height``."""
    from PIL import Image
    import io

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 120, 30)).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    path.write_bytes(bytes(data))


def test_huge_jpeg_is_too_large_not_undecodable(copy_of):
    from src.datasets.coco import read_rgb
    from src.datasets.common import decode_pixel_limit

    root = copy_of("imagenet")
    huge = root / "train" / "n01440764" / "huge.JPEG"
    _jpeg_claiming_size(huge, 20000, 20000)
    assert inspect_dataset("imagenet", str(root), 10, full=False).ok  # no decode in the cheap check
    (p,) = check_dataset("imagenet", str(root), 10)
    assert p.path == str(huge) and "cannot decode" not in p.message
    assert (f"image is 20000x20000 = 400000000 pixels, more than the decoder's limit of "
            f"{decode_pixel_limit()} pixels") in p.message
    with pytest.raises(DataError, match=f"larger than the decoder's limit of {decode_pixel_limit()}"):
        read_rgb(str(huge))


def test_check_quick_mode_decodes_nothing(demo_data):
    proc = _cli("--dataset", "coco", "--data_dir", demo_data["coco"], "--quick")
    assert proc.returncode == 0 and "images decoded" not in proc.stdout, proc.stdout + proc.stderr


def test_eval_only_runs_compare_val_classes_with_train(copy_of):
    from src.config import load_config
    from src.datasets.check import validate_for_config

    root = copy_of("imagenet")
    cfg = load_config(CONFIGS["imagenet"], overrides=[("data.dir", str(root)), ("num_classes", 10)])
    assert validate_for_config(cfg, ("eval",)) == []
    shutil.rmtree(root / "val" / "n01443537")
    (p,) = validate_for_config(cfg, ("eval",))
    assert p.is_error and p.path == str(root / "val" / "n01443537")
    assert "class folder missing from val/" in p.message
    # A train folder that is itself broken is not this run's problem: nothing to compare with.
    for image in (root / "train" / "n01440764").iterdir():
        image.unlink()
    found = validate_for_config(cfg, ("eval",))
    assert not any(p.path.startswith(str(root / "train")) for p in found), found
