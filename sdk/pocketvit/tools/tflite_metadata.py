"""Write or read TFLite metadata with tflite-support 0.4.4 (run in the tool venv, never imported by pocketvit).

tflite-support pins protobuf<4 and needs Debian's libusb-1.0-0, so it cannot live in pocketvit's own
environment; `make tools-venv` creates .venv-tools for it and pocketvit.export.metadata calls this script
with that interpreter:

    .venv-tools/bin/python sdk/pocketvit/tools/tflite_metadata.py write IN.tflite OUT.tflite SPEC.json
    .venv-tools/bin/python sdk/pocketvit/tools/tflite_metadata.py read IN.tflite

SPEC.json: {name, description, version, author, license, labels: [...], norm_mean: [...], norm_std: [...],
color_space: "RGB" | "GRAYSCALE", task: "classify" | "embed" | "zero-shot"} (anything but classify gets image
embedder metadata: an image input and a feature-vector output, no labels). `read` prints {metadata: <the metadata as
JSON>, associated_files: [...], labels: [...]} on stdout.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile


def _write(src: str, dst: str, spec_path: str) -> None:
    from tflite_support import metadata_schema_py_generated as mfb
    from tflite_support.metadata_writers import image_classifier, metadata_info, writer_utils

    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    general = metadata_info.GeneralMd(name=spec.get("name"), version=spec.get("version"),
                                      description=spec.get("description"), author=spec.get("author"),
                                      licenses=spec.get("license"))
    color = {"RGB": mfb.ColorSpaceType.RGB, "GRAYSCALE": mfb.ColorSpaceType.GRAYSCALE}[spec["color_space"]]
    model = writer_utils.load_file(src)
    input_type = writer_utils.get_input_tensor_types(model)[0]
    output_type = writer_utils.get_output_tensor_types(model)[0]
    input_md = metadata_info.InputImageTensorMd(
        name="image", description=spec.get("input_description"), norm_mean=spec["norm_mean"],
        norm_std=spec["norm_std"], color_space_type=color, tensor_type=input_type)
    with tempfile.TemporaryDirectory() as tmp:
        if spec.get("task", "classify") == "classify":
            labels = os.path.join(tmp, "labels.txt")
            with open(labels, "w", encoding="utf-8") as f:
                f.write("\n".join(spec["labels"]) + "\n")
            output_md = metadata_info.ClassificationTensorMd(
                name="probability", description=spec.get("output_description"),
                label_files=[metadata_info.LabelFileMd(file_path=labels)], tensor_type=output_type)
            writer = image_classifier.MetadataWriter.create_from_metadata_info(
                model, general_md=general, input_md=input_md, output_md=output_md)
        else:  # tflite-support 0.4.4 has no image_embedder writer: the generic one, as MediaPipe's embedder reads it
            from tensorflow_lite_support.metadata.python.metadata_writers import metadata_writer

            writer = metadata_writer.MetadataWriter.create_from_metadata_info(
                model, general_md=general, input_md=[input_md],
                output_md=[metadata_info.TensorMd(name="embedding", description=spec.get("output_description"))])
        data = writer.populate()
    tmp_out = dst + ".tmp"
    with open(tmp_out, "wb") as f:
        f.write(data)
    os.replace(tmp_out, dst)


def _read(src: str) -> None:
    from tflite_support import metadata

    d = metadata.MetadataDisplayer.with_model_file(src)
    files = d.get_packed_associated_file_list()
    labels = []
    for name in files:
        if name.endswith(".txt"):
            labels = d.get_associated_file_buffer(name).decode("utf-8").splitlines()
    print(json.dumps({"metadata": json.loads(d.get_metadata_json()), "associated_files": files, "labels": labels}))


def main(argv: list[str]) -> int:
    if len(argv) >= 1 and argv[0] == "write" and len(argv) == 4:
        _write(argv[1], argv[2], argv[3])
        return 0
    if len(argv) == 2 and argv[0] == "read":
        _read(argv[1])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
