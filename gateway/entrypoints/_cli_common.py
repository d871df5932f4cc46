"""What the CLI's command groups share: one-line refusals and the demo set-up's folder."""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["demo_folder", "refuse", "require_demo_set_up"]


def refuse(message: str) -> typer.Exit:
    """One line on stderr; raise the returned exit (code 2: the command line or the configuration is wrong)."""
    typer.echo(message, err=True)
    return typer.Exit(2)


def demo_folder(config: Path | None, data_dir: Path) -> Path:
    """``--config FILE`` names the demo set-up by its configuration: the data folder is the file's folder."""
    return config.parent if config is not None else data_dir


def require_demo_set_up(data_dir: Path) -> None:
    """Demo tokens are signed by the keys ``serve --demo`` created: refuse a folder without them, creating nothing."""
    from gateway.demo.setup import CONFIG_NAME  # lazily, like the CLI's other demo imports

    if not (data_dir / CONFIG_NAME).is_file() or not (data_dir / "keys").is_dir():
        raise refuse(f"no demo set-up in {data_dir}: run `gateway serve --demo --data-dir {data_dir}` first "
                     "(demo tokens are signed by the keys it creates)")  # fmt: skip
