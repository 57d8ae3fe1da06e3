"""The built-in backend plugins: ONNX Runtime (the CPU default) and PyTorch eager (the reference)."""
