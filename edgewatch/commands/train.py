"""``edgewatch train FAMILY``: one subcommand per model family."""

from edgewatch.commands.groups import lazy_group

train = lazy_group(
    "train",
    "Train a model family on nominal data and calibrate its threshold (needs edgewatch[train]; pca does not).",
    {
        "lstm-ae": "edgewatch.commands.train_lstm_ae:command",
        "deepant": "edgewatch.commands.train_deepant:command",
        "rnn-ae": "edgewatch.commands.train_rnn_ae:command",
        "conv-ae": "edgewatch.commands.train_conv_ae:command",
        "pca": "edgewatch.commands.train_pca:command",
        "conv1d-ae": "edgewatch.commands.train_conv1d_ae:command",
    },
    epilog="""\b
Examples (a CSV of your own equipment: 'edgewatch fit' chooses all of this for you):
  edgewatch train deepant --data ../shared/datasets/nab/data/realTraffic/TravelTime_451.csv -o deepant.ckpt
  edgewatch train conv-ae --dataset fashion-mnist --max-train 6000 --epochs 12 -o conv-ae.ckpt
Then: edgewatch export onnx deepant.ckpt -o deepant.onnx""",
)
