"""AWS machines: GPU instances on the NVIDIA-driver Deep Learning Base AMI, in a small VPC of the stack's own.

The pure facts (type tokens, AMI names, CIDRs, tags, prices) are in ``gpu_inference/clouds/aws.py``.

Why a VPC of its own rather than the default VPC: many accounts (AWS Organizations landing zones, anyone
who followed CIS advice) have deleted the default VPC, and its subnets span every Availability Zone while
a GPU type is offered only in some. The stack therefore creates one VPC, one public subnet in an AZ that
actually offers the GPU instance type (asked of EC2, not guessed), an internet gateway and a route table.
None of these cost money; they are deleted with the stack.
"""

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.clouds import (
    INSTANCE_SECRET_OUTPUTS,
    ROLES,
    WORLD_V4,
    WORLD_V6,
    DataVolume,
    IngressRule,
    Machine,
    MachineSpec,
    Network,
    NetworkArgs,
    VolumeSpec,
    identity,
    registration,
)
from gpu_inference import naming
from gpu_inference.bill import Registration
from gpu_inference.clouds import aws as facts
from gpu_inference.clouds.base import DNS_TTL_SECONDS
from gpu_inference.config import NAMESPACE
from gpu_inference.stack import ResolvedStack

_EGRESS_ALL = [
    aws.ec2.SecurityGroupEgressArgs(
        protocol="-1", from_port=0, to_port=0, cidr_blocks=[WORLD_V4], ipv6_cidr_blocks=[WORLD_V6],
        description="all outbound: image pulls, model weights, packages",
    )
]


def _tags(stack: ResolvedStack, name: str, role: str, labels: dict[str, str] | None = None) -> dict[str, str]:
    return facts.tags(stack.name, name, role, list(stack.config.tags), labels)


@dataclass(frozen=True)
class _StaticAddress:
    eni: aws.ec2.NetworkInterface
    eip: aws.ec2.Eip
    association: aws.ec2.EipAssociation
    registration: Registration


class AwsMachines:

    def network(self, name: str, stack: ResolvedStack, opts: pulumi.ResourceOptions) -> Network:
        region = stack.config.region
        # An explicit provider pins the stack's region: `aws:region` from the environment never decides it.
        # Explicit providers do not read the stack's `aws:*` config, so the profile is passed on by hand
        # (credentials from the environment work as usual).
        provider = aws.Provider(
            f"{name}-aws", region=region, profile=pulumi.Config("aws").get("profile"), opts=opts,
        )
        parent = opts.parent
        opts = pulumi.ResourceOptions(parent=parent, provider=provider)
        invoke = pulumi.InvokeOutputOptions(parent=parent, provider=provider)
        offerings = aws.ec2.get_instance_type_offerings_output(
            location_type="availability-zone",
            filters=[aws.ec2.GetInstanceTypeOfferingsFilterArgs(name="instance-type", values=[stack.config.gpu])],
            opts=invoke,
        )
        az = offerings.locations.apply(lambda zones: _first_zone(zones, stack))
        prefix = naming.resource_prefix(stack.name)
        vpc = aws.ec2.Vpc(
            f"{name}-vpc", cidr_block=facts.VPC_CIDR, enable_dns_hostnames=True, enable_dns_support=True,
            tags={"Name": f"{prefix}-vpc"}, opts=opts,
        )
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags={"Name": f"{prefix}-igw"}, opts=opts)
        subnet = aws.ec2.Subnet(
            f"{name}-subnet", vpc_id=vpc.id, cidr_block=facts.SUBNET_CIDR, availability_zone=az,
            map_public_ip_on_launch=True, tags={"Name": f"{prefix}-public"}, opts=opts,
        )
        routes = aws.ec2.RouteTable(
            f"{name}-rt", vpc_id=vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block=WORLD_V4, gateway_id=igw.id)],
            tags={"Name": f"{prefix}-public"}, opts=opts,
        )
        assoc = aws.ec2.RouteTableAssociation(f"{name}-rta", subnet_id=subnet.id, route_table_id=routes.id, opts=opts)
        # Identity groups carry no rules: a host of a role wears its group, and other hosts' rules admit the group.
        identities = {
            role: aws.ec2.SecurityGroup(
                f"{name}-{role}-id", vpc_id=vpc.id, description=f"identity of the {role} hosts of {prefix}",
                egress=_EGRESS_ALL, tags={"Name": f"{prefix}-{role}-identity"}, opts=opts,
            )
            for role in ROLES
        }
        # Machines launch in the subnet only once it routes to the internet (cloud-init pulls at first boot) and
        # an Elastic IP can only be associated once the gateway exists: both ride on the subnet id's Output.
        subnet_id = pulumi.Output.all(subnet.id, assoc.id, igw.id).apply(lambda ids: ids[0])
        return Network(
            args=NetworkArgs(
                vpc_id=vpc.id,
                gpu_identity=identities["gpu"].id,
                lb_identity=identities["lb"].id,
                monitoring_identity=identities["monitoring"].id,
                subnet_id=subnet_id,
                availability_zone=az,
            ),
            providers=(provider,),
        )

    def machine(
        self, name: str, spec: MachineSpec, network: NetworkArgs, stack: ResolvedStack, opts: pulumi.ResourceOptions
    ) -> Machine:
        invoke = _invoke_options(opts)
        if spec.role == "gpu":
            ami = aws.ec2.get_ami_output(
                most_recent=True, owners=[facts.GPU_AMI_OWNER],
                filters=[aws.ec2.GetAmiFilterArgs(name="name", values=[facts.GPU_AMI_NAME]),
                         aws.ec2.GetAmiFilterArgs(name="architecture", values=["x86_64"]),
                         aws.ec2.GetAmiFilterArgs(name="state", values=["available"])],
                opts=invoke,
            )
        else:
            ami = aws.ec2.get_ami_output(
                most_recent=True, owners=[facts.BASE_AMI_OWNER],
                filters=[aws.ec2.GetAmiFilterArgs(name="name", values=[facts.BASE_AMI_NAME]),
                         aws.ec2.GetAmiFilterArgs(name="architecture", values=["x86_64"])],
                opts=invoke,
            )
        sg = aws.ec2.SecurityGroup(
            naming.firewall(name),
            vpc_id=network["vpc_id"],
            description=f"inbound rules of {naming.cloud_name(name, stack.name)}",
            ingress=[self._ingress(rule, network) for rule in spec.ingress if not rule.is_empty],
            egress=_EGRESS_ALL,
            tags=_tags(stack, naming.firewall(name), spec.role),
            opts=opts,
        )
        market = None
        if spec.spot:
            # One-time spot, terminated on reclaim: the node is stateless (weights re-download), and the
            # load balancer's passive health checks take it out of rotation.
            market = aws.ec2.InstanceInstanceMarketOptionsArgs(
                market_type="spot",
                spot_options=aws.ec2.InstanceInstanceMarketOptionsSpotOptionsArgs(
                    instance_interruption_behavior="terminate", spot_instance_type="one-time"),
            )
        disk_gb = spec.disk_gb or facts.BASE_DISK_GB.get(spec.role, 20)
        # EC2 refuses a root volume smaller than the AMI's root snapshot ("Volume of size N is smaller than
        # snapshot ..., expect size >= M", InvalidBlockDeviceMapping), and the Deep Learning AMIs' snapshot is
        # far bigger than Ubuntu's: never ask for less than the image itself holds.
        root_gb = ami.apply(lambda image: root_volume_gb(image, disk_gb))
        security_groups = [sg.id, identity(network, spec.role)]
        # The route to the internet must exist before boot, or cloud-init cannot pull anything: it rides on
        # the subnet id (NetworkArgs), which the instance or its interface takes.
        boot_after: list[pulumi.Resource] = []
        placement: dict[str, Any]
        static: _StaticAddress | None = None
        registrations: list[Registration] = []
        if spec.static_ip:
            static = self._static_address(name, spec, security_groups, network, stack, opts)
            registrations.append(static.registration)
            # The interface brings subnet, security groups and (through the EIP) the public address; the
            # provider refuses subnet_id / vpc_security_group_ids / associate_public_ip_address beside it.
            placement = dict(primary_network_interface=aws.ec2.InstancePrimaryNetworkInterfaceArgs(
                network_interface_id=static.eni.id))
            # The EIP is on the interface before the instance boots: cloud-init has internet at once.
            boot_after.append(static.association)
        else:
            placement = dict(
                subnet_id=network["subnet_id"],
                vpc_security_group_ids=security_groups,
                associate_public_ip_address=True,
            )
        args = aws.ec2.InstanceArgs(
            ami=ami.id,
            instance_type=spec.size,
            **placement,
            key_name=stack.config.ssh_keys[0] if stack.config.ssh_keys else None,
            # EC2 caps user data at 16 KB before base64 and a big pool's Prometheus config can pass it;
            # always gzip (the text is only known inside the apply, the argument must be chosen now).
            # cloud-init reads gzip natively; secretness carries through the apply.
            user_data_base64=pulumi.Output.from_input(spec.user_data).apply(facts.user_data_base64_gzip),
            # cloud-init runs once per instance: new user data only takes effect on a new instance.
            user_data_replace_on_change=True,
            root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
                volume_type="gp3", volume_size=root_gb,
                encrypted=True, delete_on_termination=True,
            ),
            metadata_options=aws.ec2.InstanceMetadataOptionsArgs(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=2,
            ),
            instance_market_options=market,
            tags=_tags(stack, name, spec.role, spec.labels),
            volume_tags=_tags(stack, f"{name}-root", spec.role),
        )
        instance = aws.ec2.Instance(name, args, opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(
                depends_on=boot_after,
                additional_secret_outputs=INSTANCE_SECRET_OUTPUTS,
                # A pre-created interface can be the primary (device 0) of one instance only, and never
                # detaches from it: the old instance must be gone before its replacement can launch on it.
                delete_before_replace=static is not None,
                # most_recent follows AWS's new AMI every few weeks; without this every later `pulumi up`
                # (a scale-out, a budget change) would replace every instance, the load balancer delete-first.
                # New instances (added nodes, user-data replacements) still launch on the newest image.
                ignore_changes=["ami"],
        )))
        # The bill is computed now, before the AMI lookup resolves: price the disk asked for (the AMI's
        # snapshot only raises it when the configured size is below the image's own).
        root = registration(facts.INSTANCE, name, args)
        registrations.insert(0, registration(facts.INSTANCE, name, args, rootBlockDevice={
            **dict(root.inputs.get("rootBlockDevice") or {}), "volumeSize": disk_gb}))
        for i, volume in enumerate(spec.volumes):
            self._attach(volume, f"/dev/sd{facts.DATA_DEVICE_LETTERS[i]}", instance, opts)
        if static is not None:
            # The interface's address is the instance's, and stays when the instance is replaced.
            return Machine(instance=instance, firewall=sg, id=instance.id,
                           public_ip=static.eip.public_ip, private_ip=static.eni.private_ip,
                           registrations=tuple(registrations))
        return Machine(
            instance=instance, firewall=sg, id=instance.id,
            public_ip=instance.public_ip, private_ip=instance.private_ip, registrations=tuple(registrations),
        )

    def volume(
        self, name: str, spec: VolumeSpec, network: NetworkArgs, stack: ResolvedStack, opts: pulumi.ResourceOptions
    ) -> DataVolume:
        # In the subnet's zone (an EBS volume attaches only to instances in its own AZ); nothing of an
        # instance, so replacing the instance never replaces the volume.
        args = aws.ebs.VolumeArgs(
            availability_zone=network["availability_zone"],
            size=spec.size_gb,
            type="gp3",
            encrypted=True,
            tags=_tags(stack, name, spec.role),
        )
        volume = aws.ebs.Volume(name, args, opts=opts)
        return DataVolume(name=name, resource=volume, id=volume.id,
                          devices=volume.id.apply(facts.CLOUD.volume_devices),
                          registrations=(registration(facts.EBS_VOLUME, name, args),))

    def dns_record(
        self, name: str, zone: str, domain: str, address: pulumi.Input[str], stack: ResolvedStack,
        opts: pulumi.ResourceOptions,
    ) -> pulumi.CustomResource:
        # pulumi_aws route53.Record: `zone_id` the hosted zone, `name` the full record name, `records` its
        # values, `ttl` in seconds (route53/record.py). The Elastic IP behind it outlives the instance.
        return aws.route53.Record(
            name,
            zone_id=zone,
            name=domain,
            type="A",
            records=[address],
            ttl=DNS_TTL_SECONDS,
            opts=opts,
        )

    @staticmethod
    def _attach(volume: DataVolume, device_name: str, instance: aws.ec2.Instance, opts: pulumi.ResourceOptions) -> None:
        """Attach ``volume`` to ``instance``; on a replacement, release it from the old instance cleanly first.

        An EBS volume is attached to one instance at a time, so the old attachment goes first
        (delete_before_replace; the static-address hosts are replaced delete-first anyway, and Pulumi deletes
        this dependent before the instance). stop_instance_before_detaching stops the old instance before the
        detach: its shutdown stops Prometheus and unmounts the filesystem, where a detach from a running
        instance could leave the volume "busy" or cut writes off mid-flight. (skip_destroy would instead leave
        the volume attached until the instance terminates.) The instance is being deleted anyway.
        """
        aws.ec2.VolumeAttachment(
            naming.attachment(volume.name),
            device_name=device_name,
            volume_id=volume.id,
            instance_id=instance.id,
            stop_instance_before_detaching=True,
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(delete_before_replace=True)),
        )

    @staticmethod
    def _static_address(
        name: str, spec: MachineSpec, security_groups: list[pulumi.Output[str]], network: NetworkArgs,
        stack: ResolvedStack, opts: pulumi.ResourceOptions,
    ) -> _StaticAddress:
        """A network interface of its own with an Elastic IP on it, for an instance to launch on.

        Neither depends on the instance, so both survive its replacement: the endpoint keeps its public
        address (and the host its private one). The instance gets no auto-assigned public IPv4 (EC2 only
        assigns one to an interface it creates at launch), so the EIP is the only address billed.
        """
        eni = aws.ec2.NetworkInterface(
            f"{name}-eni",
            subnet_id=network["subnet_id"],
            security_groups=security_groups,
            description=f"primary interface of {naming.cloud_name(name, stack.name)}; keeps its Elastic IP across "
                        "replacements",
            tags=_tags(stack, f"{name}-eni", spec.role),
            opts=opts,
        )
        ip_name = naming.static_ip(name)
        # An EIP in a VPC needs the VPC's internet gateway before it can be associated: the association takes
        # the interface, whose subnet id carries the gateway (NetworkArgs).
        args = aws.ec2.EipArgs(domain="vpc", tags=_tags(stack, ip_name, spec.role))
        eip = aws.ec2.Eip(ip_name, args, opts=opts)
        association = aws.ec2.EipAssociation(
            f"{ip_name}-association",
            allocation_id=eip.allocation_id,
            network_interface_id=eni.id,
            opts=opts,
        )
        return _StaticAddress(eni=eni, eip=eip, association=association,
                              registration=registration(facts.ELASTIC_IP, ip_name, args))

    @staticmethod
    def _ingress(rule: IngressRule, network: NetworkArgs) -> aws.ec2.SecurityGroupIngressArgs:
        v4 = [c for c in rule.cidrs if ":" not in c]
        v6 = [c for c in rule.cidrs if ":" in c]
        return aws.ec2.SecurityGroupIngressArgs(
            protocol="tcp",
            from_port=rule.port,
            to_port=rule.to_port or rule.port,
            cidr_blocks=v4 or None,
            ipv6_cidr_blocks=v6 or None,
            security_groups=[identity(network, p) for p in rule.peers] or None,
            description=rule.description,
        )


def root_volume_gb(image: aws.ec2.GetAmiResult, wanted_gb: int) -> int:
    """``wanted_gb``, raised to the size of the AMI's root snapshot when that is bigger."""
    snapshot_gb = 0
    for mapping in image.block_device_mappings or []:
        if mapping.device_name == image.root_device_name:
            size = (mapping.ebs or {}).get("volume_size")
            snapshot_gb = int(size) if size else 0
    return max(wanted_gb, snapshot_gb)


def _invoke_options(opts: pulumi.ResourceOptions) -> pulumi.InvokeOutputOptions:
    """Invokes run against the provider the machine's resources get: the explicit one in ``opts.providers``
    (the network's, pinning the stack's region), else the parent's."""
    providers = list(opts.providers.values()) if isinstance(opts.providers, dict) else list(opts.providers or [])
    explicit = next((p for p in providers if isinstance(p, pulumi.ProviderResource) and p.package == "aws"), None)
    return pulumi.InvokeOutputOptions(parent=opts.parent, provider=explicit)


def _first_zone(zones: list[str], stack: ResolvedStack) -> str:
    if not zones:
        raise pulumi.RunError(
            f"{NAMESPACE}:gpu = {stack.config.gpu!r} is not offered in any Availability Zone of "
            f"{stack.config.region}; choose a region that has it (aws ec2 describe-instance-type-offerings)"
        )
    # Sorted so repeated runs pick the same zone (a different zone would replace the subnet).
    return sorted(zones)[0]


MACHINE_CLOUD = AwsMachines()
