"""Measuring a network: BatchNorm folding, the latency protocol and its runtimes, serialization
(ONNX, TorchScript), the reference network for cross-machine ratios, parameter and MAC counts."""
