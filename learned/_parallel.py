"""Data parallelism through `jax.sharding`: one mesh axis over the devices, the batch split along it.

Parameters, optimiser state and the (device-resident) data are replicated on every device; inside the jitted step
each minibatch is constrained to be split along the batch axis, and XLA's SPMD partitioner inserts the gradient
all-reduce. The random draws do not depend on the sharding, so a data-parallel run reproduces the single-device run
up to the order of floating-point reductions. On one device (a single GPU) everything is a no-op.
Test on a CPU with `XLA_FLAGS=--xla_force_host_platform_device_count=4`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import equinox as eqx
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxtyping import Array, PyTree

__all__ = ["DataParallel"]


@dataclasses.dataclass(frozen=True)
class DataParallel:
    """A one-axis device mesh for data parallelism (frozen and hashable: static under jit).

    **Arguments:**

    - `mesh`: a `jax.sharding.Mesh` with one axis named `axis`; build it with `DataParallel.over(devices)`.
    - `axis`: the mesh axis the batch is split along.
    """

    mesh: Mesh
    axis: str = "batch"

    def __post_init__(self):
        if not isinstance(self.mesh, Mesh) or self.mesh.axis_names != (self.axis,):
            raise ValueError(f"DataParallel needs a Mesh with the single axis {self.axis!r}; got {self.mesh!r}.")

    @classmethod
    def over(cls, devices: Sequence[jax.Device] | None = None, axis: str = "batch") -> "DataParallel":
        """A mesh over `devices` (default: all of `jax.devices()`)."""
        devices = jax.devices() if devices is None else list(devices)
        if not devices:
            raise ValueError("DataParallel.over needs at least one device.")
        return cls(Mesh(np.asarray(devices), (axis,)), axis)

    @property
    def num_devices(self) -> int:
        return int(self.mesh.devices.size)

    @property
    def batch_sharding(self) -> NamedSharding:
        """Leading axis split over the devices, other axes whole."""
        return NamedSharding(self.mesh, PartitionSpec(self.axis))

    @property
    def replicated_sharding(self) -> NamedSharding:
        """A full copy on every device."""
        return NamedSharding(self.mesh, PartitionSpec())

    def check_batch(self, batch_size: int) -> None:
        """Raise unless `batch_size` splits evenly over the devices."""
        if batch_size % self.num_devices:
            raise ValueError(f"batch size {batch_size} must be a multiple of the number of devices ({self.num_devices}).")

    def replicate(self, tree: PyTree) -> PyTree:
        """Place every array leaf of `tree` (parameters, optimiser state, resident data) on every device."""
        return jax.tree.map(lambda a: jax.device_put(a, self.replicated_sharding) if eqx.is_array(a) else a, tree)

    def shard(self, tree: PyTree) -> PyTree:
        """Place every array leaf of `tree` split along its leading (batch) axis."""
        return jax.tree.map(lambda a: jax.device_put(a, self.batch_sharding) if eqx.is_array(a) else a, tree)

    def constrain(self, batch: Array | None) -> Array | None:
        """Inside jit: ask XLA to split `batch` along its leading axis (`None` passes through)."""
        if batch is None:
            return None
        return jax.lax.with_sharding_constraint(batch, self.batch_sharding)
