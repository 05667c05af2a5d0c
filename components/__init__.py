"""Pulumi components of the gpu-inference program (type tokens ``gpu-inference:index:<Name>``)."""
