"""One module per ``edgewatch`` subcommand; see :mod:`edgewatch.cli`."""
