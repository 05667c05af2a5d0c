"""Stack config: every kind of bad value gets one message naming the key, the value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from gpu_inference.config import (
    StackConfig,
    field_docs,
    load_stack_config,
    parse_stack_config,
    split_namespaced,
)
from gpu_inference.constants import VLLM_IMAGE
from gpu_inference.errors import ConfigError
from gpu_inference.secrets import REDACTED, SecretValue

BASE = {
    "provider": "digitalocean",
    "region": "tor1",
    "gpu": "gpu-l40sx1-48gb",
    "model": "Qwen/Qwen3-8B",
    "monthlyBudgetUsd": 1500,
}


def problems_for(**overrides: object) -> list[str]:
    with pytest.raises(ConfigError) as excinfo:
        parse_stack_config({**BASE, **overrides}, secret_keys=set())
    return excinfo.value.messages


def test_minimal_config_gets_documented_defaults() -> None:
    cfg = parse_stack_config(BASE)
    assert cfg.node_count == 1
    assert cfg.gpu_memory_utilization == 0.9
    assert cfg.max_model_len == 8192
    # Unset: the GPU vendor's image of the pinned release (gpu_vendor.vllm_image), so the version is the pinned one.
    assert cfg.vllm_image is None
    assert cfg.vllm_version == VLLM_IMAGE.rsplit(":v", 1)[1]
    assert cfg.monitoring.queue_depth_threshold == 20  # the seeds' figure
    assert cfg.monitoring.kv_cache_usage_threshold == 0.9
    assert cfg.monitoring.ttft_p95_seconds == 2.0


@pytest.mark.parametrize(
    ("overrides", "must_contain"),
    [
        ({"nodeCount": 0}, ["gpu-inference:nodeCount", "0", "≥ 1"]),
        ({"nodeCount": 65}, ["gpu-inference:nodeCount", "65", "≤ 64"]),
        ({"gpuMemoryUtilization": 1.7}, ["gpu-inference:gpuMemoryUtilization", "1.7", "≤ 1"]),
        ({"gpuMemoryUtilization": 0}, ["gpu-inference:gpuMemoryUtilization", "> 0"]),
        ({"provider": "azure"}, ["gpu-inference:provider", "'azure'", "digitalocean, aws, kubernetes"]),
        ({"dtype": "bf16"}, ["gpu-inference:dtype", "did you mean 'bfloat16'"]),
        ({"quantization": "q4"}, ["gpu-inference:quantization", "fp8"]),
        ({"kvCacheDtype": "int8"}, ["gpu-inference:kvCacheDtype", "auto, fp8"]),
        ({"maxModelLen": 8}, ["gpu-inference:maxModelLen", "≥ 16"]),
        ({"maxNumSeqs": "many"}, ["gpu-inference:maxNumSeqs", "'many'"]),
        ({"monthlyBudgetUsd": -5}, ["gpu-inference:monthlyBudgetUsd", "> 0"]),
        ({"allowedCidrs": ["10.0.0.1/8"]}, ["gpu-inference:allowedCidrs", "host bits"]),
        ({"allowedCidrs": ["not-a-net"]}, ["gpu-inference:allowedCidrs", "CIDR"]),
        ({"vllmImage": "vllm/vllm-openai:latest"}, ["gpu-inference:vllmImage", "pinned release tag"]),
        (
            {"gpuMemoryUtilisation": 0.9},
            ["gpu-inference:gpuMemoryUtilisation", "did you mean gpu-inference:gpuMemoryUtilization"],
        ),
        (
            {"monitoring": {"queueDepthTreshold": 5}},
            ["gpu-inference:monitoring.queueDepthTreshold", "monitoring.queueDepthThreshold"],
        ),
        ({"monitoring": {"kvCacheFor": "5 minutes"}}, ["gpu-inference:monitoring.kvCacheFor", "'5 minutes'"]),
        ({"monitoring": {"storageGb": 5}}, ["gpu-inference:monitoring.storageGb", "≥ 10"]),
        ({"monitoring": {"storageGb": 20000}}, ["gpu-inference:monitoring.storageGb", "≤ 16384"]),
        ({"loadBalancer": {"maxFails": 0}}, ["gpu-inference:loadBalancer.maxFails", "≥ 1"]),
        ({"spot": True}, ["gpu-inference:spot", "only aws"]),
        ({"provider": "kubernetes"}, ["gpu-inference:kubernetes", "clusterId"]),
        ({"tags": ["has space"]}, ["gpu-inference:tags", "'has space'"]),
        ({"apiKey": "sk-plain"}, ["gpu-inference:apiKey", "--secret"]),
    ],
)
def test_each_bad_value_gets_one_message_naming_key_value_and_allowed(
    overrides: dict[str, object], must_contain: list[str]
) -> None:
    messages = problems_for(**overrides)
    assert len(messages) == 1, messages
    for fragment in must_contain:
        assert fragment in messages[0], (fragment, messages[0])


def test_missing_required_key_is_named() -> None:
    raw = dict(BASE)
    del raw["model"]
    with pytest.raises(ConfigError) as excinfo:
        parse_stack_config(raw)
    assert excinfo.value.messages == [
        "gpu-inference:model is required: "
        "Catalog model id (Qwen/Qwen3-8B) or a path to a Hugging Face config.json of a fine-tune."
    ]


def test_several_bad_values_get_one_message_each() -> None:
    messages = problems_for(nodeCount=0, provider="azure", gpuMemoryUtilization=2)
    assert len(messages) == 3
    assert {m.split(" ")[0] for m in messages} == {
        "gpu-inference:nodeCount",
        "gpu-inference:provider",
        "gpu-inference:gpuMemoryUtilization",
    }


def test_engine_style_string_values_are_coerced() -> None:
    # `pulumi config set` stores scalars as strings and structured values as JSON text.
    cfg = parse_stack_config(
        {**BASE, "nodeCount": "3", "spot": "false", "gpuMemoryUtilization": "0.85",
         "allowedCidrs": '["203.0.113.0/24"]', "monitoring": '{"queueDepthThreshold": 7}'}
    )
    assert cfg.node_count == 3
    assert cfg.gpu_memory_utilization == 0.85
    assert cfg.allowed_cidrs == ["203.0.113.0/24"]
    assert cfg.monitoring.queue_depth_threshold == 7


def test_secrets_stay_opaque() -> None:
    cfg = parse_stack_config({**BASE, "apiKey": "sk-live-123"}, secret_keys={"apiKey"})
    assert isinstance(cfg.api_key, SecretValue)
    assert "sk-live-123" not in repr(cfg)
    assert "sk-live-123" not in cfg.model_dump_json()
    assert REDACTED in cfg.model_dump_json()
    assert cfg.api_key.reveal() == "sk-live-123"
    offline = parse_stack_config({**BASE, "apiKey": {"secure": "v1:abc"}}, secret_keys={"apiKey"})
    assert offline.api_key is not None and not offline.api_key.is_decrypted
    assert offline.api_key.ciphertext == "v1:abc"


def test_split_namespaced_keeps_provider_keys_apart() -> None:
    ours, others = split_namespaced({"gpu-inference:nodeCount": 2, "aws:region": "us-east-1"})
    assert ours == {"nodeCount": 2}
    assert others == {"aws:region": "us-east-1"}


def test_stack_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.t.yaml"
    path.write_text(yaml.safe_dump({"config": {f"gpu-inference:{k}": v for k, v in BASE.items()}
                                     | {"gpu-inference:apiKey": {"secure": "v1:xyz"}, "digitalocean:token": {"secure": "v1:q"}}}))
    cfg = load_stack_config(path)
    assert cfg.api_key is not None and cfg.api_key.ciphertext == "v1:xyz"


def test_stack_file_without_namespace_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.t.yaml"
    path.write_text(yaml.safe_dump({"config": {"nodeCount": 2}}))
    with pytest.raises(ConfigError, match="gpu-inference:nodeCount"):
        load_stack_config(path)


def test_missing_stack_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_stack_config(tmp_path / "Pulumi.nope.yaml")


def test_every_field_is_documented() -> None:
    from gpu_inference.config import KubernetesConfig, LoadBalancerConfig, MonitoringConfig

    for model in (StackConfig, MonitoringConfig, LoadBalancerConfig, KubernetesConfig):
        undocumented = [k for k, doc in field_docs(model).items() if not doc.strip()]
        assert not undocumented, f"{model.__name__} fields without a docstring: {undocumented}"


@given(st.integers())
def test_node_count_accepted_exactly_in_range(n: int) -> None:
    try:
        cfg = parse_stack_config({**BASE, "nodeCount": n})
    except ConfigError as exc:
        assert not 1 <= n <= 64
        assert len(exc.messages) == 1 and "gpu-inference:nodeCount" in exc.messages[0]
    else:
        assert 1 <= n <= 64 and cfg.node_count == n


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_utilization_accepted_exactly_in_range(u: float) -> None:
    try:
        parse_stack_config({**BASE, "gpuMemoryUtilization": u})
    except ConfigError as exc:
        assert not 0 < u <= 1
        assert "gpu-inference:gpuMemoryUtilization" in exc.messages[0]
    else:
        assert 0 < u <= 1


def test_readme_config_table_matches_the_models() -> None:
    from gpu_inference.config_docs import readme_section

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    assert readme_section() in readme, "README's config table drifted: run scripts/update_readme_config.py"


def test_tls_domain_is_refused_on_kubernetes() -> None:
    raw = {**BASE, "provider": "kubernetes", "kubernetes": {"clusterId": "c-1"},
           "loadBalancer": {"tlsDomain": "llm.example.com"}}  # fmt: skip
    with pytest.raises(ConfigError) as info:
        parse_stack_config(raw)
    [message] = info.value.messages
    assert "loadBalancer.tlsDomain" in message and "kubernetes" in message
    assert parse_stack_config({**raw, "loadBalancer": {}}).provider == "kubernetes"


# ---------------------------------------------------------------------------------------------
# Issue 11: injection and bad values — every free-text value is checked against what its consumer accepts
# ---------------------------------------------------------------------------------------------

INJECTIONS = [
    "$(touch${IFS}/tmp/x)",
    "a.com; location ~ ^/metrics { proxy_pass http://vllm_backend; } #",
    "../../etc/x",
    "a.com\nb",
    "a.com\n",
    "%n.example.com",
    "'quoted'",
    "`id`",
    "a b",
]


def _all_models() -> list[type]:
    """StackConfig and every nested config model (new blocks other features add are walked too)."""
    from pydantic import BaseModel

    found: list[type] = []

    def visit(tp: object) -> None:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if tp in found:
                return
            found.append(tp)
            for info in tp.model_fields.values():
                visit(info.annotation)
        for arg in getattr(tp, "__args__", ()) or ():
            visit(arg)

    visit(StackConfig)
    return found


def _unchecked_text(tp: object) -> bool:
    """Whether a type lets arbitrary text through: a bare ``str`` not wrapped in a validating Annotated."""
    from typing import Annotated, Literal, get_args, get_origin

    if tp is str:
        return True
    origin = get_origin(tp)
    if origin is Literal:
        return False
    if origin is Annotated:
        base, *meta = get_args(tp)
        return not any(_is_check(m) for m in meta) and _unchecked_text(base)
    return any(_unchecked_text(a) for a in get_args(tp))


def _is_check(meta: object) -> bool:
    from pydantic import AfterValidator, BeforeValidator, PlainValidator, WrapValidator

    return isinstance(meta, AfterValidator | BeforeValidator | PlainValidator | WrapValidator) or bool(
        getattr(meta, "pattern", None))


def test_every_text_field_of_the_config_has_a_validator() -> None:
    """Walks every field of every config model: a string field (or list of strings) without a pattern, an
    Annotated validator or a field_validator is a value that could reach a rendered file unchecked."""
    unchecked = []
    for model in _all_models():
        validated = {f for dec in model.__pydantic_decorators__.field_validators.values() for f in dec.info.fields}
        for name, info in model.model_fields.items():
            if name in validated or any(_is_check(m) for m in info.metadata):
                continue
            if _unchecked_text(info.annotation):
                unchecked.append(f"{model.__name__}.{name}")
    assert unchecked == [], f"text fields without a validator: {unchecked}"


@pytest.mark.parametrize("value", INJECTIONS)
@pytest.mark.parametrize(
    "key",
    ["loadBalancer.tlsDomain", "servedModelName", "modelRepo", "vllmImage", "region", "gpu", "monitoring.size",
     "loadBalancer.size", "tags", "sshKeys", "kubernetes.clusterId", "kubernetes.namespace",
     "loadBalancer.acmeEmail", "loadBalancer.acmeServer", "loadBalancer.dnsZone"],
)
def test_injected_text_is_refused_with_one_line_naming_the_key(key: str, value: str) -> None:
    raw: dict[str, object] = dict(BASE)
    if key.startswith("kubernetes."):
        raw["provider"] = "kubernetes"
    head, _, tail = key.partition(".")
    item: object = [value] if key in ("tags", "sshKeys") else value
    if tail:
        block = {"clusterId": "8d3b5f0e-2c4a-4f5e-9b1d-3a6c7e8f9a0b"} if head == "kubernetes" else {}
        raw[head] = {**block, tail: item}
    else:
        raw[head] = item
    with pytest.raises(ConfigError) as excinfo:
        parse_stack_config(raw, secret_keys=set())
    [message] = excinfo.value.messages
    assert f"gpu-inference:{key}" in message and "\n" not in message
    assert repr(value)[1:-1] in message or "..." in message  # the value, repr-escaped (a newline shows as \n)


@pytest.mark.parametrize(
    ("domain", "ok"),
    [
        ("api.example.com", True),
        ("API.Example.COM", True),  # lowered
        ("xn--bcher-kva.example", True),
        ("a-b.c-d.io", True),
        ("localhost", False),  # one label: no public certificate for it
        ("*.example.com", False),  # wildcard: HTTP-01 cannot issue one
        ("example.com.", False),
        ("-a.example.com", False),
        ("a-.example.com", False),
        ("a..example.com", False),
        ("a_b.example.com", False),
        ("192.0.2.1", False),
        (("a" * 64) + ".com", False),
        (".".join(["a" * 63] * 4), False),  # 255 characters
        ("bücher.example", False),
    ],
)
def test_tls_domain_is_an_rfc_1123_name(domain: str, ok: bool) -> None:
    raw = {**BASE, "loadBalancer": {"tlsDomain": domain}}
    if ok:
        assert parse_stack_config(raw).load_balancer.tls_domain == domain.lower()
    else:
        with pytest.raises(ConfigError, match=r"loadBalancer\.tlsDomain"):
            parse_stack_config(raw)


@pytest.mark.parametrize(
    ("repo", "ok"),
    [
        ("Qwen/Qwen3-8B", True),
        ("meta-llama/Llama-3.3-70B-Instruct", True),
        ("gpt2", True),
        ("org/model_v1.5", True),
        ("/models/qwen3-8b", True),
        ("org/" + "a" * 96, True),
        ("org/" + "a" * 97, False),
        ("org/name\n", False),
        ("org/name/extra", False),
        ("org/-name", False),
        ("org/name.", False),
        ("org/na--me", False),
        ("org/na..me", False),
        ("org/name.git", False),
        ("org/%n", False),
        ("org/na me", False),
        ("org/$(id)", False),
        ("org/naïve", False),
        ("/models/../etc/shadow", False),
        ("/models/a b", False),
        ("relative/../x", False),
    ],
)
def test_model_repo_is_a_hugging_face_repo_id_or_an_absolute_path(repo: str, ok: bool) -> None:
    raw = {**BASE, "modelRepo": repo}
    if ok:
        assert parse_stack_config(raw).model_repo == repo
    else:
        with pytest.raises(ConfigError, match="modelRepo"):
            parse_stack_config(raw)


@pytest.mark.parametrize(
    ("image", "ok"),
    [
        ("vllm/vllm-openai:v0.19.0", True),
        ("registry.example.com:5000/ml/vllm-openai:0.19.1", True),
        ("vllm/vllm-openai:v0.19.0@sha256:" + "a" * 64, True),
        ("vllm/vllm-openai:v0.19.0\n", False),  # `$` of the old regex matched before the newline
        ("vllm/vllm-openai:latest", False),
        ("vllm/vllm-openai", False),
        ("vllm/VLLM-openai:v0.19.0", False),  # repository paths are lowercase
        ("vllm/vllm-openai:v0.19.0 --privileged", False),
        ("vllm/vllm-openai:v0.19.0;id", False),
        ("vllm//vllm-openai:v0.19.0", False),
    ],
)
def test_vllm_image_is_a_pinned_reference_matched_in_full(image: str, ok: bool) -> None:
    raw = {**BASE, "vllmImage": image}
    if ok:
        assert parse_stack_config(raw).vllm_version.startswith("0.19")
    else:
        with pytest.raises(ConfigError, match="vllmImage"):
            parse_stack_config(raw)


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), "inf", "Infinity", "nan", "1e400"])
@pytest.mark.parametrize("key", ["monthlyBudgetUsd", "gpuMemoryUtilization", "monitoring.ttftP95Seconds",
                                 "monitoring.kvCacheUsageThreshold", "monitoring.gpuTemperatureCelsius",
                                 "monitoring.diskFreeRatio", "monitoring.gpuMemoryUsageThreshold"])
def test_non_finite_numbers_are_refused(key: str, value: object) -> None:
    head, _, tail = key.partition(".")
    raw = {**BASE, head: {tail: value}} if tail else {**BASE, key: value}
    with pytest.raises(ConfigError) as excinfo:
        parse_stack_config(raw)
    [message] = excinfo.value.messages
    assert f"gpu-inference:{key}" in message and "finite" in message


def test_every_float_field_refuses_infinity() -> None:
    """No float key slips through: each one of every config model, set to inf, is an error naming it."""
    for model in _all_models():
        for name, info in model.model_fields.items():
            if info.annotation not in (float, float | None):
                continue
            key = {"StackConfig": ""}.get(model.__name__)
            prefix = "" if key == "" else {"MonitoringConfig": "monitoring", "LoadBalancerConfig": "loadBalancer",
                                           "AutoscalingConfig": "autoscaling"}.get(model.__name__)
            assert prefix is not None, f"add {model.__name__} here"
            camel = name.split("_")[0] + "".join(w.title() for w in name.split("_")[1:])
            # A block's required keys are given, so the only problem is the infinite value.
            block = {"minNodes": 1, "maxNodes": 2} if prefix == "autoscaling" else {}
            raw = {**BASE, prefix: {**block, camel: "inf"}} if prefix else {**BASE, camel: "inf"}
            with pytest.raises(ConfigError, match=camel):
                parse_stack_config(raw)


def test_kubernetes_block_on_a_machine_stack_is_refused() -> None:
    [message] = problems_for(kubernetes={"clusterId": "8d3b5f0e-2c4a-4f5e-9b1d-3a6c7e8f9a0b"})
    assert "gpu-inference:kubernetes" in message and "provider is digitalocean" in message


def test_empty_secure_secret_is_refused_without_echoing_secrets() -> None:
    [message] = problems_for(apiKey={"secure": ""})
    assert "gpu-inference:apiKey" in message and "empty secret" in message
    with pytest.raises(ConfigError) as excinfo:
        parse_stack_config({**BASE, "apiKey": "sk-live\nEVIL=1"}, secret_keys={"apiKey"})
    [message] = excinfo.value.messages
    assert "gpu-inference:apiKey" in message and "single line" in message and "sk-live" not in message


@pytest.mark.parametrize(
    ("provider", "keys", "ok"),
    [
        ("digitalocean", ["3b:16:bf:e4:8b:00:8b:b8:59:8c:a9:d3:f0:19:45:fa"], True),
        ("digitalocean", ["41234567"], True),
        ("digitalocean", ["ops-2026"], False),  # a name: DigitalOcean wants an id or a fingerprint
        ("digitalocean", ["3b:16:bf"], False),
        ("aws", ["ops-2026"], True),
        ("aws", ["ops key"], False),
        ("aws", ["a", "b"], False),  # an instance takes one key pair
    ],
)
def test_ssh_keys_follow_the_clouds_rule(provider: str, keys: list[str], ok: bool) -> None:
    raw = {**BASE, "provider": provider, "sshKeys": keys}
    if provider == "aws":
        raw |= {"region": "us-east-1", "gpu": "g6e.xlarge"}
    if ok:
        assert parse_stack_config(raw).ssh_keys == keys
    else:
        with pytest.raises(ConfigError, match="sshKeys"):
            parse_stack_config(raw)


def test_aws_tags_are_valid_tag_keys() -> None:
    raw = {**BASE, "provider": "aws", "region": "us-east-1", "gpu": "g6e.xlarge"}
    with pytest.raises(ConfigError, match="reserved 'aws:'"):
        parse_stack_config({**raw, "tags": ["aws:owner"]})
    with pytest.raises(ConfigError, match="at most 128"):
        parse_stack_config({**raw, "tags": ["t" * 129]})
    assert parse_stack_config({**raw, "tags": ["env:prod"]}).tags == ["env:prod"]


# ---------------------------------------------------------------------------------------------
# Stack files: one line for every way a file can be wrong
# ---------------------------------------------------------------------------------------------

GOOD_FILE = "".join(f"  gpu-inference:{k}: {v}\n" for k, v in BASE.items())


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("", ["is empty"]),
        ("   \n# only a comment\n", ["is empty"]),
        ("config: [\n", ["not valid YAML", "line 2"]),
        (f"config:\n{GOOD_FILE}  gpu-inference:nodeCount: 1\n  gpu-inference:nodeCount: 2\n",
         ["'gpu-inference:nodeCount' is given twice", "line 8"]),
        (f"config:\n{GOOD_FILE}  gpu-inference:monitoring:\n    retention: 15d\n    retention: 30d\n",
         ["'retention' is given twice"]),
        ("config: {}\nconfig: {}\n", ["'config' is given twice"]),
        ('a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n'
         "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\nconfig: {}\n",
         ["aliases (*a) are not allowed"]),
        (f"config:\n{GOOD_FILE}  gpu-inferenc:nodeCount: 2\n",
         ["gpu-inferenc:nodeCount", "unknown namespace", "did you mean gpu-inference:nodeCount"]),
        (f"config:\n{GOOD_FILE}  gpu-inference:apiKey:\n    secure: ''\n", ["gpu-inference:apiKey", "empty secret"]),
        (f"config:\n{GOOD_FILE}  gpu-inference:kubernetes:\n    clusterId: abc\n",
         ["gpu-inference:kubernetes", "only applies with provider kubernetes"]),
        (f"config:\n{GOOD_FILE}  gpu-inference:monthlyBudgetUsd: .inf\n", ["given twice"]),
        (f"config:\n{GOOD_FILE.replace('1500', '.inf')}", ["gpu-inference:monthlyBudgetUsd", "finite"]),
        (f"config:\n{GOOD_FILE.replace('tor1', '!!binary dG9yMQo=')}", ["explicit YAML tags", "line 3"]),
        ("config:\n  !!set gpu-inference:nodeCount: 1\n", ["explicit YAML tags"]),  # PyYAML crashed on this one
        ("!!timestamp : x\n", ["explicit YAML tags"]),
        (f"config:\n{GOOD_FILE.replace('tor1', '2026-01-01')}", ["gpu-inference:region", "datetime.date"]),
    ],
)
def test_bad_stack_files_get_one_line(tmp_path: Path, text: str, fragments: list[str]) -> None:
    path = tmp_path / "Pulumi.t.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as excinfo:
        load_stack_config(path)
    rendered = excinfo.value.render()
    assert "\n" not in rendered, rendered
    for fragment in fragments:
        assert fragment in rendered, (fragment, rendered)


def test_provider_namespaces_stay_legitimate(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.t.yaml"
    path.write_text(f"config:\n{GOOD_FILE}  digitalocean:token:\n    secure: v1:abc\n  aws:region: us-east-1\n"
                    "  kubernetes:context: doks\n  pulumi:disable-default-providers: []\n", encoding="utf-8")
    assert load_stack_config(path).provider == "digitalocean"


def test_a_directory_is_not_a_stack_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_stack_config(tmp_path)


TEXT_KEYS = ["region", "gpu", "model", "modelRepo", "servedModelName", "vllmImage", "tags", "sshKeys",
             "loadBalancer.tlsDomain", "loadBalancer.size", "monitoring.size", "monitoring.retention"]


@given(key=st.sampled_from(TEXT_KEYS), value=st.text(max_size=60))
def test_fuzzed_text_is_accepted_or_one_config_error_line(key: str, value: str) -> None:
    head, _, tail = key.partition(".")
    item: object = [value] if key in ("tags", "sshKeys") else value
    raw = {**BASE, head: {tail: item}} if tail else {**BASE, head: item}
    try:
        parse_stack_config(raw, secret_keys=set())
    except ConfigError as exc:
        assert all("\n" not in m for m in exc.messages)


_YAML_BITS = ["config:", "\n", "  ", "gpu-inference:", "nodeCount", ": ", "- ", "&a ", "*a", "{", "}", "[", "]",
              "!!python/object:os.system ", "!!binary ", "?", "'", '"', "#", "\t", "1e400", ".inf", "secure: ", "~",
              "<<: ", "---\n", "...\n", "%YAML 1.1\n", "\x00", "provider", "digitalocean", ","]


@given(st.one_of(st.text(max_size=200), st.lists(st.sampled_from(_YAML_BITS), max_size=40).map("".join)))
def test_fuzzed_stack_files_are_read_or_one_config_error(text: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "Pulumi.f.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            load_stack_config(path)
        except ConfigError as exc:
            assert "\n" not in exc.render() or len(exc.messages) > 1


def test_a_private_kubernetes_endpoint_needs_allowed_cidrs() -> None:
    # loadBalancerSourceRanges: [] is no restriction in Kubernetes: the "private" Service would be world-open.
    raw = {**BASE, "provider": "kubernetes", "kubernetes": {"clusterId": "c-1"}, "publicEndpoint": False}
    with pytest.raises(ConfigError) as info:
        parse_stack_config(raw)
    [message] = info.value.messages
    assert "allowedCidrs" in message and "loadBalancerSourceRanges" in message
    assert parse_stack_config({**raw, "allowedCidrs": ["198.51.100.0/24"]}).public_endpoint is False
