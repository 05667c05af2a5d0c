"""nginx.conf of the load balancer: least-connections over the vLLM nodes, streaming-friendly."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gpu_inference.constants import NGINX_HTTP_PORT, NGINX_HTTPS_PORT, VLLM_PORT
from gpu_inference.render import grafana_proxy
from gpu_inference.render._common import RENDERED_BY

if TYPE_CHECKING:
    from pathlib import Path

    from gpu_inference.stack import ResolvedStack

# Idle upstream connections each worker keeps open to the nodes (saves a TCP handshake per request).
UPSTREAM_KEEPALIVE = 32
UPSTREAM_KEEPALIVE_TIMEOUT_SECONDS = 60
# A retry must start soon enough to still be useful; past this, the client gets the error.
NEXT_UPSTREAM_TIMEOUT_SECONDS = 30
CONNECT_TIMEOUT_SECONDS = 5
# Streaming responses send a chunk per token; a client that stops reading for this long is gone.
SEND_TIMEOUT_SECONDS = 60
# With `resolve`, how long a DNS answer is trusted: a restarted pod comes back with a new IP, and nginx
# must follow it within seconds rather than after the record's TTL.
RESOLVER_VALID_SECONDS = 10
# The upstream's backup: a loopback-only server block of this nginx. nginx sends a request there only when no
# node is usable (every one marked down by the health checker or failed), and the API location answers it with
# the JSON 503 (+ Retry-After).
FALLBACK_LISTEN = "127.0.0.1:8079"
# What the backup answers: a status no node sends and proxy_next_upstream cannot retry (it retries only
# error/timeout/invalid_header and http_500/502/503/504/403/404/429: nginx.org/r/proxy_next_upstream). Were it
# 503, that 503 would be retried like a loading node's whenever tries were left (a single node already failed:
# node skipped, backup tried first), and with no peer left nginx ends the request with "no live upstreams",
# a 502, so every node loading read as "unreachable". The API location turns it into the JSON 503.
FALLBACK_STATUS = 555


@dataclass(frozen=True)
class NginxPaths:
    """Where nginx keeps its pid, logs and temp files; tests point these into a temporary prefix."""

    pid: str = "/run/nginx.pid"
    error_log: str = "/var/log/nginx/error.log"
    access_log: str = "/var/log/nginx/access.log"
    temp_dir: str = "/var/lib/nginx"
    mime_types: str = "/etc/nginx/mime.types"
    # Edge API-key check (a map from the Authorization header), written 0600 next to nginx.conf.
    auth_include: str = "/etc/nginx/gpu-inference-auth.conf"
    tls_dir: str = "/etc/nginx/tls"
    # The nodes' `server` lines, rewritten by the LB's active health checker (render/lb_healthcheck.py).
    upstream_include: str = "/etc/nginx/gpu-inference-upstream.conf"
    # Grafana's one `server` line, rewritten when the monitoring host registers (render/grafana_proxy.py).
    grafana_include: str = "/etc/nginx/gpu-inference-grafana.conf"
    # Grafana's requests, apart from the API's log that mtail counts (render/grafana_proxy.py).
    grafana_access_log: str = "/var/log/nginx/grafana-access.log"
    # certbot --webroot writes HTTP-01 tokens under <webroot>/.well-known/acme-challenge/ (render/acme.py).
    acme_webroot: str = "/var/www/acme"
    # Debian's nginx runs workers as www-data; None leaves the directive out (non-root test runs).
    user: str | None = "www-data"

    @classmethod
    def inside(cls, prefix: Path) -> NginxPaths:
        """Everything nginx writes or includes under ``prefix`` (logs/ and tmp/ must exist), no worker user:
        how the tests run the rendered config as a normal process."""
        return cls(
            pid=str(prefix / "nginx.pid"),
            error_log=str(prefix / "logs" / "error.log"),
            access_log=str(prefix / "logs" / "access.log"),
            temp_dir=str(prefix / "tmp"),
            auth_include=str(prefix / "auth.conf"),
            tls_dir=str(prefix / "tls"),
            upstream_include=str(prefix / "upstream.conf"),
            grafana_include=str(prefix / "grafana.conf"),
            grafana_access_log=str(prefix / "logs" / "grafana-access.log"),
            acme_webroot=str(prefix / "acme"),
            user=None,
        )


# What a TLS domain may hold in nginx.conf, a path and a shell script: a DNS name. The config validates
# loadBalancer.tlsDomain as one; this is the renderers' second line of defence (nginx has no quoting that
# neutralises `$`, `;` or `{`), so anything else is refused rather than escaped.
_DNS_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")


def checked_domain(domain: str) -> str:
    """``domain`` if it is made of DNS-name characters only (no `..`), else ValueError."""
    if not _DNS_NAME.fullmatch(domain) or ".." in domain:
        raise ValueError(f"loadBalancer.tlsDomain {domain!r} is not a DNS name: refusing to render it")
    return domain


def tls_paths(domain: str, paths: NginxPaths) -> tuple[str, str]:
    """(certificate, key) the TLS server block reads; the LB bootstrap puts a self-signed pair there and the
    certbot deploy hook (render/acme.py) replaces it with the issued one."""
    domain = checked_domain(domain)
    return f"{paths.tls_dir}/{domain}/fullchain.pem", f"{paths.tls_dir}/{domain}/privkey.pem"


def auth_map(api_key: str) -> str:
    """The include file behind the edge API-key check; holds the key, so it is written root-only."""
    if not re.fullmatch(r"[\x21-\x7e]+", api_key) or '"' in api_key or "\\" in api_key:
        raise ValueError("the API key must be printable ASCII without spaces, quotes or backslashes")
    # A plain string key would compare case-insensitively (nginx lowercases map keys and the looked-up
    # value), so "bearer MYKEY" would pass for "Bearer mykey". A `~` regex is case-sensitive; \Q...\E
    # takes the header literally (the key holds no backslash, so it cannot contain \E).
    return (
        f"# {RENDERED_BY}\n"
        "map $http_authorization $gpu_inference_authorized {\n"
        "    default 0;\n"
        f'    "~^\\QBearer {api_key}\\E$" 1;\n'
        "}\n"
    )


def upstream_server(stack: ResolvedStack, backend: str, resolve: bool = False) -> str:
    """One node's ``server`` line inside the upstream, without its ``;`` (the health checker appends
    `` down;`` to take the node out of rotation)."""
    lb = stack.config.load_balancer
    target = backend if ":" in backend else f"{backend}:{VLLM_PORT}"
    # `resolve` (open-source nginx >= 1.27.3) re-resolves the name in the background and keeps the peer
    # list in the zone below up to date; a name that does not resolve yet (a pod still loading) is
    # simply down instead of stopping nginx from starting.
    resolve_flag = " resolve" if resolve else ""
    return f"server {target}{resolve_flag} max_fails={lb.max_fails} fail_timeout={lb.fail_timeout_seconds}s"


def _upstream(stack: ResolvedStack, backends: list[str], resolve: bool = False, include: str | None = None,
              fallback: str = FALLBACK_LISTEN) -> list[str]:  # fmt: skip
    lines = [
        "    upstream vllm_backend {",
        "        # Requests run from milliseconds to minutes: send each to the node with the fewest open ones.",
        "        least_conn;",
        "        # Shared memory: every worker sees the same open-connection counts and failure state, so",
        "        # least_conn balances across the whole host and a dead node is taken out once, not per worker.",
        "        zone vllm_backend 64k;",
    ]
    if include:
        lines += [
            "        # The nodes, one `server` line each: the active health checker marks a node `down` here when",
            "        # its /health fails and reloads nginx (open-source nginx has no active checks of its own).",
            f"        include {include};",
        ]
    else:
        lines += [f"        {upstream_server(stack, backend, resolve)};" for backend in backends]
    lines += [
        "        # Used only when no node above is usable (all down or failed): the client gets the JSON 503",
        f"        # at once instead of nginx's HTML 502 (it answers {FALLBACK_STATUS}, which is never retried; the",
        "        # API location maps it). max_fails=0: never marked failed itself. (backup works with",
        "        # least_conn, not with hash/ip_hash/random: nginx.org/en/docs/http/ngx_http_upstream_module.html)",
        f"        server {fallback} backup max_fails=0;",
        f"        keepalive {UPSTREAM_KEEPALIVE};",
        f"        keepalive_timeout {UPSTREAM_KEEPALIVE_TIMEOUT_SECONDS}s;",
        "    }",
    ]
    return lines


# Errors nginx itself answers (the edge key check, unknown paths, oversized bodies, no node reachable) in
# the OpenAI error shape vLLM also uses, {"error": {"message", "type", "param", "code"}}, so a client's
# error handling sees one format. vLLM's own 4xx and 500 pass through untouched (the API location intercepts only
# 413/502/503/504 and the backup's status: _api_error_pages).
JSON_ERRORS: dict[int, tuple[str, str]] = {
    401: ("AuthenticationError", "Missing or invalid API key."),
    404: ("NotFoundError", "Not found: the API is served under /v1/."),
    413: ("RequestTooLargeError", "Request body too large."),
    502: ("BadGatewayError", "No inference node could be reached; try again shortly."),
    503: ("ServiceUnavailableError", "No inference node is ready (all are down or still loading the model); "
          "try again shortly."),
    504: ("GatewayTimeoutError", "The inference node did not answer in time."),
}  # fmt: skip


def json_error_body(status: int) -> str:
    """The body nginx answers ``status`` with (an nginx string literal: no quote or backslash inside)."""
    etype, message = JSON_ERRORS[status]
    body = f'{{"error": {{"message": "{message}", "type": "{etype}", "param": null, "code": {status}}}}}'
    if re.search(r"['\\$]", body):  # would end the literal, escape, or interpolate a variable
        raise ValueError(f"error body for {status} cannot be an nginx string literal: {body}")
    return body


def _json_error_return(status: int, indent: str) -> str:
    return f"{indent}return {status} '{json_error_body(status)}\\n';"


def _json_error_pages() -> list[str]:
    """error_page directives + one named location per status, for a server block that serves the API."""
    codes = sorted(JSON_ERRORS)
    lines = [
        "        # nginx's own error pages are HTML; these answer in JSON (see JSON_ERRORS in render/nginx.py).",
        *[f"        error_page {code} @json_{code};" for code in codes],
    ]
    for code in codes:
        lines += [
            f"        location @json_{code} {{",
            "            default_type application/json;",
            *(["            add_header Retry-After 10 always;"] if code == 503 else []),
            _json_error_return(code, "            "),
            "        }",
        ]
    return lines


def _fallback_server(listen: str) -> list[str]:
    """The upstream's backup: loopback only, answers every request with FALLBACK_STATUS (the API location
    turns that into the JSON 503)."""
    return [
        "    # Backup of vllm_backend (never reachable from outside): reached only when no node is in rotation.",
        f"    # {FALLBACK_STATUS}, not 503: proxy_next_upstream would retry a 503 and end in nginx's 502 (see",
        "    # FALLBACK_STATUS in render/nginx.py); the API location answers it with the JSON 503.",
        "    server {",
        f"        listen {listen};",
        "        access_log off;",
        "        location / {",
        f"            return {FALLBACK_STATUS};",
        "        }",
        "    }",
    ]


# The codes the API location answers with its own JSON page, whether nginx produced them (body too large, no
# node reachable, timeout) or an upstream answered them (the backup's status; a 503 every tried node gave).
API_ERROR_PAGES = (413, 502, 503, 504)


def _api_error_pages() -> list[str]:
    """error_page lines of the API location. A location with error_page of its own inherits none from the server
    (nginx.org/r/error_page: "inherited ... if and only if there are no error_page directives defined on the
    current level"), so the ones nginx can raise there are repeated; 401/404 are not listed, so vLLM's own
    (unknown model, bad key) reach the client as vLLM wrote them."""
    return [
        f"            # The backup's {FALLBACK_STATUS} becomes the JSON 503. proxy_intercept_errors applies error_page to",
        "            # upstream answers too, for the codes listed here only (nginx.org/r/proxy_intercept_errors). This",
        "            # location's own error_page lines replace the server's (none is inherited), so nginx's 413/502/",
        "            # 503/504 are listed again; vLLM's 4xx (unknown model, bad request) and 500 pass through as is.",
        "            proxy_intercept_errors on;",
        *[f"            error_page {code} @json_{code};" for code in API_ERROR_PAGES],
        # `=503`: without it the client would get the original status (the page's `return` does not set it).
        f"            error_page {FALLBACK_STATUS} =503 @json_503;",
    ]


def _api_locations(stack: ResolvedStack, require_key: bool) -> list[str]:
    lb = stack.config.load_balancer
    auth = (
        [
            "            # Checked here as well as by vLLM: a request without the key never takes an upstream slot.",
            "            if ($gpu_inference_authorized = 0) {",
            _json_error_return(401, "                "),
            "            }",
        ]
        if require_key
        else []
    )
    return [
        "        # Only the OpenAI API is public. vLLM checks the API key on /v1/* only, and its other routes",
        "        # (/metrics, /tokenize, /invocations, ...) must not be reachable from the internet.",
        "        location /v1/ {",
        *auth,
        "            proxy_pass http://vllm_backend;",
        *_api_error_pages(),
        "            proxy_http_version 1.1;",
        '            proxy_set_header Connection "";',
        "            proxy_set_header Host $host;",
        "            proxy_set_header X-Real-IP $remote_addr;",
        "            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "            proxy_set_header X-Forwarded-Proto $scheme;",
        "            # Authorization is passed through unchanged (nginx forwards client headers by default).",
        "",
        "            # A node that refuses, times out or answers 500/502/503/504 (broken engine, restarting, still",
        "            # loading) is skipped, and each such answer counts toward its max_fails: nginx counts http_5xx",
        "            # as a failed attempt only when listed here (nginx.org/r/proxy_next_upstream). Without http_500",
        "            # a node failing fast attracts almost all traffic under least_conn (it is never busy).",
        "            # POSTs are retried too: nginx never re-sends a POST once it reached a node unless",
        "            # non_idempotent is listed (same page). Safe here: a completion has no side effect but its",
        "            # cost, and nginx never retries once response bytes reached the client. The price: a request",
        "            # that makes every node answer 500 is tried proxy_next_upstream_tries times, and counts against",
        "            # each node it tried. next_upstream_timeout stops a slow request from being re-sent after a",
        "            # long wait (which would double the load).",
        "            proxy_next_upstream error timeout http_500 http_502 http_503 http_504 non_idempotent;",
        f"            proxy_next_upstream_tries {lb.proxy_next_upstream_tries};",
        f"            proxy_next_upstream_timeout {NEXT_UPSTREAM_TIMEOUT_SECONDS}s;",
        f"            proxy_connect_timeout {CONNECT_TIMEOUT_SECONDS}s;",
        f"            proxy_read_timeout {lb.read_timeout_seconds}s;",
        f"            proxy_send_timeout {SEND_TIMEOUT_SECONDS}s;",
        "",
        "            # Stream tokens to the client as vLLM emits them (server-sent events).",
        "            proxy_buffering off;",
        "            proxy_cache off;",
        "            # For any nginx or CDN in front of this one: do not buffer the stream either.",
        "            add_header X-Accel-Buffering no always;",
        "            # Request buffering stays ON: nginx can retry the next node only if it still holds the",
        "            # whole body (prompts are small, client_max_body_size caps them).",
        "            proxy_request_buffering on;",
        "        }",
        "",
        "        location / {",
        _json_error_return(404, "            "),
        "        }",
    ]


def _health_location() -> list[str]:
    return [
        "        # The load balancer's own liveness, for the provider's checks; never touches a GPU node.",
        "        location = /health {",
        "            access_log off;",
        "            default_type text/plain;",
        "            return 200 'ok\\n';",
        "        }",
    ]


def _acme_redirect_server(listen: str, domain: str, paths: NginxPaths) -> list[str]:
    """Port 80 with TLS: HTTP-01 challenges for certbot, and a redirect to HTTPS for everything else."""
    return [
        "    server {",
        f"        listen {listen} default_server;",
        "        server_name _;",
        "",
        "        # HTTP-01: the ACME server fetches http://<domain>/.well-known/acme-challenge/<token> on port 80;",
        "        # `certbot certonly --webroot -w <root>` writes the token file under this root. ^~: no regex",
        "        # location can take these requests over.",
        "        location ^~ /.well-known/acme-challenge/ {",
        f"            root {paths.acme_webroot};",
        "            default_type text/plain;",
        "            try_files $uri =404;",
        "        }",
        "",
        "        # Everything else goes to HTTPS, to the configured name (not the client's Host header). 308 keeps",
        "        # the method and body, so a POST sent to http:// is not silently turned into a GET.",
        "        location / {",
        f"            return 308 https://{checked_domain(domain)}$request_uri;",
        "        }",
        "    }",
    ]


def _tls_server(stack: ResolvedStack, listen: str, domain: str, paths: NginxPaths, require_key: bool) -> list[str]:
    """Port 443: the API over TLS with the certificate certbot keeps current (a placeholder until then)."""
    cert, key = tls_paths(domain, paths)
    return [
        "    server {",
        f"        listen {listen} ssl default_server;",
        f"        server_name {checked_domain(domain)};",
        f"        ssl_certificate {cert};",
        f"        ssl_certificate_key {key};",
        "        ssl_protocols TLSv1.2 TLSv1.3;",
        "        ssl_session_cache shared:SSL:10m;",
        "        ssl_session_timeout 1h;",
        "",
        *_health_location(),
        "",
        *_json_error_pages(),
        "",
        *_api_locations(stack, require_key),
        *(["", *grafana_proxy.nginx_locations(stack, FALLBACK_STATUS, paths)] if grafana_proxy.grafana_behind_lb(stack) else []),
        "    }",
    ]


def nginx_conf(
    stack: ResolvedStack,
    backends: list[str],
    *,
    listen: str = f"0.0.0.0:{NGINX_HTTP_PORT}",
    pid_path: str | None = None,
    prefix_paths: NginxPaths | None = None,
    tls_listen: str | None = None,
    resolver: str | None = None,
    upstream_include: bool = False,
    fallback_listen: str = FALLBACK_LISTEN,
) -> str:
    """A complete nginx.conf (checkable with ``nginx -t -c``) for the load balancer host.

    ``resolver``: a DNS server (name or IP) for backends given by name whose addresses change (Kubernetes
    pods); the servers are then marked ``resolve``, which needs open-source nginx >= 1.27.3. None (the
    droplet LB, whose backends are fixed private IPs) leaves both out.

    ``upstream_include``: the nodes' ``server`` lines come from ``paths.upstream_include`` (written by
    :func:`gpu_inference.render.lb_healthcheck.upstream_include` and rewritten by the LB's active health
    checker) instead of being inline. ``fallback_listen``: where the upstream's JSON-503 backup listens.
    """
    if not backends:
        raise ValueError("the load balancer needs at least one backend")
    paths = prefix_paths or NginxPaths()
    pid = pid_path or paths.pid
    lb = stack.config.load_balancer
    require_key = stack.config.api_key is not None
    domain = lb.tls_domain
    tmp = paths.temp_dir
    out: list[str] = [f"# {RENDERED_BY}", f"# Stack {stack.name}: {len(backends)} vLLM node(s) behind least_conn."]
    if paths.user:
        out.append(f"user {paths.user};")
    out += [
        "worker_processes auto;",
        "# Each stream holds a client and an upstream socket; the default 1024 files would cap worker_connections.",
        "worker_rlimit_nofile 16384;",
        f"pid {pid};",
        f"error_log {paths.error_log} warn;",
        "",
        "events {",
        "    # Streams stay open for minutes: size for many concurrent connections per worker.",
        "    worker_connections 4096;",
        "}",
        "",
        "http {",
        f"    include {paths.mime_types};",
        "    default_type application/json;",
        "    server_tokens off;",
        "    sendfile on;",
        "    tcp_nodelay on;",
        "    keepalive_timeout 75s;",
        f"    client_max_body_size {lb.client_max_body_size_mb}m;",
        # Bodies up to 1 MB stay in memory; larger prompts spill to client_body_temp_path.
        "    client_body_buffer_size 1m;",
        "",
        f"    client_body_temp_path {tmp}/body;",
        f"    proxy_temp_path {tmp}/proxy;",
        f"    fastcgi_temp_path {tmp}/fastcgi;",
        f"    uwsgi_temp_path {tmp}/uwsgi;",
        f"    scgi_temp_path {tmp}/scgi;",
        "",
        "    # Which node served a request and how long it took: the first thing to read in an incident.",
        "    log_format upstream '$remote_addr [$time_iso8601] \"$request\" $status $body_bytes_sent '",
        "                        'rt=$request_time upstream=$upstream_addr ustatus=$upstream_status '",
        "                        'urt=$upstream_response_time uct=$upstream_connect_time';",
        f"    access_log {paths.access_log} upstream;",
        "",
    ]
    if require_key:
        out += [f"    include {paths.auth_include};", ""]
    if resolver:
        out += [
            "    # Backends are DNS names whose addresses change (a rescheduled pod gets a new IP): nginx asks this",
            "    # server again every few seconds instead of keeping what it resolved at startup.",
            f"    resolver {resolver} valid={RESOLVER_VALID_SECONDS}s ipv6=off;",
            "",
        ]
    out += _upstream(stack, backends, resolve=resolver is not None,
                     include=paths.upstream_include if upstream_include else None, fallback=fallback_listen)
    out += ["", *_fallback_server(fallback_listen)]
    out.append("")
    if domain and grafana_proxy.grafana_behind_lb(stack):
        out += [*grafana_proxy.nginx_http_blocks(paths.grafana_include), ""]
    if domain:
        # TLS: port 80 only answers ACME challenges and redirects; the API is served on 443 alone.
        out += _acme_redirect_server(listen, domain, paths)
        out.append("")
        out += _tls_server(stack, tls_listen or f"0.0.0.0:{NGINX_HTTPS_PORT}", domain, paths, require_key)
    else:
        out += ["    server {", f"        listen {listen} default_server;", "        server_name _;", ""]
        out += _health_location()
        out.append("")
        out += [*_json_error_pages(), ""]
        out += [*_api_locations(stack, require_key), "    }"]
    out += ["}", ""]
    return "\n".join(out)
