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
# Keep the pair nginx serves now: if nginx -t refuses the new one, it goes back, so a later restart or
# reboot still finds a pair nginx accepts (the hook fails, certbot logs it, the old certificate keeps serving).
# (The first boot wrote a self-signed placeholder at the same paths, so there is always a pair to keep.)
cp -p "$cert" "$cert.old"
cp -p "$key" "$key.old"
mv -f "$cert.new" "$cert"
mv -f "$key.new" "$key"
if ! nginx -t -q; then
    mv -f "$cert.old" "$cert"
    mv -f "$key.old" "$key"
    log "nginx -t refused the certificate from $lineage: the previous one is back in place"
    exit 1
fi
rm -f "$cert.old" "$key.old"
systemctl reload nginx.service
log "nginx now serves the certificate from $lineage"
