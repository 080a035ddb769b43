"""Photo augmentation: random resized crop + RandAugment-style ops from the seed, replayed bit for bit."""

import dataclasses

import numpy as np
import torch
from pocketvit.data import photo_augment as pa
from pocketvit.data.augment import AugmentConfig, _uniforms, augment_batch, sample_seeds
from pocketvit.data.datasets import ImageSet, Splits, augmented_batches
from pocketvit.distill.cache import TeacherCache, write_cache
from torch import nn

PHOTO = AugmentConfig(crop_scale=(0.25, 1.0), hflip=True, randaug_ops=2, randaug_magnitude=9)


def _images(n=24, size=20):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)


def test_same_seed_same_view_regardless_of_batch():
    imgs = _images()
    seeds = sample_seeds(5, 3, np.arange(len(imgs)))
    full = augment_batch(imgs, seeds, PHOTO)
    assert full.dtype == torch.uint8 and full.shape == imgs.shape
    for lo, hi in ((0, 1), (7, 8), (3, 19), (23, 24)):
        assert torch.equal(augment_batch(imgs[lo:hi], seeds[lo:hi], PHOTO), full[lo:hi])
    shuffled = np.random.default_rng(0).permutation(len(imgs))
    assert torch.equal(augment_batch(imgs[torch.from_numpy(shuffled)], seeds[shuffled], PHOTO), full[shuffled])


def test_whole_image_crop_is_exact_and_flip_mirrors():
    imgs = _images(8)
    seeds = sample_seeds(0, 0, np.arange(8))
    ident = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip=False)
    assert torch.equal(augment_batch(imgs, seeds, ident), imgs)
    flipped = augment_batch(imgs, seeds, dataclasses.replace(ident, hflip=True))
    u = torch.from_numpy(_uniforms(seeds, pa.COLUMNS))
    for i in range(8):
        assert torch.equal(flipped[i], imgs[i].flip(2) if u[i, 2] < 0.5 else imgs[i])


def test_crops_zoom_in():
    """A crop of at most a quarter of the area magnifies: a one-pixel checkerboard loses its finest detail."""
    board = ((torch.arange(32)[:, None] + torch.arange(32)[None, :]) % 2 * 255).to(torch.uint8)
    imgs = board.expand(16, 3, 32, 32).contiguous()
    out = augment_batch(imgs, sample_seeds(0, 0, np.arange(16)), AugmentConfig(crop_scale=(0.05, 0.25)))
    assert not torch.equal(out, imgs)
    # neighbouring pixels differ by 255 in the board; a magnified view has long runs of similar values
    assert (out[..., 1:].int() - out[..., :-1].int()).abs().float().mean() < 200


def test_photometric_ops_do_what_they_say():
    x = torch.arange(256, dtype=torch.float32).view(1, 1, 16, 16).expand(1, 3, 16, 16).clone()
    one = torch.ones(1, dtype=torch.float64)
    assert torch.equal(pa._solarize(x, one), 255 - x)  # full magnitude: every pixel inverted
    poster = pa._posterize(x, one)  # 4 bits kept
    assert set(poster.unique().tolist()) <= set(range(0, 256, 16))
    dark = pa._blend(torch.zeros_like(x), x, -one).round()
    assert dark.max() <= 26 and dark.max() >= 25  # brightness factor 1 - 0.9
    stretched = pa._autocontrast(x * 0.5 + 10, one)
    assert stretched.min() == 0 and stretched.max() == 255
    grey = pa._blend(pa._gray(x), x, -one / 0.9)  # colour factor 0: greyscale
    assert torch.allclose(grey[:, 0], grey[:, 1]) and torch.allclose(grey[:, 1], grey[:, 2])


def test_every_op_is_drawn_and_changes_images():
    seeds = sample_seeds(0, 0, np.arange(2000))
    u = torch.from_numpy(_uniforms(seeds, pa.COLUMNS))
    ops = pa.op_choices(u, 2, 9.0)
    drawn = torch.cat([op for op, _ in ops]).bincount(minlength=len(pa.OPS))
    assert (drawn > 100).all(), drawn  # uniform over the ops
    mags = torch.cat([m for _, m in ops])
    assert mags.abs().max() <= 0.9 and mags.min() < -0.5 and mags.max() > 0.5
    imgs = _images(64)
    out = augment_batch(imgs, seeds[:64], AugmentConfig(shift=0, hflip=False, randaug_ops=2))
    changed = [(out[i] != imgs[i]).any().item() for i in range(64)]
    assert 40 < sum(changed) < 64  # identity/identity and weak draws leave a few untouched


class _Teacher(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(3 * 20 * 20, 12)

    def forward(self, x):
        return self.fc(x.flatten(1)) * 5


def test_cache_replay_rebuilds_the_teachers_view_bit_for_bit(tmp_path):
    imgs = _images(40)
    data = ImageSet(imgs, torch.full((40,), -1))
    splits = Splits("t", data, data, data, [str(i) for i in range(12)], [0.5] * 3, [0.25] * 3, "RGB")
    teacher = _Teacher().eval()
    write_cache(teacher, splits, PHOTO, seed=3, epochs=2, topk=4, batch_size=16, root=tmp_path / "c")
    cache = TeacherCache(tmp_path / "c", 40)
    for epoch in range(2):
        views = {int(i): v for idx, _, x in augmented_batches(data, PHOTO, 3, epoch, 16, shuffle=False)
                 for i, v in zip(idx, x)}
        t = cache.table(epoch)
        seen = 0
        for x, target in cache.batches(splits, PHOTO, epoch, 7, shuffle_seed=1):
            with torch.no_grad():
                p, i = torch.softmax(teacher(x), 1).topk(4, dim=1)
            assert torch.equal(i, target.topk_idx)
            assert torch.equal(p.half().float(), target.topk_prob)
            seen += len(x)
        assert seen == 40
        for i in range(40):  # the stored seed rebuilds the exact uint8 view the teacher saw
            replay = augment_batch(imgs[i : i + 1], t["seed"][i : i + 1], PHOTO)[0]
            assert torch.equal(replay, views[i])
