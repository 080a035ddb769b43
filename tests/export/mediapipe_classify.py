"""MediaPipe Tasks' ImageClassifier on a .tflite, as an app would use it: run in its own venv with PyPI
`mediapipe` and no pocketvit code on the path (tests/export/test_dropin_mediapipe.py drives it).

    .venv-mediapipe/bin/python tests/export/mediapipe_classify.py MODEL.tflite IMAGE.png...

Prints one JSON object: {"mediapipe": version, "results": [{"image", "categories": [[name, score, index]...]}]},
categories best first, every class (max_results=-1). Images are read with MediaPipe's own loader (RGB).
"""

from __future__ import annotations

import json
import sys


def main(model: str, images: list[str]) -> dict:
    import mediapipe as mp
    from mediapipe.tasks import python as mp_tasks
    from mediapipe.tasks.python import vision

    options = vision.ImageClassifierOptions(base_options=mp_tasks.BaseOptions(model_asset_path=model), max_results=-1)
    out = []
    classifier = vision.ImageClassifier.create_from_options(options)
    try:
        for path in images:
            result = classifier.classify(mp.Image.create_from_file(path))
            cats = result.classifications[0].categories
            out.append({"image": path, "categories": [[c.category_name, float(c.score), int(c.index)] for c in cats]})
    finally:
        classifier.close()
    return {"mediapipe": getattr(mp, "__version__", "?"), "results": out}


if __name__ == "__main__":
    if "pocketvit" in sys.modules or any("pocketvit" in p for p in sys.path if p.endswith("sdk")):
        sys.exit("run this without pocketvit on the path (PYTHONPATH=)")
    print(json.dumps(main(sys.argv[1], sys.argv[2:])))
