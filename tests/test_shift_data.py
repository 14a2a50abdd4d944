"""Readers of the distribution-shift, corruption and OOD test sets, each on a synthetic tree
with the released layout (folder and file names included)."""
import json

import numpy as np
import pytest

from vlmprobe import load_dataset
from vlmprobe.data.imagenet import synsets
from vlmprobe.data.imagenet_shifts import subset_synsets
from vlmprobe.errors import DataError


def _img(path, seed=0, size=(6, 6)):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 255, size=(*size, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)


def test_imagenet_v2_numeric_folders_are_int_class_indices(tmp_path):
    root = tmp_path / "imagenetv2-matched-frequency-format-val"
    for c in (2, 10, 100, 999):
        _img(root / str(c) / "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567.jpeg", c)
    ds = load_dataset(f"imagenet-v2:{root}", duplicate_names="keep")
    by_folder = {s.id.split("/")[0]: s.label for s in ds.samples}
    assert by_folder == {"2": 2, "10": 10, "100": 100, "999": 999}
    # what a string sort of the folder names would have given (ImageNetV2 issue #10): different and wrong
    string_sorted = {name: i for i, name in enumerate(sorted(by_folder))}
    assert string_sorted != by_folder and string_sorted["10"] == 0
    assert ds.classnames[by_folder["999"]] == "toilet paper"
    # the parent folder of the variants needs --split
    with pytest.raises(DataError, match="--split"):
        load_dataset(f"imagenet-v2:{tmp_path}")
    assert len(load_dataset(f"imagenet-v2:{tmp_path}", split="matched-frequency")) == 4
    _img(root / "1000" / "x.jpeg")
    with pytest.raises(DataError, match="1000.*0..999"):
        load_dataset(f"imagenet-v2:{root}")


def test_imagenet_sketch_wnid_folders(tmp_path):
    w = synsets()
    for i in (0, 500):
        _img(tmp_path / "sketch" / w[i] / "sketch_1.JPEG", i)
    ds = load_dataset(f"imagenet-sketch:{tmp_path}", duplicate_names="keep")
    assert sorted(ds.labels().tolist()) == [0, 500] and ds.info["format"] == "imagenet-sketch"


@pytest.mark.parametrize("name", ["r", "a"])
def test_imagenet_r_a_200_classes_from_timm(tmp_path, name):
    wnids, indices = subset_synsets(name)
    assert len(wnids) == 200 and len(set(indices)) == 200
    root = tmp_path / f"imagenet-{name}"
    for j in (0, 199):  # R: <rendition>_<n>.jpg; A: <score>_<label> _ <label>_<score>.jpg (spaces included)
        _img(root / wnids[j] / (f"art_{j}.jpg" if name == "r" else f"0.000116_digital clock _ digital clock_0.86{j}.jpg"), j)
    (root / "README.txt").write_text("\n".join(f"{w} name" for w in wnids))
    ds = load_dataset(f"imagenet-{name}:{tmp_path}", duplicate_names="keep")
    assert sorted(ds.labels().tolist()) == sorted([indices[0], indices[199]])
    assert ds.info["class_subset"] == sorted(indices) and len(ds.classnames) == 1000
    # under the default merge of ImageNet's duplicate names, the subset follows the labels
    merged = load_dataset(f"imagenet-{name}:{root}")
    assert all(s.label in merged.info["class_subset"] for s in merged.samples)
    assert len(merged.info["class_subset"]) == 200
    bad = [x for x in synsets() if x not in set(wnids)][0]
    _img(root / bad / "x.jpg")
    with pytest.raises(DataError, match=f"{bad}.*200 WordNet ids of ImageNet-{name.upper()}"):
        load_dataset(f"imagenet-{name}:{root}")


def test_imagenet_o_is_ood_without_unlabeled_flag(tmp_path):
    w = synsets()
    _img(tmp_path / "imagenet-o" / w[3] / "a.jpg")
    ds = load_dataset(f"imagenet-o:{tmp_path}")
    assert ds.labels().tolist() == [-1] and ds.info["ood"] and len(ds.classnames) == 998


@pytest.mark.parametrize("prefix,corruptions", [("imagenet-c", ["gaussian_noise", "fog"]),
                                                ("imagenet-3dcc", ["near_focus", "h265_crf"])])
def test_corruption_layout_and_selection(tmp_path, prefix, corruptions):
    w = synsets()
    for c in corruptions:
        for s in (1, 5):
            _img(tmp_path / c / str(s) / w[7] / "ILSVRC2012_val_00000001.JPEG")
    ds = load_dataset(f"{prefix}:{tmp_path}")
    assert len(ds) == 4 and {s.meta["corruption"] for s in ds.samples} == set(corruptions)
    assert len({s.id for s in ds.samples}) == 4 and all(s.label == 7 for s in ds.samples)
    one = load_dataset(f"{prefix}:{tmp_path}", corruption=corruptions[0], severity="5")
    assert [(s.meta["corruption"], s.meta["severity"]) for s in one.samples] == [(corruptions[0], 5)]
    with pytest.raises(DataError, match="--severity '3' not found"):
        load_dataset(f"{prefix}:{tmp_path}", severity="3")
    _img(tmp_path / corruptions[0] / "6" / w[7] / "x.JPEG")
    with pytest.raises(DataError, match="severity folders are named 1..5"):
        load_dataset(f"{prefix}:{tmp_path}")


def _objectnet(tmp_path):
    root = tmp_path / "objectnet-1.0"
    m = root / "mappings"
    m.mkdir(parents=True)
    # the release's four mapping files, in their shapes: ImageNet label lines are in the 2012 id
    # order, which is not the class-index order (pytorch_to_imagenet_2012_id maps index -> line)
    lines = ["Band Aid", "tench, Tinca tinca", "goldfish, Carassius auratus", "banana"]
    (m / "imagenet_to_label_2012_v2").write_text("\n".join(lines) + "\n")
    (m / "pytorch_to_imagenet_2012_id.json").write_text(json.dumps({"0": 1, "1": 2, "419": 0, "954": 3}))
    (m / "folder_to_objectnet_label.json").write_text(json.dumps(
        {"band_aid": "Band-Aid", "fish_tank": "Fish", "banana": "Banana", "air_freshener": "Air freshener"}))
    (m / "objectnet_to_imagenet_1k.json").write_text(json.dumps(
        {"Band-Aid": "Band Aid", "Fish": "tench, Tinca tinca; goldfish, Carassius auratus", "Banana": "banana"}))
    for folder in ("band_aid", "fish_tank", "banana", "air_freshener"):
        _img(root / "images" / folder / "0a1b.png", size=(5, 7))
    return tmp_path


def test_objectnet_both_protocols_and_border_crop(tmp_path):
    root = _objectnet(tmp_path)
    ds = load_dataset(f"objectnet:{root}", duplicate_names="keep")
    by = {s.meta["objectnet_class"]: s for s in ds.samples}
    assert set(by) == {"Band-Aid", "Fish", "Banana"}  # air freshener: no ImageNet counterpart
    assert by["Fish"].meta["label_set"] == [0, 1] and by["Band-Aid"].label == 419 and by["Banana"].label == 954
    assert ds.info["class_subset"] == [0, 1, 419, 954]
    assert ds.load_image(0).size == (5, 3)  # 7x5 image, 1-pixel border cropped
    names = load_dataset(f"objectnet:{root}", split="names")
    assert names.classnames == ["Banana", "Band-Aid", "Fish"]  # sorted (code points)
    assert {s.meta["objectnet_class"]: s.label for s in names.samples} == {"Banana": 0, "Band-Aid": 1, "Fish": 2}
    (root / "objectnet-1.0" / "mappings" / "objectnet_to_imagenet_1k.json").write_text(json.dumps({"Fish": "trout"}))
    with pytest.raises(DataError, match="'Fish' maps to 'trout'"):
        load_dataset(f"objectnet:{root}")


@pytest.mark.parametrize("prefix,layout", [("inaturalist", "iNaturalist/images/a.jpg"), ("sun", "SUN/images/a.jpg"),
                                           ("places", "Places/images/a.jpg"),
                                           ("textures", "dtd/images/banded/banded_0002.jpg")])
def test_ood_suites_released_layout(tmp_path, prefix, layout):
    _img(tmp_path / layout)
    ds = load_dataset(f"{prefix}:{tmp_path}")
    assert ds.labels().tolist() == [-1] and ds.info["ood"] and len(ds.classnames) == 998
    top = layout.split("/")[0]
    assert len(load_dataset(f"{prefix}:{tmp_path / top}")) == 1
    with pytest.raises(DataError, match=f"no {top}/images"):
        load_dataset(f"{prefix}:{tmp_path / 'nothing'}")


def test_ninco_subsets(tmp_path):
    _img(tmp_path / "NINCO_OOD_classes" / "caracal" / "inat_1.jpg")
    _img(tmp_path / "NINCO_OOD_classes" / "stingray" / "x.jpg")
    _img(tmp_path / "NINCO_OOD_unit_tests" / "Gaussian_noise" / "1.png")
    _img(tmp_path / "NINCO_popular_datasets_subsamples" / "SSB_hard" / "1.jpg")
    ds = load_dataset(f"ninco:{tmp_path}")
    assert [s.meta["ninco_group"] for s in ds.samples] == ["caracal", "stingray"]
    assert len(load_dataset(f"ninco:{tmp_path}", split="unit-tests")) == 1
    assert load_dataset(f"ninco:{tmp_path}", split="popular").samples[0].meta["ninco_group"] == "SSB_hard"
    with pytest.raises(DataError, match="NINCO subsets"):
        load_dataset(f"ninco:{tmp_path}", split="bogus")


def test_ninco_released_csv_file_lists(tmp_path):
    """The release's file lists (j-cb/NINCO data/*.csv, header ``image_location,class``, locations
    relative to the NINCO folder) decide the samples and groups; an unlisted stray file is not read."""
    ninco = tmp_path / "NINCO"
    listed = {"NINCO_OOD_classes": [("Caracal caracal caracal/Caracal caracal caracal_000_000-10896690.jpg",
                                     "Caracal caracal caracal"),
                                    ("amphiuma_means/amphiuma_means_000_10045958.jpeg", "amphiuma_means")],
              "NINCO_OOD_unit_tests": [("uni/uni_000_uni_00112.png", "uni")],
              "NINCO_popular_datasets_subsamples": [("Places/Places_000_b_badlands_00000792.jpg", "Places")]}
    for subset, rows in listed.items():
        for i, (loc, _) in enumerate(rows):
            _img(ninco / subset / loc, i)
        (tmp_path / "data").mkdir(exist_ok=True)
        (tmp_path / "data" / f"{subset}.csv").write_text(
            "image_location,class\n" + "".join(f"{subset}/{loc},{cls}\n" for loc, cls in rows))
    _img(ninco / "NINCO_OOD_classes" / "amphiuma_means" / "stray_not_listed.jpg", 9)
    ds = load_dataset(f"ninco:{tmp_path}")
    assert [(s.id, s.meta["ninco_group"]) for s in ds.samples] == listed["NINCO_OOD_classes"]
    assert all(s.label == -1 for s in ds.samples) and ds.info["file_list"] == "NINCO_OOD_classes.csv"
    assert [s.meta["ninco_group"] for s in load_dataset(f"ninco:{tmp_path}", split="unit-tests").samples] == ["uni"]
    assert load_dataset(f"ninco:{tmp_path}", split="popular").samples[0].meta["ninco_group"] == "Places"
    (ninco / "NINCO_OOD_unit_tests" / "uni" / "uni_000_uni_00112.png").unlink()
    with pytest.raises(DataError, match=r"NINCO_OOD_unit_tests.csv row 2: image .*uni_000_uni_00112.png"):
        load_dataset(f"ninco:{tmp_path}", split="unit-tests")


def test_corrupt_on_the_fly_is_the_package_seeded_per_sample(tmp_path):
    """``--corrupt``: Resize 256 + CenterCrop 224 (capped for small images), then the
    imagecorruptions package with numpy's global RNG seeded per sample id (state restored)."""
    from vlmprobe.data.corrupt import corrupt_image, corrupted, corruptions_module, resize_crop, sample_seed

    imagecorruptions = corruptions_module()  # the package, imported through the compat shims

    for c in range(2):
        for j in range(2):
            _img(tmp_path / "digits" / f"c{c}" / f"{j}.png", 10 * c + j, size=(40, 48))
    clean = load_dataset(str(tmp_path / "digits"))
    ds = load_dataset(str(tmp_path / "digits"), corrupt="gaussian_noise:5", seed=3)
    assert ds.info["corrupt"]["name"] == "gaussian_noise" and ds.samples[0].meta["severity"] == 5
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a = np.asarray(ds.load_image(1))
    assert np.array_equal(np.random.get_state()[1], before)  # global RNG state restored
    # the same pixels as the package itself, seeded the documented way
    base = np.asarray(resize_crop(clean.load_image(1)))
    assert base.shape == (40, 40, 3)
    np.random.seed(sample_seed(3, ds.samples[1].id))
    ref = imagecorruptions.corrupt(np.ascontiguousarray(base), severity=5, corruption_name="gaussian_noise")
    assert np.array_equal(a, ref)
    assert np.array_equal(a, np.asarray(ds.load_image(1)))  # same sample -> same corruption
    assert not np.array_equal(a, np.asarray(corrupt_image(resize_crop(clean.load_image(1)), "gaussian_noise", 5, 4)))
    assert not np.array_equal(a, base)
    with pytest.raises(DataError, match="unknown corruption 'fogg'"):
        corrupted(clean, "fogg:1")
    with pytest.raises(DataError, match="severity 1..5"):
        load_dataset(str(tmp_path / "digits"), corrupt="fog:6")


def test_toy_shifted_sets_layout_and_determinism(tmp_path):
    """toy:sketch / toy:rendition / toy:corrupted: test digits per class, written once,
    byte-identical on a rebuild, corrupted samples naming their corruption."""
    from vlmprobe.toy.digits import CLASSNAMES
    from vlmprobe.toy.shifted import CORRUPTIONS, ShiftedConfig, build_shifted

    from PIL import Image

    a = build_shifted(ShiftedConfig(per_class=1), tmp_path / "a")
    b = build_shifted(ShiftedConfig(per_class=1), tmp_path / "b")
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert len(files) == 3 * len(CLASSNAMES)
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    corrupted = [f for f in files if f.parts[0] == "corrupted"]
    assert {f.parts[1] for f in corrupted} == set(CORRUPTIONS) and {f.parts[2] for f in corrupted} == {"3"}
    assert {f.parts[-2] for f in files} == set(CLASSNAMES)
    assert np.asarray(Image.open(a / next(f for f in files if f.parts[0] == "sketch"))).shape == (32, 32, 3)
    ds = load_dataset("toy:corrupted")
    assert len(ds) == 100 and ds.classnames == CLASSNAMES and ds.samples[0].meta["severity"] == 3
    assert ds.labels().tolist() == [CLASSNAMES.index(s.id.split("/")[-2]) for s in ds.samples]


# ---------------------------------------------------------------- the paper's other three datasets

def test_flowers102_setid_split_and_names_from_classes(tmp_path):
    from scipy.io import savemat

    for i in range(1, 7):
        _img(tmp_path / "jpg" / f"image_{i:05d}.jpg", i)
    savemat(tmp_path / "imagelabels.mat", {"labels": np.array([[3, 1, 2, 3, 1, 2]])})
    savemat(tmp_path / "setid.mat", {"trnid": np.array([[1, 2]]), "valid": np.array([[3]]),
                                     "tstid": np.array([[6, 4, 5]])})
    ds = load_dataset(f"flowers102:{tmp_path}")
    assert [s.id for s in ds.samples] == ["image_00004.jpg", "image_00005.jpg", "image_00006.jpg"]
    assert ds.labels().tolist() == [2, 0, 1] and ds.classnames == ["1", "2", "3"]
    (tmp_path / "names.json").write_text(json.dumps(["pink primrose", "sweet pea", "tiger lily"]))
    named = load_dataset(f"flowers102:{tmp_path}", classes=str(tmp_path / "names.json"))
    assert named.classnames[named.samples[0].label] == "tiger lily"
    assert len(load_dataset(f"flowers102:{tmp_path}", split="train")) == 2


def test_stanford_cars_devkit_and_paper_names(tmp_path, reference_dir):
    from scipy.io import savemat

    from vlmprobe.data.paper_sets import cars_name

    paper = json.loads((reference_dir / "cars_classes.json").read_text())
    devkit = [" ".join(n.split(" ")[1:] + n.split(" ")[:1]) for n in paper]  # the devkit puts the year last
    assert [cars_name(n) for n in devkit] == paper
    (tmp_path / "devkit").mkdir()
    savemat(tmp_path / "devkit" / "cars_meta.mat", {"class_names": np.array(devkit[:3], dtype=object)[None]})
    annos = np.array([("00002.jpg", 3), ("00001.jpg", 1)], dtype=[("fname", object), ("class", np.uint8)])
    savemat(tmp_path / "cars_test_annos_withlabels.mat", {"annotations": annos[None]})
    for f in ("00001.jpg", "00002.jpg"):
        _img(tmp_path / "cars_test" / f)
    ds = load_dataset(f"stanford-cars:{tmp_path}")
    assert ds.classnames == paper[:3] and [(s.id, s.label) for s in ds.samples] == [("00001.jpg", 0), ("00002.jpg", 2)]


def test_caltech101_folders_give_the_papers_100_classes(tmp_path, reference_dir):
    paper = json.loads((reference_dir / "caltech_classes.json").read_text())
    rows = [json.loads(x) for x in (reference_dir / "caltech.jsonl").read_text().splitlines()]
    folders = sorted({r["image"].split("/")[-2] for r in rows}) + ["BACKGROUND_Google"]
    for f in folders:
        _img(tmp_path / "caltech101" / "101_ObjectCategories" / f / "image_0001.jpg")
    ds = load_dataset(f"caltech101:{tmp_path}")
    assert ds.classnames == paper and len(ds) == len(folders) - 1  # background left out, Faces + Faces_easy = face
    assert {ds.classnames[s.label] for s in ds.samples if s.id.startswith("Faces")} == {"face"}
