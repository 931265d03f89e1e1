"""Input processing: chat messages with images and videos -> token ids and pixel patches."""
from .errors import InputError
from .processor import ProcessedInputs, Processor
from .tokenizer import IncrementalDecoder, Tokenizer

__all__ = ["Processor", "ProcessedInputs", "Tokenizer", "IncrementalDecoder", "InputError"]
