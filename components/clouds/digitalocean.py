"""DigitalOcean machines: GPU droplets (and basic droplets for Nginx/Prometheus) in a VPC, one Cloud Firewall each.

The pure facts (type tokens, images, tags, name limits, prices) are in ``gpu_inference/clouds/digitalocean.py``.
"""

import pulumi
import pulumi_digitalocean as do

from components.clouds import (
    DROPLET_SECRET_OUTPUTS,
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
from gpu_inference.clouds import digitalocean as facts
from gpu_inference.clouds.base import DNS_TTL_SECONDS
from gpu_inference.stack import ResolvedStack

# Outbound is open: nodes pull the vLLM image and the weights, hosts fetch packages.
_OUTBOUND = [
    do.FirewallOutboundRuleArgs(protocol=proto, port_range="all" if proto != "icmp" else None,
                                destination_addresses=[WORLD_V4, WORLD_V6])
    for proto in ("tcp", "udp", "icmp")
]


class DigitalOceanMachines:
    def network(self, name: str, stack: ResolvedStack, opts: pulumi.ResourceOptions) -> Network:
        prefix = naming.resource_prefix(stack.name)
        # ip_range is left to DigitalOcean: a fixed range could collide with a VPC the account already has.
        vpc = do.Vpc(
            f"{name}-vpc",
            name=f"{prefix}-vpc",
            region=stack.config.region,
            description=f"{naming.PROJECT_TAG} stack {stack.name}: GPU nodes, load balancer, monitoring",
            opts=opts,
        )
        # Tags must exist before a firewall may name them as a source.
        tags = {role: do.Tag(f"{name}-{role}-tag", name=f"{prefix}-{role}", opts=opts) for role in ROLES}
        return Network(args=NetworkArgs(
            vpc_id=vpc.id,
            gpu_identity=tags["gpu"].name,
            lb_identity=tags["lb"].name,
            monitoring_identity=tags["monitoring"].name,
        ))

    def machine(
        self, name: str, spec: MachineSpec, network: NetworkArgs, stack: ResolvedStack, opts: pulumi.ResourceOptions
    ) -> Machine:
        own_identity = identity(network, spec.role)
        image = facts.gpu_image(spec.gpu_count, spec.gpu_vendor) if spec.role == "gpu" else facts.BASE_IMAGE
        args = do.DropletArgs(
            name=naming.cloud_name(name, stack.name),
            region=stack.config.region,
            size=spec.size,
            image=image,
            vpc_uuid=network["vpc_id"],
            ssh_keys=list(stack.config.ssh_keys),
            tags=own_identity.apply(lambda ident: facts.droplet_tags(stack.name, spec.role, ident, list(stack.config.tags))),
            user_data=spec.user_data,
            # The DigitalOcean agent feeds the control panel's graphs; Prometheus is the real monitoring.
            monitoring=True,
            ipv6=False,
            graceful_shutdown=True,
        )
        droplet = do.Droplet(name, args, opts=pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=DROPLET_SECRET_OUTPUTS)))
        registrations: list[Registration] = [registration(facts.DROPLET, name, args)]
        firewall = do.Firewall(
            naming.firewall(name),
            name=naming.cloud_name(naming.firewall(name), stack.name),
            droplet_ids=[droplet.id.apply(int)],
            inbound_rules=[self._inbound(rule, network) for rule in spec.ingress if not rule.is_empty],
            outbound_rules=_OUTBOUND,
            opts=opts,
        )
        for volume in spec.volumes:
            self._attach(volume, droplet, opts)
        public_ip = droplet.ipv4_address
        if spec.static_ip:
            public_ip, ip_registration = self._reserved_ip(name, droplet, stack, opts)
            registrations.append(ip_registration)
        return Machine(
            instance=droplet,
            firewall=firewall,
            id=droplet.id,
            public_ip=public_ip,
            private_ip=droplet.ipv4_address_private,
            registrations=tuple(registrations),
        )

    def volume(
        self, name: str, spec: VolumeSpec, network: NetworkArgs, stack: ResolvedStack, opts: pulumi.ResourceOptions
    ) -> DataVolume:
        # Region, size, name and tags only: nothing of a droplet, so replacing the droplet never replaces this.
        # No description: the provider replaces a volume whose description changes (ForceNew), and rewording
        # it must never cost the TSDB. Unformatted: the machine's first boot formats it only if blank.
        # Size only grows in place; the provider refuses a smaller one ("can only be expanded and not shrunk").
        volume_name = naming.volume_cloud_name(stack.name, spec.purpose)
        volume_args = do.VolumeArgs(
            name=volume_name,
            region=stack.config.region,
            size=spec.size_gb,
            tags=facts.volume_tags(stack.name, spec.role, list(stack.config.tags)),
        )
        volume = do.Volume(name, volume_args, opts=opts)
        return DataVolume(
            name=name, resource=volume, id=volume.id,
            devices=pulumi.Output.from_input(facts.CLOUD.volume_devices(volume_name)),
            registrations=(registration(facts.VOLUME, name, volume_args),),
        )

    def dns_record(
        self, name: str, zone: str, domain: str, address: pulumi.Input[str], stack: ResolvedStack,
        opts: pulumi.ResourceOptions,
    ) -> pulumi.CustomResource:
        # pulumi_digitalocean DnsRecord: `domain` is the DigitalOcean domain, `name` the host relative to it
        # ("@" for the domain itself), `value` the address, `ttl` in seconds (dns_record.py).
        return do.DnsRecord(
            name,
            domain=zone,
            type="A",
            name=facts.dns_record_name(domain, zone),
            value=address,
            ttl=DNS_TTL_SECONDS,
            opts=opts,
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
            naming.attachment(volume.name),
            droplet_id=droplet.id.apply(int),
            volume_id=volume.id,
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(delete_before_replace=True)),
        )

    @staticmethod
    def _reserved_ip(
        name: str, droplet: do.Droplet, stack: ResolvedStack, opts: pulumi.ResourceOptions
    ) -> tuple[pulumi.Output[str], Registration]:
        """A reserved IPv4 in the stack's region, assigned to ``droplet``; its address outlives the droplet.

        The address and the assignment are separate resources so a replaced droplet only replaces the
        assignment. The default create-before-delete order is the right one here: the new assignment moves
        the address to the new droplet, and the old assignment's delete only unassigns when the address is
        still on the droplet it recorded (terraform-provider-digitalocean resource_reserved_ip_assignment.go),
        so it leaves the new droplet's address alone. delete_before_replace would instead unassign the
        address while the old droplet is still serving, for no gain.
        """
        ip_name = naming.static_ip(name)
        args = do.ReservedIpArgs(region=stack.config.region)
        reserved = do.ReservedIp(ip_name, args, opts=opts)
        do.ReservedIpAssignment(
            f"{ip_name}-assignment",
            ip_address=reserved.ip_address,
            droplet_id=droplet.id.apply(int),
            opts=opts,
        )
        return reserved.ip_address, registration(facts.RESERVED_IP, ip_name, args)

    @staticmethod
    def _inbound(rule: IngressRule, network: NetworkArgs) -> do.FirewallInboundRuleArgs:
        return do.FirewallInboundRuleArgs(
            protocol="tcp",
            port_range=rule.port_range,
            source_addresses=list(rule.cidrs) or None,
            source_tags=[identity(network, peer) for peer in rule.peers] or None,
        )


MACHINE_CLOUD = DigitalOceanMachines()
