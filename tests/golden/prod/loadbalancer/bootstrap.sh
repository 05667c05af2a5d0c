#!/usr/bin/env bash
# Rendered by gpu-inference (gpu_inference/render); do not edit on the machine.
# First boot of the load balancer: nginx.conf was written by cloud-init after the nginx package.
set -euo pipefail

log() { echo "gpu-inference-lb-bootstrap: $*"; }
chmod 0600 /etc/nginx/gpu-inference-auth.conf

# nginx refuses to start without the certificate it names: begin with a short-lived self-signed one;
# gpu-inference-cert.service then gets the real one from the ACME server and its deploy hook swaps it in.
if [[ ! -s /etc/nginx/tls/llm.example.com/fullchain.pem ]]; then
    log "no certificate for llm.example.com yet; creating a self-signed placeholder"
    install -d -m 0755 /etc/nginx/tls/llm.example.com /var/www/acme
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=llm.example.com \
        -keyout /etc/nginx/tls/llm.example.com/privkey.pem -out /etc/nginx/tls/llm.example.com/fullchain.pem
    chmod 0600 /etc/nginx/tls/llm.example.com/privkey.pem
fi

nginx -t
systemctl daemon-reload
systemctl enable nginx.service prometheus-node-exporter.service gpu-inference-lb-healthcheck.service
systemctl restart nginx.service
systemctl restart prometheus-node-exporter.service
# After nginx: it reloads nginx whenever a node leaves or rejoins the rotation.
systemctl restart gpu-inference-lb-healthcheck.service
systemctl enable gpu-inference-cert.service
systemctl start --no-block gpu-inference-cert.service
systemctl enable --now gpu-inference-grafana-registrar.service
log "nginx is balancing over the GPU nodes; node health: journalctl -u gpu-inference-lb-healthcheck.service"
