"""Ollama Modelfiles for GGUF models: chat template families, the Modelfile grammar, and
`prepare_modelfile` (pull the GGUF, read its facts, write the Modelfile).

    templates.py   recognise a Jinja chat template; the family's Go template and stop words
    render.py      Modelfile instructions and their text, quoted as Ollama's parser reads them
    facts.py       what the GGUF header and the repo's small files say (template, license, size)
    prepare.py     prepare_modelfile: choose + pull + facts + Modelfile (CLI and daemon)
"""

from mreg.registry.ollama.modelfile.facts import ModelFacts, read_facts
from mreg.registry.ollama.modelfile.prepare import NUM_CTX_CAP, PreparedModel, build_modelfile, prepare_modelfile
from mreg.registry.ollama.modelfile.render import PARAMETER_TYPES, Modelfile, quote, read_value, render
from mreg.registry.ollama.modelfile.templates import FAMILIES, ChatFamily, default_system, recognise

__all__ = [
    "FAMILIES",
    "NUM_CTX_CAP",
    "PARAMETER_TYPES",
    "ChatFamily",
    "ModelFacts",
    "Modelfile",
    "PreparedModel",
    "build_modelfile",
    "default_system",
    "prepare_modelfile",
    "quote",
    "read_facts",
    "read_value",
    "recognise",
    "render",
]
