#!/usr/bin/env bash
# Rendered by gpu-inference (gpu_inference/render); do not edit on the machine.
# First boot of the Prometheus host: mount the TSDB volume, validate everything with promtool, then (re)start
# Prometheus. Safe to run again (e.g. by hand after the volume was late): every step checks first.
set -euo pipefail

log() { echo "gpu-inference-monitoring-bootstrap: $*"; }
die() { log "ERROR: $*"; exit 1; }

data_dir=/var/lib/prometheus/metrics2
candidates=(/dev/disk/by-id/scsi-0DO_Volume_gpu-inference-amd-prometheus-data)
wait_seconds=900

# The package may have tried to start Prometheus; the drop-in kept it off the root disk. Keep it stopped.
systemctl stop prometheus.service || true

device=""
for ((waited = 0; waited <= wait_seconds; waited += 5)); do
    for candidate in "${candidates[@]}"; do
        if [[ -b "$candidate" ]]; then
            device=$(readlink -f "$candidate")
            break 2
        fi
    done
    sleep 5
done
[[ -n "$device" ]] || die "no data volume after ${wait_seconds}s (looked for: ${candidates[*]});"     "Prometheus stays stopped: attach the volume and run $0 again"
udevadm settle || true
log "data volume: $device"

# Format only a blank volume: one that already holds a TSDB (the host was replaced) is kept as it is.
probe=0
blkid -p "$device" >/dev/null 2>&1 || probe=$?
if [[ "$probe" -eq 2 ]]; then
    log "$device is blank: creating an ext4 filesystem"
    mkfs.ext4 -q -L prometheus "$device"
elif [[ "$probe" -ne 0 ]]; then
    die "cannot probe $device (blkid exit $probe)"
fi
fstype=$(blkid -p -o value -s TYPE "$device" || true)
uuid=$(blkid -p -o value -s UUID "$device" || true)
[[ -n "$fstype" && -n "$uuid" ]] || die "$device holds no filesystem with a UUID (a partition table?): not touching it"

# By UUID, so a reboot that renames the device still mounts it; nofail, so a missing volume never stops the
# boot (the drop-in then keeps Prometheus stopped rather than writing to the root disk).
install -d -m 0755 "$data_dir"
entry="UUID=$uuid $data_dir $fstype defaults,nofail,x-systemd.device-timeout=5min 0 2"
if ! grep -qxF "$entry" /etc/fstab; then
    sed -i "\#[[:space:]]${data_dir}[[:space:]]#d" /etc/fstab
    echo "$entry" >> /etc/fstab
    systemctl daemon-reload
fi
mountpoint -q "$data_dir" || mount "$data_dir"
# `mount` exits 0 for a nofail entry whose UUID it cannot resolve (util-linux mount(8): nofail "do not report
# errors for this device if it does not exist"), and the drop-in's ConditionPathIsMountPoint then skips
# Prometheus without an error: only a real mount point counts. Exit 1 fails runcmd, so `cloud-init status`
# reports an error instead of a host that logs "scraping" and runs nothing.
mountpoint -q "$data_dir" || die "$device (UUID=$uuid) is not mounted at $data_dir after mount:"     "Prometheus stays stopped; check 'journalctl -b' and /etc/fstab, then run $0 again"
if [[ "$fstype" == ext4 ]]; then
    resize2fs "$device" >/dev/null 2>&1 || log "resize2fs $device failed; the filesystem keeps its size"
fi
# The prometheus user's uid may differ from the host that wrote the volume: own everything again.
find "$data_dir" -xdev \( ! -user prometheus -o ! -group prometheus \) -exec chown -h prometheus:prometheus {} +

promtool check config /etc/prometheus/prometheus.yml
promtool check rules /etc/prometheus/rules/gpu-inference.yml
systemctl daemon-reload
systemctl enable prometheus.service prometheus-node-exporter.service
systemctl restart prometheus.service
systemctl restart prometheus-node-exporter.service
log "Prometheus is scraping into $data_dir on $device; alerts: http://localhost:9090/alerts"
