"""The component package's provider host: `pulumi package add <this repository>` launches this (PulumiPlugin.yaml)."""

from pulumi.provider.experimental import component_provider_host

from components.package import COMPONENTS, PACKAGE_NAME, VERSION

if __name__ == "__main__":
    component_provider_host(COMPONENTS, name=PACKAGE_NAME, version=VERSION)
