"""``gateway demo people`` lists persons of the data set the gateway was started with."""

from __future__ import annotations

from typer.testing import CliRunner

from gateway.demo.data import generate
from gateway.entrypoints.cli import DEMO_SEED, app


def test_demo_people_follows_the_data_set_size() -> None:
    """Issue 10 review, finding 11: with --persons 300, the listed people are those of the 300-person set."""
    out = CliRunner().invoke(app, ["demo", "people", "--persons", "300", "--count", "3"]).output
    small = generate(DEMO_SEED, 300)
    listed = [nid for h in small.households[:3] for nid in h.members]
    assert listed and all(nid in out for nid in listed)
