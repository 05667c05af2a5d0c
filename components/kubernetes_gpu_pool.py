"""Kubernetes: a GPU node pool on an existing DigitalOcean Kubernetes (DOKS) cluster, vLLM as a StatefulSet
behind the same Nginx least-connections config as the droplets, Prometheus beside it.

A GPU pool on Kubernetes is not "machines with firewalls", so this layout does not use the machine interface:
``KubernetesGpuPool`` is the peer of LoadBalancedPool for ``provider: kubernetes``, and the same
``VllmService`` and ``MonitoringStack`` components run inside it (their Kubernetes objects are built by
``vllm_statefulset`` and ``prometheus_deployment`` here). The pure facts (DOKS labels, taints, annotations,
prices) are in ``gpu_inference/clouds/kubernetes.py``.

- ``digitalocean.KubernetesNodePool`` of the catalog's GPU slug on the cluster ``kubernetes.clusterId``.
  DOKS installs the NVIDIA driver and device plugin on GPU nodes and taints them
  ``nvidia.com/gpu:NoSchedule``; the vLLM pods tolerate that and select the pool by its DOKS label.
- vLLM is a StatefulSet (``vllm``) with a headless Service (``vllm-pods``): pod ``vllm-<i>`` keeps the DNS
  name ``vllm-<i>.vllm-pods.<namespace>.svc.cluster.local`` across restarts, which is what nginx.conf and
  prometheus.yml name (gpu_inference/render/kubernetes.py). One pod per GPU node: each asks for all the
  node's GPUs, and a required pod anti-affinity says so explicitly. Same pinned image and flags as the
  droplets (``vllm_args``); API key and HF token from a Secret (vLLM checks the key too).
- Nginx (pinned official image, >= 1.27.3 for ``server ... resolve``) is a Deployment whose nginx.conf
  (a ConfigMap) comes from the droplet LB's renderer: least_conn over the pods' names, re-resolved through
  kube-dns, the edge API-key check from a Secret. It runs on the cluster's existing CPU nodes.
- The public ``LoadBalancer`` Service (a DigitalOcean load balancer, priced) points at Nginx only; its
  source ranges are the world when publicEndpoint, else allowedCidrs. vLLM is reachable only in-cluster.
- With monitoring enabled: a Prometheus Deployment (pinned prom/prometheus) with prometheus.yml and the
  alert rules in a ConfigMap, its TSDB on a ``do-block-storage`` PersistentVolumeClaim of
  ``monitoring.storageGb`` (a billed DigitalOcean volume), and a ClusterIP Service; ``prometheus_url`` is its
  in-cluster URL.
- The kubeconfig comes from the cluster itself (read, never managed, by this stack) and stays secret.

Not built here: node_exporter / DCGM exporter DaemonSets. DOKS manages the GPU nodes' NVIDIA stack (its
own DCGM metrics) and this stack does not run privileged agents on nodes it does not own, so the node and
dcgm scrape jobs are empty and the GPU/disk alerts stay silent on Kubernetes.
"""

import hashlib
from typing import Any

import pulumi
import pulumi_digitalocean as do
import pulumi_kubernetes as k8s

from components.args import ClusterPlacementArgs, MonitoringStackArgs, StackArgs, VllmServiceArgs
from components.clouds import WORLD_V4, WORLD_V6, registration
from components.monitoring_stack import MonitoringStack
from components.stack_args import resolve
from components.vllm_service import VllmService
from gpu_inference import naming
from gpu_inference.bill import Registration
from gpu_inference.clouds import digitalocean as do_facts
from gpu_inference.clouds import kubernetes as facts
from gpu_inference.constants import NGINX_HTTP_PORT, PROMETHEUS_PORT, VLLM_PORT
from gpu_inference.gpu_vendor import vllm_image
from gpu_inference.render._common import CONTAINER_HF_CACHE
from gpu_inference.render.cloud_init import TSDB_VOLUME_SHARE
from gpu_inference.render.kubernetes import (
    CLUSTER_DOMAIN,
    NGINX_AUTH_DIR,
    NGINX_AUTH_FILE,
    NGINX_CONF_DIR,
    NGINX_CONF_FILE,
    NGINX_IMAGE,
    NGINX_NAME,
    PROMETHEUS_CONF_DIR,
    PROMETHEUS_CONF_FILE,
    PROMETHEUS_DATA_DIR,
    PROMETHEUS_IMAGE,
    PROMETHEUS_NAME,
    PROMETHEUS_RULES_FILE,
    VLLM_APP,
    VLLM_HEADLESS_SERVICE,
    VLLM_STATEFULSET,
    kubernetes_nginx_conf,
    kubernetes_prometheus_config,
    pod_labels,
    scaled_object_spec,
    vllm_network_policy,
)
from gpu_inference.render.nginx import auth_map
from gpu_inference.render.prometheus import alert_rules
from gpu_inference.render.vllm import vllm_args
from gpu_inference.service_spec import ServiceSpec
from gpu_inference.stack import ResolvedStack

TOKEN = "gpu-inference:index:KubernetesGpuPool"
# The uid/gid prom/prometheus runs as (its Dockerfile: USER nobody).
PROMETHEUS_UID = 65534
# Weights download on first start: give the startup probe the same half hour the droplet unit gets.
STARTUP_SECONDS = 1800
PROBE_PERIOD_SECONDS = 10
# pulumi-kubernetes waits for the StatefulSet's pods to be ready, 10 minutes by default: a first start
# downloads the weights (up to STARTUP_SECONDS), so `pulumi up` must wait that long before calling it failed.
VLLM_AWAIT = f"{STARTUP_SECONDS // 60 + 10}m"
# The public load balancer's size in DigitalOcean LB nodes (10,000 connections each): set explicitly so the
# bill is computed from the Service as registered rather than from the cloud controller's default.
LB_SIZE_UNITS = 1
# Pod template annotation holding a hash of the mounted config: a changed nginx.conf / prometheus.yml rolls
# the pods (neither process rereads its config when the ConfigMap volume changes).
CONFIG_HASH_ANNOTATION = naming.kubernetes_label_key("config-sha256")


def _digest(*texts: str) -> str:
    return hashlib.sha256("\0".join(texts).encode()).hexdigest()[:16]


def _labels(app: str, instance: str) -> dict[str, str]:
    return pod_labels(app, instance)


def _vllm_network_policy(name: str, stack: ResolvedStack, cluster: ClusterPlacementArgs,
                         opts: pulumi.ResourceOptions) -> k8s.networking.v1.NetworkPolicy:
    """The rendered NetworkPolicy (render/kubernetes.py) as a resource: only Nginx and Prometheus reach vLLM."""
    manifest = vllm_network_policy(stack, str(cluster["instance"]))
    spec, meta = manifest["spec"], manifest["metadata"]

    def selector(peer: dict[str, Any]) -> k8s.meta.v1.LabelSelectorArgs:
        return k8s.meta.v1.LabelSelectorArgs(match_labels=peer["podSelector"]["matchLabels"])

    return k8s.networking.v1.NetworkPolicy(
        f"{name}-network-policy",
        # The namespace as the Output of the Namespace object: created after it.
        metadata=k8s.meta.v1.ObjectMetaArgs(namespace=cluster["namespace"], name=meta["name"], labels=meta["labels"]),
        spec=k8s.networking.v1.NetworkPolicySpecArgs(
            pod_selector=selector(spec),
            policy_types=spec["policyTypes"],
            ingress=[k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                from_=[k8s.networking.v1.NetworkPolicyPeerArgs(pod_selector=selector(peer)) for peer in rule["from"]],
                ports=[k8s.networking.v1.NetworkPolicyPortArgs(protocol=p["protocol"], port=p["port"])
                       for p in rule["ports"]],
            ) for rule in spec["ingress"]],
        ),
        opts=opts,
    )


class KubernetesGpuPool(pulumi.ComponentResource):
    """A GPU node pool on an existing DOKS cluster, vLLM as a StatefulSet on it, Nginx least-connections in front
    behind a public LoadBalancer Service, and Prometheus in-cluster."""

    endpoint: pulumi.Output[str]
    """The OpenAI-compatible base URL clients use (the LoadBalancer Service's address, ``…/v1``)."""
    prometheus_url: pulumi.Output[str | None]
    """Prometheus' in-cluster URL (None when monitoring is disabled)."""

    def __init__(self, name: str, args: StackArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        stack, secrets = resolve(args)
        cfg = stack.config
        assert cfg.kubernetes is not None  # the cloud's config rules require it for this layout
        super().__init__(TOKEN, name, ServiceSpec.from_stack(stack).props(), opts)
        child = pulumi.ResourceOptions(parent=self)
        namespace_name = cfg.kubernetes.namespace
        scaling = cfg.autoscaling

        # Read, not managed: destroying this stack must never touch the cluster.
        self.cluster = do.KubernetesCluster.get(f"{name}-cluster", cfg.kubernetes.cluster_id, opts=child)
        pool_args = do.KubernetesNodePoolArgs(
            cluster_id=cfg.kubernetes.cluster_id,
            name=naming.cloud_name(naming.gpu_pool(name), stack.name),
            size=stack.offering.id,
            # Autoscaling: the DOKS cluster autoscaler adds a GPU node when a vLLM pod is pending and removes an
            # idle one, between minNodes and maxNodes. node_count is left out then: beside auto_scale it resets
            # the pool to that count on every update (pulumi-digitalocean KubernetesNodePoolArgs.node_count).
            node_count=cfg.node_count if scaling is None else None,
            auto_scale=True if scaling is not None else None,
            min_nodes=scaling.min_nodes if scaling is not None else None,
            max_nodes=scaling.max_nodes if scaling is not None else None,
            labels={naming.kubernetes_label_key("stack"): stack.name, naming.kubernetes_label_key("role"): "gpu"},
            tags=[naming.PROJECT_TAG, naming.stack_tag(stack.name), *cfg.tags],
        )
        self.node_pool = do.KubernetesNodePool(f"{name}-gpu-pool", pool_args, opts=child)
        registrations: list[Registration] = [registration(do_facts.KUBERNETES_NODE_POOL, f"{name}-gpu-pool", pool_args)]
        raw_kubeconfig: pulumi.Output[str] = self.cluster.kube_configs.apply(
            lambda kc: (kc[0].raw_config or "") if kc else ""
        )
        kubeconfig: pulumi.Output[str] = pulumi.Output.secret(raw_kubeconfig)
        self.k8s = k8s.Provider(f"{name}-k8s", kubeconfig=kubeconfig, opts=child)
        kopts = pulumi.ResourceOptions(parent=self, provider=self.k8s)
        self.namespace = k8s.core.v1.Namespace(
            f"{name}-ns", metadata=k8s.meta.v1.ObjectMetaArgs(name=namespace_name), opts=kopts
        )
        ns = self.namespace.metadata.name
        secret_data: pulumi.Output[dict[str, str]] = pulumi.Output.all(secrets.api_key, secrets.hf_token).apply(
            lambda v: {k: s for k, s in (("VLLM_API_KEY", v[0]), ("HF_TOKEN", v[1])) if s is not None}
        )
        self.secret = k8s.core.v1.Secret(
            f"{name}-secrets",
            metadata=k8s.meta.v1.ObjectMetaArgs(namespace=ns, name="vllm-secrets"),
            # mypy cannot solve Output.secret's T against string_data's Mapping[str, Input[str]] (invariance).
            string_data=pulumi.Output.secret(secret_data),  # type: ignore[arg-type]
            opts=kopts,
        )
        placement = ClusterPlacementArgs(
            namespace=ns, node_pool=self.node_pool.name, secret_name=self.secret.metadata.name, instance=name,
        )
        in_cluster = pulumi.ResourceOptions(parent=self, providers=[self.k8s])
        self.service = VllmService(
            f"{name}-vllm", VllmServiceArgs(**args, cluster=placement), in_cluster,  # type: ignore[typeddict-item]
        )
        self._nginx(name, stack, ns, secrets.api_key, kopts)
        self.keda_release: k8s.helm.v3.Release | None = None
        self.scaled_object: k8s.apiextensions.CustomResource | None = None
        if cfg.autoscaling is not None:
            self.keda_release, self.scaled_object = keda_autoscaler(self, name, stack, ns, self.k8s)
        registrations.append(self.lb_registration)
        self.prometheus_url = pulumi.Output.from_input(None)
        if cfg.monitoring.enabled:
            self.monitoring = MonitoringStack(
                f"{name}-monitoring", MonitoringStackArgs(**args, cluster=placement), in_cluster,  # type: ignore[typeddict-item]
            )
            self.prometheus_url = self.monitoring.prometheus_url  # type: ignore[assignment]
            registrations += self.monitoring.registrations  # the TSDB's volume claim
        self.registrations: tuple[Registration, ...] = tuple(registrations)
        self.register_outputs({"endpoint": self.endpoint, "nodePool": self.node_pool.name,
                               "prometheusUrl": self.prometheus_url})

    def _nginx(self, name: str, stack: ResolvedStack, ns: pulumi.Output[str], api_key: pulumi.Output[str | None],
               kopts: pulumi.ResourceOptions) -> None:
        """Nginx least_conn in front of the pods, and the public LoadBalancer Service in front of Nginx."""
        cfg = stack.config
        conf = kubernetes_nginx_conf(stack)
        labels = _labels(NGINX_NAME, name)
        self.nginx_config = k8s.core.v1.ConfigMap(
            f"{name}-nginx-conf",
            metadata=k8s.meta.v1.ObjectMetaArgs(namespace=ns, name=f"{NGINX_NAME}-conf", labels=labels),
            data={NGINX_CONF_FILE: conf},
            opts=kopts,
        )
        volumes = [k8s.core.v1.VolumeArgs(
            name="conf", config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(name=self.nginx_config.metadata.name))]
        mounts = [k8s.core.v1.VolumeMountArgs(name="conf", mount_path=NGINX_CONF_DIR, read_only=True)]
        self.nginx_auth: k8s.core.v1.Secret | None = None
        if cfg.api_key is not None:
            # The edge API-key check's include holds the key itself: a Secret, mounted 0400 for the root master.
            auth_data = api_key.apply(lambda key: {NGINX_AUTH_FILE: auth_map(key)} if key else {})
            self.nginx_auth = k8s.core.v1.Secret(
                f"{name}-nginx-auth",
                metadata=k8s.meta.v1.ObjectMetaArgs(namespace=ns, name=f"{NGINX_NAME}-auth", labels=labels),
                string_data=pulumi.Output.secret(auth_data),  # type: ignore[arg-type]  # (as for vllm-secrets)
                opts=kopts,
            )
            volumes.append(k8s.core.v1.VolumeArgs(name="auth", secret=k8s.core.v1.SecretVolumeSourceArgs(
                secret_name=self.nginx_auth.metadata.name, default_mode=0o400)))
            mounts.append(k8s.core.v1.VolumeMountArgs(name="auth", mount_path=NGINX_AUTH_DIR, read_only=True))
        health = k8s.core.v1.HTTPGetActionArgs(path="/health", port=NGINX_HTTP_PORT)
        self.nginx = k8s.apps.v1.Deployment(
            f"{name}-nginx",
            metadata=k8s.meta.v1.ObjectMetaArgs(namespace=ns, name=NGINX_NAME, labels=labels),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                # One replica, like the droplet LB host: least_conn counts connections per nginx, so a single
                # instance is what keeps the balancing global. A new pod starts before the old one stops.
                replicas=1,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
                strategy=k8s.apps.v1.DeploymentStrategyArgs(
                    type="RollingUpdate",
                    rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(max_surge=1, max_unavailable=0),
                ),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels, annotations={CONFIG_HASH_ANNOTATION: _digest(conf)}),
                    spec=k8s.core.v1.PodSpecArgs(
                        containers=[k8s.core.v1.ContainerArgs(
                            name=NGINX_NAME,
                            image=NGINX_IMAGE,
                            # Straight to nginx with our file: the image's entrypoint scripts only template
                            # its default conf.d, which this config does not include.
                            command=["nginx", "-c", f"{NGINX_CONF_DIR}/{NGINX_CONF_FILE}", "-g", "daemon off;"],
                            ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=NGINX_HTTP_PORT)],
                            readiness_probe=k8s.core.v1.ProbeArgs(http_get=health, period_seconds=5),
                            liveness_probe=k8s.core.v1.ProbeArgs(http_get=health, period_seconds=10,
                                                                 failure_threshold=3),
                            resources=k8s.core.v1.ResourceRequirementsArgs(
                                requests={"cpu": "100m", "memory": "64Mi"}),
                            volume_mounts=mounts,
                        )],
                        volumes=volumes,
                        # Streams last minutes: let open ones finish before the old pod goes on a rollout.
                        termination_grace_period_seconds=cfg.load_balancer.read_timeout_seconds,
                    ),
                ),
            ),
            opts=kopts,
        )
        clients = [WORLD_V4, WORLD_V6] if cfg.public_endpoint else list(cfg.allowed_cidrs)
        # Keeps the name (and Pulumi name) the Service had when it pointed at vLLM directly: an update in
        # place, so DigitalOcean keeps the load balancer and the endpoint's address.
        lb_args = k8s.core.v1.ServiceInitArgs(
            metadata=k8s.meta.v1.ObjectMetaArgs(
                namespace=ns,
                name="vllm",
                labels=labels,
                annotations={
                    facts.LB_NAME_ANNOTATION: naming.cloud_name(naming.lb_host(name), stack.name),
                    facts.LB_SIZE_UNIT_ANNOTATION: str(LB_SIZE_UNITS),
                },
            ),
            spec=k8s.core.v1.ServiceSpecArgs(
                type="LoadBalancer",
                selector=labels,
                ports=[k8s.core.v1.ServicePortArgs(name="http", port=NGINX_HTTP_PORT, target_port=NGINX_HTTP_PORT)],
                load_balancer_source_ranges=clients,
            ),
        )
        self.lb_service = k8s.core.v1.Service(
            naming.lb_host(name), lb_args,
            # It used to be a child of the VllmService component: the alias keeps its URN, so Pulumi updates
            # it instead of replacing it (a replacement would be a new load balancer with a new address).
            opts=pulumi.ResourceOptions.merge(kopts, pulumi.ResourceOptions(aliases=[pulumi.Alias(parent=self.service)])),
        )
        self.lb_registration = registration(facts.SERVICE, naming.lb_host(name), lb_args)
        ingress = self.lb_service.status.apply(
            lambda s: s.load_balancer.ingress[0] if s and s.load_balancer and s.load_balancer.ingress else None
        )
        self.endpoint: pulumi.Output[str] = ingress.apply(
            lambda i: f"http://{(i.ip or i.hostname) if i else 'pending'}/v1"
        )


def keda_autoscaler(pool: pulumi.Resource, name: str, stack: ResolvedStack, ns: pulumi.Input[str],
                    provider: k8s.Provider) -> tuple[k8s.helm.v3.Release | None, k8s.apiextensions.CustomResource]:
    """KEDA (its Helm chart, unless ``kubernetes.kedaInstalled``) and the ScaledObject that scales the vLLM
    StatefulSet on the in-cluster Prometheus' vLLM metrics (spec: ``scaled_object_spec``)."""
    kubernetes = stack.config.kubernetes
    assert kubernetes is not None
    kopts = pulumi.ResourceOptions(parent=pool, provider=provider)
    release: k8s.helm.v3.Release | None = None
    after: list[pulumi.Resource] = []
    if not kubernetes.keda_installed:
        release = k8s.helm.v3.Release(
            f"{name}-keda",
            k8s.helm.v3.ReleaseArgs(
                chart=facts.KEDA_CHART,
                version=facts.KEDA_CHART_VERSION,
                repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=facts.KEDA_CHART_REPO),
                namespace=facts.KEDA_NAMESPACE,
                create_namespace=True,
                name=facts.KEDA_CHART,
            ),
            # KEDA's CRDs and operator are cluster-wide: a stack that installed them should not delete them
            # under another stack's ScaledObjects by accident, but it owns what it installed.
            opts=kopts,
        )
        after.append(release)
    scaled = k8s.apiextensions.CustomResource(
        f"{name}-vllm-scaler",
        api_version="keda.sh/v1alpha1",
        kind="ScaledObject",
        metadata=k8s.meta.v1.ObjectMetaArgs(namespace=ns, name=VLLM_STATEFULSET,
                                            labels=_labels(VLLM_STATEFULSET, name)),
        spec=scaled_object_spec(stack),
        # The ScaledObject's kind exists only once KEDA's CRDs are installed.
        opts=pulumi.ResourceOptions.merge(kopts, pulumi.ResourceOptions(depends_on=after)),
    )
    return release, scaled


def vllm_statefulset(service: pulumi.Resource, name: str, stack: ResolvedStack,
                     cluster: ClusterPlacementArgs) -> k8s.apps.v1.StatefulSet:
    """The vLLM pods of a VllmService on Kubernetes: a StatefulSet behind a headless Service (children of
    ``service``, in the pool's namespace, through the pool's cluster provider)."""
    cfg = stack.config
    sopts = pulumi.ResourceOptions(parent=service)
    labels = _labels(VLLM_APP, str(cluster["instance"]))
    ns = cluster["namespace"]
    _vllm_network_policy(name, stack, cluster, sopts)
    # Headless: no virtual IP, one DNS record per *ready* pod, so nginx and Prometheus only ever resolve
    # pods that answer (a pod still loading its weights has no address yet).
    headless = k8s.core.v1.Service(
        f"{name}-pods",
        metadata=k8s.meta.v1.ObjectMetaArgs(namespace=ns, name=VLLM_HEADLESS_SERVICE, labels=labels),
        spec=k8s.core.v1.ServiceSpecArgs(
            cluster_ip="None",
            selector=labels,
            ports=[k8s.core.v1.ServicePortArgs(name="http", port=VLLM_PORT, target_port=VLLM_PORT)],
        ),
        opts=sopts,
    )
    return k8s.apps.v1.StatefulSet(
        name,
        metadata=k8s.meta.v1.ObjectMetaArgs(namespace=ns, name=VLLM_STATEFULSET, labels=labels),
        spec=k8s.apps.v1.StatefulSetSpecArgs(
            # Autoscaled: KEDA's HPA owns replicas; a value here would reset it on every `pulumi up`
            # (Kubernetes docs, Horizontal Pod Autoscaling: "Migrating Deployments and StatefulSets to
            # horizontal autoscaling" says to remove spec.replicas from the manifest).
            replicas=None if cfg.autoscaling is not None else cfg.node_count,
            service_name=headless.metadata.name,
            selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
            # Start every pod at once: the default (OrderedReady) would hold vllm-1 back until vllm-0
            # has downloaded its weights. Updates still replace one pod at a time.
            pod_management_policy="Parallel",
            update_strategy=k8s.apps.v1.StatefulSetUpdateStrategyArgs(type="RollingUpdate"),
            template=k8s.core.v1.PodTemplateSpecArgs(
                metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels),
                spec=_pod_spec(stack, cluster["node_pool"], cluster["secret_name"], labels),
            ),
        ),
        # The node pool's name (a dependency through the Output) schedules the pods on its nodes; the first
        # start downloads the weights, so pulumi waits that long.
        opts=pulumi.ResourceOptions.merge(sopts, pulumi.ResourceOptions(
            custom_timeouts=pulumi.CustomTimeouts(create=VLLM_AWAIT, update=VLLM_AWAIT),
        )),
    )


def prometheus_deployment(monitoring: pulumi.Resource, name: str, stack: ResolvedStack,
                          cluster: ClusterPlacementArgs) -> tuple[pulumi.Output[str], tuple[Registration, ...]]:
    """Prometheus scraping the vLLM pods by name and evaluating the alert rules, reachable in-cluster only,
    its TSDB on a claim of DOKS's block storage; children of the MonitoringStack ``monitoring``. Returns its
    in-cluster URL and the claim's registration (a billed DigitalOcean volume)."""
    mon = stack.config.monitoring
    pool = str(cluster["instance"])
    mopts = pulumi.ResourceOptions(parent=monitoring)
    ns = cluster["namespace"]
    labels = _labels(PROMETHEUS_NAME, pool)
    conf, rules = kubernetes_prometheus_config(stack), alert_rules(stack)
    # The TSDB outlives the pod (a reschedule, a config roll): a ReadWriteOnce claim of DOKS's block storage
    # class, sized by monitoring.storageGb like the droplet stacks' volume, and billed as a DigitalOcean volume.
    claim_args = k8s.core.v1.PersistentVolumeClaimInitArgs(
        metadata=k8s.meta.v1.ObjectMetaArgs(namespace=ns, name=f"{PROMETHEUS_NAME}-data", labels=labels),
        spec=k8s.core.v1.PersistentVolumeClaimSpecArgs(
            access_modes=["ReadWriteOnce"],
            storage_class_name=facts.BLOCK_STORAGE_CLASS,
            resources=k8s.core.v1.VolumeResourceRequirementsArgs(requests={"storage": f"{mon.storage_gb}Gi"}),
        ),
    )
    claim = k8s.core.v1.PersistentVolumeClaim(f"{pool}-prometheus-data", claim_args, opts=mopts)
    claim_registration = registration(facts.PERSISTENT_VOLUME_CLAIM, f"{pool}-prometheus-data", claim_args)
    config_map = k8s.core.v1.ConfigMap(
        f"{pool}-prometheus-conf",
        metadata=k8s.meta.v1.ObjectMetaArgs(namespace=ns, name=f"{PROMETHEUS_NAME}-conf", labels=labels),
        data={PROMETHEUS_CONF_FILE: conf, PROMETHEUS_RULES_FILE: rules},
        opts=mopts,
    )
    k8s.apps.v1.Deployment(
        f"{pool}-prometheus",
        metadata=k8s.meta.v1.ObjectMetaArgs(namespace=ns, name=PROMETHEUS_NAME, labels=labels),
        spec=k8s.apps.v1.DeploymentSpecArgs(
            replicas=1,
            selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
            # Two Prometheus pods would evaluate (and fire) every alert twice: stop the old one first.
            strategy=k8s.apps.v1.DeploymentStrategyArgs(type="Recreate"),
            template=k8s.core.v1.PodTemplateSpecArgs(
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    labels=labels, annotations={CONFIG_HASH_ANNOTATION: _digest(conf, rules)}),
                spec=k8s.core.v1.PodSpecArgs(
                    containers=[k8s.core.v1.ContainerArgs(
                        name=PROMETHEUS_NAME,
                        image=PROMETHEUS_IMAGE,
                        args=[
                            f"--config.file={PROMETHEUS_CONF_DIR}/{PROMETHEUS_CONF_FILE}",
                            f"--storage.tsdb.path={PROMETHEUS_DATA_DIR}",
                            f"--storage.tsdb.retention.time={mon.retention}",
                            # As on the droplet host: old blocks go before the volume fills.
                            f"--storage.tsdb.retention.size={max(1, int(mon.storage_gb * TSDB_VOLUME_SHARE))}GB",
                        ],
                        ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=PROMETHEUS_PORT)],
                        readiness_probe=k8s.core.v1.ProbeArgs(
                            http_get=k8s.core.v1.HTTPGetActionArgs(path="/-/ready", port=PROMETHEUS_PORT),
                            period_seconds=10),
                        liveness_probe=k8s.core.v1.ProbeArgs(
                            http_get=k8s.core.v1.HTTPGetActionArgs(path="/-/healthy", port=PROMETHEUS_PORT),
                            period_seconds=30, failure_threshold=3),
                        # The head block lives in RAM; the droplet stacks give Prometheus a 4 GiB host.
                        resources=k8s.core.v1.ResourceRequirementsArgs(
                            requests={"cpu": "200m", "memory": "1Gi"}),
                        volume_mounts=[
                            k8s.core.v1.VolumeMountArgs(name="conf", mount_path=PROMETHEUS_CONF_DIR, read_only=True),
                            k8s.core.v1.VolumeMountArgs(name="data", mount_path=PROMETHEUS_DATA_DIR),
                        ],
                    )],
                    volumes=[
                        k8s.core.v1.VolumeArgs(name="conf", config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(
                            name=config_map.metadata.name)),
                        k8s.core.v1.VolumeArgs(name="data", persistent_volume_claim=(
                            k8s.core.v1.PersistentVolumeClaimVolumeSourceArgs(claim_name=claim.metadata.name))),
                    ],
                    # prom/prometheus runs as nobody (65534); fsGroup makes the kubelet give the fresh volume
                    # to that group, or the TSDB could not be written.
                    security_context=k8s.core.v1.PodSecurityContextArgs(
                        run_as_user=PROMETHEUS_UID, run_as_group=PROMETHEUS_UID, fs_group=PROMETHEUS_UID,
                        run_as_non_root=True),
                ),
            ),
        ),
        opts=mopts,
    )
    service = k8s.core.v1.Service(
        f"{pool}-prometheus",
        metadata=k8s.meta.v1.ObjectMetaArgs(namespace=ns, name=PROMETHEUS_NAME, labels=labels),
        spec=k8s.core.v1.ServiceSpecArgs(
            type="ClusterIP",
            selector=labels,
            ports=[k8s.core.v1.ServicePortArgs(name="http", port=PROMETHEUS_PORT, target_port=PROMETHEUS_PORT)],
        ),
        opts=mopts,
    )
    # In-cluster only (no public port for an unauthenticated UI): from a laptop,
    # `kubectl -n <namespace> port-forward svc/prometheus 9090`.
    return pulumi.Output.concat(
        "http://", service.metadata.name, ".", ns, f".svc.{CLUSTER_DOMAIN}:{PROMETHEUS_PORT}"
    ), (claim_registration,)


def _pod_spec(stack: ResolvedStack, pool_name: pulumi.Input[str], secret_name: pulumi.Input[str],
              labels: dict[str, str]) -> k8s.core.v1.PodSpecArgs:
    gpus = str(stack.offering.gpu_count)
    host = facts.vllm_pod_resources(stack.offering.vcpus, stack.offering.memory_gib)
    probe = k8s.core.v1.HTTPGetActionArgs(path="/health", port=VLLM_PORT)
    return k8s.core.v1.PodSpecArgs(
        node_selector={facts.POOL_LABEL: pool_name},
        # Each pod asks for every GPU of its node, so two cannot share one today; the anti-affinity states
        # "one pod per GPU node" outright, so it still holds if the GPU request ever changes.
        affinity=k8s.core.v1.AffinityArgs(pod_anti_affinity=k8s.core.v1.PodAntiAffinityArgs(
            required_during_scheduling_ignored_during_execution=[k8s.core.v1.PodAffinityTermArgs(
                topology_key="kubernetes.io/hostname",
                label_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
            )],
        )),
        tolerations=[k8s.core.v1.TolerationArgs(key=facts.GPU_TAINT, operator="Exists", effect="NoSchedule")],
        containers=[
            k8s.core.v1.ContainerArgs(
                name="vllm",
                image=vllm_image(stack),
                args=vllm_args(stack),
                ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=VLLM_PORT)],
                env_from=[k8s.core.v1.EnvFromSourceArgs(secret_ref=k8s.core.v1.SecretEnvSourceArgs(name=secret_name))],
                # Requests = limits for GPU, CPU and memory: the Guaranteed QoS class, last to be evicted; the
                # node's CPU and RAM (catalog) less what the kubelet and DOKS's DaemonSets keep.
                resources=k8s.core.v1.ResourceRequirementsArgs(limits={facts.GPU_RESOURCE: gpus, **host},
                                                               requests={facts.GPU_RESOURCE: gpus, **host}),
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


def dashboard_config_maps(monitoring: pulumi.Resource, stack: ResolvedStack,
                          cluster: ClusterPlacementArgs) -> list[k8s.core.v1.ConfigMap]:
    """The Grafana dashboards as ConfigMaps labelled for the Grafana sidecar (``grafana_dashboard: "1"``), one
    per dashboard in the pool's namespace: clusters usually run their own Grafana (kube-prometheus-stack), whose
    sidecar loads them. Children of the MonitoringStack ``monitoring``."""
    from gpu_inference.render.dashboards import SIDECAR_LABEL, dashboard_json, dashboards

    pool = str(cluster["instance"])
    maps = []
    for spec in dashboards(stack):
        maps.append(k8s.core.v1.ConfigMap(
            f"{pool}-dashboard-{spec.uid}",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                namespace=cluster["namespace"], name=spec.uid, labels={**_labels("grafana-dashboard", pool),
                                                                      **SIDECAR_LABEL}),
            data={spec.file_name: dashboard_json(spec)},
            opts=pulumi.ResourceOptions(parent=monitoring),
        ))
    return maps
