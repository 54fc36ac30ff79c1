"""One module per ``kserve-llmd`` subcommand: ``HELP``, ``add_arguments(parser)``, ``run(args) -> int``."""
