"""Local conversion of safetensors checkpoints to GGUF."""
