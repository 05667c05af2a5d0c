"""A stand-in for node_exporter, NVIDIA's dcgm-exporter or AMD's device metrics exporter on loopback: /metrics
with their metric names.

The names, types and labels are the exporters' own (node_exporter's cpu/meminfo/filesystem collectors;
dcgm-exporter's default counters, etc/default-counters.csv; AMD's ROCm/device-metrics-exporter
docs/configuration/metricslist.md field names, lower case behind the ``amd_`` prefix the rendered config sets,
with the exporter's default labels), written here rather than read from gpu_inference/gpu_vendor.py so a wrong
name there shows up as an empty panel. The values move a little on every scrape (counters grow, gauges wobble)
so rates and gauges both have data. Run as a process by the harness:

    python -m tests.dataplane.fake_exporter --kind node|dcgm|amd --port 0   # first stdout line: {"port": N}
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Metrics:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.started = time.monotonic()
        self.scrapes = 0

    def text(self) -> str:
        self.scrapes += 1
        t = time.monotonic() - self.started
        return {"node": self._node, "dcgm": self._dcgm, "amd": self._amd}[self.kind](t)

    def _node(self, t: float) -> str:
        lines = ["# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.",
                 "# TYPE node_cpu_seconds_total counter"]
        for cpu in ("0", "1"):
            for mode, share in (("idle", 0.7), ("user", 0.2), ("system", 0.1)):
                lines.append(f'node_cpu_seconds_total{{cpu="{cpu}",mode="{mode}"}} {t * share:.3f}')
        lines += [
            "# HELP node_memory_MemAvailable_bytes Memory information field MemAvailable_bytes.",
            "# TYPE node_memory_MemAvailable_bytes gauge",
            f"node_memory_MemAvailable_bytes {8e9 - (self.scrapes % 5) * 1e8:.0f}",
            "# HELP node_memory_MemTotal_bytes Memory information field MemTotal_bytes.",
            "# TYPE node_memory_MemTotal_bytes gauge",
            "node_memory_MemTotal_bytes 16000000000",
        ]
        fs = 'device="/dev/vda1",fstype="ext4",mountpoint="/"'
        lines += [
            "# HELP node_filesystem_avail_bytes Filesystem space available to non-root users in bytes.",
            "# TYPE node_filesystem_avail_bytes gauge",
            f"node_filesystem_avail_bytes{{{fs}}} {5e11 - self.scrapes * 1e6:.0f}",
            "# HELP node_filesystem_size_bytes Filesystem size in bytes.",
            "# TYPE node_filesystem_size_bytes gauge",
            f"node_filesystem_size_bytes{{{fs}}} 1000000000000",
        ]
        return "\n".join(lines) + "\n"

    def _dcgm(self, t: float) -> str:
        labels = 'gpu="0",UUID="GPU-00000000-0000-0000-0000-000000000000",device="nvidia0",modelName="NVIDIA L40S"'
        used = 41000 + (self.scrapes % 3) * 10  # MiB: vLLM preallocated ~90 % of a 46068 MiB card
        values = {
            ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %)."): 60 + self.scrapes % 30,
            ("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB)."): used,
            ("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB)."): 46068 - used,
            ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C)."): 55 + self.scrapes % 5,
            ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W)."): 250.5 + self.scrapes % 7,
            ("DCGM_FI_DEV_XID_ERRORS", "gauge", "Value of the last XID error encountered."): 0,
        }
        lines = []
        for (name, mtype, doc), value in values.items():
            lines += [f"# HELP {name} {doc}", f"# TYPE {name} {mtype}", f"{name}{{{labels}}} {value}"]
        del t
        return "\n".join(lines) + "\n"


    def _amd(self, t: float) -> str:
        labels = ('gpu_id="0",serial_number="692251001124",card_model="MI300X",hostname="dataplane-node",'
                  'gpu_partition_id="0"')
        used = 176000 + (self.scrapes % 3) * 10  # MB: vLLM preallocated ~90 % of a 196592 MB MI300X
        values = {
            ("amd_gpu_gfx_activity", "gauge", "Graphics engine usage percentage (0 - 100)."): 60 + self.scrapes % 30,
            ("amd_gpu_used_vram", "gauge", "Total VRAM memory used in MB."): used,
            ("amd_gpu_total_vram", "gauge", "Total VRAM available in MB."): 196592,
            ("amd_gpu_junction_temperature", "gauge", "Hotspot temperature value in Celsius."): 60 + self.scrapes % 5,
            ("amd_gpu_power_usage", "gauge", "GPU power usage in Watts."): 550.5 + self.scrapes % 7,
            ("amd_gpu_ecc_uncorrect_total", "gauge", "Total Uncorrectable ECC error count."): 0,
        }
        lines = []
        for (name, mtype, doc), value in values.items():
            lines += [f"# HELP {name} {doc}", f"# TYPE {name} {mtype}", f"{name}{{{labels}}} {value}"]
        del t
        return "\n".join(lines) + "\n"


def serve(kind: str, host: str, port: int, lifetime: float) -> None:
    metrics = Metrics(kind)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != "/metrics":
                self.send_error(404)
                return
            with lock:
                body = metrics.text().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    # A harness that dies without cleaning up must not leave this server behind forever.
    timer = threading.Timer(lifetime, server.shutdown)
    timer.daemon = True
    timer.start()
    server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m tests.dataplane.fake_exporter", description=__doc__.splitlines()[0])
    p.add_argument("--kind", choices=("node", "dcgm", "amd"), required=True)
    p.add_argument("--host", default="127.0.0.1", help="must be loopback (127.0.0.0/8)")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--lifetime", type=float, default=900.0, help="exit by itself after this many seconds")
    args = p.parse_args(argv)
    if not ipaddress.ip_address(args.host).is_loopback:
        p.error(f"--host {args.host} is not a loopback address")
    serve(args.kind, args.host, args.port, args.lifetime)
    sys.exit(0)


if __name__ == "__main__":
    main()
