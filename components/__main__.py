"""The component package's provider host: `pulumi package add <this repository>` launches this (PulumiPlugin.yaml)."""

from components.package import host

if __name__ == "__main__":
    host()
