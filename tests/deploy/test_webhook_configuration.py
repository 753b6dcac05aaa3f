"""The ValidatingWebhookConfiguration: the essentials the design requires (fail closed for GPU workloads only,
no side effects on dry runs, exclusions, timeout), rules that cover exactly the kinds the webhook understands
(gpuquota.workloads.SUPPORTED_KINDS), and matchConditions evaluated with a real CEL interpreter on realistic
objects of every kind."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuquota.workloads import SCALE_SUBRESOURCES, SUPPORTED_KINDS, gpu_resources, requests_gpu, with_replicas
from gpuquota.workloads.chart import CHART_FILE
from gpuquota.workloads.chart import render as render_kinds
from gpuquota.workloads.gpu_names import parse_entry
from gpuquota.workloads.registry import BY_KEY
from tests.deploy import admission_cel as ac
from tests.deploy.chart import CASE_NAMES, OLDEST_KUBE, case, find, render
from tests.deploy.tools import NAMESPACE, documents, helm, template_args

WORKLOAD_KINDS = sorted(k for k in SUPPORTED_KINDS if k != ("", "Pod"))
POD = ("", "Pod")


def _hooks(name: str = "defaults") -> dict[str, dict[str, Any]]:
    vwc = find(render(name), "ValidatingWebhookConfiguration")
    return {hook["name"]: hook for hook in vwc["webhooks"]}


def _hook_for(kind: tuple[str, str], operation: str = "CREATE") -> dict[str, Any]:
    hooks = _hooks()
    if operation == "DELETE":
        return hooks["releases.gpuquota.io"]
    return hooks["pods.gpuquota.io" if kind == POD else "workloads.gpuquota.io"]


def _resources(rules: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(group, resource) for rule in rules for group in rule["apiGroups"] for resource in rule["resources"]}


def _plural(kind: tuple[str, str]) -> tuple[str, str]:
    return kind[0], kind[1].lower() + "s"


def test_supported_kinds_are_known_to_the_chart() -> None:
    assert POD in SUPPORTED_KINDS
    assert len(WORKLOAD_KINDS) >= 13


@pytest.mark.parametrize("name", CASE_NAMES)
def test_webhook_essentials(name: str) -> None:
    values = case(name).values.get("webhook", {})
    failure_policy = values.get("failurePolicy", "Fail")
    timeout = values.get("timeoutSeconds", 5)
    docs = render(name)
    service = find(docs, "Service", "-webhook")
    hooks = _hooks(name)
    assert set(hooks) == {"workloads.gpuquota.io", "pods.gpuquota.io", "releases.gpuquota.io"}
    for hook_name, hook in hooks.items():
        assert hook["admissionReviewVersions"] == ["v1"]
        assert hook["sideEffects"] == "NoneOnDryRun"  # the ledger reserves, except on dry runs
        assert hook["timeoutSeconds"] == timeout
        assert hook["matchPolicy"] == "Equivalent"
        expected_policy = "Ignore" if hook_name == "releases.gpuquota.io" else failure_policy
        assert hook["failurePolicy"] == expected_policy, hook_name
        svc = hook["clientConfig"]["service"]
        assert svc == {"name": service["metadata"]["name"], "namespace": NAMESPACE, "path": "/validate",
                       "port": service["spec"]["ports"][0]["port"]}
        excluded = hook["namespaceSelector"]["matchExpressions"][0]
        assert excluded["key"] == "kubernetes.io/metadata.name"
        assert excluded["operator"] == "NotIn"
        assert {"kube-system", NAMESPACE} <= set(excluded["values"])
        assert set(values.get("excludeNamespaces", [])) <= set(excluded["values"])
        assert 1 <= len(hook["matchConditions"]) <= 64  # the API server's limit
        names = [c["name"] for c in hook["matchConditions"]]
        assert len(names) == len(set(names))
        for rule in hook["rules"]:
            assert rule["scope"] == "Namespaced"


def test_defaults_fail_closed_within_five_seconds() -> None:
    hooks = _hooks()
    assert hooks["workloads.gpuquota.io"]["failurePolicy"] == "Fail"
    assert hooks["pods.gpuquota.io"]["failurePolicy"] == "Fail"
    assert hooks["workloads.gpuquota.io"]["timeoutSeconds"] == 5


def test_rules_cover_exactly_the_supported_kinds() -> None:
    hooks = _hooks()
    rules = hooks["workloads.gpuquota.io"]["rules"]
    workloads = [rule for rule in rules if not any("/" in r for r in rule["resources"])]
    assert _resources(workloads) == {_plural(k) for k in WORKLOAD_KINDS}
    assert all(rule["operations"] == ["CREATE", "UPDATE"] for rule in workloads)
    scales = [rule for rule in rules if rule not in workloads]
    assert _resources(scales) == {(g, f"{p}/scale") for g, p in map(_plural, SCALE_SUBRESOURCES)}
    assert all(rule["operations"] == ["UPDATE"] and rule["apiVersions"] == ["*"] for rule in scales)
    assert all(rule["apiVersions"] == ["*"] for rule in workloads)  # a new API version cannot slip past
    pods = hooks["pods.gpuquota.io"]["rules"]
    assert _resources(pods) == {("", "pods")}
    assert pods[0]["operations"] == ["CREATE"]
    releases = hooks["releases.gpuquota.io"]["rules"]
    assert _resources(releases) == {_plural(k) for k in WORKLOAD_KINDS}
    assert all(rule["operations"] == ["DELETE"] for rule in releases)


def test_match_conditions_name_every_supported_kind_once() -> None:
    for hook_name, kinds in (("workloads.gpuquota.io", WORKLOAD_KINDS), ("pods.gpuquota.io", [POD]),
                             ("releases.gpuquota.io", WORKLOAD_KINDS)):
        per_kind = [c for c in _hooks()[hook_name]["matchConditions"] if c["name"].endswith("-requests-gpus")]
        named = {c["name"].removesuffix("-requests-gpus") for c in per_kind}
        condition_name = {k: BY_KEY[k].chart_name or k[1].lower() for k in kinds}  # Volcano's Job: volcanojob
        assert named == set(condition_name.values()), hook_name
        for condition in per_kind:
            own = condition["name"].removesuffix("-requests-gpus")
            group, kind = next(k for k in kinds if condition_name[k] == own)
            assert condition["expression"].startswith(
                f"request.kind.group != '{group}' || request.kind.kind != '{kind}' || ")


@pytest.mark.parametrize("name", CASE_NAMES)
def test_every_match_condition_compiles(name: str) -> None:
    for hook in _hooks(name).values():
        for condition in hook["matchConditions"]:
            assert ac.compiles(condition["expression"])
            assert "\n" not in condition["expression"]


def test_release_hook_reads_the_old_object_only() -> None:
    """On DELETE the API server sends `object: null`: a condition touching `object` would fail."""
    for condition in _hooks()["releases.gpuquota.io"]["matchConditions"]:
        expression = condition["expression"].replace("oldObject", "")
        assert "object" not in expression, condition["name"]


def _pod_with(resource: str, case_name: str = "defaults") -> bool:
    spec = ac.pod_spec(ac.container("c", limits={resource: 1}))
    hooks = _hooks(case_name)
    return ac.sent(hooks["pods.gpuquota.io"], ac.request(POD, "CREATE", ac.workload(POD, [spec])))


def test_gpu_resource_names_cover_what_the_webhook_counts() -> None:
    """Every name of the webhook's bundled table is sent by the chart's default conditions (a superset)."""
    resources = case("defaults").values.get("webhook", {}).get("gpuResources") or {}
    assert not resources  # the defaults come from values.yaml, read through a render
    names, prefixes = gpu_resources().match_names()
    for name in names:
        assert _pod_with(name), name
    for prefix in prefixes:
        assert _pod_with(prefix + "gpu.nvidia.com"), prefix
    assert _pod_with("deviceclass.resource.kubernetes.io/gpu.nvidia.com")
    assert not _pod_with("example.com/fpga")


def test_extra_gpu_resources_reach_the_conditions_and_the_flags() -> None:
    assert not _pod_with("nvidia.com/a100")
    assert _pod_with("nvidia.com/a100", "gpu-table")
    assert _pod_with("example.com/vgpu-quarter", "gpu-table")
    deployment = find(render("gpu-table"), "Deployment", "-webhook")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    flags = [a for a in args if a.startswith(("--gpu-resource=", "--gpu-device-class=", "--dra-all-devices="))]
    assert flags == ["--gpu-resource=nvidia.com/a100=nvidia,model=A100-SXM4-80GB",
                     "--gpu-resource=example.com/vgpu-*=nvidia,share=partition,fraction=0.25",
                     "--gpu-device-class=gpu.example.com=nvidia", "--dra-all-devices=4"]
    table = gpu_resources([f.partition("=")[2] for f in flags[:2]], [flags[2].partition("=")[2]])
    assert table.get("nvidia.com/a100") == parse_entry(flags[0].partition("=")[2])[1]
    assert table.device_class("gpu.example.com") is not None


def _annotate_templates(obj: Any, annotations: dict[str, str]) -> None:
    """KAI's annotations on every pod template (and on a Pod itself)."""
    if isinstance(obj, dict):
        if isinstance(obj.get("spec"), dict) and "containers" in obj["spec"]:
            obj.setdefault("metadata", {}).setdefault("annotations", {}).update(annotations)
        for value in obj.values():
            _annotate_templates(value, annotations)
    elif isinstance(obj, list):
        for value in obj:
            _annotate_templates(value, annotations)


@pytest.mark.parametrize("kind", [k for k in sorted(SUPPORTED_KINDS) if k[1] != "TrainJob"])
def test_dra_claims_and_kai_fractions_are_sent(kind: tuple[str, str]) -> None:
    """Neither shows in a resources block: pods with claims and templates with KAI annotations are sent."""
    hook = _hook_for(kind)
    claimed = copy.deepcopy(ac.CPU_SPEC)
    claimed["resourceClaims"] = [{"name": "gpu", "resourceClaimTemplateName": "single-gpu"}]
    with_claims = ac.workload(kind, [claimed, claimed])
    assert requests_gpu(with_claims)
    assert ac.sent(hook, ac.request(kind, "CREATE", with_claims))
    fractional = ac.workload(kind, [ac.CPU_SPEC, ac.CPU_SPEC])
    assert not ac.sent(hook, ac.request(kind, "CREATE", fractional))
    for annotation in ({"gpu-fraction": "0.5"}, {"gpu-memory": "4096"}):
        annotated = copy.deepcopy(fractional)
        _annotate_templates(annotated, annotation)
        assert requests_gpu(annotated)
        assert ac.sent(hook, ac.request(kind, "CREATE", annotated)), annotation


# --- behaviour, evaluated --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(SUPPORTED_KINDS))
def test_gpu_workloads_are_sent_and_cpu_ones_are_not(kind: tuple[str, str]) -> None:
    hook = _hook_for(kind)
    gpu = ac.workload(kind, [ac.CPU_SPEC, ac.GPU_SPEC] if kind != POD else [ac.GPU_SPEC])
    cpu = ac.workload(kind, [ac.CPU_SPEC, ac.CPU_SPEC])
    assert ac.sent(hook, ac.request(kind, "CREATE", gpu))
    # A TrainJob's pods come from its runtime, which the object does not show: every TrainJob is sent.
    assert ac.sent(hook, ac.request(kind, "CREATE", cpu)) is (kind[1] == "TrainJob")


@pytest.mark.parametrize("resource", ["nvidia.com/gpu", "nvidia.com/mig-3g.40gb", "nvidia.com/mig-1g.10gb+me",
                                      "nvidia.com/gpu.shared", "amd.com/gpu", "habana.ai/gaudi"])
def test_every_gpu_resource_name_is_recognised(resource: str) -> None:
    spec = ac.pod_spec(ac.container("c", limits={resource: 1}))
    assert ac.sent(_hook_for(POD), ac.request(POD, "CREATE", ac.workload(POD, [spec])))


def test_gpu_in_init_container_or_requests_only_is_recognised() -> None:
    init = ac.pod_spec(ac.container("main", limits={"cpu": "1"}),
                       init=[ac.container("warmup", limits={"nvidia.com/gpu": 1})])
    requests_only = ac.pod_spec(ac.container("main", requests={"nvidia.com/gpu": 2}))
    for spec in (init, requests_only):
        assert ac.sent(_hook_for(POD), ac.request(POD, "CREATE", ac.workload(POD, [spec])))
    no_resources = ac.pod_spec({"name": "main", "image": "busybox"})
    assert not ac.sent(_hook_for(POD), ac.request(POD, "CREATE", ac.workload(POD, [no_resources])))


def test_ray_job_on_an_existing_cluster_is_not_sent() -> None:
    kind = ("ray.io", "RayJob")
    job = ac.workload(kind, [ac.GPU_SPEC])
    job["spec"] = {"entrypoint": "python train.py", "clusterSelector": {"ray.io/cluster": "shared"}}
    assert not ac.sent(_hook_for(kind), ac.request(kind, "CREATE", job))


@pytest.mark.parametrize("kind", WORKLOAD_KINDS)
def test_updates_are_sent_only_when_spec_or_annotations_change(kind: tuple[str, str]) -> None:
    hook = _hook_for(kind)
    old = ac.workload(kind, [ac.GPU_SPEC, ac.GPU_SPEC])
    status_only = copy.deepcopy(old)
    status_only["status"] = {"active": 2}
    status_only["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "main"}
    status_only["metadata"]["finalizers"] = ["batch.kubernetes.io/job-tracking"]
    assert not ac.sent(hook, ac.request(kind, "UPDATE", status_only, old))
    scaled = copy.deepcopy(old)
    scaled["spec"]["x-scaled"] = True  # any spec change, e.g. more replicas
    assert ac.sent(hook, ac.request(kind, "UPDATE", scaled, old))
    annotated = copy.deepcopy(old)
    annotated["metadata"]["annotations"] = {"gpuquota.io/max-runtime": "48h"}
    assert ac.sent(hook, ac.request(kind, "UPDATE", annotated, old))
    deleting = copy.deepcopy(scaled)
    deleting["metadata"]["deletionTimestamp"] = "2026-11-26T04:00:00Z"
    assert not ac.sent(hook, ac.request(kind, "UPDATE", deleting, old))  # finalizer removal never blocks


@pytest.mark.parametrize("kind", [k for k in WORKLOAD_KINDS if k[1] != "TrainJob"])
def test_an_update_that_drops_the_gpus_is_sent_as_a_release(kind: tuple[str, str]) -> None:
    old = ac.workload(kind, [ac.GPU_SPEC, ac.GPU_SPEC])
    new = ac.workload(kind, [ac.CPU_SPEC, ac.CPU_SPEC])
    assert ac.sent(_hook_for(kind), ac.request(kind, "UPDATE", new, old))
    assert not ac.sent(_hook_for(kind), ac.request(kind, "UPDATE", new, copy.deepcopy(new) | {"status": {}}))


@pytest.mark.parametrize("kind", WORKLOAD_KINDS)
def test_deletes_of_gpu_workloads_reach_the_release_hook(kind: tuple[str, str]) -> None:
    hook = _hook_for(kind, "DELETE")
    gpu = ac.workload(kind, [ac.GPU_SPEC])
    assert ac.sent(hook, ac.request(kind, "DELETE", None, gpu))
    if kind[1] != "TrainJob":
        assert not ac.sent(hook, ac.request(kind, "DELETE", None, ac.workload(kind, [ac.CPU_SPEC])))


def test_requests_for_other_kinds_are_not_filtered_by_foreign_conditions() -> None:
    """Each per-kind condition only speaks about its own kind: a Job request is judged by the Job condition."""
    hook = _hook_for(("batch", "Job"))
    job = ac.workload(("batch", "Job"), [ac.GPU_SPEC])
    assert ac.sent(hook, ac.request(("batch", "Job"), "CREATE", job))
    lookalike = ("example.com", "Job")  # not routed by the rules; if it were, no Job condition would apply
    assert ac.sent(hook, ac.request(lookalike, "CREATE", ac.workload(("batch", "Job"), [ac.CPU_SPEC])))


# --- property: the conditions never hide a workload the webhook would count ------------------------------------

_RESOURCE_NAMES = ["cpu", "memory", "ephemeral-storage", "nvidia.com/gpu", "nvidia.com/mig-2g.20gb",
                   "nvidia.com/gpu.shared", "amd.com/gpu", "habana.ai/gaudi", "example.com/fpga", "rdma/ib",
                   "gpu.intel.com/xe", "amd.com/cpx_nps4", "nvidia.com/gpucores", "nvidia.com/GH100_H100_SXM5_80GB",
                   "deviceclass.resource.kubernetes.io/gpu.nvidia.com", "deviceclass.resource.kubernetes.io/nic"]
_resource_map = st.dictionaries(st.sampled_from(_RESOURCE_NAMES), st.sampled_from([0, 1, 2, 8, "4", "500m"]),
                                max_size=3)
_container = st.builds(lambda n, lim, req: ac.container(f"c{n}", lim, req), st.integers(0, 99),
                       st.none() | _resource_map, st.none() | _resource_map)
_pod_spec = st.builds(lambda cs, init: ac.pod_spec(*cs, init=init),
                      st.lists(_container, min_size=1, max_size=3), st.lists(_container, max_size=1))


@pytest.mark.parametrize("kind", sorted(SUPPORTED_KINDS))
@settings(max_examples=15, deadline=None)
@given(specs=st.lists(_pod_spec, min_size=1, max_size=3))
def test_conditions_are_a_superset_of_what_the_webhook_counts(kind: tuple[str, str], specs: list[ac.PodSpec]) -> None:
    obj = ac.workload(kind, specs)
    if requests_gpu(obj):
        assert ac.sent(_hook_for(kind), ac.request(kind, "CREATE", obj))
        if kind != POD:
            assert ac.sent(_hook_for(kind, "DELETE"), ac.request(kind, "DELETE", None, obj))


# --- the /scale subresource --------------------------------------------------------------------------------------

SCALABLE = sorted(SCALE_SUBRESOURCES)
CHART_KINDS = Path(__file__).resolve().parents[2] / "helm" / "gpuquota" / CHART_FILE


def _chart_kinds() -> list[dict[str, Any]]:
    """The chart's kind list (files/workload-kinds.yaml)."""
    kinds: list[dict[str, Any]] = yaml.safe_load(CHART_KINDS.read_text())
    return kinds


def test_the_charts_kind_list_is_generated_from_the_code() -> None:
    """Stale when a kind changed without ``scripts/generate-chart-kinds``: run it and commit the file."""
    stale = "helm/gpuquota/files/workload-kinds.yaml is stale: run scripts/generate-chart-kinds"
    assert CHART_KINDS.read_text() == render_kinds(), stale
    assert {(k["group"], k["kind"]) for k in _chart_kinds()} == SUPPORTED_KINDS


def test_the_charts_scale_paths_are_the_webhooks() -> None:
    chart = {(k["group"], k["kind"]): tuple(k["scale"]) for k in _chart_kinds() if k.get("scale")}
    assert chart == dict(SCALE_SUBRESOURCES)
    assert set(SCALE_SUBRESOURCES) <= SUPPORTED_KINDS


@pytest.mark.parametrize("kind", SCALABLE)
def test_scale_requests_are_sent_only_when_the_replicas_grow(kind: tuple[str, str]) -> None:
    hook = _hook_for(kind, "UPDATE")
    for before, after, expected in ((2, 5, True), (0, 1, True), (None, 3, True), (5, 2, False), (3, 3, False),
                                    (1, 0, False), (1, None, False)):
        activation = ac.scale_request(kind, before, after)
        assert ac.sent(hook, activation) is expected, (before, after)


@pytest.mark.parametrize("kind", SCALABLE)
def test_the_scale_condition_leaves_the_workload_itself_alone(kind: tuple[str, str]) -> None:
    """Requests on the object (no subResource) are judged by the other conditions only, growing or shrinking."""
    hook = _hook_for(kind, "UPDATE")
    path = SCALE_SUBRESOURCES[kind]
    old = with_replicas(ac.workload(kind, [ac.GPU_SPEC, ac.GPU_SPEC]), path, 4)
    for replicas in (1, 9):
        new = with_replicas(old, path, replicas)
        assert ac.sent(hook, ac.request(kind, "UPDATE", new, old))
        assert ac.sent(hook, ac.request(kind, "UPDATE", new, old) | {"request": {
            **ac.request(kind, "UPDATE", new, old)["request"], "subResource": ""}})


def _render_values(values: dict[str, Any], tmp_path: Path) -> tuple[int, list[dict[str, Any]], str]:
    result = helm(*template_args(values, tmp_path / "values.yaml", OLDEST_KUBE))
    return result.returncode, documents(result.stdout) if result.returncode == 0 else [], result.output


@pytest.mark.parametrize("cert_manager", [False, True])
def test_external_url_points_every_hook_at_a_webhook_outside_the_cluster(cert_manager: bool, tmp_path: Path) -> None:
    url = "https://10.1.2.3:8443/validate"
    bundle = "TUlJQi4uLg=="
    code, docs, output = _render_values({"webhook": {"externalURL": url, "caBundle": bundle},
                                         "tls": {"certManager": {"enabled": cert_manager}}}, tmp_path)
    assert code == 0, output
    vwc = find(docs, "ValidatingWebhookConfiguration")
    assert [hook["clientConfig"] for hook in vwc["webhooks"]] == [{"url": url, "caBundle": bundle}] * 3
    assert "cert-manager.io/inject-ca-from" not in vwc["metadata"].get("annotations", {})  # would overwrite it


def test_external_url_without_ca_bundle_trusts_the_api_servers_roots(tmp_path: Path) -> None:
    code, docs, output = _render_values({"webhook": {"externalURL": "https://gq.example.com/validate"}}, tmp_path)
    assert code == 0, output
    vwc = find(docs, "ValidatingWebhookConfiguration")
    assert [hook["clientConfig"] for hook in vwc["webhooks"]] == [{"url": "https://gq.example.com/validate"}] * 3


@pytest.mark.parametrize("values", [
    {"externalURL": "http://127.0.0.1:8443/validate"},  # the API server calls webhooks over HTTPS only
    {"externalURL": "https://127.0.0.1:8443/validate?x=1"},  # no query (the API server refuses one)
    {"externalURL": "https://127.0.0.1/validate", "caBundle": "-----BEGIN CERTIFICATE-----"},  # PEM, not base64
])
def test_bad_external_webhook_values_are_refused(values: dict[str, Any], tmp_path: Path) -> None:
    code, _, output = _render_values({"webhook": values}, tmp_path)
    assert code != 0
    assert "values don't meet the specifications of the schema" in output or "schema" in output, output
