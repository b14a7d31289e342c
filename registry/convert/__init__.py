"""Local conversion of a repo's safetensors into a GGUF file, quantized as llama.cpp does."""
