"""The reinforced dataset: the student's batches rebuild exactly the augmented images the teachers saw."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pocketvit.clip.corpus import all_captions, caption_indices, class_captions
from pocketvit.clip.image_teacher import ProjectedTeacher, feature_dim
from pocketvit.clip.reinforce import ReinforcedData, write_reinforced
from pocketvit.data.augment import AugmentConfig


@pytest.fixture(scope="module")
def splits(fmnist_root):
    from pocketvit.data import load_dataset
    from pocketvit.recipe.schema import DataSection

    return load_dataset(DataSection(train_limit=40, val_size=8, test_limit=8), 0)


def _teacher(seed: int, splits) -> ProjectedTeacher:
    from pocketvit.models import build_model

    from tests.clip.conftest import TINY_RESNET

    torch.manual_seed(seed)
    backbone = build_model("pocketvit-resnet", 1, 10, 28, TINY_RESNET)
    return ProjectedTeacher(backbone, feature_dim(backbone, splits.shape), 12).eval()


def test_batches_replay_the_teachers_augmented_images(splits, tmp_path):
    teachers = [_teacher(0, splits), _teacher(1, splits)]
    aug = AugmentConfig(shift=2, hflip=True, erase_prob=0.5)
    index = np.arange(0, len(splits.train), 2)  # every other image, as when classes are held out
    labels = splits.train.labels.numpy()[index]
    caps = caption_indices(labels, splits.train.images.numpy()[index], 4, seed=0)
    cap_emb = np.random.default_rng(0).standard_normal((len(all_captions()), 12)).astype(np.float32)
    write_reinforced(teachers, splits, index, aug, 7, 2, caps, cap_emb, tmp_path / "r", batch_size=8)
    rd = ReinforcedData(tmp_path / "r")
    assert len(rd) == len(index) and rd.augmentations == 2 and rd.image_emb.shape == (2, len(index), 2, 12)
    seen = 0
    for epoch in (0, 1, 2):  # epoch 2 replays augmentation 0
        for x, (txt, t_img, y) in rd.batches(splits, aug, epoch, 8, seed=7):
            with torch.no_grad():
                fresh = torch.stack([t(x) for t in teachers], 1)  # the teachers on the rebuilt images
            assert torch.allclose(fresh, t_img, atol=2e-3)  # stored as fp16
            assert txt.shape == (len(x), 12) and set(y.tolist()) <= set(labels.tolist())
            seen += len(x)
    assert seen == 3 * len(index)


def test_captions_per_image_are_of_its_class_and_tone():
    images = np.zeros((2, 28, 28), np.uint8)
    images[0, 5:20, 5:20] = 40  # dark garment
    images[1, 5:20, 5:20] = 230  # light garment
    idx = caption_indices(np.array([9, 1]), images, 5, seed=0)
    caps = all_captions()
    assert caps[idx[0, 0]] == class_captions(9)[0] and caps[idx[1, 0]] == class_captions(1)[0]
    assert "dark ankle boot" in caps[idx[0, 1]] and "light trouser" in caps[idx[1, 1]]
    assert all(caps[i] in class_captions(9) for i in idx[0])
