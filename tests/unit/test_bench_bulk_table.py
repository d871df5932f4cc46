"""The bulk scenario's tables: one row per pass, the medians of alternated rounds, memory against size."""

from __future__ import annotations

from bench.bulk import memory_table, table


def _row(protocol: str, single: int, bulk: int, round_no: int) -> dict[str, object]:
    return {"protocol": protocol, "items": 10_000, "concurrency": 32, "round": round_no,
            "single_items_per_s": single, "bulk_items_per_s": bulk, "bulk_over_single": round(bulk / single, 2),
            "gateway_rss_before_bulk_mb": 118.0, "gateway_peak_rss_during_bulk_mb": 121.5, "single_errors": 0,
            "bulk_errors": 0, "single_cpu_us_per_item": {"gateway": 1600, "registries": 700, "client": 350},
            "bulk_cpu_us_per_item": {"gateway": 480, "registries": 60, "client": 38}}  # fmt: skip


def test_rounds_and_their_median_are_rows_of_the_table() -> None:
    rows = [_row("rest", 555, 1827, 1), _row("rest", 600, 1879, 2),
            {"protocol": "rest", "items": 10_000, "concurrency": 32, "round": "median", "single_items_per_s": 555,
             "bulk_items_per_s": 1827, "bulk_over_single": 3.29, "bulk_over_single_min": 3.13,
             "bulk_over_single_max": 3.29}]  # fmt: skip
    text = table(rows)
    lines = text.splitlines()
    assert len(lines) == 2 + 3
    assert "| rest | 10,000 | 555 | 1,827 | 3.29× |" in lines[2]
    assert "1600 / 700 / 350" in lines[2] and "480 / 60 / 38" in lines[2]
    assert lines[4].startswith("| rest median | 10,000 | 555 | 1,827 | **3.29×** (3.13–3.29)")


def test_memory_table_shows_growth_per_size() -> None:
    text = memory_table([{"protocol": "grpc", "items": 100_000, "items_per_s": 2057, "rss_before_mb": 118.8,
                          "rss_peak_mb": 142.9, "rss_growth_mb": 24.0}])
    assert "| grpc | 100,000 | 2,057 | 118.8 → 142.9 MB | +24.0 MB |" in text
