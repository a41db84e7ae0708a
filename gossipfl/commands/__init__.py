"""Subcommands of the ``gossipfl`` CLI; each module has ``add_arguments`` and ``run``."""
