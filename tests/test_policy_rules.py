"""The pure policy rules: passing and failing resource views, and the verdicts the offline preview prints."""

from __future__ import annotations

from typing import Any

import pytest

from gpu_inference.clouds.aws import SECURITY_GROUP as AWS_SECURITY_GROUP
from gpu_inference.clouds.digitalocean import FIREWALL as DO_FIREWALL
from gpu_inference.fit_advice import advise_fit
from gpu_inference.policy_rules import (
    VLLM_SERVICE,
    PolicySettings,
    ResourceView,
    check_budget,
    check_gpu_availability,
    check_kv_headroom,
    check_security,
    check_vram_fit,
    evaluate_policies,
    find_credentials,
    resolve_service,
    security,
)
from gpu_inference.pricing import bill_for_resources
from gpu_inference.service_spec import ServiceSpec

DROPLET = "digitalocean:index/droplet:Droplet"
FAKE_KEY = "sk-test-0123456789abcdefABCDEF"


def service(name: str = "llm-0", **props: Any) -> ResourceView:
    """A VllmService as the components register it (see components/vllm_service.py service_spec)."""
    spec: dict[str, Any] = {
        "model": "Qwen/Qwen3-8B",
        "gpu": "gpu-l40sx1-48gb",
        "gpuName": "NVIDIA L40S 48GB GDDR6",
        "gpuCount": 1,
        "nodeCount": 1,
        "tensorParallelSize": 1,
        "maxModelLen": 8192,
        "maxNumSeqs": 64,
        "dtype": "auto",
        "quantization": "checkpoint",
        "kvCacheDtype": "auto",
        "gpuMemoryUtilization": 0.9,
        "vllmVersion": "0.19.0",
        "typicalRequestTokens": 2048,
        "provider": "digitalocean",
        "region": "tor1",
        "apiKeySet": True,
        "monthlyBudgetUsd": 2000,
    }
    spec.update(props)
    return ResourceView(type=VLLM_SERVICE, name=name, urn=f"urn:pulumi:dev::gpu-inference::{VLLM_SERVICE}::{name}",
                        props=spec)


def evaluate(views: list[ResourceView], budget_usd: float | None, settings: PolicySettings) -> list[Any]:
    """evaluate_policies with the stack's budget as the preview passes it (None: taken from the services)."""
    return evaluate_policies(views, settings.model_copy(update={"monthly_budget_usd": budget_usd}))


def droplet(name: str, size: str, **props: Any) -> ResourceView:
    return ResourceView(type=DROPLET, name=name, props={"size": size, "region": "tor1", "image": "ubuntu-24-04-x64",
                                                        **props})


def firewall(name: str, *rules: dict[str, Any]) -> ResourceView:
    return ResourceView(type=DO_FIREWALL, name=name, props={"inboundRules": list(rules)})


def do_stack(svc: ResourceView | None = None) -> list[ResourceView]:
    return [
        svc or service(),
        droplet("llm-0-node", "gpu-l40sx1-48gb", userData="#cloud-config\n"),
        droplet("lb", "s-2vcpu-4gb"),
        firewall("lb-fw", {"protocol": "tcp", "portRange": "443", "sourceAddresses": ["0.0.0.0/0", "::/0"]}),
        firewall("llm-0-fw", {"protocol": "tcp", "portRange": "8000", "sourceTags": ["lb"]}),
    ]


# --- vram-fit --------------------------------------------------------------------------------------


def test_the_service_spec_maps_component_props_to_stack_config_keys() -> None:
    raw = ServiceSpec.from_props(service(quantization="checkpoint", maxModelLen=8192.0).props).stack_config()
    assert "quantization" not in raw  # "checkpoint" = keep the checkpoint's own
    assert raw["maxModelLen"] == 8192 and isinstance(raw["maxModelLen"], int)  # protobuf doubles
    assert raw["vllmImage"] == "vllm/vllm-openai:v0.19.0"


def test_vram_fit_passes_for_qwen3_8b_on_l40s() -> None:
    assert check_vram_fit(service()) == []
    verdict = next(v for v in evaluate([service()], 5000, PolicySettings()) if v.name == "vram-fit")
    assert verdict.passed
    assert "Qwen/Qwen3-8B (bf16) fits 1 × L40S" in verdict.message
    assert "GiB KV cache" in verdict.message and "tokens" in verdict.message and "× at 8192" in verdict.message


def test_vram_fit_fails_for_llama_70b_bf16_on_one_l40s_and_names_the_cheapest_fix() -> None:
    [message] = check_vram_fit(service(model="meta-llama/Llama-3.3-70B-Instruct"))
    assert message.startswith("meta-llama/Llama-3.3-70B-Instruct (bf16) does not fit 1 × L40S (44.42 GiB, 39.98 GiB usable")
    assert "weights alone need 131.4 GiB" in message
    rs = resolve_service(service(model="meta-llama/Llama-3.3-70B-Instruct"))
    assert not isinstance(rs, list)
    cheapest = advise_fit(rs)[0]
    assert f"Cheapest fix: {cheapest.summary}" in message
    assert "gpu-inference:gpu = gpu-h100" in cheapest.summary  # tor1 has no bigger single-L40S option
    assert "$" in message and "/month" in message


def test_vram_fit_reports_a_service_it_cannot_size() -> None:
    [message] = check_vram_fit(service(model="no-such/model-7B"))
    assert "cannot size" in message and "no-such/model-7B" in message


def test_vram_fit_reports_missing_spec_props() -> None:
    view = service()
    del view.props["model"]
    assert any("no 'model' prop" in m for m in check_vram_fit(view))


def test_vram_fit_ignores_other_resources() -> None:
    assert check_vram_fit(droplet("x", "gpu-l40sx1-48gb")) == []


# --- kv-headroom -------------------------------------------------------------------------------------


def test_kv_headroom_passes_when_max_num_seqs_typical_requests_fit() -> None:
    assert check_kv_headroom(service(maxNumSeqs=64)) == []


def test_kv_headroom_fails_when_the_cache_holds_fewer_requests_than_max_num_seqs() -> None:
    rs = resolve_service(service(maxNumSeqs=256))
    assert not isinstance(rs, list)
    holds = rs.sizing.kv_cache_tokens // 2048
    assert holds < 256
    [message] = check_kv_headroom(service(maxNumSeqs=256))
    assert f"only {holds:,} requests of 2,048 tokens, but maxNumSeqs is 256" in message
    assert f"set gpu-inference:maxNumSeqs to {holds}" in message
    assert "kvCacheDtype = fp8" in message  # L40S has FP8


def test_kv_headroom_uses_the_typical_length_override() -> None:
    assert check_kv_headroom(service(maxNumSeqs=64), typical_request_tokens=32_768) != []
    assert check_kv_headroom(service(maxNumSeqs=256), typical_request_tokens=128) == []


def test_kv_headroom_is_silent_when_vram_fit_already_fails() -> None:
    assert check_kv_headroom(service(model="meta-llama/Llama-3.3-70B-Instruct")) == []


# --- gpu-availability -------------------------------------------------------------------------------


def test_gpu_availability_passes_for_an_offering_sold_in_the_region() -> None:
    assert check_gpu_availability(service()) == []


def test_gpu_availability_fails_outside_the_offerings_regions() -> None:
    [message] = check_gpu_availability(service(region="nyc2"))
    assert "gpu-l40sx1-48gb is not offered in digitalocean/nyc2 (offered in: tor1)" in message
    assert "gpu-h100x1-80gb" in message  # what nyc2 does have


def test_gpu_availability_fails_for_another_providers_offering_and_unknown_ids() -> None:
    [wrong] = check_gpu_availability(service(gpu="g6e.xlarge"))
    assert "is a aws offering but the service runs on digitalocean" in wrong
    [unknown] = check_gpu_availability(service(gpu="gpu-l40sx1-48g"))
    assert "not a catalog offering" in unknown and "gpu-l40sx1-48gb" in unknown  # did-you-mean


# --- budget -------------------------------------------------------------------------------------------


def test_budget_passes_within_budget() -> None:
    assert check_budget(do_stack(), 2000) == []


def test_budget_fails_over_budget_with_breakdown_and_overrun() -> None:
    [message] = check_budget(do_stack(), 500)
    assert "over the $500.00 budget" in message
    assert "llm-0-node (gpu-l40sx1-48gb" in message and "lb (s-2vcpu-4gb" in message
    total = bill_for_resources([(v.type, v.name, v.props) for v in do_stack()]).total_monthly_usd
    assert total > 1.57 * 730  # the GPU droplet plus the load balancer
    assert f"costs ${total:,.2f}/month (730 h), ${total - 500:,.2f} over" in message
    assert "monthlyBudgetUsd" in message


def test_budget_slack_tolerates_a_small_overrun() -> None:
    assert check_budget(do_stack(), 1150) != []
    assert check_budget(do_stack(), 1150, slack_usd=100) == []


def test_budget_refuses_what_it_cannot_price() -> None:
    [message] = check_budget([droplet("x", "gpu-nonexistent")], 10_000)
    assert "cannot price the stack" in message


# --- security -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("port", [8000, 9100, 9400, 9090, 3903, 9101])
def test_security_fails_for_world_open_internal_ports(port: int) -> None:
    views = [firewall("fw", {"protocol": "tcp", "portRange": str(port), "sourceAddresses": ["0.0.0.0/0"]})]
    [(name, message)] = check_security(views)
    assert name == "fw" and f"port {port}" in message and "0.0.0.0/0" in message


def test_security_catches_ipv6_world_and_all_port_ranges() -> None:
    views = [firewall("fw", {"protocol": "tcp", "portRange": "all", "sourceAddresses": ["::/0"]})]
    messages = [m for _, m in check_security(views)]
    assert len(messages) == 8  # 8000, 9100, 9400 (DCGM), 5000 (AMD exporter), 9090, 3903 (mtail), 9101 and SSH
    assert all("::/0" in m for m in messages)


def test_security_allows_public_https_and_internal_ports_from_peers() -> None:
    assert check_security(do_stack()) == []
    assert check_security([firewall("fw", {"protocol": "icmp", "sourceAddresses": ["0.0.0.0/0"]})]) == []


def test_security_ssh_only_from_allowed_cidrs() -> None:
    ssh_world = firewall("fw", {"protocol": "tcp", "portRange": "22", "sourceAddresses": ["0.0.0.0/0"]})
    [(_, message)] = check_security([ssh_world], allowed_cidrs=["203.0.113.0/24"])
    assert "SSH (22)" in message and "203.0.113.0/24" in message
    other = firewall("fw", {"protocol": "tcp", "portRange": "22", "sourceAddresses": ["198.51.100.0/24"]})
    [(_, message)] = check_security([other], allowed_cidrs=["203.0.113.0/24"])
    assert "198.51.100.0/24, not in gpu-inference:allowedCidrs" in message
    ok = firewall("fw", {"protocol": "tcp", "portRange": "22", "sourceAddresses": ["203.0.113.0/24"]})
    assert check_security([ok], allowed_cidrs=["203.0.113.0/24"]) == []


def test_security_reads_allowed_cidrs_from_the_service() -> None:
    other = firewall("fw", {"protocol": "tcp", "portRange": "22", "sourceAddresses": ["198.51.100.0/24"]})
    assert check_security([service(allowedCidrs=["203.0.113.0/24"]), other]) != []


def test_security_aws_security_group_rules() -> None:
    sg = ResourceView(type=AWS_SECURITY_GROUP, name="sg", props={"ingress": [
        {"protocol": "tcp", "fromPort": 8000, "toPort": 8000, "cidrBlocks": ["0.0.0.0/0"]},
    ]})
    assert [n for n, _ in check_security([sg])] == ["sg"]
    all_traffic = ResourceView(type=AWS_SECURITY_GROUP, name="sg", props={"ingress": [
        {"protocol": "-1", "fromPort": 0, "toPort": 0, "ipv6CidrBlocks": ["::/0"]},
    ]})
    assert len(check_security([all_traffic])) == 8  # 8000, 9100, 9400, 5000, 9090, 3903, 9101 (registrar), SSH
    peers_only = ResourceView(type=AWS_SECURITY_GROUP, name="sg", props={"ingress": [
        {"protocol": "tcp", "fromPort": 8000, "toPort": 8000, "securityGroups": ["sg-123"]},
    ]})
    assert check_security([peers_only]) == []


def test_security_requires_an_api_key_on_a_public_endpoint() -> None:
    [(name, message)] = check_security([service(apiKeySet=False)])
    assert name == "llm-0" and "without an API key" in message and "--secret gpu-inference:apiKey" in message
    assert check_security([service(apiKeySet=False, publicEndpoint=False)]) == []
    # A world-open HTTPS port makes the endpoint public whatever the prop says.
    views = [service(apiKeySet=False, publicEndpoint=False), *do_stack()[1:]]
    assert any("without an API key" in m for _, m in check_security(views))


def test_security_flags_a_credential_in_a_plain_input_without_echoing_it() -> None:
    node = droplet("llm-0-node", "gpu-l40sx1-48gb", userData=f"#cloud-config\nwrite_files:\n- content: VLLM_API_KEY={FAKE_KEY}\n")
    [(name, message)] = check_security([node])
    assert name == "llm-0-node" and "userData holds" in message and "VLLM_API_KEY" in message
    assert FAKE_KEY not in message
    assert "Output.secret" in message and "additional_secret_outputs" in message
    marked = node.model_copy(update={"secret_props": ["userData"]})
    assert check_security([marked]) == []


@pytest.mark.parametrize(
    ("text", "found"),
    [
        (f"ExecStart=vllm serve m --api-key {FAKE_KEY}", "--api-key"),
        ('if ($http_authorization != "Bearer abcdefghijklmnop1234") { return 401; }', "Bearer"),
        ("HF_TOKEN=hf_abcdefghijklmnopqrstuvwxyz0123456789", "HF_TOKEN"),
        ("env: [{name: OPENAI_API_KEY, value: x}]", None),  # a name without a value is not a secret
        ("VLLM_API_KEY=$VLLM_API_KEY", None),  # a reference, not the value
        ("--api-key-file /etc/vllm/key", None),
    ],
)
def test_find_credentials(text: str, found: str | None) -> None:
    kinds = find_credentials(text)
    if found is None:
        assert kinds == []
    else:
        assert any(found in k for k in kinds)
        assert all(FAKE_KEY not in k for k in kinds)


# --- evaluate_policies ------------------------------------------------------------------------------------


def test_evaluate_policies_gives_one_verdict_per_policy_and_subject_including_passes() -> None:
    verdicts = evaluate(do_stack(), 2000, PolicySettings())
    assert {(v.name, v.resource) for v in verdicts} == {
        ("gpu-availability", "llm-0"), ("vram-fit", "llm-0"), ("can-start", "llm-0"), ("kv-headroom", "llm-0"),
        ("budget", None), ("security", None),
    }
    assert all(v.passed for v in verdicts), [v.line() for v in verdicts]
    assert all(v.message for v in verdicts)
    budget = next(v for v in verdicts if v.name == "budget")
    assert "of the $2,000.00 budget" in budget.message


def test_evaluate_policies_takes_the_budget_from_the_service_when_none_is_given() -> None:
    verdicts = evaluate(do_stack(service(monthlyBudgetUsd=100)), None, PolicySettings())
    budget = next(v for v in verdicts if v.name == "budget")
    assert not budget.passed and budget.blocks and "over the $100.00 budget" in budget.message


def test_policy_settings_levels_for_dev_and_prod_stacks() -> None:
    assert PolicySettings.for_stack("dev").level("security") == "advisory"
    assert PolicySettings.for_stack("prod-eu").level("security") == "mandatory"
    assert PolicySettings.for_stack("dev").level("vram-fit") == "mandatory"
    assert PolicySettings.for_stack("dev").level("kv-headroom") == "advisory"
    views = [firewall("fw", {"protocol": "tcp", "portRange": "8000", "sourceAddresses": ["0.0.0.0/0"]})]
    [dev] = [v for v in evaluate(views, 100, PolicySettings.for_stack("dev")) if v.name == "security"]
    [prod] = [v for v in evaluate(views, 100, PolicySettings.for_stack("prod")) if v.name == "security"]
    assert not dev.blocks and prod.blocks


def test_disabled_policies_are_reported_but_never_block() -> None:
    settings = PolicySettings.for_stack("dev", levels={"budget": "disabled"})
    [budget] = [v for v in evaluate(do_stack(), 1, settings) if v.name == "budget"]
    assert budget.level == "disabled" and budget.passed and not budget.blocks


def test_acceptance_llama_70b_unquantized_on_one_l40s_is_refused_twice() -> None:
    """The product's promise, through the rules: does not fit → refused; over budget → refused; and the repo is
    gated while the stack has no hfToken → refused (the download would get 401)."""
    svc = service(model="meta-llama/Llama-3.3-70B-Instruct", quantization="none", monthlyBudgetUsd=500)
    verdicts = evaluate(do_stack(svc), None, PolicySettings.for_stack("dev"))
    blocking = {v.name: v for v in verdicts if v.blocks}
    assert set(blocking) == {"vram-fit", "budget", "can-start"}
    assert "gpu-inference:hfToken is not set" in blocking["can-start"].message
    fit = blocking["vram-fit"].message
    assert "70B" in fit and "L40S" in fit and "Cheapest fix:" in fit
    assert "over the $500.00 budget" in blocking["budget"].message


def test_the_rendered_cloud_init_with_keys_is_caught_unless_marked_secret() -> None:
    """The security rule recognises what the real renderers write (vLLM env file, nginx auth map)."""
    from gpu_inference.config import load_stack_config
    from gpu_inference.render.cloud_init import gpu_node_cloud_init, load_balancer_cloud_init
    from gpu_inference.stack import resolve_stack

    rs = resolve_stack(load_stack_config("dev"), "dev")
    node = gpu_node_cloud_init(rs, 0, FAKE_KEY, "hf_" + "a1" * 20)
    lb = load_balancer_cloud_init(rs, ["10.0.0.2"], FAKE_KEY)
    assert any("VLLM_API_KEY" in k for k in find_credentials(node))
    assert any("HF_TOKEN" in k for k in find_credentials(node))
    assert any("Bearer" in k for k in find_credentials(lb))
    views = [droplet("node", "gpu-l40sx1-48gb", userData=node), droplet("lb", "s-1vcpu-2gb", userData=lb)]
    assert [n for n, _ in check_security(views)] == ["node", "lb"]
    assert check_security([v.model_copy(update={"secret_props": ["userData"]}) for v in views]) == []


def test_security_kubernetes_load_balancer_service() -> None:
    def svc(**spec: Any) -> ResourceView:
        return ResourceView(type="kubernetes:core/v1:Service", name="vllm", props={"spec": {
            "type": "LoadBalancer", "ports": [{"port": 80, "targetPort": 8000}], **spec}})

    [(name, message)] = check_security([svc()])
    assert name == "vllm" and "port 8000 (vLLM API)" in message
    assert check_security([svc(loadBalancerSourceRanges=["203.0.113.0/24"])]) == []
    cluster_ip = ResourceView(type="kubernetes:core/v1:Service", name="vllm", props={"spec": {
        "type": "ClusterIP", "ports": [{"port": 8000}]}})
    assert check_security([cluster_ip]) == []


def test_security_kubernetes_nginx_in_front() -> None:
    """The Kubernetes layout: a public LoadBalancer on Nginx (80 -> 80), vLLM only behind a headless Service."""
    spec = {"model": "Qwen/Qwen3-8B", "gpu": "gpu-l40sx1-48gb", "provider": "kubernetes", "region": "tor1",
            "allowedCidrs": ["198.51.100.0/24"]}  # fmt: skip

    def views(public: bool, api_key: bool) -> list[ResourceView]:
        return [
            ResourceView(type="gpu-inference:index:VllmService", name="gpu-inference-vllm",
                         props={**spec, "publicEndpoint": public, "apiKeySet": api_key}),
            ResourceView(type="kubernetes:core/v1:Service", name="gpu-inference-vllm-pods", props={"spec": {
                "clusterIP": "None", "ports": [{"port": 8000, "targetPort": 8000}]}}),
            ResourceView(type="kubernetes:core/v1:Service", name="gpu-inference-lb", props={"spec": {
                "type": "LoadBalancer", "ports": [{"port": 80, "targetPort": 80}],
                "loadBalancerSourceRanges": ["0.0.0.0/0", "::/0"] if public else ["198.51.100.0/24"]}}),
            ResourceView(type="kubernetes:core/v1:Service", name="gpu-inference-prometheus", props={"spec": {
                "type": "ClusterIP", "ports": [{"port": 9090, "targetPort": 9090}]}}),
        ]  # fmt: skip

    # Public with an API key, or restricted to allowedCidrs: nothing to report.
    assert check_security(views(public=True, api_key=True)) == []
    assert check_security(views(public=False, api_key=False)) == []
    # Public without a key: exactly the missing key, not an open vLLM port.
    [(name, message)] = check_security(views(public=True, api_key=False))
    assert name == "gpu-inference-vllm" and "without an API key" in message


# --- world-open by address-space coverage (issue 11) --------------------------------------------------------


@pytest.mark.parametrize(
    "sources",
    [
        ["0.0.0.0/1", "128.0.0.0/1"],
        ["::/1", "8000::/1"],
        ["2000::/3"],
        ["2000::/10"],  # more than a /11 of global unicast
        [f"{a}.0.0.0/8" for a in range(1, 3)],  # two public /8s: more than one /8
        ["11.0.0.0/8", "12.0.0.0/9"],
        ["0.0.0.0/0"],
        ["::/0"],
    ],
)
@pytest.mark.parametrize("port", [8000, 9100, 9400, 9090, 22])
def test_security_judges_world_open_by_coverage(sources: list[str], port: int) -> None:
    views = [firewall("fw", {"protocol": "tcp", "portRange": str(port), "sourceAddresses": sources})]
    [(name, message)] = check_security(views, allowed_cidrs=["203.0.113.0/24"])
    assert name == "fw" and f"{port}" in message and all(s in message for s in sources)


def test_security_coverage_adds_up_across_rules_of_one_resource() -> None:
    split = firewall("fw", {"protocol": "tcp", "portRange": "8000", "sourceAddresses": ["0.0.0.0/1"]},
                     {"protocol": "tcp", "portRange": "7000-9000", "sourceAddresses": ["128.0.0.0/1"]})
    [(_, message)] = check_security([split])  # reported once, naming both halves
    assert "port 8000" in message and "0.0.0.0/1" in message and "128.0.0.0/1" in message
    sg = ResourceView(type=AWS_SECURITY_GROUP, name="sg", props={"ingress": [
        {"protocol": "tcp", "fromPort": 22, "toPort": 22, "ipv6CidrBlocks": ["::/1"]},
        {"protocol": "tcp", "fromPort": 22, "toPort": 22, "ipv6CidrBlocks": ["8000::/1"]},
    ]})
    [(_, message)] = check_security([sg], allowed_cidrs=["::/1", "8000::/1"])  # allowedCidrs cannot bless it
    assert "SSH (22)" in message


@pytest.mark.parametrize(
    "sources",
    [
        ["17.0.0.0/8"],  # one /8: the largest range one organisation holds
        ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"],  # private space is not public
        ["2001:db8::/32", "2a00:1450::/32"],
        ["2000::/12"],  # an RIR-sized IPv6 block: less than a /11
        ["fc00::/7", "fe80::/10"],
        ["203.0.113.0/24", "198.51.100.7/32"],
    ],
)
def test_security_a_network_of_one_organisation_is_not_world(sources: list[str]) -> None:
    views = [firewall("fw", {"protocol": "tcp", "portRange": "8000", "sourceAddresses": sources})]
    assert check_security(views) == []


def test_world_sources_counts_only_public_space() -> None:
    from gpu_inference.policy_rules import WORLD_OPEN_V4_ADDRESSES, world_sources

    # 0.0.0.0/7 is 2 ** 25 addresses, of which 0.0.0.0/8 is reserved: exactly one /8 of public space remains.
    assert world_sources(["0.0.0.0/7"]) == []
    assert world_sources(["0.0.0.0/7", "11.0.0.0/32"]) == ["0.0.0.0/7", "11.0.0.0/32"]
    assert WORLD_OPEN_V4_ADDRESSES == 2 ** 24
    assert world_sources(["not-a-cidr", "tag:lb"]) == []


@pytest.mark.parametrize("budget", [float("inf"), float("nan"), -5.0])
def test_budget_from_a_service_with_a_non_finite_budget_is_no_budget(budget: float) -> None:
    """Config validation refuses monthlyBudgetUsd .inf; a service built around one still fails, not 'of $inf'."""
    views = [service(monthlyBudgetUsd=budget), *do_stack()[1:]]
    outcome = evaluate(views, None, PolicySettings())
    [verdict] = [v for v in outcome if v.name == "budget"]
    assert not verdict.passed and "no monthly budget is known" in verdict.message


@pytest.mark.parametrize("tls", [True, False])
def test_coverage_decides_which_api_port_faces_the_world_with_and_without_tls(tls: bool) -> None:
    """The TLS rule (port 80 only answers ACME and redirects) and the coverage rule together, on a private,
    keyless endpoint: 11.0.0.0/8 and 12.0.0.0/9 are each at most a /8, together more. Two rules opening 443 so
    are public (reported once); opening 80 so is public only without TLS."""
    settings = PolicySettings(allowed_cidrs=["198.51.100.0/24"], public_endpoint=False, api_key_set=False, tls=tls)

    def rules(first: str, second: str) -> ResourceView:
        return firewall("lb-fw", {"protocol": "tcp", "portRange": first, "sourceAddresses": ["11.0.0.0/8"]},
                        {"protocol": "tcp", "portRange": second, "sourceAddresses": ["12.0.0.0/9"]})

    [message] = security(rules("443", "443"), settings)[0]
    assert "without an API key" in message and "11.0.0.0/8" in message and "12.0.0.0/9" in message
    assert (security(rules("80", "80"), settings)[0] == []) is tls
    # 80-443 holds 443, but only port 80 is world-open (both rules): with TLS no API port faces the world.
    assert (security(rules("80", "80-443"), settings)[0] == []) is tls
    assert security(rules("443", "443"), settings.model_copy(update={"api_key_set": True}))[0] == []
