"""CLIP-style distillation: text teachers and TinyCLIP text students, MobileCLIP reinforced data, zero-shot bundles.

  inherit.py      TinyCLIP manual weight inheritance (evenly spaced layers, leading heads and channels)
  losses.py       CLIP contrastive loss, affinity mimicking / similarity-matrix KD
  corpus.py       real local sentences for text distillation, Fashion-MNIST captions and class prompts
  text_distill.py the TinyCLIP text demonstration (`pocketvit distill-text`)
  image_teacher.py, reinforce.py, train.py, zeroshot.py, build.py   the `fashion-mnist-clip` recipe
"""
