"""One module per `vlmprobe` subcommand (see vlmprobe/cli.py)."""
