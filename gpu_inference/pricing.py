"""Price the resources a Pulumi program registers, from the catalog.

Input is what a registration (or a test mock) sees: the Pulumi type token, the resource name and its
input properties with their camelCase names. The offline preview, the CrossGuard budget policy and the
PR cost diff all call ``bill_for_resources`` on the same registrations, so they can never disagree.

Conventions:

- A month is ``HOURS_PER_MONTH`` = 730 hours (8760 / 12), as AWS and most price sheets quote it.
  ``monthly_usd = hourly_usd * 730`` except where a provider caps the month (DigitalOcean CPU
  Droplets never bill more than their monthly price).
- Storage is priced per provisioned GB-month, independent of hours.
- AWS bills every public IPv4 address ($0.005/h since Feb 2024): an EC2 instance registered with
  ``associatePublicIpAddress`` gets a ``<name>/public-ipv4`` line, an Elastic IP its own line. (An
  address assigned only through the subnet's ``mapPublicIpOnLaunch`` is not visible in the instance's
  inputs and is not priced. An instance launched on a pre-created network interface, ``primaryNetworkInterface``
  or the deprecated ``networkInterfaces``, gets no public IPv4 from EC2 at all: EC2 only auto-assigns one
  to an interface it creates at launch, so the Elastic IP on that interface is the only address line.)
- A DigitalOcean reserved IPv4 is free while assigned to a Droplet (its catalog row says so, with source);
  the program always assigns it (``ReservedIpAssignment``), so it is a $0 line, never an unknown.
- A Kubernetes ``Service`` of ``spec.type: LoadBalancer`` is the one Kubernetes object with a bill: the only
  clusters this program deploys to are DigitalOcean Kubernetes, whose cloud controller creates a regional
  DigitalOcean load balancer for it (nodes: the ``do-loadbalancer-size-unit`` annotation, default 1).
  Services of any other type are free.
- Anything else that costs nothing (firewalls, VPCs, security groups, SSH keys, tags, Kubernetes objects,
  providers, component resources) prices as ``None``. A size, instance type or paid resource type the
  catalog does not know raises ``UnknownCatalogEntry``: an unknown is never priced as zero.

No Pulumi import: inputs are plain mappings.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gpu_inference.catalog import Catalog, InfraOffering, Offering, UnknownCatalogEntry, load_catalog
from gpu_inference.constants import HOURS_PER_MONTH

DROPLET = "digitalocean:index/droplet:Droplet"
DO_VOLUME = "digitalocean:index/volume:Volume"
DOKS_NODE_POOL = "digitalocean:index/kubernetesNodePool:KubernetesNodePool"
DOKS_CLUSTER = "digitalocean:index/kubernetesCluster:KubernetesCluster"
EC2_INSTANCE = "aws:ec2/instance:Instance"
EBS_VOLUME = "aws:ebs/volume:Volume"
ELASTIC_IP = "aws:ec2/eip:Eip"
DO_RESERVED_IP = "digitalocean:index/reservedIp:ReservedIp"
# Priced only with spec.type LoadBalancer (a DigitalOcean load balancer); other Services are free.
K8S_SERVICE = "kubernetes:core/v1:Service"
# DigitalOcean's cloud controller reads the load balancer's size (in nodes) from this Service annotation.
DO_LB_SIZE_UNIT_ANNOTATION = "service.beta.kubernetes.io/do-loadbalancer-size-unit"

PRICED_TYPES = frozenset(
    {DROPLET, DO_VOLUME, DOKS_NODE_POOL, DOKS_CLUSTER, EC2_INSTANCE, EBS_VOLUME, ELASTIC_IP, DO_RESERVED_IP,
     K8S_SERVICE}
)

# Cloud resources that carry no charge of their own. A cloud type in neither set raises, so a newly
# added paid resource (a managed load balancer, a NAT gateway) cannot slip into a bill as $0.
FREE_TYPES = frozenset(
    {
        "digitalocean:index/firewall:Firewall",
        "digitalocean:index/vpc:Vpc",
        "digitalocean:index/sshKey:SshKey",
        "digitalocean:index/tag:Tag",
        "digitalocean:index/project:Project",
        "digitalocean:index/projectResources:ProjectResources",
        "digitalocean:index/volumeAttachment:VolumeAttachment",
        "digitalocean:index/domain:Domain",
        "digitalocean:index/dnsRecord:DnsRecord",
        "digitalocean:index/certificate:Certificate",
        # Assigning is free; the address itself is the ReservedIp line.
        "digitalocean:index/reservedIpAssignment:ReservedIpAssignment",
        "aws:ec2/vpc:Vpc",
        "aws:ec2/subnet:Subnet",
        "aws:ec2/internetGateway:InternetGateway",
        "aws:ec2/routeTable:RouteTable",
        "aws:ec2/route:Route",
        "aws:ec2/routeTableAssociation:RouteTableAssociation",
        "aws:ec2/mainRouteTableAssociation:MainRouteTableAssociation",
        "aws:ec2/securityGroup:SecurityGroup",
        "aws:ec2/securityGroupRule:SecurityGroupRule",
        "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
        "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule",
        "aws:ec2/keyPair:KeyPair",
        # An ENI costs nothing; a public address on it is billed as the Elastic IP.
        "aws:ec2/networkInterface:NetworkInterface",
        "aws:ec2/eipAssociation:EipAssociation",
        "aws:ec2/volumeAttachment:VolumeAttachment",
        "aws:ec2/tag:Tag",
        "aws:iam/role:Role",
        "aws:iam/rolePolicy:RolePolicy",
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
        "aws:iam/instanceProfile:InstanceProfile",
        "aws:iam/policy:Policy",
    }
)
# Packages whose resources never appear on a cloud bill (cluster objects, local helpers).
FREE_PACKAGES = frozenset({"kubernetes", "random", "tls", "command", "pulumi"})
PAID_PACKAGES = frozenset({"digitalocean", "aws"})


class CostLine(BaseModel):
    """One priced item of a bill. ``hourly_usd`` and ``monthly_usd`` are for the whole line (all units)."""

    model_config = ConfigDict(frozen=True)

    resource_type: str
    resource_name: str
    description: str
    quantity: float
    unit: str
    hourly_usd: float
    monthly_usd: float
    price_date: datetime.date | None
    price_source: str | None


class Bill(BaseModel):
    """The priced resources of a stack. Monthly totals assume ``hours_per_month`` = 730 h."""

    model_config = ConfigDict(frozen=True)

    lines: list[CostLine]
    total_monthly_usd: float
    hours_per_month: float = HOURS_PER_MONTH

    def by_resource(self) -> dict[str, CostLine]:
        """Lines keyed by resource name (a root volume is ``<instance>/root-volume``)."""
        return {line.resource_name: line for line in self.lines}

    @property
    def total_hourly_usd(self) -> float:
        return sum(line.hourly_usd for line in self.lines)


class SpotSavings(BaseModel):
    """On-demand vs spot for one offering, per 730 h month."""

    model_config = ConfigDict(frozen=True)

    offering_id: str
    on_demand_monthly_usd: float
    spot_monthly_usd: float
    savings_monthly_usd: float
    savings_fraction: float = Field(ge=0, le=1)
    price_date: datetime.date
    price_source: str


def _line(
    resource_type: str,
    name: str,
    description: str,
    quantity: float,
    unit: str,
    hourly: float,
    monthly: float,
    price_date: datetime.date | None,
    price_source: str | None,
) -> CostLine:
    return CostLine(
        resource_type=resource_type,
        resource_name=name,
        description=description,
        quantity=quantity,
        unit=unit,
        hourly_usd=hourly,
        monthly_usd=monthly,
        price_date=price_date,
        price_source=price_source,
    )


def _require(inputs: Mapping[str, Any], key: str, resource_type: str, name: str) -> Any:
    value = inputs.get(key)
    if value is None or value == "":
        raise ValueError(f"{resource_type} {name!r}: input {key!r} is required to price it")
    return value


def _positive_number(value: Any, what: str) -> float:
    try:
        number = float(value)  # mocks and config may hand numbers over as strings
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if number < 0:
        raise ValueError(f"{what} must not be negative, got {value!r}")
    return number


def _droplet_size(catalog: Catalog, size: str) -> Offering | InfraOffering:
    """A Droplet / DOKS node size: a GPU slug or a basic Droplet slug, both DigitalOcean."""
    if size in catalog.offerings and catalog.offerings[size].provider == "digitalocean":
        return catalog.offerings[size]
    if size in catalog.infra and catalog.infra[size].provider == "digitalocean":
        return catalog.infra[size]
    candidates = [o.id for o in catalog.offerings.values() if o.provider == "digitalocean"]
    candidates += [h.id for h in catalog.infra.values() if h.provider == "digitalocean"]
    raise UnknownCatalogEntry("DigitalOcean Droplet size", size, candidates)


def _ec2_type(catalog: Catalog, instance_type: str) -> Offering | InfraOffering:
    if instance_type in catalog.offerings and catalog.offerings[instance_type].provider == "aws":
        return catalog.offerings[instance_type]
    if instance_type in catalog.infra and catalog.infra[instance_type].provider == "aws":
        return catalog.infra[instance_type]
    candidates = [o.id for o in catalog.offerings.values() if o.provider == "aws"]
    candidates += [h.id for h in catalog.infra.values() if h.provider == "aws"]
    raise UnknownCatalogEntry("EC2 instance type", instance_type, candidates)


def _machines(
    resource_type: str, name: str, size: Offering | InfraOffering, count: float, unit: str, extra: str = ""
) -> CostLine:
    """``count`` machines of one size for a 730 h month (capped per machine where the provider caps)."""
    if isinstance(size, Offering):
        what = f"{size.id} ({size.gpu_count}x {size.gpu})"
        monthly_each = size.hourly_usd * HOURS_PER_MONTH
    else:
        what = size.id
        monthly_each = size.monthly_usd(HOURS_PER_MONTH)
        if size.monthly_cap_usd is not None and monthly_each < size.hourly_usd * HOURS_PER_MONTH:
            extra += f"; capped at ${size.monthly_cap_usd:.2f}/month"
    plural = "" if count == 1 else f"{count:g} x "
    return _line(
        resource_type,
        name,
        f"{plural}{what} at ${size.hourly_usd:g}/h{extra}",
        count,
        unit,
        size.hourly_usd * count,
        monthly_each * count,
        size.price_date,
        size.price_source,
    )


def _storage(
    catalog: Catalog, resource_type: str, name: str, provider: str, kind: str, size_gb: float, label: str
) -> CostLine:
    price = catalog.storage_price(provider, kind)
    monthly = price.usd_per_gb_month * size_gb
    return _line(
        resource_type,
        name,
        f"{size_gb:g} GB {label} at ${price.usd_per_gb_month:g}/GB-month",
        size_gb,
        "GB-month",
        monthly / HOURS_PER_MONTH,
        monthly,
        price.price_date,
        price.price_source,
    )


def _node_count(inputs: Mapping[str, Any], resource_type: str, name: str) -> tuple[float, str]:
    """Nodes to bill: ``nodeCount``, else the autoscaler's ``minNodes`` (the floor it always runs)."""
    if inputs.get("nodeCount") is not None:
        return _positive_number(inputs["nodeCount"], f"{resource_type} {name!r} nodeCount"), ""
    if inputs.get("minNodes") is not None:
        low = _positive_number(inputs["minNodes"], f"{resource_type} {name!r} minNodes")
        high = inputs.get("maxNodes")
        return low, f"; autoscaling, priced at minNodes (up to {high} nodes)" if high is not None else ""
    raise ValueError(f"{resource_type} {name!r}: nodeCount (or minNodes) is required to price it")


def _price_instance(catalog: Catalog, name: str, inputs: Mapping[str, Any]) -> list[CostLine]:
    instance_type = str(_require(inputs, "instanceType", EC2_INSTANCE, name))
    size = _ec2_type(catalog, instance_type)
    market = inputs.get("instanceMarketOptions") or {}
    lines: list[CostLine]
    if isinstance(market, Mapping) and str(market.get("marketType", "")).lower() == "spot":
        spot = size.spot_hourly_usd if isinstance(size, Offering) else None
        if spot is not None and isinstance(size, Offering):
            lines = [
                _line(
                    EC2_INSTANCE,
                    name,
                    f"{size.id} ({size.gpu_count}x {size.gpu}) spot at ${spot:g}/h "
                    f"(on-demand ${size.hourly_usd:g}/h)",
                    1,
                    "instance",
                    spot,
                    spot * HOURS_PER_MONTH,
                    size.price_date,
                    size.price_source,
                )
            ]
        else:
            lines = [
                _machines(
                    EC2_INSTANCE,
                    name,
                    size,
                    1,
                    "instance",
                    "; spot requested but the catalog has no spot price, priced at on-demand",
                )
            ]
    else:
        lines = [_machines(EC2_INSTANCE, name, size, 1, "instance")]

    root = inputs.get("rootBlockDevice") or {}
    if isinstance(root, Mapping) and root.get("volumeSize") is not None:
        volume_type = str(root.get("volumeType") or "gp3")
        if volume_type != "gp3":
            raise UnknownCatalogEntry("EBS volume type", volume_type, ["gp3"])
        size_gb = _positive_number(root["volumeSize"], f"{EC2_INSTANCE} {name!r} rootBlockDevice.volumeSize")
        lines.append(
            _storage(catalog, EBS_VOLUME, f"{name}/root-volume", "aws", "ebs-gp3", size_gb, "EBS gp3 root volume")
        )
    if _truthy(inputs.get("associatePublicIpAddress")):
        lines.append(_public_ipv4(catalog, EC2_INSTANCE, f"{name}/public-ipv4"))
    return lines


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _public_ipv4(catalog: Catalog, resource_type: str, name: str) -> CostLine:
    price = catalog.address_price("aws", "public-ipv4")
    return _line(
        resource_type,
        name,
        f"public IPv4 address at ${price.hourly_usd:g}/h",
        1,
        "address",
        price.hourly_usd,
        price.hourly_usd * HOURS_PER_MONTH,
        price.price_date,
        price.price_source,
    )


def _reserved_ipv4(catalog: Catalog, name: str) -> CostLine:
    price = catalog.address_price("digitalocean", "reserved-ipv4-assigned")
    return _line(
        DO_RESERVED_IP,
        name,
        f"reserved IPv4 at ${price.hourly_usd:g}/h while assigned to a Droplet "
        "(DigitalOcean bills reserved IPv4s only while unassigned)",
        1,
        "address",
        price.hourly_usd,
        price.hourly_usd * HOURS_PER_MONTH,
        price.price_date,
        price.price_source,
    )


def _k8s_load_balancer(catalog: Catalog, name: str, inputs: Mapping[str, Any]) -> list[CostLine]:
    """A ``type: LoadBalancer`` Service as the DigitalOcean load balancer DOKS creates for it; other types: free."""
    spec = inputs.get("spec") or {}
    if not isinstance(spec, Mapping) or spec.get("type") != "LoadBalancer":
        return []
    metadata = inputs.get("metadata") or {}
    annotations = (metadata.get("annotations") if isinstance(metadata, Mapping) else None) or {}
    units = _positive_number(annotations.get(DO_LB_SIZE_UNIT_ANNOTATION, 1),
                             f"{K8S_SERVICE} {name!r} {DO_LB_SIZE_UNIT_ANNOTATION}")
    price = catalog.load_balancer_price("digitalocean", "regional")
    monthly_each = price.monthly_usd(HOURS_PER_MONTH)
    cap = f"; capped at ${price.monthly_cap_usd:.2f}/month per node" if price.monthly_cap_usd is not None else ""
    plural = "" if units == 1 else f"{units:g} x "
    return [
        _line(
            K8S_SERVICE,
            name,
            f"DigitalOcean load balancer for a LoadBalancer Service, {plural}node at ${price.hourly_usd:g}/h{cap}",
            units,
            "load-balancer node",
            price.hourly_usd * units,
            monthly_each * units,
            price.price_date,
            price.price_source,
        )
    ]


def price_resources(
    resource_type: str, name: str, inputs: Mapping[str, Any], catalog: Catalog | None = None
) -> list[CostLine]:
    """All cost lines of one registered resource (an EC2 instance may add root-volume and IPv4 lines)."""
    cat = catalog or load_catalog()
    if resource_type == EC2_INSTANCE:
        return _price_instance(cat, name, inputs)
    if resource_type == DROPLET:
        size = _droplet_size(cat, str(_require(inputs, "size", resource_type, name)))
        return [_machines(resource_type, name, size, 1, "droplet")]
    if resource_type == DOKS_NODE_POOL:
        size = _droplet_size(cat, str(_require(inputs, "size", resource_type, name)))
        count, note = _node_count(inputs, resource_type, name)
        return [_machines(resource_type, name, size, count, "node", note)]
    if resource_type == DOKS_CLUSTER:
        # The control plane is free (non-HA); the default pool declared inline is billed like a pool.
        pool = inputs.get("nodePool") or {}
        if not isinstance(pool, Mapping) or not pool.get("size"):
            raise ValueError(f"{resource_type} {name!r}: nodePool.size is required to price it")
        size = _droplet_size(cat, str(pool["size"]))
        count, note = _node_count(pool, resource_type, name)
        return [_machines(resource_type, name, size, count, "node", f"; default node pool{note}")]
    if resource_type == DO_VOLUME:
        size_gb = _positive_number(_require(inputs, "size", resource_type, name), f"{resource_type} {name!r} size")
        return [_storage(cat, resource_type, name, "digitalocean", "volume", size_gb, "DigitalOcean volume")]
    if resource_type == EBS_VOLUME:
        # EBS defaults to gp2 when no type is given; only gp3 is in the catalog.
        volume_type = str(inputs.get("type") or "gp2")
        if volume_type != "gp3":
            raise UnknownCatalogEntry("EBS volume type", volume_type, ["gp3"])
        size_gb = _positive_number(_require(inputs, "size", resource_type, name), f"{resource_type} {name!r} size")
        return [_storage(cat, resource_type, name, "aws", "ebs-gp3", size_gb, "EBS gp3 volume")]
    if resource_type == ELASTIC_IP:
        return [_public_ipv4(cat, resource_type, name)]
    if resource_type == DO_RESERVED_IP:
        return [_reserved_ipv4(cat, name)]
    if resource_type == K8S_SERVICE:
        return _k8s_load_balancer(cat, name, inputs)
    if _is_free(resource_type):
        return []
    raise UnknownCatalogEntry("resource type (not priced and not known to be free)", resource_type, PRICED_TYPES)


def _is_free(resource_type: str) -> bool:
    if resource_type in FREE_TYPES:
        return True
    package = resource_type.split(":", 1)[0]
    if package in FREE_PACKAGES:
        return True
    # Component resources (e.g. ``gpu-inference:index:VllmService``) only group children.
    return package not in PAID_PACKAGES


def price_resource(
    resource_type: str, name: str, inputs: Mapping[str, Any], catalog: Catalog | None = None
) -> CostLine | None:
    """The cost line of one registered resource, or ``None`` when it is free.

    An EC2 instance may also have root-volume and public-IPv4 lines; this returns the instance line
    only. Use ``price_resources`` or ``bill_for_resources`` to get both.
    """
    lines = price_resources(resource_type, name, inputs, catalog)
    return lines[0] if lines else None


def bill_for_resources(
    resources: Iterable[tuple[str, str, Mapping[str, Any]]], catalog: Catalog | None = None
) -> Bill:
    """Price ``(type token, name, inputs)`` registrations into one bill at 730 h/month."""
    cat = catalog or load_catalog()
    lines = [line for rtype, name, inputs in resources for line in price_resources(rtype, name, inputs, cat)]
    return Bill(lines=lines, total_monthly_usd=sum(line.monthly_usd for line in lines))


def cost_per_million_tokens(hourly_usd: float, tokens_per_second: float, utilization: float) -> float:
    """USD per million generated tokens: ``hourly / (tps * utilization * 3600 / 1e6)``.

    ``tokens_per_second`` is the machine's aggregate throughput when busy; ``utilization`` the share
    of paid hours it is busy (0 < u <= 1).
    """
    if hourly_usd < 0:
        raise ValueError(f"hourly_usd must not be negative, got {hourly_usd}")
    if tokens_per_second <= 0:
        raise ValueError(f"tokens_per_second must be positive, got {tokens_per_second}")
    if not 0 < utilization <= 1:
        raise ValueError(f"utilization must be in (0, 1], got {utilization}")
    return hourly_usd / (tokens_per_second * utilization * 3600 / 1e6)


def break_even_utilization(hourly_usd: float, tokens_per_second: float, api_usd_per_million_tokens: float) -> float:
    """Utilization at which self-hosting costs the same per token as the API.

    Solves ``cost_per_million_tokens(hourly, tps, u) == api price`` for ``u``:
    ``u = hourly * 1e6 / (tps * 3600 * api_price)``. A result above 1 means the machine cannot
    break even even when busy all the time.
    """
    if hourly_usd < 0:
        raise ValueError(f"hourly_usd must not be negative, got {hourly_usd}")
    if tokens_per_second <= 0:
        raise ValueError(f"tokens_per_second must be positive, got {tokens_per_second}")
    if api_usd_per_million_tokens <= 0:
        raise ValueError(f"api_usd_per_million_tokens must be positive, got {api_usd_per_million_tokens}")
    return hourly_usd * 1e6 / (tokens_per_second * 3600 * api_usd_per_million_tokens)


def spot_savings(offering: Offering) -> SpotSavings | None:
    """Monthly on-demand vs spot for ``offering``; ``None`` when the catalog has no spot price for it."""
    if offering.spot_hourly_usd is None:
        return None
    on_demand = offering.hourly_usd * HOURS_PER_MONTH
    spot = offering.spot_hourly_usd * HOURS_PER_MONTH
    return SpotSavings(
        offering_id=offering.id,
        on_demand_monthly_usd=on_demand,
        spot_monthly_usd=spot,
        savings_monthly_usd=on_demand - spot,
        savings_fraction=(on_demand - spot) / on_demand,
        price_date=offering.price_date,
        price_source=offering.price_source,
    )
