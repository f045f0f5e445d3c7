"""Encoders: turn clips into embeddings (ONNX Runtime) and export checkpoints to ONNX."""
