"""The clouds a stack can run on, keyed by the ``gpu-inference:provider`` value.

Adding a cloud is: one pure module here (a ``Cloud`` subclass: type tokens, prices, name rules, firewall
reading, preview mocks, volume devices), one Pulumi module under ``components/`` (named by its
``pulumi_module``), one line in ``CLOUDS`` below, and its rows in the catalog data
(``gpu_inference/data/offerings/``). Nothing else names a cloud: the config, the pricing, the policies, the
preview and the program all ask this registry.
"""

from __future__ import annotations

from gpu_inference.clouds import aws, digitalocean, kubernetes
from gpu_inference.clouds.base import Cloud, CloudMocks, FakeAddress, Layout, OpenPort

CLOUDS: dict[str, Cloud] = {
    digitalocean.NAME: digitalocean.CLOUD,
    aws.NAME: aws.CLOUD,
    kubernetes.NAME: kubernetes.CLOUD,
}


def names() -> tuple[str, ...]:
    """Every valid ``gpu-inference:provider`` value, in registry order."""
    return tuple(CLOUDS)


def cloud_for(provider: str) -> Cloud:
    """The cloud of a ``provider`` value (already validated by the config: a miss is a programming error)."""
    try:
        return CLOUDS[provider]
    except KeyError:
        raise LookupError(f"unknown provider {provider!r}; choose one of {', '.join(CLOUDS)}") from None


def catalog_clouds() -> tuple[str, ...]:
    """The clouds the catalog has rows for (those the registry's clouds buy from)."""
    return tuple(dict.fromkeys(c.catalog_cloud for c in CLOUDS.values()))


__all__ = ["CLOUDS", "Cloud", "CloudMocks", "FakeAddress", "Layout", "OpenPort", "catalog_clouds", "cloud_for", "names"]
