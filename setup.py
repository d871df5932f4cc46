"""Build hook: the wheel carries the code generated from ``proto/`` and the ``.proto`` contracts.

Everything else about the package is in ``pyproject.toml``. ``build_py`` runs
``gateway/codegen.py`` (loaded by path: the package is not importable while it
is being built) with grpcio-tools, a build requirement only, and copies
``proto/`` to ``gateway/proto/`` in the build. An editable install
(``pip install -e .``, as ``make`` does) generates into the source tree instead,
like ``make gen``.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


def _codegen():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("_passerelle_codegen", HERE / "gateway" / "codegen.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _generated_packages() -> list[str]:
    """The packages ``gateway/_pb`` holds once generated: one per folder of ``proto/``."""
    names = {"gateway._pb"}
    for proto in (HERE / "proto").rglob("*.proto"):
        parts = proto.relative_to(HERE / "proto").parent.parts
        names |= {".".join(("gateway._pb", *parts[:n])) for n in range(1, len(parts) + 1)}
    return sorted(names)


class BuildWithGeneratedCode(build_py):
    """``build_py`` plus ``gateway/_pb`` (generated, with ``.pyi``) and ``gateway/proto`` (the contracts)."""

    def run(self) -> None:
        codegen = _codegen()
        if getattr(self, "editable_mode", False):
            codegen.generate()   # into the source tree, as `make gen`
            # On a fresh clone gateway/_pb did not exist when setuptools found the packages: list them,
            # or each generated folder is a screenful of "Package would be ignored".
            self.packages = sorted({*(self.packages or []), *_generated_packages()})
            super().run()
            return
        super().run()
        package = Path(self.build_lib) / "gateway"
        codegen.generate(package / "_pb")
        shutil.rmtree(package / "proto", ignore_errors=True)
        shutil.copytree(codegen.PROTO_DIR, package / "proto", ignore=shutil.ignore_patterns("*.py", "__pycache__"))


setup(cmdclass={"build_py": BuildWithGeneratedCode})
