"""ImageNet-scale data forms, each built here as real files: WordNet-id folders, the flat val
folder with the devkit ground truth (+ meta.mat) or a ``file label`` table, webdataset tar
shards, and a Hugging Face dataset loaded by path through ``datasets.load_dataset``."""
import io
import tarfile

import numpy as np
import pytest

from vlmprobe import load_dataset
from vlmprobe.data.imagenet import synsets
from vlmprobe.data.wds import expand_braces
from vlmprobe.errors import DataError


def _png(seed: int, size=(8, 8)):
    from PIL import Image

    arr = np.random.default_rng(seed).integers(0, 255, size=(*size, 3), dtype=np.uint8)
    return Image.fromarray(arr)


def _png_bytes(seed: int) -> bytes:
    buf = io.BytesIO()
    _png(seed).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def wnids():
    return synsets()


def test_synsets_are_imagenet_order(wnids):
    import open_clip

    assert len(wnids) == 1000 and wnids[0] == "n01440764" and wnids == sorted(wnids)
    assert len(open_clip.IMAGENET_CLASSNAMES) == 1000


def test_wnid_folders_map_through_timm_synsets(tmp_path, wnids):
    root = tmp_path / "val"
    picks = {wnids[0]: 0, wnids[1]: 1, wnids[999]: 999}
    for w in picks:
        (root / w).mkdir(parents=True)
        for j in range(2):
            _png(j).save(root / w / f"ILSVRC2012_val_{picks[w] * 2 + j + 1:08d}.JPEG", format="JPEG")
    for classes in (None, "imagenet"):  # plain DIR and the issue's `--data val/ --classes imagenet`
        ds = load_dataset(str(root), classes=classes)
        assert ds.info["format"] == "imagenet-wnid-folders"
        assert len(ds) == 6 and len(ds.classnames) == 998  # 1,000 names, two duplicates merged
        assert [ds.classnames[s.label] for s in ds.samples[::2]] == ["tench", "goldfish", "toilet paper"]
        assert ds.load_image(5).mode == "RGB"
    ds = load_dataset(str(root), duplicate_names="keep")
    assert sorted({s.label for s in ds.samples}) == [0, 1, 999]
    assert load_dataset(f"imagenet:{root}", duplicate_names="keep").labels().tolist() == ds.labels().tolist()
    (root / "n99999999").mkdir()
    with pytest.raises(DataError, match="n99999999.*not one of the ImageNet-1k"):
        load_dataset(str(root))


def _meta_mat(path, id_to_wnid: dict[int, str]):
    from scipy.io import savemat

    rows = [(i, w, f"words {w}", 0) for i, w in id_to_wnid.items()] + [(1001, "n00001740", "entity", 3)]
    arr = np.array(rows, dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")])
    savemat(str(path), {"synsets": arr})


@pytest.fixture
def flat_val(tmp_path, wnids):
    """6 flat val images; devkit data/ with meta.mat (ILSVRC2012_IDs in a shuffled order, as the
    real devkit's are not the sorted-WordNet-id order) and the 1-based ground truth."""
    val = tmp_path / "val"
    val.mkdir()
    perm = np.random.default_rng(0).permutation(1000)
    id_to_wnid = {k + 1: wnids[perm[k]] for k in range(1000)}  # ILSVRC2012_ID -> wnid
    devkit = tmp_path / "ILSVRC2012_devkit_t12" / "data"
    devkit.mkdir(parents=True)
    _meta_mat(devkit / "meta.mat", id_to_wnid)
    ids = [5, 1, 1000, 77, 5, 300]
    (devkit / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{i}\n" for i in ids))
    for n in range(1, 7):
        _png(n).save(val / f"ILSVRC2012_val_{n:08d}.JPEG", format="JPEG")
    expected = [wnids.index(id_to_wnid[i]) for i in ids]
    return val, devkit / "ILSVRC2012_validation_ground_truth.txt", expected


def test_flat_val_with_devkit_ground_truth(flat_val):
    val, gt, expected = flat_val
    for spec in (f"imagenet:{val}+labels:{gt}", f"{val}+labels:{gt}"):
        ds = load_dataset(spec, duplicate_names="keep")
        assert ds.labels().tolist() == expected
        assert [s.id for s in ds.samples] == [f"ILSVRC2012_val_{n:08d}.JPEG" for n in range(1, 7)]
        assert ds.info["label_source"] == "devkit ground truth + meta.mat"
    assert load_dataset(f"imagenet:{val}+labels:{gt}", limit=3, seed=1).load_image(0).size == (8, 8)


def test_devkit_errors_name_file_and_line(flat_val):
    val, gt, _ = flat_val
    gt.write_text("5\n1\n1234\n")
    with pytest.raises(DataError, match=r"ground_truth.txt:3: '1234' is not an ILSVRC2012_ID"):
        load_dataset(f"imagenet:{val}+labels:{gt}")
    gt.write_text("5\n1\n")
    with pytest.raises(DataError, match="image number 3 has no line"):
        load_dataset(f"imagenet:{val}+labels:{gt}")
    (gt.parent / "meta.mat").unlink()
    with pytest.raises(DataError, match="meta.mat"):
        load_dataset(f"imagenet:{val}+labels:{gt}")


def test_flat_val_with_label_table(flat_val, wnids):
    val, _, _ = flat_val
    table = val.parent / "labels.csv"
    table.write_text("file_name,label\nILSVRC2012_val_00000002.JPEG,n01440764\n"
                     "ILSVRC2012_val_00000001.JPEG,7\nILSVRC2012_val_00000003.JPEG,goldfish\n")
    ds = load_dataset(f"imagenet:{val}+labels:{table}", duplicate_names="keep")
    assert [(s.id, s.label) for s in ds.samples] == [("ILSVRC2012_val_00000001.JPEG", 7),
                                                     ("ILSVRC2012_val_00000002.JPEG", 0),
                                                     ("ILSVRC2012_val_00000003.JPEG", 1)]
    txt = val.parent / "labels.txt"
    txt.write_text("ILSVRC2012_val_00000004.JPEG n01443537\nILSVRC2012_val_00000009.JPEG 3\n")
    with pytest.raises(DataError, match=r"labels.txt:2: image 'ILSVRC2012_val_00000009.JPEG' not found"):
        load_dataset(f"imagenet:{val}+labels:{txt}")
    txt.write_text("ILSVRC2012_val_00000004.JPEG no-such-class\n")
    with pytest.raises(DataError, match=r"labels.txt:1: label 'no-such-class'"):
        load_dataset(f"imagenet:{val}+labels:{txt}")
    with pytest.raises(DataError, match="no WordNet-id folders"):
        load_dataset(f"imagenet:{val}")


def _shard(path, items, extra=()):
    with tarfile.open(path, "w") as tar:
        for key, seed, cls in items:
            for name, data in ((f"{key}.png", _png_bytes(seed)), (f"{key}.cls", f"{cls}\n".encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        for name, data in extra:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def wds_root(tmp_path):
    root = tmp_path / "wds_cifar"
    (root / "test").mkdir(parents=True)
    (root / "classnames.txt").write_text("cat\ndog\nbird\n")
    _shard(root / "test" / "shard-000000.tar", [("s0000", 0, 2), ("s0001", 1, 0)])
    _shard(root / "test" / "shard-000001.tar", [("s0002", 2, 1), ("s0003", 3, 1)])
    return root


def test_brace_expansion():
    assert expand_braces("a-{000..002}.tar") == ["a-000.tar", "a-001.tar", "a-002.tar"]
    assert expand_braces("{x,y}/s{8..10}.tar") == ["x/s8.tar", "x/s9.tar", "x/s10.tar", "y/s8.tar", "y/s9.tar",
                                                    "y/s10.tar"]


def test_webdataset_shards(wds_root):
    pattern = f"wds:{wds_root}/test/shard-{{000000..000001}}.tar"
    ds = load_dataset(pattern)
    assert ds.classnames == ["cat", "dog", "bird"]
    assert [s.id for s in ds.samples] == ["s0000", "s0001", "s0002", "s0003"]
    assert ds.labels().tolist() == [2, 0, 1, 1]
    # sample i is addressable: decoded straight from its byte range, equal to the source image
    assert np.array_equal(np.asarray(ds.load_image(2)), np.asarray(_png(2)))
    same = load_dataset(f"wds:{wds_root}", split="test")
    assert [s.id for s in same.samples] == [s.id for s in ds.samples]
    sub = load_dataset(pattern, limit=2, seed=3)
    assert np.array_equal(np.asarray(sub.load_image(1)), np.asarray(_png(int(sub.samples[1].id[-1]))))


def test_webdataset_class_names_from_classes_and_unlabeled(wds_root, tmp_path):
    (wds_root / "classnames.txt").unlink()
    ds = load_dataset(f"wds:{wds_root}/test/*.tar", classes="imagenet", duplicate_names="keep")
    assert len(ds.classnames) == 1000 and [ds.classnames[s.label] for s in ds.samples[:2]] == ["great white shark",
                                                                                                  "tench"]
    bare = tmp_path / "bare"
    bare.mkdir()
    _shard(bare / "s.tar", [], extra=[("a.png", _png_bytes(0)), ("b.png", _png_bytes(1))])
    ood = load_dataset(f"wds:{bare}/s.tar", unlabeled=True, classes="imagenet")
    assert ood.labels().tolist() == [-1, -1] and ood.load_image(1).size == (8, 8)


def test_webdataset_bad_input(wds_root, tmp_path):
    with pytest.raises(DataError, match=r"8 of 10 shards do not exist \(first: .*shard-000002.tar\)"):
        load_dataset(f"wds:{wds_root}/test/shard-{{000000..000009}}.tar")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "classnames.txt").write_text("a\nb\n")
    _shard(bad / "x.tar", [("k0", 0, 5)])
    with pytest.raises(DataError, match=r"x.tar: k0.cls = 5 outside the 2 class names"):
        load_dataset(f"wds:{bad}/x.tar")
    _shard(bad / "x.tar", [("k0", 0, 1)], extra=[("k1.png", _png_bytes(1))])
    with pytest.raises(DataError, match=r"x.tar#k1.png: sample .k1. has no label \(no .cls member\)"):
        load_dataset(f"wds:{bad}/x.tar")
    _shard(bad / "x.tar", [("k0", 0, 1)], extra=[("k1.png", _png_bytes(1)), ("k1.cls", b"one")])
    with pytest.raises(DataError, match=r"member k1.cls: class 'one' is not an integer"):
        load_dataset(f"wds:{bad}/x.tar")
    (bad / "x.tar").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(DataError, match="x.tar: not a readable tar shard"):
        load_dataset(f"wds:{bad}/x.tar")


def test_webdataset_corrupt_image_is_a_counted_skip(tmp_path):
    from vlmprobe.data.datasets import ImageLoadError

    root = tmp_path / "w"
    root.mkdir()
    (root / "classnames.txt").write_text("a\nb\n")
    _shard(root / "s.tar", [("k0", 0, 1)], extra=[("k1.png", b"garbage"), ("k1.cls", b"0")])
    ds = load_dataset(f"wds:{root}/s.tar")
    with pytest.raises(ImageLoadError, match="cannot decode"):
        ds.load_image(1)


def test_hf_load_dataset_from_local_parquet(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["cat", "dog"])})
    folder = tmp_path / "pets"
    folder.mkdir()
    for split, seeds in (("train", [0, 1, 2]), ("test", [3, 4])):
        d = datasets.Dataset.from_dict({"image": [_png(s) for s in seeds], "label": [s % 2 for s in seeds]},
                                       features=features)
        d.to_parquet(str(folder / f"{split}-00000-of-00001.parquet"))
    ds = load_dataset(f"hf:{folder}", split="test")
    assert ds.info["format"] == "hf-load_dataset" and ds.classnames == ["cat", "dog"]
    assert ds.labels().tolist() == [1, 0] and [s.id for s in ds.samples] == ["test/0", "test/1"]
    assert np.array_equal(np.asarray(ds.load_image(1)), np.asarray(_png(4)))
    with pytest.raises(DataError, match="choose --split from"):
        load_dataset(f"hf:{folder}")
    with pytest.raises(DataError, match="hf:.*nope"):
        load_dataset(f"hf:{tmp_path / 'nope'}")
