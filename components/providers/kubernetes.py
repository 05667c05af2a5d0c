"""Kubernetes (a GPU node pool on an existing DigitalOcean Kubernetes cluster): not built yet.

A GPU pool on DOKS is not "a machine with a firewall": it is a node pool plus a Deployment, Service and
NetworkPolicy, so it will implement the components differently. Until it exists, choosing it stops the
program with one config message before any resource is registered, never a traceback.
"""

from __future__ import annotations

from gpu_inference.errors import ConfigError

UNSUPPORTED = (
    "gpu-inference:provider = 'kubernetes' is not supported yet by the Pulumi program "
    "(the DOKS GPU node pool is planned); choose digitalocean or aws"
)


class KubernetesProvider:
    name = "kubernetes"

    def __init__(self) -> None:
        raise ConfigError([UNSUPPORTED])
