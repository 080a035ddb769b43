import numpy as np
import torch
from pocketvit.data.augment import AugmentConfig, augment_batch, sample_seeds
from pocketvit.data.datasets import ImageSet, augmented_batches


def _images(n=16):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g)


def test_same_seed_same_image_regardless_of_batch():
    imgs = _images()
    seeds = sample_seeds(3, 1, np.arange(16))
    cfg = AugmentConfig(shift=2, hflip=True, erase_prob=0.5)
    full = augment_batch(imgs, seeds, cfg)
    for i in (0, 5, 15):
        one = augment_batch(imgs[i : i + 1], seeds[i : i + 1], cfg)
        assert torch.equal(one[0], full[i])


def test_seeds_differ_across_epochs_and_samples():
    a = sample_seeds(0, 0, np.arange(1000))
    b = sample_seeds(0, 1, np.arange(1000))
    assert len(set(a.tolist())) > 990
    assert (a != b).mean() > 0.99


def test_augmentation_changes_images_but_keeps_content():
    imgs = _images()
    out = augment_batch(imgs, sample_seeds(0, 0, np.arange(16)), AugmentConfig(shift=2, hflip=True))
    assert out.shape == imgs.shape and out.dtype == torch.uint8
    assert not torch.equal(out, imgs)
    # a shift by at most 2 pixels plus a flip: the centre 24x24 content survives in some form
    assert out.float().mean() > 0.5 * imgs.float().mean()


def test_epoch_batches_replay_exactly():
    data = ImageSet(_images(40), torch.zeros(40, dtype=torch.long))
    cfg = AugmentConfig()
    run1 = [(i.copy(), s.copy(), x.clone()) for i, s, x in augmented_batches(data, cfg, 1, 2, 16)]
    run2 = list(augmented_batches(data, cfg, 1, 2, 16))
    for (i1, s1, x1), (i2, s2, x2) in zip(run1, run2):
        assert np.array_equal(i1, i2) and np.array_equal(s1, s2) and torch.equal(x1, x2)
