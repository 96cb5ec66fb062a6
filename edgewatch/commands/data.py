"""``edgewatch data``: generate and transform data sets."""

from edgewatch.commands.groups import lazy_group

data = lazy_group(
    "data",
    "Make data: synthetic benchmark series, corrupted image sets.",
    {
        "synth": "edgewatch.commands.data_synth:command",
        "corrupt": "edgewatch.commands.data_corrupt:command",
    },
)
