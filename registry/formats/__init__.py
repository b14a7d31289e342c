"""Sans-I/O parsers of model file headers (safetensors, GGUF) and what the headers tell.

Nothing in this package does I/O or imports asyncio or aiohttp; `registry.inspect.reading` drives the
parsers over local files and ranged GETs.
"""

from mreg.registry.formats.events import HeaderParsed, NeedBytes, TensorInfo
from mreg.registry.formats.gguf import GGUFArray, GGUFHeaderParser
from mreg.registry.formats.safetensors import SafetensorsHeaderParser, ShardIndex, parse_index
from mreg.registry.formats.summary import GGUFInfo, HeaderSummary, gguf_info, quant_label_from_filename, summarize

__all__ = [
    "GGUFArray",
    "GGUFHeaderParser",
    "GGUFInfo",
    "HeaderParsed",
    "HeaderSummary",
    "NeedBytes",
    "SafetensorsHeaderParser",
    "ShardIndex",
    "TensorInfo",
    "gguf_info",
    "parse_index",
    "quant_label_from_filename",
    "summarize",
]
