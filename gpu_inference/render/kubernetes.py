"""The files the Kubernetes pool's pods get: nginx.conf for the Nginx Deployment, prometheus.yml and the
alert rules for the Prometheus Deployment. The same renderers as the droplet hosts, with in-cluster
names and the paths of the official nginx and prom/prometheus images.

The names of the Kubernetes objects live here too: the vLLM pods' DNS names are part of both files, so
the component (components/kubernetes_gpu_pool.py) and these files cannot disagree about them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gpu_inference import naming
from gpu_inference.constants import VLLM_PORT
from gpu_inference.render._common import dump_yaml
from gpu_inference.render.nginx import NginxPaths, nginx_conf
from gpu_inference.render.prometheus import alert_rule_tests, alert_rules, prometheus_config

if TYPE_CHECKING:
    from gpu_inference.stack import ResolvedStack

# DOKS clusters use the default cluster domain and run CoreDNS behind the conventional kube-dns Service.
CLUSTER_DOMAIN = "cluster.local"
# nginx resolves a resolver given by name once, at startup, through the pod's /etc/resolv.conf: naming
# the Service (not its ClusterIP) keeps the file independent of the cluster's service CIDR.
KUBE_DNS = f"kube-dns.kube-system.svc.{CLUSTER_DOMAIN}"

# vLLM runs as a StatefulSet so every pod has a stable DNS name through the headless Service:
# vllm-0.vllm-pods.<namespace>.svc.cluster.local.
VLLM_STATEFULSET = "vllm"
VLLM_HEADLESS_SERVICE = "vllm-pods"
# The headless Service's port name: its SRV record is _http._tcp.vllm-pods.<namespace>.svc.cluster.local.
VLLM_PORT_NAME = "http"
NGINX_NAME = "nginx"
PROMETHEUS_NAME = "prometheus"

# Pinned images. nginx must be >= 1.27.3 for `server ... resolve` in open-source nginx; 1.30.6 is the
# `stable-alpine` tag as of 2026-10-21 (docker-library/repo-info repos/nginx/remote/stable-alpine.md).
NGINX_IMAGE = "nginx:1.30.6-alpine"
# prom/prometheus v3.13.1: the current 3.x release as of July 2026 (Renovate bump merged 2026-07-11 in
# prometheus/client_java #2299).
PROMETHEUS_IMAGE = "prom/prometheus:v3.13.1"

# Where the ConfigMaps and the Secret are mounted in the pods (directories: a subPath mount would never
# see an update of the ConfigMap).
NGINX_CONF_DIR = "/etc/nginx/gpu-inference"
NGINX_CONF_FILE = "nginx.conf"
NGINX_AUTH_DIR = "/etc/nginx/gpu-inference-auth"
NGINX_AUTH_FILE = "auth.conf"
PROMETHEUS_CONF_DIR = "/etc/prometheus/gpu-inference"
PROMETHEUS_CONF_FILE = "prometheus.yml"
PROMETHEUS_RULES_FILE = "gpu-inference.rules.yml"
PROMETHEUS_DATA_DIR = "/prometheus"

# The official nginx image: workers run as `nginx`, /var/cache/nginx is its temp tree, and the two log
# files are symlinks to the container's stdout/stderr (kubectl logs shows them).
NGINX_PATHS = NginxPaths(
    pid="/var/run/nginx.pid",
    error_log="/var/log/nginx/error.log",
    access_log="/var/log/nginx/access.log",
    temp_dir="/var/cache/nginx",
    mime_types="/etc/nginx/mime.types",
    auth_include=f"{NGINX_AUTH_DIR}/{NGINX_AUTH_FILE}",
    tls_dir="/etc/nginx/tls",
    user="nginx",
)


VLLM_APP = "vllm"
VLLM_NETWORK_POLICY = "vllm-ingress"


def pod_labels(app: str, instance: str) -> dict[str, str]:
    """The labels every object of one app (vllm, nginx, prometheus) of pool ``instance`` carries and selects on."""
    return {"app.kubernetes.io/name": app, "app.kubernetes.io/instance": instance}


def vllm_network_policy(stack: ResolvedStack, instance: str) -> dict[str, Any]:
    """NetworkPolicy (as its YAML manifest): only the pool's Nginx and Prometheus pods reach vLLM's port.

    vLLM's port serves /metrics, /tokenize and the rest beside /v1/, and on Kubernetes it is the only port the
    pool opens on a GPU pod (the cluster's own GPU monitoring runs the node exporters). Selecting the vLLM pods
    makes them isolated for ingress: anything the rule does not name is dropped, other pods of the cluster
    included. The kubelet's probes still arrive: "traffic to and from the node where a Pod is running is always
    allowed" (kubernetes.io, Network Policies). Enforced by the cluster's network plugin (Cilium on DOKS).
    """
    assert stack.config.kubernetes is not None
    peers = [{"podSelector": {"matchLabels": pod_labels(app, instance)}} for app in (NGINX_NAME, PROMETHEUS_NAME)]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": VLLM_NETWORK_POLICY, "namespace": stack.config.kubernetes.namespace,
                     "labels": pod_labels(VLLM_APP, instance)},
        "spec": {
            "podSelector": {"matchLabels": pod_labels(VLLM_APP, instance)},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": peers, "ports": [{"protocol": "TCP", "port": VLLM_PORT}]}],
        },
    }


def vllm_pod_host(stack: ResolvedStack, index: int) -> str:
    """Stable DNS name of vLLM pod ``index`` (resolvable while the pod is ready)."""
    assert stack.config.kubernetes is not None
    namespace = stack.config.kubernetes.namespace
    return f"{VLLM_STATEFULSET}-{index}.{VLLM_HEADLESS_SERVICE}.{namespace}.svc.{CLUSTER_DOMAIN}"


def vllm_pod_targets(stack: ResolvedStack) -> dict[str, str]:
    """Pod name → host:port of every vLLM pod there can be (nodeCount, or autoscaling.maxNodes: one per GPU node).

    nginx re-resolves each name (``server ... resolve``), so a pod that does not exist yet simply has no
    address until the autoscaler creates it."""
    return {
        f"{VLLM_STATEFULSET}-{i}": f"{vllm_pod_host(stack, i)}:{VLLM_PORT}"
        for i in range(stack.config.max_node_count)
    }


def vllm_pod_discovery(stack: ResolvedStack) -> dict[str, Any]:
    """Prometheus' vllm job for an autoscaled pool: the pods that exist now, from the headless Service's SRV
    record, named by their pod name. Static targets for every possible pod would report the absent ones
    down (TargetDown) whenever the pool is below maxNodes.

    For a headless Service, ``_<port>._<proto>.<service>.<ns>.svc.<zone>`` answers one SRV record per ready
    pod, whose target is the pod's own name ``<hostname>.<service>.<ns>.svc.<zone>`` (Kubernetes DNS-Based
    Service Discovery spec, kubernetes/dns docs/specification.md, 2.4.2 SRV records); Prometheus' SRV
    discovery exposes it as ``__meta_dns_srv_record_target`` (prometheus docs, dns_sd_config).
    """
    assert stack.config.kubernetes is not None
    namespace = stack.config.kubernetes.namespace
    return {
        "dns_sd_configs": [{
            "names": [f"_{VLLM_PORT_NAME}._tcp.{VLLM_HEADLESS_SERVICE}.{namespace}.svc.{CLUSTER_DOMAIN}"],
            "type": "SRV",
            "refresh_interval": "30s",
        }],
        "relabel_configs": [{
            "source_labels": ["__meta_dns_srv_record_target"],
            "regex": rf"({VLLM_STATEFULSET}-[0-9]+)\..*",
            "target_label": "node",
            "replacement": "$1",
        }],
    }


def kubernetes_nginx_conf(stack: ResolvedStack) -> str:
    """nginx.conf of the Nginx Deployment: least_conn over the vLLM pods' names, re-resolved via kube-dns."""
    return nginx_conf(stack, list(vllm_pod_targets(stack).values()), prefix_paths=NGINX_PATHS, resolver=KUBE_DNS)


def kubernetes_prometheus_config(stack: ResolvedStack) -> str:
    """prometheus.yml of the Prometheus Deployment: the vLLM pods by name (Prometheus resolves static
    targets on every scrape, so a rescheduled pod is found again).

    No node_exporter or DCGM targets: DOKS runs its own GPU monitoring on GPU nodes and this stack does
    not install exporters on nodes it does not own, so those jobs stay empty.
    """
    return prometheus_config(
        stack, vllm_pod_targets(stack), {}, {}, rule_files=[f"{PROMETHEUS_CONF_DIR}/{PROMETHEUS_RULES_FILE}"],
        vllm_discovery=vllm_pod_discovery(stack) if stack.config.autoscaling is not None else None,
    )


def render_kubernetes(stack: ResolvedStack) -> dict[str, str]:
    """Relative path → content of every file the Kubernetes pool mounts (what the offline preview writes).

    The API-key include of nginx is not here: it holds the key and lives only in a Kubernetes Secret.
    """
    files = {"loadbalancer/nginx.conf": kubernetes_nginx_conf(stack)}
    # The pool the program deploys is naming.POOL (the instance label of its objects).
    files["kubernetes/vllm-network-policy.yaml"] = dump_yaml(vllm_network_policy(stack, naming.POOL))
    if stack.config.monitoring.enabled:
        files["monitoring/prometheus.yml"] = kubernetes_prometheus_config(stack)
        files["monitoring/rules/gpu-inference.yml"] = alert_rules(stack)
        files["monitoring/rules/gpu-inference.test.yml"] = alert_rule_tests(stack)
    return files


# ---------------------------------------------------------------------------------------------
# Autoscaling: the KEDA ScaledObject of the vLLM StatefulSet
# ---------------------------------------------------------------------------------------------

# vLLM's own gauges (the names the alert rules use at the pinned vLLM, gpu_inference/render/prometheus.py).
QUEUE_METRIC = "vllm:num_requests_waiting"
KV_CACHE_METRIC = "vllm:kv_cache_usage_perc"
# KEDA polls each trigger this often (its default is 30 s): a queue building up is seen within one scrape or two.
POLLING_INTERVAL_SECONDS = 15
# Scale-up: at once (no stabilization), by up to 100% or 2 pods a minute, whichever adds more. The target
# replica count comes from the total queue / KV usage divided by the per-replica target, which does not
# grow while new pods load (they are not scraped until ready), so a 5-minute load does not overshoot.
SCALE_UP_PERIOD_SECONDS = 60
SCALE_UP_PODS = 2
# Scale-down: one pod at a time, at most one per this period (about a model load), after the load has stayed
# low for scaleDownDelaySeconds (the HPA's stabilization window).
SCALE_DOWN_PERIOD_SECONDS = 300


def prometheus_service_url(stack: ResolvedStack) -> str:
    """The in-cluster Prometheus the stack runs (its ClusterIP Service), as KEDA's scaler reaches it."""
    from gpu_inference.constants import PROMETHEUS_PORT

    assert stack.config.kubernetes is not None
    return f"http://{PROMETHEUS_NAME}.{stack.config.kubernetes.namespace}.svc.{CLUSTER_DOMAIN}:{PROMETHEUS_PORT}"


def scaling_queries(stack: ResolvedStack) -> dict[str, str]:
    """Trigger name → PromQL: each sums a vLLM gauge over the replicas of this stack's vllm job.

    With KEDA's default metricType AverageValue the HPA divides the value by the target per replica
    (desired replicas = ceil(sum / threshold)), so ``threshold`` is per replica (KEDA docs, scalers/prometheus).
    """
    return {
        "queue-depth": f'sum({QUEUE_METRIC}{{job="vllm"}})',
        "kv-cache-usage": f'sum({KV_CACHE_METRIC}{{job="vllm"}})',
    }


def scaled_object_spec(stack: ResolvedStack) -> dict[str, Any]:
    """``spec`` of the KEDA ScaledObject (keda.sh/v1alpha1) that scales the vLLM StatefulSet.

    Fields per KEDA v2.20.2 apis/keda/v1alpha1/scaledobject_types.go and its CRD (kept in
    tests/fixtures/keda/ and validated in the tests); Prometheus scaler keys (serverAddress, query, threshold)
    per pkg/scalers/prometheus_scaler.go. ``activationThreshold`` is not set: it only decides scaling
    between 0 and 1 replica, and minNodes is at least 1. ``cooldownPeriod`` likewise only applies to
    scaling to zero; it is set to the same delay so a later minNodes of 0 would not flap either.
    """
    scaling = stack.config.autoscaling
    assert scaling is not None
    server = prometheus_service_url(stack)
    thresholds = {"queue-depth": f"{scaling.target_queue_depth:g}", "kv-cache-usage": f"{scaling.target_kv_cache_usage:g}"}
    triggers = [
        {"type": "prometheus", "name": name,
         "metadata": {"serverAddress": server, "query": query, "threshold": thresholds[name]}}
        for name, query in scaling_queries(stack).items()
    ]
    return {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": VLLM_STATEFULSET},
        "minReplicaCount": scaling.min_nodes,
        "maxReplicaCount": scaling.max_nodes,
        "pollingInterval": POLLING_INTERVAL_SECONDS,
        "cooldownPeriod": scaling.scale_down_delay_seconds,
        "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {
            # autoscaling/v2 HorizontalPodAutoscalerBehavior (Kubernetes API reference).
            "scaleUp": {
                "stabilizationWindowSeconds": 0,
                "selectPolicy": "Max",
                "policies": [
                    {"type": "Percent", "value": 100, "periodSeconds": SCALE_UP_PERIOD_SECONDS},
                    {"type": "Pods", "value": SCALE_UP_PODS, "periodSeconds": SCALE_UP_PERIOD_SECONDS},
                ],
            },
            "scaleDown": {
                "stabilizationWindowSeconds": scaling.scale_down_delay_seconds,
                "selectPolicy": "Min",
                "policies": [{"type": "Pods", "value": 1, "periodSeconds": SCALE_DOWN_PERIOD_SECONDS}],
            },
        }}},
        "triggers": triggers,
    }
