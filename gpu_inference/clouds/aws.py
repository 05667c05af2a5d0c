"""AWS: GPU instances on the NVIDIA-driver Deep Learning Base AMI, in a small VPC of the stack's own.

Everything pure the project knows about AWS; ``components/clouds/aws.py`` creates the resources.

Billing facts: AWS bills every public IPv4 address ($0.005/h since Feb 2024). An instance registered with
``associatePublicIpAddress`` gets a ``<name>/public-ipv4`` line, an Elastic IP its own line. An address
assigned only through the subnet's ``mapPublicIpOnLaunch`` is not visible in the instance's inputs and is
not priced. An instance launched on a pre-created network interface (``primaryNetworkInterface``) gets no
public IPv4 from EC2 at all: EC2 only auto-assigns one to an interface it creates at launch, so the Elastic
IP on that interface is the only address line.
"""

from __future__ import annotations

import base64
import gzip
import ipaddress
import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from gpu_inference import bill, naming
from gpu_inference.catalog import Offering, UnknownCatalogEntry
from gpu_inference.clouds.base import Cloud, CloudMocks, FakeAddress, Layout, OpenPort, tls_domain_in_zone_problems
from gpu_inference.constants import HOURS_PER_MONTH, PROJECT_NAME

if TYPE_CHECKING:
    from gpu_inference.bill import CostLine
    from gpu_inference.catalog import Catalog
    from gpu_inference.config import StackConfig

NAME = "aws"

# Resource type tokens of the pulumi-aws SDK this project registers, and the invokes it calls.
INSTANCE = "aws:ec2/instance:Instance"
ELASTIC_IP = "aws:ec2/eip:Eip"
EIP_ASSOCIATION = "aws:ec2/eipAssociation:EipAssociation"
EBS_VOLUME = "aws:ebs/volume:Volume"
VOLUME_ATTACHMENT = "aws:ec2/volumeAttachment:VolumeAttachment"
NETWORK_INTERFACE = "aws:ec2/networkInterface:NetworkInterface"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SECURITY_GROUP_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
# The TLS domain's A record in a Route 53 hosted zone the account already has. A record costs nothing of its
# own: Route 53 bills the hosted zone ($0.50/month, the user's, not created here) and queries by usage
# (aws.amazon.com/route53/pricing), neither of which this program adds.
ROUTE53_RECORD = "aws:route53/record:Record"
# Route 53 hosted zone ids: "Z" and upper-case letters/digits (e.g. Z1D633PJN98FT9, Z0123456789ABCDEFGHIJ).
_HOSTED_ZONE_ID = re.compile(r"Z[A-Z0-9]{1,31}")
GET_AMI = "aws:ec2/getAmi:getAmi"
GET_INSTANCE_TYPE_OFFERINGS = "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings"

# AWS Deep Learning Base AMI with the open-source NVIDIA kernel driver, CUDA, Docker and the NVIDIA
# container toolkit preinstalled (what vLLM's container needs), x86_64. AWS publishes a new one every
# few weeks; most_recent picks the newest, named e.g. "... (Ubuntu 22.04) 20261006".
GPU_AMI_NAME = "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *"
GPU_AMI_OWNER = "amazon"
# Nginx and Prometheus hosts: Canonical's Ubuntu 24.04 LTS (the renderers' cloud-init targets Ubuntu).
BASE_AMI_NAME = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"
BASE_AMI_OWNER = "099720109477"  # Canonical
# Device names the data volumes are attached as (/dev/sdf, /dev/sdg, ...): what EC2 records; a Nitro
# instance shows the volume as an NVMe device instead (``volume_devices`` finds it by id).
DATA_DEVICE_LETTERS = "fghijklmnop"
VPC_CIDR = "10.42.0.0/16"
SUBNET_CIDR = "10.42.1.0/24"
# Root disk of the small hosts: OS, Nginx or Prometheus, logs (Prometheus' TSDB lives on its own data volume).
BASE_DISK_GB = {"lb": 20, "monitoring": 40}
# What the offline preview and the golden files use for the Prometheus volume's id (the real one comes from EC2).
PREVIEW_VOLUME_ID = "vol-00000000000000000"
# Root snapshot of the mocked AMI lookup, in GiB (Ubuntu's is 8): below every root disk the program asks for.
PREVIEW_AMI_ROOT_GB = 8
PREVIEW_AMI = "ami-0abc1234def567890"

# Networking and identity cost nothing of their own (an address on an interface is billed as the Elastic IP).
FREE_TYPES = frozenset({
    SECURITY_GROUP, SECURITY_GROUP_RULE, INGRESS_RULE, NETWORK_INTERFACE, EIP_ASSOCIATION, VOLUME_ATTACHMENT,
    ROUTE53_RECORD,
    "aws:ec2/vpc:Vpc",
    "aws:ec2/subnet:Subnet",
    "aws:ec2/internetGateway:InternetGateway",
    "aws:ec2/routeTable:RouteTable",
    "aws:ec2/route:Route",
    "aws:ec2/routeTableAssociation:RouteTableAssociation",
    "aws:ec2/mainRouteTableAssociation:MainRouteTableAssociation",
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule",
    "aws:ec2/keyPair:KeyPair",
    "aws:ec2/tag:Tag",
    "aws:iam/role:Role",
    "aws:iam/rolePolicy:RolePolicy",
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
    "aws:iam/instanceProfile:InstanceProfile",
    "aws:iam/policy:Policy",
})  # fmt: skip

_PUBLIC_IPV4 = "public IPv4 address at {hourly}"

# EC2 refuses user data over 16 KB (raw, before base64). cloud-init reads gzip-compressed user data
# transparently, so the program always sends it compressed (a big pool's Prometheus config can pass 16 KB).
USER_DATA_LIMIT_BYTES = 16 * 1024


def user_data_base64_gzip(text: str) -> str:
    """Deterministic gzip (mtime 0) + base64 of a cloud-config, for EC2's ``user_data_base64``."""
    return base64.b64encode(gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)).decode("ascii")


def fits_user_data(text: str) -> bool:
    """Whether a plain user-data text fits EC2's limit uncompressed."""
    return len(text.encode("utf-8")) <= USER_DATA_LIMIT_BYTES


def tags(stack: str, name: str, role: str, extra_tags: list[str], labels: Mapping[str, str] | None = None) -> dict[str, str]:
    """Tags of an AWS resource: its cloud-side Name, the stack and role, the stack's own tags, spec labels."""
    out = {"Name": naming.cloud_name(name, stack), naming.label_key("stack"): stack, naming.label_key("role"): role}
    out.update({t: "" for t in extra_tags})
    out.update(labels or {})
    return out


class Aws(Cloud):
    name: ClassVar[str] = NAME
    summary: ClassVar[str] = "AWS GPU instances in a VPC of the stack's own"
    catalog_cloud: ClassVar[str] = NAME
    layout: ClassVar[Layout] = "machines"
    pulumi_module: ClassVar[str] = "components.clouds.aws"
    gpu_image: ClassVar[str | None] = "AWS's NVIDIA-driver AMIs"
    # IMDSv2 (the instances require it): a session token from PUT /latest/api/token, then
    # /latest/meta-data/local-ipv4, the primary private address (docs.aws.amazon.com/AWSEC2/latest/UserGuide/
    # instancedata-data-retrieval.html).
    private_ipv4_lookup: ClassVar[str | None] = (
        'token=$(curl -fsS --max-time 5 -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 60" '
        'http://169.254.169.254/latest/api/token) && curl -fsS --max-time 5 -H "X-aws-ec2-metadata-token: $token" '
        "http://169.254.169.254/latest/meta-data/local-ipv4"
    )
    packages: ClassVar[frozenset[str]] = frozenset({"aws"})
    free_types: ClassVar[frozenset[str]] = FREE_TYPES
    supports_spot: ClassVar[bool] = True
    # The link-local instance metadata endpoint (EC2 User Guide, "Access instance metadata for an EC2 instance").
    spot_metadata_endpoint: ClassVar[str | None] = "http://169.254.169.254"
    private_network: ClassVar[ipaddress.IPv4Network] = ipaddress.IPv4Network(SUBNET_CIDR)

    def config_problems(self, cfg: StackConfig) -> list[str]:
        problems = tls_domain_in_zone_problems(cfg, "Route 53 hosted zone")
        zone = cfg.load_balancer.dns_zone
        if not problems and zone and not _HOSTED_ZONE_ID.fullmatch(zone):
            problems.append(
                f"{PROJECT_NAME}:loadBalancer.dnsZone = {zone!r} is not a Route 53 hosted zone id: use the zone's id "
                "(Z followed by upper-case letters and digits, `aws route53 list-hosted-zones`), not its name"
            )
        return problems

    def price(self, resource_type: str, name: str, inputs: Mapping[str, Any], catalog: Catalog) -> list[CostLine] | None:
        if resource_type == INSTANCE:
            return _price_instance(catalog, name, inputs)
        if resource_type == EBS_VOLUME:
            # EBS defaults to gp2 when no type is given; only gp3 is in the catalog.
            volume_type = str(inputs.get("type") or "gp2")
            if volume_type != "gp3":
                raise UnknownCatalogEntry("EBS volume type", volume_type, ["gp3"])
            size_gb = bill.positive_number(bill.require(inputs, "size", resource_type, name), f"{resource_type} {name!r} size")
            return [bill.storage(catalog, resource_type, name, NAME, "ebs-gp3", size_gb, "EBS gp3 volume")]
        if resource_type == ELASTIC_IP:
            return [bill.address(catalog, resource_type, name, NAME, "public-ipv4", _PUBLIC_IPV4)]
        return super().price(resource_type, name, inputs, catalog)

    def open_ports(self, resource_type: str, props: Mapping[str, Any]) -> Iterator[OpenPort]:
        if resource_type == SECURITY_GROUP:
            for rule in props.get("ingress") or []:
                yield from _open(rule.get("protocol"), rule.get("fromPort"), rule.get("toPort"),
                                 [*(rule.get("cidrBlocks") or []), *(rule.get("ipv6CidrBlocks") or [])],
                                 rule.get("securityGroups") or [])
        elif resource_type == SECURITY_GROUP_RULE and props.get("type") == "ingress":
            yield from _open(props.get("protocol"), props.get("fromPort"), props.get("toPort"),
                             [*(props.get("cidrBlocks") or []), *(props.get("ipv6CidrBlocks") or [])],
                             [props["sourceSecurityGroupId"]] if props.get("sourceSecurityGroupId") else [])
        elif resource_type == INGRESS_RULE:
            yield from _open(props.get("ipProtocol"), props.get("fromPort"), props.get("toPort"),
                             [c for c in (props.get("cidrIpv4"), props.get("cidrIpv6")) if c],
                             [props["referencedSecurityGroupId"]] if props.get("referencedSecurityGroupId") else [])

    def mocks(self, ami_root_gb: int = PREVIEW_AMI_ROOT_GB, **_options: Any) -> CloudMocks:
        return _Mocks(ami_root_gb)

    def volume_devices(self, volume: str) -> list[str]:
        # On Nitro instances an EBS volume is an NVMe device whose serial number is the volume id without its
        # dash, so udev links it as /dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol… (the /dev/sdf asked
        # for at attachment is not a device node there); older Xen types keep the attachment's name, /dev/xvdf.
        return [f"/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_{volume.replace('-', '', 1)}", "/dev/xvdf"]

    def volume_ref(self, inputs: Mapping[str, Any], resource_id: str | None) -> str | None:
        return resource_id

    def placeholder_volume(self, stack_name: str) -> str:
        return PREVIEW_VOLUME_ID


def _open(protocol: Any, from_port: Any, to_port: Any, cidrs: list[Any], groups: list[Any]) -> Iterator[OpenPort]:
    proto = str(protocol).lower()
    if proto in ("icmp", "icmpv6", "58", "1"):
        return
    if proto in ("-1", "all"):
        low, high = 1, 65535
    else:
        try:
            low, high = int(float(from_port)), int(float(to_port))
        except (TypeError, ValueError):
            low, high = 1, 65535  # unreadable: every port (fail closed)
        if (low, high) == (0, 0):
            low, high = 1, 65535
    yield OpenPort(low, high, tuple(str(c) for c in cidrs), f"ingress {from_port}-{to_port}",
                   peers=tuple(f"sg:{g}" for g in groups))


def _instance_type(catalog: Catalog, instance_type: str) -> Any:
    return bill.machine_size(catalog, NAME, instance_type, "EC2 instance type")


def _price_instance(catalog: Catalog, name: str, inputs: Mapping[str, Any]) -> list[CostLine]:
    instance_type = str(bill.require(inputs, "instanceType", INSTANCE, name))
    size = _instance_type(catalog, instance_type)
    market = inputs.get("instanceMarketOptions") or {}
    lines: list[CostLine]
    if isinstance(market, Mapping) and str(market.get("marketType", "")).lower() == "spot":
        spot = size.spot_hourly_usd if isinstance(size, Offering) else None
        if spot is not None and isinstance(size, Offering):
            lines = [bill.line(INSTANCE, name, f"{size.id} ({size.gpu_count}x {size.gpu}) spot at ${spot:g}/h "
                               f"(on-demand ${size.hourly_usd:g}/h)", 1, "instance", spot, spot * HOURS_PER_MONTH,
                               size.price_date, size.price_source)]
        else:
            lines = [bill.machines(INSTANCE, name, size, 1, "instance",
                                   "; spot, priced at on-demand as an upper bound (the catalog has no sourced spot price)")]
    else:
        lines = [bill.machines(INSTANCE, name, size, 1, "instance")]

    root = inputs.get("rootBlockDevice") or {}
    if isinstance(root, Mapping) and root.get("volumeSize") is not None:
        volume_type = str(root.get("volumeType") or "gp3")
        if volume_type != "gp3":
            raise UnknownCatalogEntry("EBS volume type", volume_type, ["gp3"])
        size_gb = bill.positive_number(root["volumeSize"], f"{INSTANCE} {name!r} rootBlockDevice.volumeSize")
        lines.append(bill.storage(catalog, EBS_VOLUME, f"{name}/root-volume", NAME, "ebs-gp3", size_gb,
                                  "EBS gp3 root volume"))
    if bill.truthy(inputs.get("associatePublicIpAddress")):
        lines.append(bill.address(catalog, INSTANCE, f"{name}/public-ipv4", NAME, "public-ipv4", _PUBLIC_IPV4))
    return lines


class _Mocks(CloudMocks):
    """EC2 as the preview pretends it: an instance launched on a pre-created interface takes that interface's
    private address and the Elastic IP associated with it."""

    def __init__(self, ami_root_gb: int) -> None:
        self.ami_root_gb = ami_root_gb
        self.eni_private: dict[str, str] = {}
        self.eip_public: dict[str, str] = {}
        self.eni_public: dict[str, str] = {}

    def new_resource(
        self, typ: str, name: str, inputs: Mapping[str, Any], resource_id: str | None, fake: FakeAddress, region: str
    ) -> tuple[str, dict[str, Any]] | None:
        state = dict(inputs)
        n, public, private = fake.n, fake.public, fake.private
        if typ == INSTANCE:
            rid = f"i-0{n:016x}"
            eni = str((inputs.get("primaryNetworkInterface") or {}).get("networkInterfaceId") or "")
            if eni:
                # No address of its own: EC2 assigns none to an interface it did not create at launch.
                public, private = self.eni_public.get(eni, ""), self.eni_private.get(eni, private)
            state.update(publicIp=public, privateIp=private, arn=f"arn:aws:ec2:{region}:000000000000:instance/{rid}")
        elif typ == EBS_VOLUME:
            rid = f"vol-0{n:016x}"
            state.update(arn=f"arn:aws:ec2:{region}:000000000000:volume/{rid}", iops=3000, throughput=125)
        elif typ.startswith("aws:ec2/"):
            kind = typ.rsplit(":", 1)[-1]
            prefix = {"SecurityGroup": "sg", "Vpc": "vpc", "Subnet": "subnet", "InternetGateway": "igw",
                      "RouteTable": "rtb", "RouteTableAssociation": "rtbassoc", "NetworkInterface": "eni",
                      "Eip": "eipalloc", "EipAssociation": "eipassoc",
                      "VolumeAttachment": "vai"}.get(kind, kind.lower())
            rid = f"{prefix}-0{n:016x}"
            if typ == NETWORK_INTERFACE:
                self.eni_private[rid] = private
                state.update(privateIp=private, privateIps=[private])
            elif typ == ELASTIC_IP:
                self.eip_public[rid] = public
                state.update(allocationId=rid, publicIp=public, domain=inputs.get("domain") or "vpc")
            elif typ == EIP_ASSOCIATION:
                eip = str(inputs.get("allocationId") or "")
                eni = str(inputs.get("networkInterfaceId") or "")
                if eip in self.eip_public and eni:
                    self.eni_public[eni] = self.eip_public[eip]
                state.update(publicIp=self.eip_public.get(eip, ""))
        elif typ == ROUTE53_RECORD:
            # Route 53's id of a record: zone id, name and type joined by underscores.
            rid = f"{inputs.get('zoneId')}_{inputs.get('name')}_{inputs.get('type')}"
            state.update(fqdn=str(inputs.get("name") or ""))
        elif typ.startswith("aws:"):
            rid = f"{name}-id"
        else:
            return None
        return rid, state

    def call(self, token: str, args: Mapping[str, Any], region: str) -> dict[str, Any] | None:
        if token == GET_AMI:
            return {"id": PREVIEW_AMI, "imageId": PREVIEW_AMI, "architecture": "x86_64",
                    "name": "preview-ami", "ownerId": "000000000000", "rootDeviceName": "/dev/sda1",
                    "blockDeviceMappings": [{"deviceName": "/dev/sda1",
                                             "ebs": {"volume_size": str(self.ami_root_gb)},
                                             "noDevice": "", "virtualName": ""}]}
        if token == GET_INSTANCE_TYPE_OFFERINGS:
            return {"id": region, "locations": [f"{region}a", f"{region}b"],
                    "locationTypes": ["availability-zone"] * 2, "instanceTypes": ["preview"] * 2}
        return None


CLOUD = Aws()
