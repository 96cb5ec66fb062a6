"""``edgewatch data``: generate and transform data sets."""

from edgewatch.commands.groups import lazy_group

data = lazy_group(
    "data",
    "Make data: synthetic benchmark series, corrupted image sets.",
    {
        "synth": "edgewatch.commands.data_synth:command",
        "corrupt": "edgewatch.commands.data_corrupt:command",
    },
    epilog="""\b
Examples:
  edgewatch data synth -o synth --seed 0
  edgewatch data corrupt --images ../shared/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz \\
      --corruption blur,stripes --severity 3 --fraction 0.5 -o mixed.npy""",
)
