"""The one command-line entry (``python run_sim.py``).

Each room contributes its own click commands (``kernels.cli``, ...); this module only assembles them and
turns user errors into one line on stderr with exit status 2.
"""

from __future__ import annotations

import sys
from typing import Sequence

import click

from engram.errors import EngramError

PROG = "run_sim.py"
USAGE_EXIT = 2


class RootGroup(click.Group):
    """Root command: runs the main job when no subcommand is given."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_paragraph()
        formatter.write_text(
            "Run without a command to do the main job on the bundled defaults. "
            "Every command takes --help."
        )


@click.group(cls=RootGroup, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="engram", prog_name="engram")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Engram: simulate semantic-memory caching and early exit for CNN inference on real device
    profiles, and plan activation memory."""
    if ctx.invoked_subcommand is None:
        from engram.main_job import main_job

        ctx.invoke(main_job)


def _register() -> None:
    # One line per room command; rooms keep their commands next to the code they run.
    from kernels.cli import models, reference
    from kernels.memplan.cli import memplan
    from profiles.cli import profile
    from runtime.cli import export_cmd, validate_cmd
    from simulator.cli import compare_cmd, simulate_cmd
    from simulator.sweep_cmd import sweep_cmd
    from traces.cli import trace

    cli.add_command(models)
    cli.add_command(reference)
    cli.add_command(memplan)
    cli.add_command(profile)
    cli.add_command(trace)
    cli.add_command(simulate_cmd)
    cli.add_command(compare_cmd)
    cli.add_command(sweep_cmd)
    cli.add_command(export_cmd)
    cli.add_command(validate_cmd)


_register()


def _say_error(where: str, message: str) -> None:
    click.echo(f"{where}: error: {message}".replace("\n", " "), err=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status instead of raising (user errors -> 2, no traceback)."""
    try:
        rv = cli.main(args=list(argv) if argv is not None else None, prog_name=PROG, standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else PROG
        _say_error(where, exc.format_message())
        return USAGE_EXIT
    except click.ClickException as exc:
        _say_error(PROG, exc.format_message())
        return USAGE_EXIT
    except EngramError as exc:
        _say_error(PROG, str(exc))
        return USAGE_EXIT
    except click.Abort:
        _say_error(PROG, "aborted")
        return 130
    except KeyboardInterrupt:
        _say_error(PROG, "interrupted")
        return 130
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
