"""Tests for src.datasets.check on the demo sets and on deliberately broken copies."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

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
