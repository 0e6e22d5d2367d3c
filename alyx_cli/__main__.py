"""`python -m alyx_cli`: the same as the `alyx` script."""

from alyx_cli.main import cli

if __name__ == "__main__":
    cli(prog_name="alyx")
