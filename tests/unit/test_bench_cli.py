"""``python -m bench`` from a clone whose gateway/ has no generated code says so in one line."""

from __future__ import annotations

import importlib.util

import pytest

from bench.__main__ import generated_code_problem, main


def test_without_generated_code_nor_grpcio_tools_the_bench_names_the_folder_and_what_to_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("gateway._pb", "grpc_tools") else real(name, *a))  # fmt: skip
    problem = generated_code_problem()
    assert "gateway/_pb" in problem and "python -m gateway.codegen" in problem
    assert main(["--duration", "1"]) == 2
    assert capsys.readouterr().err.strip() == problem


def test_with_generated_code_there_is_nothing_to_say() -> None:
    assert generated_code_problem() == ""
