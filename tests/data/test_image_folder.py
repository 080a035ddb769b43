"""Image folders: labeled (class subfolders) and label-free (flat), file-level splits, views, bad files."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pocketvit.data import image_folder, load_dataset
from pocketvit.errors import DataError
from pocketvit.recipe.schema import DataSection

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 210)}


def _photo(path: Path, rgb: tuple[int, int, int], i: int, size=(40, 30)) -> None:
    """A flat colour with a file-specific stripe, so every file decodes to a different image."""
    a = np.zeros((size[1], size[0], 3), dtype=np.uint8) + np.array(rgb, dtype=np.uint8)
    a[:, (3 * i) % size[0]] = 255 - a[:, (3 * i) % size[0]]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)


def _labeled(root: Path, per_class: int = 5) -> Path:
    for name, rgb in COLOURS.items():
        for i in range(per_class):
            _photo(root / name / f"{i}.png", rgb, i)
    return root


def _flat(root: Path, n: int = 10) -> Path:
    for i in range(n):
        _photo(root / f"img{i:02d}.jpg", (20 * i, 100, 255 - 20 * i), i)
    return root


def _cfg(root: Path, **kw) -> DataSection:
    return DataSection(dataset="image-folder", root=str(root), image_size=16, **kw)


def test_class_folders_give_labeled_splits_by_file(tmp_path):
    splits = load_dataset(_cfg(_labeled(tmp_path / "imgs"), val_fraction=0.2, test_fraction=0.2), seed=0)
    assert splits.labels == sorted(COLOURS) and splits.labeled and splits.color_order == "RGB"
    assert splits.train.images.shape[1:] == (3, 16, 16) and splits.train.images.dtype == torch.uint8
    # 5 files per class: 1 test, 1 val, 3 train each; every class in every split
    assert (len(splits.train), len(splits.val), len(splits.test)) == (9, 3, 3)
    for part in (splits.train, splits.val, splits.test):
        assert sorted(set(part.labels.tolist())) == [0, 1, 2]
    # a file lands in exactly one split
    rows = {s: {bytes(x.numpy()) for x in getattr(splits, s).images} for s in ("train", "val", "test")}
    assert not rows["train"] & rows["test"] and not rows["train"] & rows["val"] and not rows["val"] & rows["test"]
    # pixels decoded as RGB: the red class is red
    red = splits.train.images[splits.train.labels == splits.labels.index("red")].float().mean((0, 2, 3))
    assert red[0] > 150 and red[2] < 80


def test_flat_folder_is_label_free_with_views(tmp_path):
    aug = {"crop_scale": (0.3, 1.0), "randaug_ops": 2}
    cfg = _cfg(_flat(tmp_path / "flat"), views=4, augment=aug)
    splits = load_dataset(cfg, seed=1)
    assert not splits.labeled and splits.labels == []
    assert (splits.train.labels == -1).all()
    # 10 files: 2 test, 1 val, 7 train; 4 samples per training file, 4 fixed crops per held-out file
    assert (len(splits.train), len(splits.val), len(splits.test)) == (28, 4, 8)
    first = splits.train.images[0]
    assert all(torch.equal(first, splits.train.images[i]) for i in range(4))  # copies; the seeds make the views
    assert not torch.equal(splits.test.images[0], splits.test.images[1])  # two different crops of one photo
    again = load_dataset(cfg, seed=1)
    assert torch.equal(again.test.images, splits.test.images) and again.fingerprint == splits.fingerprint


def test_holdout_views_keeps_every_file_in_training(tmp_path):
    splits = load_dataset(_cfg(_flat(tmp_path / "flat", 6), views=3, held_out_views=2, holdout="views",
                               augment={"crop_scale": (0.3, 1.0)}), seed=0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (18, 12, 12)
    assert not torch.equal(splits.val.images, splits.test.images)


def test_labels_none_ignores_class_folders(tmp_path):
    splits = load_dataset(_cfg(_labeled(tmp_path / "imgs", 3), labels="none"), seed=0)
    assert not splits.labeled and len(splits.train) + len(splits.val) + len(splits.test) == 9


def test_corrupt_file_is_skipped_with_a_warning(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("POCKETVIT_QUIET", raising=False)
    root = _flat(tmp_path / "flat", 6)
    (root / "broken.jpg").write_bytes(b"not a jpeg at all")
    splits = load_dataset(_cfg(root), seed=0)
    assert len(splits.train) + len(splits.val) + len(splits.test) == 6
    out = capsys.readouterr()
    assert "broken.jpg" in out.out + out.err


@pytest.mark.parametrize("case", ["empty", "missing", "unreadable", "folders-on-flat", "too-few"])
def test_bad_folders_give_one_clear_error(tmp_path, case):
    root = tmp_path / "imgs"
    kw = {}
    if case == "empty":
        root.mkdir()
        expected = "holds no images"
    elif case == "missing":
        expected = "is not a folder"
    elif case == "unreadable":
        root.mkdir()
        (root / "a.png").write_bytes(b"junk")
        expected = "could be read"
    elif case == "folders-on-flat":
        _flat(root, 3)
        kw = {"labels": "folders"}
        expected = "no subfolder with images"
    else:
        _flat(root, 1)
        expected = "none for the test split"
    with pytest.raises(DataError, match=expected):
        load_dataset(_cfg(root, **kw), seed=0)


def test_decode_resizes_shorter_side_and_centre_crops(tmp_path):
    a = np.zeros((20, 60, 3), dtype=np.uint8)
    a[:, 20:40] = 255  # white centre third of a wide image
    Image.fromarray(a).save(tmp_path / "wide.png")
    out = image_folder.decode(tmp_path / "wide.png", 10)
    assert out.shape == (3, 10, 10) and out.mean() > 200  # the crop is the white centre


def test_data_photos_command_writes_the_folder_that_pocketvit_photos_reads(tmp_path, monkeypatch):
    pytest.importorskip("skimage")
    from pocketvit.cli.main import app
    from pocketvit.data.photos import BUILTIN, sources
    from typer.testing import CliRunner

    monkeypatch.setenv("POCKETVIT_DATA", str(tmp_path))
    r = CliRunner().invoke(app, ["data", "photos", str(tmp_path / "photos")])
    assert r.exit_code == 0, r.output
    files = sorted((tmp_path / "photos").glob("*.jpg"))
    assert len(files) == len(sources()) >= 18
    assert Image.open(tmp_path / "photos" / "skimage-chelsea.jpg").size == (451, 300)
    stamp = [f.stat().st_mtime_ns for f in files]
    # data.root "pocketvit:photos" is $POCKETVIT_DATA/photos, made on first use: here it is already complete
    assert image_folder.scan(BUILTIN)[0] == files
    assert [f.stat().st_mtime_ns for f in files] == stamp


def test_recipe_validation_names_a_missing_image_folder(tmp_path):
    from pocketvit.errors import RecipeError
    from pocketvit.recipe import load_recipe

    p = tmp_path / "r.yaml"
    p.write_text(f"name: x\ndata: {{dataset: image-folder, root: {tmp_path / 'nope'}}}\n")
    with pytest.raises(RecipeError, match="pocketvit data photos DIR"):
        load_recipe(p)
    p.write_text("name: x\ndata: {dataset: image-folder, root: 'pocketvit:photos', "
                 "augment: {crop_scale: [0.9, 0.2]}}\n")
    with pytest.raises(RecipeError, match="data.augment.crop_scale"):
        load_recipe(p)


def test_unlabeled_images_join_training_and_labeled_train_leaves_them_out(tmp_path):
    root = _labeled(tmp_path / "imgs")
    extra = _flat(tmp_path / "extra", 10)
    plain = load_dataset(_cfg(root, val_fraction=0.2, test_fraction=0.2), seed=0)
    splits = load_dataset(_cfg(root, val_fraction=0.2, test_fraction=0.2, unlabeled=str(extra), unlabeled_limit=6),
                          seed=0)
    assert splits.labeled and splits.unlabeled == 6 and len(splits.train) == 9 + 6
    assert (splits.train.labels[9:] == image_folder.UNLABELED).all()
    assert torch.equal(splits.labeled_train.images, plain.train.images)
    assert torch.equal(splits.val.images, plain.val.images) and torch.equal(splits.test.images, plain.test.images)
    # the labeled part's fingerprint is the folder's own; the whole one covers the unlabeled images too
    assert splits.labeled_fingerprint == plain.fingerprint != splits.fingerprint
    again = load_dataset(_cfg(root, val_fraction=0.2, test_fraction=0.2, unlabeled=str(extra), unlabeled_limit=6),
                         seed=0)
    assert torch.equal(again.train.images, splits.train.images)  # the seeded choice of 6 of the 10


def test_loose_images_in_the_root_are_the_unlabeled_part(tmp_path):
    root = _labeled(tmp_path / "imgs")
    for i in range(4):
        _photo(root / f"loose{i}.png", (90, 90, 90), i)
    splits = load_dataset(_cfg(root, unlabeled="loose"), seed=0)
    assert splits.unlabeled == 4 and int((splits.train.labels < 0).sum()) == 4


def test_test_root_is_the_test_split(tmp_path):
    root = _labeled(tmp_path / "imgs", per_class=6)
    test = _labeled(tmp_path / "test", per_class=3)
    splits = load_dataset(_cfg(root, val_fraction=0.2, test_root=str(test), test_limit=7), seed=0)
    assert len(splits.test) == 7 and len(splits.train) + len(splits.val) == 18  # no test files taken from root
    other = tmp_path / "other"
    _photo(other / "purple" / "0.png", (120, 0, 120), 0)
    with pytest.raises(DataError, match="must be the same"):
        load_dataset(_cfg(root, test_root=str(other)), seed=0)


def test_unlabeled_needs_labeled_data(tmp_path):
    with pytest.raises(DataError, match="every image is unlabeled already"):
        load_dataset(_cfg(_flat(tmp_path / "flat"), unlabeled=str(_flat(tmp_path / "more", 3))), seed=0)


def test_fashion_mnist_small_folder_and_its_builtin_name(tmp_path, monkeypatch, fmnist_root):
    from pocketvit.data.builtin import locate, resolve_root
    from pocketvit.data.fashion_folder import write_fashion_folder

    counts = write_fashion_folder(tmp_path / "fm", per_class=3, unlabeled=20, test_per_class=2)
    assert counts == {"labeled": 30, "unlabeled": 20, "test": 20}
    assert min(p.name for p in (tmp_path / "fm" / "labeled").iterdir()) == "Ankle boot"
    assert (tmp_path / "fm" / "labeled" / "T-shirt-top").is_dir()
    cfg = DataSection(dataset="image-folder", root=str(tmp_path / "fm" / "labeled"), image_size=28,
                      unlabeled=str(tmp_path / "fm" / "unlabeled"), test_root=str(tmp_path / "fm" / "test"))
    splits = load_dataset(cfg, seed=0)
    assert len(splits.labels) == 10 and splits.unlabeled == 20 and len(splits.test) == 20
    assert splits.train.images.shape[1:] == (3, 28, 28)
    # pocketvit:fashion-mnist-small/PART names the folder under $POCKETVIT_DATA, written on first use
    monkeypatch.setenv("POCKETVIT_DATA", str(tmp_path / "home"))
    path, ready = locate("pocketvit:fashion-mnist-small/test")
    assert path == tmp_path / "home" / "fashion-mnist-small" / "test" and not ready
    (tmp_path / "home").mkdir()
    (tmp_path / "fm" / ".complete").write_text("done\n")
    (tmp_path / "home" / "fashion-mnist-small").symlink_to(tmp_path / "fm")
    assert resolve_root("pocketvit:fashion-mnist-small/labeled") == tmp_path / "home" / "fashion-mnist-small" / "labeled"
    with pytest.raises(DataError, match="unknown pocketvit folder"):
        locate("pocketvit:cifar")


def test_data_fashion_mnist_small_command(tmp_path, fmnist_root):
    from pocketvit.cli.main import app
    from typer.testing import CliRunner

    r = CliRunner().invoke(app, ["data", "fashion-mnist-small", str(tmp_path / "fm"), "--per-class", "2",
                                 "--unlabeled", "5", "--test-per-class", "1", "--root", str(fmnist_root)])
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "fm" / "labeled").rglob("*.png"))) == 20
    assert len(list((tmp_path / "fm" / "unlabeled").glob("*.png"))) == 5
    assert len(list((tmp_path / "fm" / "test").rglob("*.png"))) == 10
