"""rtlgen: quantized neural networks (QONNX) to streaming-dataflow FPGA accelerators."""
__version__ = "0.1.0"
