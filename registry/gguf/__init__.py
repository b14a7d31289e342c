"""GGUF pulls: quant labels and choice, and finding a GGUF repo quantized from one that has none."""
