"""Ollama: Modelfiles for GGUF models and writing a model straight into Ollama's store."""
