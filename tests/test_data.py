"""Datasets: ImageFolder, JSONL manifests, HF datasets on disk, class names, duplicates, bad input."""
import json

import numpy as np
import pytest
from PIL import Image

import vlmprobe
from vlmprobe.data import apply_duplicate_policy, load_templates, read_classnames
from vlmprobe.errors import DataError


def write_manifest(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_image_folder_classes_and_rgb(digits_folder):
    ds = vlmprobe.load_dataset(str(digits_folder))
    assert ds.classnames == sorted(p.name for p in digits_folder.iterdir())
    assert len(ds) == 40
    for i in range(4):  # RGB, L, RGBA, P sources all come back RGB
        img = ds.load_image(i)
        assert img.mode == "RGB" and img.size == (32, 32)
    assert all(ds.classnames[s.label] in s.image for s in ds.samples)


def test_manifest_relative_paths_split_and_meta(tmp_path, digits_folder):
    imgs = sorted(digits_folder.rglob("*.png"))[:6]
    (tmp_path / "imgs").mkdir()
    rows = []
    for k, p in enumerate(imgs):
        (tmp_path / "imgs" / p.name).write_bytes(p.read_bytes())
        rows.append({"image": f"./imgs/{p.name}", "label": p.parent.name, "split": "test" if k % 2 else "train",
                     "group": "common" if k < 3 else "counter"})
    man = write_manifest(tmp_path / "m.jsonl", rows)
    ds = vlmprobe.load_dataset(str(man), split="test")
    assert len(ds) == 3 and all(s.meta["split"] == "test" for s in ds.samples)
    assert ds.load_image(0).mode == "RGB"
    assert {s.meta["group"] for s in ds.samples} == {"common", "counter"}
    with pytest.raises(DataError, match="no rows with split 'val'"):
        vlmprobe.load_dataset(str(man), split="val")


def test_limit_is_seeded_and_ordered(digits_folder):
    a = vlmprobe.load_dataset(str(digits_folder), limit=10, seed=3)
    b = vlmprobe.load_dataset(str(digits_folder), limit=10, seed=3)
    c = vlmprobe.load_dataset(str(digits_folder), limit=10, seed=4)
    ids = [s.id for s in a.samples]
    assert ids == [s.id for s in b.samples] and ids != [s.id for s in c.samples]
    full = [s.id for s in vlmprobe.load_dataset(str(digits_folder)).samples]
    assert ids == [i for i in full if i in set(ids)]  # dataset order kept


def test_bad_manifest_lines_name_file_and_line(tmp_path):
    man = tmp_path / "bad.jsonl"
    man.write_text('{"image": "a.png", "label": "cat"}\n{"image": "b.png"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: missing field 'label'"):
        vlmprobe.load_dataset(str(man))
    man.write_text('{"image": "a.png", "label": "cat"}\nnot json\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: not valid JSON"):
        vlmprobe.load_dataset(str(man))
    with pytest.raises(DataError, match="does not exist"):
        vlmprobe.load_dataset(str(tmp_path / "missing.jsonl"))


def test_label_outside_class_list_is_an_error(tmp_path):
    man = write_manifest(tmp_path / "m.jsonl", [{"image": "a.png", "label": "zebra"}])
    classes = tmp_path / "classes.json"
    classes.write_text(json.dumps(["cat", "dog"]))
    with pytest.raises(DataError, match="'zebra'.*not in class list"):
        vlmprobe.load_dataset(str(man), classes=str(classes))


def test_duplicate_policy_imagenet():
    names = read_classnames("imagenet")
    assert len(names) == 1000 and len(set(names)) == 998
    merged, remap, dups = apply_duplicate_policy(names, "merge")
    assert len(merged) == 998 and set(dups) == {"missile", "sunglasses"}
    assert remap[dups["missile"][0]] == remap[dups["missile"][1]]
    kept, remap_keep, _ = apply_duplicate_policy(names, "keep")
    assert kept == names and remap_keep == list(range(1000))
    with pytest.raises(DataError, match="duplicate class names"):
        apply_duplicate_policy(names, "error")


def test_duplicate_names_merge_relabels_samples(tmp_path, digits_folder):
    classes = tmp_path / "c.json"
    names = sorted(p.name for p in digits_folder.iterdir())
    names[1] = names[0]  # two folders map to the same name
    classes.write_text(json.dumps(names))
    ds = vlmprobe.load_dataset(str(digits_folder), classes=str(classes))
    assert len(ds.classnames) == 9 and ds.info["duplicate_names"]["groups"] == {names[0]: [0, 1]}


def test_reference_class_lists(reference_dir):
    for name, n in [("imagenet_classes.json", 1000), ("flowers_classes.json", 102), ("cars_classes.json", 196),
                    ("caltech_classes.json", 100)]:
        assert len(read_classnames(str(reference_dir / name))) == n
    assert read_classnames(str(reference_dir / "imagenet_classes.json")) == read_classnames("imagenet")


def test_reference_manifest_format(reference_dir):
    ds = vlmprobe.load_dataset(str(reference_dir / "flowers.jsonl"), split="test",
                               classes=str(reference_dir / "flowers_classes.json"))
    assert len(ds) == 6149 and len(ds.classnames) == 102
    assert ds.samples[0].image.endswith("image_00001.jpg")


def test_templates(tmp_path):
    assert load_templates("single") == ["a photo of a {}."]
    assert len(load_templates("imagenet")) == 80
    f = tmp_path / "t.txt"
    f.write_text("a {} photo\nno placeholder\n")
    with pytest.raises(DataError, match="exactly one"):
        load_templates(str(f))


def test_hf_datasets_on_disk(tmp_path):
    datasets = pytest.importorskip("datasets")
    imgs = [Image.fromarray(np.full((8, 8), v, np.uint8)) for v in (0, 128, 255)]
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["dark", "light"])})
    d = datasets.Dataset.from_dict({"image": imgs, "label": [0, 1, 1]}, features=feats)
    datasets.DatasetDict({"test": d}).save_to_disk(str(tmp_path / "hf"))
    ds = vlmprobe.load_dataset(f"hfds:{tmp_path / 'hf'}", split="test")
    assert ds.classnames == ["dark", "light"] and len(ds) == 3
    assert ds.load_image(2).mode == "RGB"
    with pytest.raises(DataError, match="choose --split"):
        vlmprobe.load_dataset(f"hfds:{tmp_path / 'hf'}")


def test_unlabeled_images_need_a_class_list(tmp_path, digits_folder):
    classes = tmp_path / "c.json"
    classes.write_text(json.dumps(sorted(p.name for p in digits_folder.iterdir())))
    ds = vlmprobe.load_dataset(str(digits_folder), classes=str(classes), unlabeled=True)
    assert not ds.labeled and {s.label for s in ds.samples} == {-1} and len(ds.classnames) == 10
    man = write_manifest(tmp_path / "ood.jsonl", [{"image": str(p)} for p in sorted(digits_folder.rglob("*.png"))[:3]])
    ood = vlmprobe.load_dataset(str(man), classes=str(classes), unlabeled=True)
    assert len(ood) == 3 and ood.info["unlabeled"] and ood.load_image(0).mode == "RGB"
    with pytest.raises(DataError, match="needs --classes"):
        vlmprobe.load_dataset(str(man), unlabeled=True)
    with pytest.raises(DataError, match="missing field 'label'"):
        vlmprobe.load_dataset(str(man), classes=str(classes))
