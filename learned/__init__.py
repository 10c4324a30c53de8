"""Equinox networks that learn the entropy-matching vector e_theta, and how to train them.

Here: the networks (`EntropyMLP`, `Pair`, `Preconditioned`, `ClassCentred`, `ClassGaussianBase`, `EntropyUNet`), the
DEM loss (Eq. 40) with its weightings and time densities, the one training loop `train` (Adam/AdamW, EMA, held-out
validation, fingerprinted checkpoints, exact resume, data parallelism), the image data sets by name (`DATASETS`,
`load_dataset`) and the small classifier whose held-out cross-entropy bounds I(X;Y) from below.

May import `gaussian_oracle` (the process and the time densities); never `verify`.
"""

from gaussian_oracle import (
    AbstractTimeDensity as AbstractTimeDensity,
    LogSNRTime as LogSNRTime,
    UniformTime as UniformTime,
)
from ._loss import (
    AbstractWeighting as AbstractWeighting,
    Constant as Constant,
    DEMLoss as DEMLoss,
    ImportanceTime as ImportanceTime,
    Likelihood as Likelihood,
    dem_loss as dem_loss,
    dem_residual as dem_residual,
)
from ._mlp import (
    AbstractCondition as AbstractCondition,
    EntropyMLP as EntropyMLP,
    LabelCondition as LabelCondition,
    MLPConfig as MLPConfig,
    Pair as Pair,
    VectorCondition as VectorCondition,
)
from ._gaussian_base import ClassGaussianBase as ClassGaussianBase, ClassGaussians as ClassGaussians
from ._precondition import ClassCentred as ClassCentred, Preconditioned as Preconditioned
from ._train import (
    TrainConfig as TrainConfig,
    TrainResult as TrainResult,
    TrainingLoss as TrainingLoss,
    Validation as Validation,
    load_checkpoint as load_checkpoint,
    train as train,
)
from ._unet import (
    EntropyUNet as EntropyUNet,
    UNetConfig as UNetConfig,
    parameter_count as parameter_count,
    unet_forward_flops as unet_forward_flops,
)
from ._datasets import (
    ImageData as ImageData,
    load_cifar10 as load_cifar10,
    load_digits as load_digits,
    load_fashion_mnist as load_fashion_mnist,
    load_mnist as load_mnist,
    load_mnist5k as load_mnist5k,
    load_tiny_imagenet as load_tiny_imagenet,
    read_idx as read_idx,
)
from ._parallel import DataParallel as DataParallel
from ._classifier import (
    ClassifierConfig as ClassifierConfig,
    ClassifierLoss as ClassifierLoss,
    ConvClassifier as ConvClassifier,
    cross_entropy as cross_entropy,
    train_classifier as train_classifier,
)
from ._datasets import (
    DATASETS as DATASETS,
    FASHION_MNIST_DIR as FASHION_MNIST_DIR,
    DatasetSpec as DatasetSpec,
    load_dataset as load_dataset,
)
from ._guided import (
    ClassifierGuided as ClassifierGuided,
    GuidedLoss as GuidedLoss,
    NoisyClassifier as NoisyClassifier,
    NoisyClassifierLoss as NoisyClassifierLoss,
    NoisyMLPClassifier as NoisyMLPClassifier,
    noisy_cross_entropy as noisy_cross_entropy,
    noisy_cross_entropy_curve as noisy_cross_entropy_curve,
    train_noisy_classifier as train_noisy_classifier,
    ZeroNetwork as ZeroNetwork,
)
from ._encoder import (
    AbstractEncoder as AbstractEncoder,
    ConvEncoder as ConvEncoder,
    EncoderConfig as EncoderConfig,
    LinearEncoder as LinearEncoder,
)
from ._autoencoder import (
    VAE as VAE,
    AutoencoderLoss as AutoencoderLoss,
    DiffusionAutoencoder as DiffusionAutoencoder,
    SplitAutoencoder as SplitAutoencoder,
    UNetDecoder as UNetDecoder,
    VAELoss as VAELoss,
    encode_batch as encode_batch,
)
