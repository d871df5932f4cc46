"""Generate Python code from ``proto/`` (the single source of truth).

Run as ``python -m gateway.codegen``.  Output goes to ``gateway/_pb/`` (git-ignored)
with ``.pyi`` stubs.  protoc's Python generator has no import prefix option, so
imports between our own generated modules are rewritten to live under
``gateway._pb``; imports of ``google.*`` keep pointing at the installed
googleapis-common-protos and protobuf packages.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

__all__ = ["generate", "main"]

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_DIR = Path(__file__).resolve().parent / "_pb"
PREFIX = "gateway._pb"


def _include_dirs() -> list[str]:
    import grpc_tools
    from google.api import annotations_pb2  # googleapis-common-protos ships its .proto files

    googleapis_root = Path(annotations_pb2.__file__).resolve().parent.parent.parent
    return [
        str(PROTO_DIR),
        str(Path(grpc_tools.__file__).resolve().parent / "_proto"),
        str(googleapis_root),
    ]


def _our_roots() -> list[str]:
    return sorted(p.name for p in PROTO_DIR.iterdir() if p.is_dir() and p.name != "google")


def _rewrite_imports(path: Path, roots: list[str]) -> None:
    pattern = re.compile(rf"^(from|import) ({'|'.join(map(re.escape, roots))})(\.|\s)", re.M)
    text = path.read_text()
    new = pattern.sub(lambda m: f"{m.group(1)} {PREFIX}.{m.group(2)}{m.group(3)}", text)
    if new != text:
        path.write_text(new)


def generate(out_dir: Path = OUT_DIR) -> list[Path]:
    """Compile every ``.proto`` under ``proto/``; return the generated files."""
    from grpc_tools import protoc

    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    args = ["protoc", *(f"-I{d}" for d in _include_dirs())]
    args += [f"--python_out={out_dir}", f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}"]
    if protoc.main([*args, *protos]) != 0:
        raise SystemExit("protoc failed")
    roots = _our_roots()
    generated = [p for p in out_dir.rglob("*.py*") if p.suffix in (".py", ".pyi")]
    for path in generated:
        _rewrite_imports(path, roots)
    for directory in [out_dir, *(p for p in out_dir.rglob("*") if p.is_dir())]:
        (directory / "__init__.py").touch()
    return generated


def main() -> None:
    files = generate()
    print(f"generated {len(files)} files in {OUT_DIR.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
