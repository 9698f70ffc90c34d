"""ROLL (placeholder while being written)."""
import re
NAME = "roll"
PATH = re.compile(r"(?!)x")
SUFFIX = ".jsonl"
NAMES_TEXT = "ROLL"
TOKEN_CHANNELS = ()
FIELDS = ()
def series(m): return "roll"
def read(data, problems, ctx): return []
