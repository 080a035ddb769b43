"""One run of the scale tests: teacher cache + training of a tiny model, on as many CPU processes as asked.

`python tests/distill/dist_worker.py OUT DEVICES` starts the other processes with Fabric's own launcher (the way
`pocketvit build --set scale.devices=N` does); under torchrun the launcher's topology is used instead.
The tests also call `run(out, 1)` in-process for the single-process reference.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pocketvit.data.augment import AugmentConfig
from pocketvit.data.datasets import ImageSet, Splits, augmented_batches
from pocketvit.distill.cache import TeacherCache, sparse_soft_cross_entropy, write_cache
from pocketvit.distill.trainer import TrainSettings, train
from pocketvit.scale import ScaleConfig, current, reset, setup
from torch import nn

N, BATCH = 87, 32  # 3 steps an epoch; the last global batch (23) splits 12/11 over two ranks
AUG = AugmentConfig(shift=2, hflip=True, erase_prob=0.3)


def splits() -> Splits:
    g = torch.Generator().manual_seed(1)
    s = ImageSet(torch.randint(0, 256, (N, 1, 12, 12), dtype=torch.uint8, generator=g),
                 torch.randint(0, 10, (N,), generator=g))
    return Splits("synthetic", s, s.subset(np.arange(8)), s.subset(np.arange(8)), [str(i) for i in range(10)],
                  [0.5], [0.5], "GRAY")


def model(seed: int) -> nn.Module:
    torch.manual_seed(seed)  # GroupNorm, not BatchNorm: per-rank batch statistics would differ from one process's
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.GELU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(32, 10))


def bn_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    # no conv bias before the BatchNorm (as in pocketvit's students): BN takes the mean out, so such a bias has no
    # gradient and AdamW would turn its rounding noise into steps that differ from run to run
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.GELU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(32, 10))


def run(out: Path, devices: int) -> None:
    setup(ScaleConfig(accelerator="cpu", devices=devices))
    try:
        data = splits()
        write_cache(model(1).eval(), data, AUG, seed=5, epochs=2, topk=3, batch_size=16, root=out / "cache")
        reader = TeacherCache(out / "cache", N)
        settings = TrainSettings(epochs=2, lr=3e-3, weight_decay=0.05, steps_per_epoch=3)
        # the cache's producer builds only this rank's rows (shard=...)
        student = train(model(2), lambda e, shard=None: reader.batches(data, AUG, e, BATCH, 0, shard=shard),
                        sparse_soft_cross_entropy, settings, out / "distill", "distill")

        # a producer without `shard`: the trainer cuts its global batches
        def labelled(epoch: int):
            for idx, _, images in augmented_batches(data.train, AUG, 0, epoch, BATCH):
                yield data.normalize(images), data.train.labels[torch.from_numpy(idx)]

        labels = train(model(3), labelled, F.cross_entropy, settings, out / "labels", "labels")
        # BatchNorm: several ranks normalize with the global batch's statistics (scale/batchnorm.py)
        bn = train(bn_model(4), labelled, F.cross_entropy, settings, out / "bn", "bn")
        assert [type(m) for m in bn.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)] == [nn.BatchNorm2d]
        if current().is_zero:
            from safetensors.torch import save_file

            (out / "modules.txt").write_text("\n".join(sorted(sys.modules)))

            save_file({f"distill.{k}": v for k, v in student.state_dict().items()}
                      | {f"labels.{k}": v for k, v in labels.state_dict().items()}
                      | {f"bn.{k}": v for k, v in bn.state_dict().items()}, str(out / "weights.safetensors"))
        current().barrier()
    finally:
        reset()


if __name__ == "__main__":
    run(Path(sys.argv[1]), int(sys.argv[2]))
