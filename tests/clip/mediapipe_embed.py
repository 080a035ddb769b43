"""MediaPipe Tasks' ImageEmbedder on a .tflite, as an app would use it: run in its own venv with PyPI `mediapipe`
and no pocketvit code on the path (tests/clip/test_dropin_mediapipe.py drives it).

    .venv-mediapipe/bin/python tests/clip/mediapipe_embed.py MODEL.tflite IMAGE.png...

Prints one JSON object: {"mediapipe": version, "results": [{"image", "embedding": [float...]}]}, the float embedding
as the model outputs it (l2_normalize=False, quantize=False). Images are read with MediaPipe's own loader (RGB).
"""

from __future__ import annotations

import json
import sys


def main(model: str, images: list[str]) -> dict:
    import mediapipe as mp
    from mediapipe.tasks import python as mp_tasks
    from mediapipe.tasks.python import vision

    options = vision.ImageEmbedderOptions(base_options=mp_tasks.BaseOptions(model_asset_path=model),
                                          l2_normalize=False, quantize=False)
    out = []
    embedder = vision.ImageEmbedder.create_from_options(options)
    try:
        for path in images:
            result = embedder.embed(mp.Image.create_from_file(path))
            out.append({"image": path, "embedding": [float(v) for v in result.embeddings[0].embedding]})
    finally:
        embedder.close()
    return {"mediapipe": getattr(mp, "__version__", "?"), "results": out}


if __name__ == "__main__":
    if "pocketvit" in sys.modules or any("pocketvit" in p for p in sys.path if p.endswith("sdk")):
        sys.exit("run this without pocketvit on the path (PYTHONPATH=)")
    print(json.dumps(main(sys.argv[1], sys.argv[2:])))
