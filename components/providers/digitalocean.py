"""DigitalOcean: GPU droplets (and basic droplets for Nginx/Prometheus) in a VPC, one Cloud Firewall each."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pulumi
import pulumi_digitalocean as do

from components.providers import (
    DROPLET_SECRET_OUTPUTS,
    ROLES,
    WORLD_V4,
    WORLD_V6,
    DataVolume,
    IngressRule,
    Machine,
    MachineSpec,
    Network,
    Role,
    VolumeSpec,
    cloud_name,
    priced_args,
    resource_prefix,
    volume_cloud_name,
)
from gpu_inference.render.cloud_init import volume_devices

if TYPE_CHECKING:
    from gpu_inference.stack import ResolvedStack

# DigitalOcean's AI/ML-ready images (Ubuntu + NVIDIA driver + container toolkit, or ROCm for AMD). The
# "h100" in the NVIDIA slugs is historical: gpu-h100x1-base serves every single-GPU NVIDIA plan
# (L40S, RTX 4000/6000 Ada, H100, H200) and gpu-h100x8-base the 8-GPU ones.
GPU_IMAGE_NVIDIA_1 = "gpu-h100x1-base"
GPU_IMAGE_NVIDIA_8 = "gpu-h100x8-base"
GPU_IMAGE_AMD = "gpu-amd-base"
# Nginx and Prometheus hosts: the current Ubuntu LTS; the renderers' cloud-init targets Ubuntu.
BASE_IMAGE = "ubuntu-24-04-x64"
DROPLET = "digitalocean:index/droplet:Droplet"
RESERVED_IP = "digitalocean:index/reservedIp:ReservedIp"
VOLUME = "digitalocean:index/volume:Volume"

# Outbound is open: nodes pull the vLLM image and the weights, hosts fetch packages.
_OUTBOUND = [
    do.FirewallOutboundRuleArgs(protocol=proto, port_range="all" if proto != "icmp" else None,
                                destination_addresses=[WORLD_V4, WORLD_V6])
    for proto in ("tcp", "udp", "icmp")
]


def gpu_image(gpu_count: int, vendor: str | None) -> str:
    if vendor == "amd":
        return GPU_IMAGE_AMD
    return GPU_IMAGE_NVIDIA_8 if gpu_count >= 8 else GPU_IMAGE_NVIDIA_1


def _droplet_tags(stack: ResolvedStack, role: Role, identity: str) -> list[str]:
    # The identity tag is what peers' firewalls admit; the others let an operator find and bill the stack.
    return ["gpu-inference", f"stack-{stack.name}", f"role-{role}", identity, *stack.config.tags]


class DigitalOceanProvider:
    name = "digitalocean"

    def network(self, name: str, stack: ResolvedStack, parent: pulumi.Resource) -> Network:
        prefix = resource_prefix(stack)
        opts = pulumi.ResourceOptions(parent=parent)
        # ip_range is left to DigitalOcean: a fixed range could collide with a VPC the account already has.
        vpc = do.Vpc(
            f"{name}-vpc",
            name=f"{prefix}-vpc",
            region=stack.config.region,
            description=f"gpu-inference stack {stack.name}: GPU nodes, load balancer, monitoring",
            opts=opts,
        )
        # Tags must exist before a firewall may name them as a source.
        tags = {role: do.Tag(f"{name}-{role}-tag", name=f"{prefix}-{role}", opts=opts) for role in ROLES}
        return Network(
            provider=self.name,
            vpc_id=vpc.id,
            identities={role: tag.name for role, tag in tags.items()},
        )

    def machine(
        self, name: str, spec: MachineSpec, network: Network, stack: ResolvedStack, parent: pulumi.Resource
    ) -> Machine:
        opts = pulumi.ResourceOptions(parent=parent)
        identity = network.identities[spec.role]
        image = gpu_image(spec.gpu_count, spec.gpu_vendor) if spec.role == "gpu" else BASE_IMAGE
        droplet = do.Droplet(name, **priced_args(network.priced, DROPLET, name, dict(
            name=cloud_name(name, stack),
            region=stack.config.region,
            size=spec.size,
            image=image,
            vpc_uuid=network.vpc_id,
            ssh_keys=list(stack.config.ssh_keys),
            tags=identity.apply(lambda ident: _droplet_tags(stack, spec.role, ident)),
            user_data=spec.user_data,
            # The DigitalOcean agent feeds the control panel's graphs; Prometheus is the real monitoring.
            monitoring=True,
            ipv6=False,
            graceful_shutdown=True,
            opts=pulumi.ResourceOptions.merge(
                opts, pulumi.ResourceOptions(additional_secret_outputs=DROPLET_SECRET_OUTPUTS)),
        )))
        firewall = do.Firewall(
            f"{name}-fw",
            name=cloud_name(f"{name}-fw", stack),
            droplet_ids=[droplet.id.apply(int)],
            inbound_rules=[self._inbound(rule, network) for rule in spec.ingress if not rule.is_empty],
            outbound_rules=_OUTBOUND,
            opts=opts,
        )
        for volume in spec.volumes:
            self._attach(volume, droplet, opts)
        public_ip = droplet.ipv4_address
        if spec.static_ip:
            public_ip = self._reserved_ip(name, droplet, network, stack, opts)
        return Machine(
            instance=droplet,
            firewall=firewall,
            id=droplet.id,
            public_ip=public_ip,
            private_ip=droplet.ipv4_address_private,
        )

    def volume(
        self, name: str, spec: VolumeSpec, network: Network, stack: ResolvedStack, parent: pulumi.Resource
    ) -> DataVolume:
        # Region, size, name and tags only: nothing of a droplet, so replacing the droplet never replaces this.
        # No description: the provider replaces a volume whose description changes (ForceNew), and rewording
        # it must never cost the TSDB. Unformatted: the machine's first boot formats it only if blank.
        # Size only grows in place; the provider refuses a smaller one ("can only be expanded and not shrunk").
        volume_name = volume_cloud_name(stack, spec.purpose)
        volume = do.Volume(name, **priced_args(network.priced, VOLUME, name, dict(
            name=volume_name,
            region=stack.config.region,
            size=spec.size_gb,
            tags=["gpu-inference", f"stack-{stack.name}", f"role-{spec.role}", *stack.config.tags],
            opts=pulumi.ResourceOptions(parent=parent),
        )))
        return DataVolume(
            name=name, resource=volume, id=volume.id,
            devices=pulumi.Output.from_input(volume_devices(self.name, volume_name)),
        )

    @staticmethod
    def _attach(volume: DataVolume, droplet: do.Droplet, opts: pulumi.ResourceOptions) -> None:
        """Attach ``volume`` to ``droplet``, releasing it from a replaced droplet first.

        A volume is attached to one droplet at a time, so on a droplet replacement the old attachment must
        go before the new one is made (delete_before_replace). DigitalOcean cannot stop the old droplet
        first: the detach is like a power cut to that disk (ext4's journal and Prometheus' WAL recover
        from it; the last seconds of samples may be lost).
        """
        do.VolumeAttachment(
            f"{volume.name}-attachment",
            droplet_id=droplet.id.apply(int),
            volume_id=volume.id,
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(delete_before_replace=True)),
        )

    @staticmethod
    def _reserved_ip(
        name: str, droplet: do.Droplet, network: Network, stack: ResolvedStack, opts: pulumi.ResourceOptions
    ) -> pulumi.Output[str]:
        """A reserved IPv4 in the stack's region, assigned to ``droplet``; its address outlives the droplet.

        The address and the assignment are separate resources so a replaced droplet only replaces the
        assignment. The default create-before-delete order is the right one here: the new assignment moves
        the address to the new droplet, and the old assignment's delete only unassigns when the address is
        still on the droplet it recorded (terraform-provider-digitalocean resource_reserved_ip_assignment.go),
        so it leaves the new droplet's address alone. delete_before_replace would instead unassign the
        address while the old droplet is still serving, for no gain.
        """
        reserved = do.ReservedIp(f"{name}-ip", **priced_args(network.priced, RESERVED_IP, f"{name}-ip", dict(
            region=stack.config.region,
            opts=opts,
        )))
        do.ReservedIpAssignment(
            f"{name}-ip-assignment",
            ip_address=reserved.ip_address,
            droplet_id=droplet.id.apply(int),
            opts=opts,
        )
        return reserved.ip_address

    @staticmethod
    def _inbound(rule: IngressRule, network: Network) -> do.FirewallInboundRuleArgs:
        return do.FirewallInboundRuleArgs(
            protocol="tcp",
            port_range=rule.port_range,
            source_addresses=list(rule.cidrs) or None,
            source_tags=[network.identities[peer] for peer in rule.peers] or None,
        )
