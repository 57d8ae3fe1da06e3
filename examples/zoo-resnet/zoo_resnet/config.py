"""ResNet-50 declared: torchvision's weights, the ModelZoo recipe's input names, and the Ascend AIPP recipe."""

from pathlib import Path

from zoo_core.api import Accuracy, ModelSpec, Preprocessing, Resize, WeightsSpec

# The recipe's host side for Ascend: decode, RGB, squash to 256x256 (bilinear), uint8 HWC. The chip's static AIPP
# (aipp_resnet50.cfg) then crops [16:240] and normalises: the core's "modelzoo" preset, done on the chip.
AIPP = Preprocessing("aipp", steps=(Resize("squash", crop_fraction=0.875, rounding="round"),), scale=None,
                     normalize=False, dtype="uint8", layout="HWC", description="squash to 256x256, uint8 HWC")

MODELS = (ModelSpec(
    name="resnet50", family="resnet", factory="zoo_resnet.model:build_resnet",
    factory_kwargs={"layers": (3, 4, 6, 3)}, input_names=("actual_input_1",), output_names=("output1",),
    presets=("modelzoo", AIPP),  # ImageNet mean/std, 3x224x224 float32 NCHW and opset 11 are the defaults
    weights=WeightsSpec(url="https://download.pytorch.org/models/resnet50-0676ba61.pth", sha256_prefix="0676ba61"),
    license="BSD-3-Clause",
    reference_accuracy=Accuracy(top1=0.7613, source="torchvision IMAGENET1K_V1, its evaluation"),
    description="ResNet v1.5 (stride on the 3x3 conv), layers [3, 4, 6, 3], torchvision-compatible weights",
    # On Ascend the compiled model takes the 256x256 uint8 images of the "aipp" preset; its AIPP does the rest.
    backend_inputs={"ascend": {"shape": (256, 256, 3), "dtype": "uint8", "format": "NHWC", "preset": "aipp"}},
    backend_args={"ascend": {"insert_op_conf": str(Path(__file__).resolve().parent / "aipp_resnet50.cfg")}},
),)
