"""The recipe: one typed section per stage. Unknown keys and bad values are all reported at once."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pocketvit.runtime.targets import RUNTIMES, TARGETS, TEXT_RUNTIMES

TargetName = Literal[TARGETS]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # fields added after the section's first release: left out of stage hashes while they hold their default
    added_fields: ClassVar[tuple[str, ...]] = ()


def stable_dump(section: BaseModel) -> dict[str, Any]:
    """model_dump for stage hashes: fields in `added_fields` that still hold their default are left out (also in
    nested sections), so adding a recipe key does not invalidate the stages of builds that never set it."""
    out = {}
    for name, field in type(section).model_fields.items():
        value = getattr(section, name)
        if name in getattr(section, "added_fields", ()) and value == field.get_default(call_default_factory=True):
            continue
        out[name] = stable_dump(value) if isinstance(value, BaseModel) else section.model_dump(include={name})[name]
    return out


class AugmentSection(Section):
    added_fields = ("crop_scale", "crop_ratio", "randaug_ops", "randaug_magnitude")
    shift: int = Field(2, ge=0, le=16, description="random translation in pixels (zero padding)")
    hflip: bool = Field(True, description="random horizontal flip")
    erase_prob: float = Field(0.0, ge=0, le=1, description="probability of random erasing")
    erase_max: float = Field(0.3, gt=0, le=1, description="max side of the erased box, fraction of the image")
    crop_scale: tuple[float, float] | None = Field(
        None, description="random resized crop: area fraction range, e.g. [0.25, 1.0]; replaces shift (photos)")
    crop_ratio: tuple[float, float] = Field((3 / 4, 4 / 3), description="random resized crop: aspect ratio range")
    randaug_ops: int = Field(0, ge=0, le=3, description="RandAugment-style ops per view (rotate, shear, brightness, "
                             "contrast, color, solarize, posterize, autocontrast, identity), drawn from the seed")
    randaug_magnitude: float = Field(9.0, ge=0, le=10, description="RandAugment magnitude 0-10 (each op uniform in "
                                     "[0, this])")

    @field_validator("crop_scale", "crop_ratio")
    @classmethod
    def _range(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not (0 < v[0] <= v[1]):
            raise ValueError(f"give [low, high] with 0 < low <= high, got {list(v)}")
        return v


class DataSection(Section):
    added_fields = ("labels", "image_size", "views", "held_out_views", "holdout", "val_fraction", "test_fraction",
                    "unlabeled", "unlabeled_limit", "test_root")
    dataset: Literal["fashion-mnist", "image-folder"] = "fashion-mnist"
    root: str = Field("/usr/share/datasets/fashion-mnist", description="folder with the idx files, or the image "
                      "folder (one subfolder per class, or flat for label-free distillation)")
    val_size: int = Field(5000, ge=1, description="images held out of training for validation (fashion-mnist)")
    # image-folder only (data/image_folder.py)
    labels: Literal["auto", "folders", "none"] = Field(
        "auto", description="image-folder: class subfolders (folders), none (label-free: the teacher's classes), "
        "auto = folders when there are subfolders")
    image_size: int = Field(64, ge=8, le=1024, description="image-folder: images resized and centre-cropped to this")
    views: int = Field(1, ge=1, le=4096, description="image-folder: samples per training file (each its own "
                       "augmented crop per epoch) and fixed augmented crops per held-out file")
    held_out_views: int | None = Field(None, ge=1, le=4096, description="image-folder: fixed augmented crops per "
                                          "held-out file (val and test); default data.views")
    holdout: Literal["files", "views"] = Field(
        "files", description="image-folder: hold out whole files (unseen photos) or fresh crops of every file")
    val_fraction: float = Field(0.1, ge=0, lt=1, description="image-folder: fraction of files for validation")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="image-folder: fraction of files for the test split")
    unlabeled: str | None = Field(
        None, description="image-folder: a folder of images without labels (searched recursively) that the teacher "
        "labels softly in the cache and the student learns from, beside the labeled training images; `loose`: the "
        "images directly in data.root, outside the class folders")
    unlabeled_limit: int | None = Field(None, ge=1, description="use only this many unlabeled images (a seeded "
                                           "random choice)")
    test_root: str | None = Field(
        None, description="image-folder: a separate labeled folder (the same class folders) that is the test split; "
        "data.root then gives only train and val (test_fraction is not used)")
    train_limit: int | None = Field(None, ge=1, description="use only this many training images (tests)")
    test_limit: int | None = Field(None, ge=1, description="use only this many test images (tests)")
    augment: AugmentSection = AugmentSection()


MIN_STEPS = 500  # default floor on optimizer steps (teacher training and distillation)
# training length, shared by teacher.train and distill (pipeline/plan.py reads them)
STEPS = Field(None, gt=0, description="train for this many optimizer steps (rounded up to whole epochs) instead of "
              "`epochs`")
MINIMUM_STEPS = Field(MIN_STEPS, ge=0, description="at least this many optimizer steps: on a small folder the "
                      "epochs grow until they reach it (0: exactly `epochs`)")


class TrainSection(Section):
    added_fields = ("steps", "min_steps", "patience", "precision", "probe_epochs", "finetune_lr", "layer_decay",
                    "trainable_layers")
    epochs: int = Field(8, gt=0)
    batch_size: int = Field(128, gt=0)
    lr: float = Field(2e-3, gt=0, description="peak learning rate (a fine-tuned teacher: of the linear probe's head)")
    weight_decay: float = Field(0.05, ge=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    steps: int | None = STEPS
    min_steps: int = MINIMUM_STEPS
    patience: int | None = Field(None, ge=1, description="early stopping: stop after this many epochs without a "
                                    "better val top-1 and keep the best epoch's weights (null: every epoch; a "
                                    "fine-tuned teacher still keeps its best epoch)")
    precision: Literal["auto", "fp32", "bf16"] | None = Field(
        None, description="training compute precision: bf16 autocast or fp32; auto = bf16 where the CPU (AMX / "
        "AVX-512 BF16) or GPU computes it natively; null = auto when fine-tuning a pretrained teacher, fp32 when "
        "training pocketvit's own teacher from scratch")
    probe_epochs: int = Field(2, ge=0, description="fine-tuning: augmented passes whose frozen features train the new "
                              "head alone (linear probe) before the whole network; 0 skips the probe")
    finetune_lr: float | None = Field(None, gt=0, description="fine-tuning: peak learning rate of the whole "
                                         "network after the probe (default lr / 10)")
    layer_decay: float | None = Field(None, gt=0, le=1, description="fine-tuning: layer-wise LR decay, each "
                                         "layer below the head gets this factor more (e.g. 0.8); null: one LR")
    trainable_layers: int | None = Field(None, ge=0, description="fine-tuning: train only the top N layers below "
                                            "the head (blocks, counted as layer_decay counts them) and the head; the "
                                            "rest stays pretrained, BatchNorm statistics included: a faster step and "
                                            "less to overfit on few images; null: the whole network")


class ModelSection(Section):
    arch: str = Field(..., description="pocketvit-resnet, pocketvit-tinyvit, timm:NAME or hf:FOLDER")
    options: dict[str, Any] = Field(default_factory=dict, description="architecture options")


class TeacherSource(ModelSection):
    """One teacher used as it comes (models/teachers.py): an ensemble member."""

    checkpoint: str | None = Field(None, description="safetensors weights")


class TeacherSection(ModelSection):
    added_fields = ("pretrained", "ensemble", "head", "init")
    arch: str = "pocketvit-resnet"
    checkpoint: str | None = Field(None, description="safetensors weights; trained from scratch when absent")
    finetune: bool = Field(False, description="train the checkpoint further with teacher.train; with "
                           "teacher.pretrained: fine-tune it on the data's classes (a new head, linear probe, then "
                           "the whole network)")
    train: TrainSection = TrainSection()
    pretrained: bool = Field(
        False, description="use the teacher as it comes: its own weights, classes and preprocessing (timm:NAME + "
        "checkpoint, efficientnet-lite:lite0's ImageNet weights); implied by open_clip:, hf:FOLDER, a build directory "
        "and ensemble")
    ensemble: list[TeacherSource] | None = Field(
        None, description="several teachers used as they come; their probabilities are averaged")
    head: Literal["auto", "keep", "new"] = Field(
        "auto", description="a pretrained teacher's classifier when fine-tuning: new (a head for the data's classes), "
        "keep (its own, e.g. an open_clip zero-shot head); auto = keep when the teacher's classes are the data's, "
        "else new. `new` alone implies teacher.finetune")
    init: Literal["pretrained", "random"] = Field(
        "pretrained", description="fine-tuning: start from the pretrained weights, or from random weights (the same "
        "architecture, preprocessing and schedule: the control that shows what pretraining gives)")

    @field_validator("ensemble")
    @classmethod
    def _members(cls, v: list[TeacherSource] | None) -> list[TeacherSource] | None:
        if v is not None and not v:
            raise ValueError("list at least one teacher, or drop ensemble")
        return v


class TeacherCacheSection(Section):
    epochs: int = Field(3, gt=0, description="augmented epochs to record (the student cycles through them)")
    topk: int = Field(5, gt=0, description="classes kept per sample (TinyViT: 10 of 1k)")
    batch_size: int = Field(500, gt=0)
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="teacher compute precision while recording; auto = bf16 where the CPU/GPU has it natively"
    )


class StudentSection(ModelSection):
    arch: str = "pocketvit-tinyvit"


class DistillSection(Section):
    added_fields = ("temperature", "baseline_in_parallel", "fast_train", "steps", "min_steps", "patience")
    epochs: int = Field(6, gt=0)
    batch_size: int = Field(128, gt=0)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(0.05, ge=0)
    temperature: float = Field(1.0, gt=0, le=20, description="KD temperature T: teacher re-tempered from the "
                               "cache, student logits / T, loss x T^2 (1 = TinyViT's plain soft cross-entropy)")
    steps: int | None = STEPS
    min_steps: int = MINIMUM_STEPS
    patience: int | None = Field(None, ge=1, description="early stopping on val top-1 (val teacher agreement on "
                                    "label-free data): stop after this many epochs without a better score and keep "
                                    "the best epoch (null: every epoch)")
    baseline: bool = Field(True, description="also train the student on labels only, same budget")
    baseline_label_smoothing: float = Field(0.1, ge=0, lt=1)
    baseline_in_parallel: bool = Field(
        True, description="on a CPU with 2+ cores, train the baseline in a second process beside distill (half the "
        "threads each; same stage, same result); false trains them one after the other")
    cache_bench_steps: int = Field(
        20, ge=0, description="training steps timed from the cache and with the teacher online (alternated) for "
        "report.json distill.cache_speedup; 0 skips the benchmark")
    cache_bench_threads: int = Field(
        1, ge=0, description="CPU threads while benchmarking (both arms alike); 1 keeps the ratio steady on a busy "
        "machine, 0 = the build's own thread count")
    fast_train: bool = Field(
        True, description="train the student (distill and baseline) in its training-time form and with fused AdamW: "
        "the same function, a faster step on CPU (README 'Faster training steps on CPU'); false = plain modules, "
        "PyTorch's for-loop AdamW")


class ExportSection(Section):
    added_fields = ("teacher", "baseline")
    targets: list[TargetName] = Field(default_factory=lambda: ["executorch"])
    dropin: list[Literal[RUNTIMES]] | None = Field(
        None, description="runtimes that also get a drop-in file (NHWC pixels in, normalization and softmax inside; "
        "Core ML: image input + classifier; target <runtime>-dropin); default: litert and coreml for those among "
        "the targets; [] for none")
    dropin_input: Literal["uint8", "float"] = Field("uint8", description="pixels a drop-in file takes")
    teacher: bool = Field(False, description="also export the teacher (with its own preprocessing inside, taking the "
                          "student's input) to the first float target and measure it there on the test split")
    baseline: bool = Field(False, description="also export the labels-only student (distill.baseline) to the first "
                           "float target and measure it there on the test split, beside the distilled student")
    no_rewrite: list[str] = Field(
        default_factory=list, description="export rewrites to switch off by name, or [all] (see `pocketvit export --help`)")

    @field_validator("targets")
    @classmethod
    def _non_empty(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("list at least one target")
        return list(dict.fromkeys(v))


class Tolerance(Section):
    max_abs_diff: float = Field(1e-3, gt=0, description="largest allowed |runtime - eager| on the logits")
    cosine: float = Field(0.999, gt=0, le=1)
    top1_agreement: float = Field(0.99, gt=0, le=1)


class VerifySection(Section):
    added_fields = ("on_mismatch",)
    latency_runs: int = Field(50, ge=5, description="timed batch-1 runs per target")
    threads: int = Field(2, ge=1, description="runtime threads for latency")
    tolerance: Tolerance = Tolerance()
    on_mismatch: Literal["fail", "drop", "keep"] = Field(
        "fail", description="a file outside its tolerance: fail the build (exit 6, no bundle), drop it from the "
        "bundle, or keep it marked as failed in the manifest, report and model card; changing it reruns no stage")


class QuantizeSection(Section):
    """int8 targets (export.targets: executorch-int8, litert-int8, onnx-int8, coreml-int8) read these settings."""

    added_fields = ("weights", "coreml_nbits", "qat", "qat_epochs", "qat_lr", "qat_teacher")
    budget: float = Field(0.005, ge=0, lt=1, description="largest allowed top-1 drop on held-out (val) images, "
                          "0.005 = 0.5 points; the most sensitive layers stay in float until it is met")
    calibration_images: int = Field(256, ge=1, le=20000, description="training images for calibration (never test)")
    held_out_images: int = Field(1000, ge=10, description="validation images for the sensitivity pass and budget")
    min_agreement: float = Field(0.99, ge=0, le=1, description="also keep layers in float until top-1 agreement with "
                                 "float on the held-out images reaches this")
    sensitivity: bool = Field(True, description="rank layers one at a time and keep the worst in float (mixed precision)")
    executorch: Literal["static", "dynamic"] = Field("static", description="XNNPACK int8: static (calibrated) or dynamic")
    litert: Literal["static", "dynamic"] = Field("static", description="full-integer (static) or dynamic-range")
    coreml: Literal["weights", "w8a8", "palettize"] = Field(
        "weights", description="int8 weights; w8a8 needs macOS to calibrate; palettize: k-means lookup-table weights "
        "of coreml_nbits bits")
    coreml_nbits: Literal[4, 6, 8] = Field(6, description="bits per weight index for coreml: palettize")
    qat: Literal["auto", "always", "never"] = Field(
        "auto", description="quantization-aware training for executorch-int8 / litert-int8: auto = only when all-int8 "
        "post-training quantization misses the budget (or min_agreement) on the held-out images")
    qat_epochs: int = Field(1, ge=1, le=100, description="QAT epochs (teacher cache's KD loss, else labels)")
    qat_lr: float = Field(1e-4, gt=0, description="QAT learning rate (AdamW)")
    qat_teacher: Literal["cache", "fp32"] = Field(
        "cache", description="QAT's targets: the build's teacher cache (labels without one), or the fp32 student's "
        "own logits (keeps top-1 agreement with the fp32 files)")
    weights: Literal["per-channel", "per-tensor"] = Field(
        "per-channel", description="ExecuTorch/LiteRT int8 weight scales: one per output channel, or one per tensor "
        "(smaller file: no scale arrays; the sensitivity pass and the budget check use the same choice)")
    tolerance: Tolerance = Field(Tolerance(max_abs_diff=2.0, cosine=0.99, top1_agreement=0.98),
                                 description="verify tolerance of int8 files against eager fp32")


class ExitsStage1(Section):
    epochs: int = Field(2, ge=0, description="end-to-end epochs, weighted sum of every exit's distillation loss")
    lr: float = Field(1e-3, gt=0)
    weights: list[float] | None = Field(
        None, description="loss weight per exit, final head last; default i/(E+1) for exit i and 1 for the final"
    )


class ExitsStage2(Section):
    epochs: int = Field(2, ge=0, description="epochs with the backbone frozen; exits self-distil from the final head")
    lr: float = Field(2e-3, gt=0)
    temperature: float = Field(2.0, gt=0, description="KL temperature T (LGViT: 2)")
    alpha: float = Field(0.3, ge=0, le=1, description="weight of the KL term (LGViT: 0.3)")


class ExitsSection(Section):
    after_blocks: list[int] = Field(..., min_length=1, description="an exit after each of these blocks (1-based)")
    heads: Literal["auto"] | list[Literal["local", "global"]] = Field(
        "auto", description="exit head per exit; auto = local perception in the first half, global aggregation after"
    )
    batch_size: int = Field(128, gt=0)
    weight_decay: float = Field(0.05, ge=0)
    stage1: ExitsStage1 = ExitsStage1()
    stage2: ExitsStage2 = ExitsStage2()
    budget: float = Field(0.005, ge=0, lt=1, description="largest allowed top-1 drop vs the full model (0.005 = 0.5 pt)")
    margin: float = Field(0.0, ge=0, lt=1, description="calibrate to budget - margin on the validation split")
    confidence: float | None = Field(
        0.95, ge=0.5, lt=1, description="the budget must hold as a one-sided bound at this confidence (measured val "
        "drop + z * its standard error); null: the val drop alone"
    )
    targets: list[TargetName] | None = Field(
        None, description="targets that get the segmented exit program; default: every fp32 export target"
    )


class ScaleSection(Section):
    """Where training and the teacher cache run (Lightning Fabric); results do not depend on it (same global batch)."""

    accelerator: Literal["auto", "cpu", "cuda", "gpu", "mps"] = Field("auto", description="auto: CUDA when present")
    devices: int | Literal["auto"] = Field(
        1, description="processes per node: GPUs, or CPU processes; auto = every visible GPU; torchrun's "
        "--nproc-per-node wins when launched by torchrun")
    num_nodes: int = Field(1, ge=1, description="machines; torchrun's --nnodes wins when launched by torchrun")
    strategy: Literal["auto", "ddp", "fsdp"] = Field(
        "auto", description="auto = DDP when several processes; fsdp shards teacher and student across GPUs")
    precision: Literal["auto", "32-true", "bf16-mixed", "16-mixed"] = Field(
        "auto", description="training precision; auto = bf16-mixed on a GPU with bf16, else 32-true")

    @field_validator("devices")
    @classmethod
    def _positive(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError("must be >= 1 or auto")
        return v


class TextStudentSection(Section):
    """TinyCLIP on text: a smaller encoder inherited from the text teacher, distilled on real sentences."""

    layers: int = Field(3, ge=1, description="layers kept, evenly spaced (first and last included)")
    heads: int | None = Field(None, ge=1, description="leading attention heads kept (width = heads x head size)")
    intermediate: int | None = Field(None, ge=1, description="leading FFN channels kept")
    epochs: int = Field(3, gt=0)
    batch_size: int = Field(64, gt=0)
    lr: float = Field(3e-4, gt=0)
    affinity_weight: float = Field(1.0, ge=0, description="weight of TinyCLIP affinity mimicking (scale 50)")
    cosine_weight: float = Field(1.0, ge=0, description="weight of 1 - cos(student, teacher)")
    random_baseline: bool = Field(True, description="also train a randomly initialised student of the same shape")
    train_limit: int | None = Field(None, ge=8, description="use only this many training sentences")
    heldout_limit: int | None = Field(None, ge=8, description="use only this many held-out sentences")


class ClipSection(Section):
    """CLIP-style distillation (clip/build.py): the student becomes an image tower in the text teacher's space."""

    text_teacher: str = Field("minilm", description="minilm, hf:/path/to/folder or open_clip:ARCH")
    text_checkpoint: str | None = Field(None, description="safetensors checkpoint of an open_clip text teacher")
    image_teachers: list[str] = Field(
        default_factory=lambda: ["weights/fashion-mnist-teacher.safetensors"], min_length=1,
        description="checkpoints (teacher.arch/options) whose features get a LiT projection each, or `open_clip` "
        "(the open_clip text teacher's own image tower): the ensemble")
    heldout_classes: list[str] = Field(default_factory=list, description="class labels kept out of all training")
    captions_per_image: int = Field(5, ge=1, le=13, description="captions stored per image (real + synthetic + templated)")
    augmentations: int = Field(2, ge=1, description="augmentations per image in the reinforced dataset")
    lit_epochs: int = Field(6, gt=0, description="epochs of the teachers' projection heads")
    lit_lr: float = Field(3e-3, gt=0)
    scale: float = Field(100.0, gt=0, description="logit scale of CLIP and KD losses (MobileCLIP: 100)")
    kd_weight: float = Field(1.0, ge=0, description="lambda of the similarity-matrix KD loss (MobileCLIP small: 1.0)")
    text_student: TextStudentSection | None = None
    # typed prompts on the device (clip/text_bundle.py): the bundle carries this text encoder + its vocabulary
    text_encoder_in_bundle: Literal["teacher", "student"] | None = Field(
        None, description="put a text encoder in the zero-shot bundle: the text teacher (which made the class "
        "embeddings) or the TinyCLIP text student (needs text_student); null = class embeddings only")
    text_encoder_max_tokens: int = Field(64, ge=3, le=512, description="tokens per prompt in the bundle's text "
                                         "encoder, [CLS] and [SEP] included (longer prompts are cut)")
    text_encoder_targets: list[Literal[TEXT_RUNTIMES]] = Field(
        default_factory=lambda: ["onnx"], min_length=1, description="runtimes the text encoder is exported for")
    text_encoder_eval_sentences: int | None = Field(
        None, ge=1, description="held-out sentences for the text encoder's runtime-vs-eager cosine (null = all)")


class Recipe(Section):
    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    seed: int = 0
    data: DataSection = DataSection()
    teacher: TeacherSection = TeacherSection()
    teacher_cache: TeacherCacheSection = TeacherCacheSection()
    student: StudentSection = StudentSection()
    distill: DistillSection = DistillSection()
    export: ExportSection = ExportSection()
    verify: VerifySection = VerifySection()
    exits: ExitsSection | None = None
    quantize: QuantizeSection = QuantizeSection()
    scale: ScaleSection = ScaleSection()
    clip: ClipSection | None = None  # CLIP-style build (clip/build.py): zero-shot bundle

    @model_validator(mode="after")
    def _baseline_to_export(self) -> Recipe:
        if self.export.baseline and not self.distill.baseline:
            raise ValueError("export.baseline exports the labels-only student, which distill.baseline: false does "
                             "not train; set distill.baseline: true or drop export.baseline")
        return self
