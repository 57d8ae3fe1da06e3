"""A strict fake of ais_bench (Ascend inference tool) that runs fake .om models with ONNX Runtime."""
