"""Kubernetes: a GPU node pool on an existing DigitalOcean Kubernetes (DOKS) cluster, vLLM as a Deployment.

A GPU pool on Kubernetes is not "machines with firewalls", so this provider does not implement the
machine interface: ``KubernetesGpuPool`` replaces LoadBalancedPool for ``provider: kubernetes``.

- ``digitalocean.KubernetesNodePool`` of the catalog's GPU slug on the cluster ``kubernetes.clusterId``.
  DOKS installs the NVIDIA driver and device plugin on GPU nodes and taints them
  ``nvidia.com/gpu:NoSchedule``; the pods tolerate that and select the pool by its DOKS label.
- The vLLM Deployment runs the same pinned image with the same flags as the droplets (``vllm_args``),
  the API key and HF token from a Secret (vLLM enforces ``VLLM_API_KEY`` itself, so no Nginx is needed
  in front), one replica per node, each asking for all the node's GPUs.
- A ``LoadBalancer`` Service (a DigitalOcean load balancer) spreads requests; its source ranges are the
  world when publicEndpoint, else allowedCidrs.
- The kubeconfig comes from the cluster itself (read, never managed, by this stack) and stays secret.

Not built here: the Prometheus host (DOKS ships DCGM metrics; a kube-prometheus stack is the cluster
owner's choice). The DigitalOcean load balancer the Service creates is billed by DigitalOcean but is not
a Pulumi resource, so the preview's bill does not include it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_digitalocean as do
import pulumi_kubernetes as k8s

from components.providers import WORLD_V4, WORLD_V6, cloud_name, priced_args
from components.vllm_service import TOKEN as VLLM_SERVICE_TOKEN
from components.vllm_service import service_spec
from gpu_inference.constants import NGINX_HTTP_PORT, VLLM_PORT
from gpu_inference.render._common import CONTAINER_HF_CACHE
from gpu_inference.render.vllm import vllm_args

if TYPE_CHECKING:
    from gpu_inference.stack import ResolvedStack

TOKEN = "gpu-inference:index:KubernetesGpuPool"
NODE_POOL = "digitalocean:index/kubernetesNodePool:KubernetesNodePool"
# DOKS labels every node with its pool's name; GPU nodes carry this taint until the driver is ready.
POOL_LABEL = "doks.digitalocean.com/node-pool"
GPU_TAINT = "nvidia.com/gpu"
# Weights download on first start: give the startup probe the same half hour the droplet unit gets.
STARTUP_SECONDS = 1800
PROBE_PERIOD_SECONDS = 10


@dataclass(frozen=True)
class KubernetesGpuPoolArgs:
    stack: ResolvedStack
    api_key: pulumi.Output[str | None]
    hf_token: pulumi.Output[str | None]
    api_key_set: bool


class KubernetesGpuPool(pulumi.ComponentResource):
    def __init__(self, name: str, args: KubernetesGpuPoolArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        stack = args.stack
        cfg = stack.config
        assert cfg.kubernetes is not None  # the config validator requires it for this provider
        spec = service_spec(stack, args.api_key_set)
        super().__init__(TOKEN, name, {**spec, "clusterId": cfg.kubernetes.cluster_id}, opts)
        child = pulumi.ResourceOptions(parent=self)
        namespace_name = cfg.kubernetes.namespace

        # Read, not managed: destroying this stack must never touch the cluster.
        self.cluster = do.KubernetesCluster.get(f"{name}-cluster", cfg.kubernetes.cluster_id, opts=child)
        pool_name = cloud_name(f"{name}-gpu", stack)
        self.priced: list[tuple[str, str, dict[str, Any]]] = []
        self.node_pool = do.KubernetesNodePool(f"{name}-gpu-pool", **priced_args(self.priced, NODE_POOL, f"{name}-gpu-pool", dict(
            cluster_id=cfg.kubernetes.cluster_id,
            name=pool_name,
            size=stack.offering.id,
            node_count=cfg.node_count,
            labels={"gpu-inference/stack": stack.name, "gpu-inference/role": "gpu"},
            tags=["gpu-inference", f"stack-{stack.name}", *cfg.tags],
            opts=child,
        )))
        kubeconfig = pulumi.Output.secret(self.cluster.kube_configs.apply(lambda kc: kc[0].raw_config if kc else ""))
        self.k8s = k8s.Provider(f"{name}-k8s", kubeconfig=kubeconfig, opts=child)
        kopts = pulumi.ResourceOptions(parent=self, provider=self.k8s)
        self.namespace = k8s.core.v1.Namespace(
            f"{name}-ns", metadata=k8s.meta.v1.ObjectMetaArgs(name=namespace_name), opts=kopts
        )
        ns = self.namespace.metadata.name
        secret_data = pulumi.Output.all(args.api_key, args.hf_token).apply(
            lambda v: {k: s for k, s in (("VLLM_API_KEY", v[0]), ("HF_TOKEN", v[1])) if s is not None}
        )
        self.secret = k8s.core.v1.Secret(
            f"{name}-secrets",
            metadata=k8s.meta.v1.ObjectMetaArgs(namespace=ns, name="vllm-secrets"),
            string_data=pulumi.Output.secret(secret_data),
            opts=kopts,
        )

        # The vLLM spec as a VllmService component, so the policies find it exactly as on droplets.
        self.service = pulumi.ComponentResource(VLLM_SERVICE_TOKEN, f"{name}-vllm", {**spec, "nodeIndex": 0}, child)
        sopts = pulumi.ResourceOptions(parent=self.service, provider=self.k8s)
        labels = {"app.kubernetes.io/name": "vllm", "app.kubernetes.io/instance": name}
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-vllm",
            metadata=k8s.meta.v1.ObjectMetaArgs(namespace=ns, name="vllm", labels=labels),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=cfg.node_count,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
                # A GPU node holds one replica: surge would need a spare GPU node, so replace in place.
                strategy=k8s.apps.v1.DeploymentStrategyArgs(
                    type="RollingUpdate",
                    rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(max_surge=0, max_unavailable=1),
                ),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels),
                    spec=_pod_spec(stack, self.node_pool.name, self.secret.metadata.name),
                ),
            ),
            opts=pulumi.ResourceOptions.merge(sopts, pulumi.ResourceOptions(depends_on=[self.node_pool])),
        )
        clients = [WORLD_V4, WORLD_V6] if cfg.public_endpoint else list(cfg.allowed_cidrs)
        self.lb_service = k8s.core.v1.Service(
            f"{name}-lb",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                namespace=ns,
                name="vllm",
                annotations={"service.beta.kubernetes.io/do-loadbalancer-name": cloud_name(f"{name}-lb", stack)},
            ),
            spec=k8s.core.v1.ServiceSpecArgs(
                type="LoadBalancer",
                selector=labels,
                ports=[k8s.core.v1.ServicePortArgs(name="http", port=NGINX_HTTP_PORT, target_port=VLLM_PORT)],
                load_balancer_source_ranges=clients,
            ),
            opts=sopts,
        )
        ingress = self.lb_service.status.apply(
            lambda s: (s.load_balancer.ingress or [None])[0] if s and s.load_balancer else None
        )
        self.endpoint: pulumi.Output[str] = ingress.apply(
            lambda i: f"http://{(i.ip or i.hostname) if i else 'pending'}/v1"
        )
        self.service.register_outputs({"deployment": self.deployment.metadata.name})
        self.register_outputs({"endpoint": self.endpoint, "nodePool": self.node_pool.name})


def _pod_spec(stack: ResolvedStack, pool_name: pulumi.Input[str], secret_name: pulumi.Input[str]) -> k8s.core.v1.PodSpecArgs:
    gpus = str(stack.offering.gpu_count)
    probe = k8s.core.v1.HTTPGetActionArgs(path="/health", port=VLLM_PORT)
    return k8s.core.v1.PodSpecArgs(
        node_selector={POOL_LABEL: pool_name},
        tolerations=[k8s.core.v1.TolerationArgs(key=GPU_TAINT, operator="Exists", effect="NoSchedule")],
        containers=[
            k8s.core.v1.ContainerArgs(
                name="vllm",
                image=stack.config.vllm_image,
                args=vllm_args(stack),
                ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=VLLM_PORT)],
                env_from=[k8s.core.v1.EnvFromSourceArgs(secret_ref=k8s.core.v1.SecretEnvSourceArgs(name=secret_name))],
                resources=k8s.core.v1.ResourceRequirementsArgs(limits={"nvidia.com/gpu": gpus},
                                                               requests={"nvidia.com/gpu": gpus}),
                startup_probe=k8s.core.v1.ProbeArgs(
                    http_get=probe, period_seconds=PROBE_PERIOD_SECONDS,
                    failure_threshold=STARTUP_SECONDS // PROBE_PERIOD_SECONDS,
                ),
                readiness_probe=k8s.core.v1.ProbeArgs(http_get=probe, period_seconds=PROBE_PERIOD_SECONDS),
                liveness_probe=k8s.core.v1.ProbeArgs(http_get=probe, period_seconds=30, failure_threshold=3),
                volume_mounts=[
                    k8s.core.v1.VolumeMountArgs(name="hf-cache", mount_path=CONTAINER_HF_CACHE),
                    # Tensor-parallel workers share tensors through /dev/shm; the default 64 MB is too small.
                    k8s.core.v1.VolumeMountArgs(name="dshm", mount_path="/dev/shm"),
                ],
            )
        ],
        volumes=[
            k8s.core.v1.VolumeArgs(name="hf-cache", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs()),
            k8s.core.v1.VolumeArgs(name="dshm", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(medium="Memory")),
        ],
    )
