"""Files a run keeps (config.json, eval.json, best.json, classifier.json), written whole or not at all: a run
killed mid-write leaves the previous file, never half of one, so a resume can always read it back."""
import json
import os


def write_text(path: str, text: str) -> None:
    """Writes `text` to a temporary file beside `path`, then renames it over `path` (atomic on POSIX)."""
    partial = f"{path}.{os.getpid()}.tmp"
    with open(partial, "w") as f:
        f.write(text)
    os.replace(partial, path)


def write_json(path: str, value) -> None:
    """`value` as indented JSON at `path`, atomically (`write_text`)."""
    write_text(path, json.dumps(value, indent=2))
