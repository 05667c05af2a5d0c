#!/usr/bin/env bash
# Rendered by gpu-inference (gpu_inference/render); do not edit on the machine.
# certbot --deploy-hook for llm.example.com: runs after every issuance and renewal with RENEWED_LINEAGE set to the
# certificate's live directory.
set -euo pipefail

log() { echo "gpu-inference-cert-deploy: $*"; }

lineage="${RENEWED_LINEAGE:?certbot sets RENEWED_LINEAGE for a deploy hook}"
cert=/etc/nginx/tls/llm.example.com/fullchain.pem
key=/etc/nginx/tls/llm.example.com/privkey.pem
install -d -m 0755 "$(dirname "$cert")"
install -m 0644 "$lineage/fullchain.pem" "$cert.new"
install -m 0600 "$lineage/privkey.pem" "$key.new"
mv -f "$cert.new" "$cert"
mv -f "$key.new" "$key"
nginx -t -q
systemctl reload nginx.service
log "nginx now serves the certificate from $lineage"
