"""TFLite metadata written and read in pocketvit's own environment: no tflite-support, no second venv, protobuf as it is.

The metadata is what MediaPipe Tasks and the TFLite Task Library read from a `.tflite`: a `ModelMetadata` flatbuffer
(tflite-support's metadata_schema.fbs, file identifier "M001") stored in one of the model's buffers and named
"TFLITE_METADATA" in the model's `metadata` list, plus the associated files (labels.txt) in a zip archive appended to
the model. It is encoded here with the `flatbuffers` runtime by field slot (the tables below, in schema order); the
model itself is unpacked and packed again with the TFLite schema bindings ai-edge-litert ships, its buffers 16-byte
aligned as the schema asks. tflite-support's own writer does the same steps.

    data = populate(model_bytes, image_metadata(...), {"labels.txt": b"..."})
    read(data)   # {"metadata": {...}, "associated_files": [...], "labels": [...]}
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

from pocketvit.errors import ExportError, MissingExtraError

METADATA_NAME = b"TFLITE_METADATA"
METADATA_IDENTIFIER = b"M001"
MODEL_IDENTIFIER = b"TFL3"
PARSER_VERSION = "1.0.0"  # every field written here exists since schema 1.0.0
LABELS_FILE = "labels.txt"

# enums and union types of metadata_schema.fbs
COLOR_SPACES = {"UNKNOWN": 0, "RGB": 1, "GRAYSCALE": 2}
FILE_TYPES = {"UNKNOWN": 0, "DESCRIPTIONS": 1, "TENSOR_AXIS_LABELS": 2, "TENSOR_VALUE_LABELS": 3,
              "TENSOR_AXIS_SCORE_CALIBRATION": 4, "VOCABULARY": 5}
CONTENT_PROPERTIES = {1: "FeatureProperties", 2: "ImageProperties", 3: "BoundingBoxProperties"}
PROCESS_UNITS = {1: "NormalizationOptions", 2: "ScoreCalibrationOptions", 3: "ScoreThresholdingOptions"}
# field slots, in the order metadata_schema.fbs declares them (a union takes two: its type, then its value)
MODEL = {"name": 0, "description": 1, "version": 2, "subgraph_metadata": 3, "author": 4, "license": 5,
         "associated_files": 6, "min_parser_version": 7}
SUBGRAPH = {"name": 0, "description": 1, "input_tensor_metadata": 2, "output_tensor_metadata": 3,
            "associated_files": 4}
TENSOR = {"name": 0, "description": 1, "dimension_names": 2, "content": 3, "process_units": 4, "stats": 5,
          "associated_files": 6}
FILE = {"name": 0, "description": 1, "type": 2, "locale": 3}
CONTENT = {"content_properties_type": 0, "content_properties": 1, "range": 2}
IMAGE_PROPERTIES = {"color_space": 0, "default_size": 1}
PROCESS_UNIT = {"options_type": 0, "options": 1}
NORMALIZATION = {"mean": 0, "std": 1}
STATS = {"max": 0, "min": 1}


def _flatbuffers():
    try:
        import flatbuffers
    except ImportError:
        raise MissingExtraError("flatbuffers", "litert", "needed to write TFLite metadata") from None
    return flatbuffers


# --------------------------------------------------------------------------- writing the ModelMetadata flatbuffer


class _Writer:
    """Tables built bottom-up (children before parents, as flatbuffers requires) from plain dicts."""

    def __init__(self) -> None:
        self.b = _flatbuffers().Builder(1024)

    def string(self, s: str | None) -> int | None:
        return None if s is None else self.b.CreateString(s)

    def offsets(self, offs: list[int]) -> int:
        self.b.StartVector(4, len(offs), 4)
        for o in reversed(offs):
            self.b.PrependUOffsetTRelative(o)
        return self.b.EndVector()

    def floats(self, values: list[float]) -> int:
        self.b.StartVector(4, len(values), 4)
        for v in reversed(values):
            self.b.PrependFloat32(float(v))
        return self.b.EndVector()

    def table(self, slots: dict[str, int], offsets: dict[str, int | None],
              scalars: dict[str, tuple[str, int]] | None = None) -> int:
        b = self.b
        b.StartObject(max(slots.values()) + 1)
        for name, value in offsets.items():
            if value is not None:
                b.PrependUOffsetTRelativeSlot(slots[name], value, 0)
        for name, (kind, value) in (scalars or {}).items():
            {"byte": b.PrependInt8Slot, "ubyte": b.PrependUint8Slot}[kind](slots[name], value, 0)
        return b.EndObject()

    def file(self, f: dict[str, Any]) -> int:
        name, desc = self.string(f["name"]), self.string(f.get("description"))
        return self.table(FILE, {"name": name, "description": desc}, {"type": ("byte", FILE_TYPES[f["type"]])})

    def stats(self, s: dict[str, list[float]] | None) -> int | None:
        if not s:
            return None
        mx, mn = self.floats(s["max"]), self.floats(s["min"])
        return self.table(STATS, {"max": mx, "min": mn})

    def tensor(self, t: dict[str, Any]) -> int:
        name, desc = self.string(t["name"]), self.string(t.get("description"))
        if t.get("color_space"):  # an image: ImageProperties
            props = self.table(IMAGE_PROPERTIES, {}, {"color_space": ("byte", COLOR_SPACES[t["color_space"]])})
            ptype = 2
        else:  # FeatureProperties (an empty table)
            props = self.table({"_": 0}, {})
            ptype = 1
        content = self.table(CONTENT, {"content_properties": props}, {"content_properties_type": ("ubyte", ptype)})
        units = None
        if t.get("norm_mean") is not None:
            mean, std = self.floats(t["norm_mean"]), self.floats(t["norm_std"])
            norm = self.table(NORMALIZATION, {"mean": mean, "std": std})
            units = self.offsets([self.table(PROCESS_UNIT, {"options": norm}, {"options_type": ("ubyte", 1)})])
        stats = self.stats(t.get("stats"))
        files = self.offsets([self.file(f) for f in t["files"]]) if t.get("files") else None
        return self.table(TENSOR, {"name": name, "description": desc, "content": content, "process_units": units,
                                   "stats": stats, "associated_files": files})

    def model(self, m: dict[str, Any]) -> bytes:
        inputs = self.offsets([self.tensor(t) for t in m["inputs"]])
        outputs = self.offsets([self.tensor(t) for t in m["outputs"]])
        subgraph = self.offsets([self.table(SUBGRAPH, {"input_tensor_metadata": inputs,
                                                       "output_tensor_metadata": outputs})])
        strings = {k: self.string(m.get(k)) for k in ("name", "description", "version", "author", "license")}
        root = self.table(MODEL, {**strings, "subgraph_metadata": subgraph,
                                  "min_parser_version": self.string(PARSER_VERSION)})
        self.b.Finish(root, file_identifier=METADATA_IDENTIFIER)
        return bytes(self.b.Output())


def image_metadata(*, name: str, description: str, version: str, author: str, license: str, labels: list[str],
                   norm_mean: list[float], norm_std: list[float], color_space: str, input_description: str,
                   output_description: str, uint8_input: bool, task: str = "classify") -> tuple[bytes, dict[str, bytes]]:
    """(ModelMetadata bytes, associated files) of an image classifier (labels on the output, TENSOR_AXIS_LABELS) or,
    for any other task, an image embedder (a feature-vector output, no labels): what tflite-support's image
    classifier writer and MediaPipe's image embedder expect."""
    lo = [(0.0 - m) / s for m, s in zip(norm_mean, norm_std)]
    hi = [(255.0 - m) / s for m, s in zip(norm_mean, norm_std)]
    image = {"name": "image", "description": input_description, "color_space": color_space, "norm_mean": norm_mean,
             "norm_std": norm_std, "stats": {"max": [255.0], "min": [0.0]} if uint8_input else {"max": hi, "min": lo}}
    files: dict[str, bytes] = {}
    if task == "classify":
        out = {"name": "probability", "description": output_description, "stats": {"max": [1.0], "min": [0.0]},
               "files": [{"name": LABELS_FILE, "description": "Labels for categories that the model can recognize.",
                          "type": "TENSOR_AXIS_LABELS"}]}
        files[LABELS_FILE] = ("\n".join(labels) + "\n").encode("utf-8")
    else:
        out = {"name": "embedding", "description": output_description}
    data = _Writer().model({"name": name, "description": description, "version": version, "author": author,
                            "license": license, "inputs": [image], "outputs": [out]})
    return data, files


# --------------------------------------------------------------------------- putting it into the model


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        raise MissingExtraError("ai-edge-litert", "litert", "its TFLite schema bindings write the metadata") from None
    return schema


def _aligned_buffer(schema):
    """The schema's BufferT, packed with its data 16-byte aligned (`data:[ubyte] (force_align: 16)`)."""
    import numpy as np

    class AlignedBufferT(schema.BufferT):
        def Pack(self, builder):
            data = None
            if self.data is not None and len(self.data):
                payload = np.ascontiguousarray(self.data, dtype=np.uint8).tobytes()
                builder.StartVector(1, len(payload), 16)
                builder.head = builder.head - len(payload)
                builder.Bytes[builder.head : builder.head + len(payload)] = payload
                builder.vectorNumElems = len(payload)
                data = builder.EndVector()
            schema.BufferStart(builder)
            if data is not None:
                schema.BufferAddData(builder, data)
            schema.BufferAddOffset(builder, self.offset)
            schema.BufferAddSize(builder, self.size)
            return schema.BufferEnd(builder)

    return AlignedBufferT


def populate(model: bytes, metadata: bytes, files: dict[str, bytes]) -> bytes:
    """`model` with `metadata` as its TFLITE_METADATA buffer (replacing an earlier one) and `files` in a zip appended
    to it (stored, not compressed, as the readers expect)."""
    import numpy as np

    flatbuffers = _flatbuffers()
    schema = _schema()
    if model[4:8] != MODEL_IDENTIFIER:
        raise ExportError("not a TFLite model (no TFL3 identifier); cannot add metadata")
    m = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    if any(b.offset for b in m.buffers or []):
        raise ExportError("the model keeps its weights outside the flatbuffer (buffer offsets, a model over 2 GB); "
                          "pocketvit cannot add TFLite metadata to it")
    aligned = _aligned_buffer(schema)
    for b in m.buffers:
        b.__class__ = aligned
    entry = next((e for e in (m.metadata or []) if e.name == METADATA_NAME), None)
    buf = aligned()
    buf.data, buf.offset, buf.size = np.frombuffer(metadata, dtype=np.uint8), 0, 0
    if entry is None:
        m.buffers.append(buf)
        entry = schema.MetadataT()
        entry.name, entry.buffer = METADATA_NAME, len(m.buffers) - 1
        m.metadata = [*(m.metadata or []), entry]
    else:
        m.buffers[entry.buffer] = buf
    builder = flatbuffers.Builder(len(model) + len(metadata) + 1024)
    builder.Finish(m.Pack(builder), file_identifier=MODEL_IDENTIFIER)
    out = io.BytesIO(bytes(builder.Output()))
    if files:
        out.seek(0, io.SEEK_END)
        with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as z:
            for name, data in files.items():
                z.writestr(name, data)
    return out.getvalue()


# --------------------------------------------------------------------------- reading it back


def _table_reader(buf: bytes, pos: int):
    from flatbuffers.table import Table

    return Table(buf, pos)


class _Reader:
    def __init__(self, buf: bytes) -> None:
        import flatbuffers

        self.buf = buf
        self.fb = flatbuffers

    def root(self):
        n = self.fb.encode.Get(self.fb.packer.uoffset, self.buf, 0)
        return _table_reader(self.buf, n)

    @staticmethod
    def _o(t, slot: int) -> int:
        return t.Offset(4 + 2 * slot)

    def string(self, t, slot: int) -> str | None:
        o = self._o(t, slot)
        return t.String(o + t.Pos).decode("utf-8") if o else None

    def scalar(self, t, slot: int, flags) -> int:
        o = self._o(t, slot)
        return t.Get(flags, o + t.Pos) if o else 0

    def table(self, t, slot: int):
        o = self._o(t, slot)
        return _table_reader(self.buf, t.Indirect(o + t.Pos)) if o else None

    def tables(self, t, slot: int) -> list:
        o = self._o(t, slot)
        if not o:
            return []
        start = t.Vector(o)
        return [_table_reader(self.buf, t.Indirect(start + 4 * j)) for j in range(t.VectorLen(o))]

    def floats(self, t, slot: int) -> list[float]:
        o = self._o(t, slot)
        if not o:
            return []
        start = t.Vector(o)
        return [round(t.Get(self.fb.number_types.Float32Flags, start + 4 * j), 7) for j in range(t.VectorLen(o))]

    def union(self, t, slot: int):
        o = self._o(t, slot)
        if not o:
            return None
        u = _table_reader(self.buf, 0)
        t.Union(u, o)
        return u

    def file(self, t) -> dict[str, Any]:
        kind = self.scalar(t, FILE["type"], self.fb.number_types.Int8Flags)
        return {"name": self.string(t, FILE["name"]), "description": self.string(t, FILE["description"]),
                "type": next(k for k, v in FILE_TYPES.items() if v == kind)}

    def tensor(self, t) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.string(t, TENSOR["name"]), "description": self.string(t, TENSOR["description"])}
        content = self.table(t, TENSOR["content"])
        if content is not None:
            ptype = self.scalar(content, CONTENT["content_properties_type"], self.fb.number_types.Uint8Flags)
            props: dict[str, Any] = {}
            if ptype == 2:
                u = self.union(content, CONTENT["content_properties"])
                cs = self.scalar(u, IMAGE_PROPERTIES["color_space"], self.fb.number_types.Int8Flags)
                props = {"color_space": next(k for k, v in COLOR_SPACES.items() if v == cs)}
            out["content"] = {"content_properties_type": CONTENT_PROPERTIES.get(ptype, "NONE"),
                              "content_properties": props}
        units = []
        for pu in self.tables(t, TENSOR["process_units"]):
            kind = self.scalar(pu, PROCESS_UNIT["options_type"], self.fb.number_types.Uint8Flags)
            opts = self.union(pu, PROCESS_UNIT["options"])
            unit: dict[str, Any] = {"options_type": PROCESS_UNITS.get(kind, "NONE")}
            if kind == 1 and opts is not None:
                unit["options"] = {"mean": self.floats(opts, NORMALIZATION["mean"]),
                                   "std": self.floats(opts, NORMALIZATION["std"])}
            units.append(unit)
        if units:
            out["process_units"] = units
        stats = self.table(t, TENSOR["stats"])
        if stats is not None:
            out["stats"] = {"max": self.floats(stats, STATS["max"]), "min": self.floats(stats, STATS["min"])}
        files = [self.file(f) for f in self.tables(t, TENSOR["associated_files"])]
        if files:
            out["associated_files"] = files
        return out

    def model(self) -> dict[str, Any]:
        if self.buf[4:8] != METADATA_IDENTIFIER:
            raise ExportError("the TFLITE_METADATA buffer is not a metadata flatbuffer (no M001 identifier)")
        r = self.root()
        out: dict[str, Any] = {k: self.string(r, MODEL[k]) for k in ("name", "description", "version", "author",
                                                                      "license")}
        out["subgraph_metadata"] = [
            {"input_tensor_metadata": [self.tensor(t) for t in self.tables(s, SUBGRAPH["input_tensor_metadata"])],
             "output_tensor_metadata": [self.tensor(t) for t in self.tables(s, SUBGRAPH["output_tensor_metadata"])]}
            for s in self.tables(r, MODEL["subgraph_metadata"])]
        out["min_parser_version"] = self.string(r, MODEL["min_parser_version"])
        return {k: v for k, v in out.items() if v is not None}


def read(model: bytes) -> dict[str, Any] | None:
    """{metadata, associated_files, labels} of a .tflite's TFLite metadata, or None when it has none."""
    schema = _schema()
    m = schema.Model.GetRootAs(model, 0)
    for i in range(m.MetadataLength()):
        entry = m.Metadata(i)
        if entry.Name() == METADATA_NAME:
            data = m.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
            break
    else:
        return None
    names, labels = [], []
    try:
        with zipfile.ZipFile(io.BytesIO(model)) as z:
            names = z.namelist()
            if LABELS_FILE in names:
                labels = z.read(LABELS_FILE).decode("utf-8").splitlines()
    except zipfile.BadZipFile:  # no associated files
        pass
    return {"metadata": _Reader(data).model(), "associated_files": names, "labels": labels}
