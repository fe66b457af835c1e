"""The Argo objects in workflows/: schema, references, locks, images and the lab's shape."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import config
import kubernetes_validate
import lifecycle
import ops
import pytest
import yaml

from tests import argo_validate as validate
from tests import pod_spec
from tests.k8s_render import versions

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO / "workflows"
TEMPLATES = {"build-train-image", "train-model", "build-container-image",
             "deploy-container-image", "test-staging", "promote-model", "rollback",
             "gourmetgram-ops", "live-users", "prepare-data"}
DOCS = list(validate.documents(WORKFLOWS))


def by_kind(kind: str) -> dict[str, dict]:
    """The documents of one kind, by name."""
    return {d["metadata"]["name"]: d for _, d in DOCS if d.get("kind") == kind}


def template(wft: str, name: str) -> dict:
    """One template of a WorkflowTemplate."""
    spec = by_kind("WorkflowTemplate")[wft]["spec"]
    return next(t for t in spec["templates"] if t["name"] == name)


def wf_param(wft: str, name: str) -> dict:
    """One workflow argument of a WorkflowTemplate."""
    params = by_kind("WorkflowTemplate")[wft]["spec"]["arguments"]["parameters"]
    return next(p for p in params if p["name"] == name)


# ---- schema, references, locks ---------------------------------------------------------

@pytest.mark.parametrize("label,doc", DOCS, ids=[label for label, _ in DOCS])
def test_document_matches_its_schema(label: str, doc: dict) -> None:
    assert validate.schema_problems(doc) == []


def test_references_and_parameters_resolve() -> None:
    assert validate.reference_problems(DOCS) == []


def test_alias_moves_hold_the_mutex() -> None:
    assert validate.mutex_problems(DOCS) == []


def test_command_line_checker_passes() -> None:
    result = subprocess.run([sys.executable, "-m", "tests.argo_validate"],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def mutated(name: str, change) -> list[tuple[str, dict]]:
    """DOCS with one WorkflowTemplate changed in a copy."""
    docs = copy.deepcopy(DOCS)
    for _, doc in docs:
        if doc.get("kind") == "WorkflowTemplate" and doc["metadata"]["name"] == name:
            change(doc)
    return docs


def steps_of(doc: dict, name: str) -> list[dict]:
    """The steps of a template, flattened."""
    t = next(t for t in doc["spec"]["templates"] if t["name"] == name)
    return [s for group in t["steps"] for s in group]


# Each mistake below must be caught: the checks above would otherwise prove nothing.
def test_schema_check_catches_a_misspelled_key() -> None:
    doc = copy.deepcopy(by_kind("WorkflowTemplate")["train-model"])
    doc["spec"]["templates"][1]["podSpecPach"] = doc["spec"]["templates"][1].pop("podSpecPatch")
    assert "unknown field .spec.templates[1].podSpecPach" in validate.schema_problems(doc)


def test_schema_check_catches_a_misspelled_kind() -> None:
    doc = copy.deepcopy(by_kind("WorkflowTemplate")["train-model"])
    doc["kind"] = "WorkflowTemplat"
    assert any("unknown Argo kind" in p for p in validate.schema_problems(doc))


def test_schema_check_catches_a_wrong_type() -> None:
    doc = copy.deepcopy(by_kind("CronWorkflow")["cron-train"])
    doc["spec"]["schedules"] = {"weekly": "0 3 * * 1"}
    assert validate.schema_problems(doc)


def test_schema_check_catches_the_removed_schedule_field() -> None:
    doc = copy.deepcopy(by_kind("CronWorkflow")["cron-train"])
    doc["spec"]["schedule"] = doc["spec"].pop("schedules")[0]
    assert "spec.schedules: Field required" in validate.schema_problems(doc)


def test_schema_check_catches_a_typo_in_an_embedded_workflow() -> None:
    doc = copy.deepcopy(by_kind("WorkflowTemplate")["train-model"])
    start = next(t for t in doc["spec"]["templates"] if t["name"] == "start-build")
    start["resource"]["manifest"] = start["resource"]["manifest"].replace(
        "workflowTemplateRef", "workflowTemplateRefs")
    assert any("unknown field .spec.workflowTemplateRefs" in p
               for p in validate.schema_problems(doc))


def test_schema_check_catches_event_mistakes() -> None:
    source = copy.deepcopy(by_kind("EventSource")["gourmetgram-push"])
    source["spec"]["webhook"]["push"]["endpiont"] = "/x"
    assert any("endpiont" in p for p in validate.schema_problems(source))
    sensor = copy.deepcopy(by_kind("Sensor")["gourmetgram-train-on-push"])
    sensor["spec"]["dependencies"][0]["eventSource"] = "x"
    assert any("eventSource" in p for p in validate.schema_problems(sensor))
    bus = copy.deepcopy(by_kind("EventBus")["default"])
    assert validate.schema_problems(bus) == []
    bus["spec"]["jetstream"]["version"] = "latest"
    assert validate.schema_problems(bus)
    one_server = copy.deepcopy(by_kind("EventBus")["default"])
    del one_server["spec"]["jetstream"]["streamConfig"]  # streams would want 3 replicas
    assert any("streamConfig replicas" in p for p in validate.schema_problems(one_server))


def test_reference_check_catches_a_missing_template() -> None:
    def change(doc: dict) -> None:
        steps_of(doc, "main")[1]["templateRef"]["template"] = "deploy-it"
    problems = validate.reference_problems(mutated("build-container-image", change))
    assert any("template 'deploy-it' does not exist in deploy-container-image" in p
               for p in problems)


def test_reference_check_catches_an_undeclared_input() -> None:
    def change(doc: dict) -> None:
        t = next(t for t in doc["spec"]["templates"] if t["name"] == "staging-suite")
        t["container"]["command"][-1] = "{{inputs.parameters.model-version}}"
    problems = validate.reference_problems(mutated("test-staging", change))
    assert any("inputs.parameters.model-version" in p for p in problems)


def test_reference_check_catches_a_wrong_output_and_order() -> None:
    def change(doc: dict) -> None:
        steps = steps_of(doc, "main")
        steps[0]["when"] = "'{{steps.train.outputs.parameters.version}}' != ''"
    problems = validate.reference_problems(mutated("train-model", change))
    assert any("has no output parameter 'version'" in p for p in problems)
    assert any("reads train before it ran" in p for p in problems)


def test_reference_check_catches_unpassed_and_unknown_arguments() -> None:
    def change(doc: dict) -> None:
        params = steps_of(doc, "main")[1]["arguments"]["parameters"]
        params[:] = [p for p in params if p["name"] != "tag"] + [{"name": "tags", "value": "x"}]
    problems = validate.reference_problems(mutated("build-container-image", change))
    assert any("does not pass required input 'tag'" in p for p in problems)
    assert any("passes 'tags'" in p for p in problems)


def test_reference_check_catches_a_cron_or_sensor_pointing_nowhere() -> None:
    docs = copy.deepcopy(DOCS)
    for _, doc in docs:
        if doc["kind"] == "CronWorkflow":
            doc["spec"]["workflowSpec"]["workflowTemplateRef"]["name"] = "train"
        if doc["kind"] == "Sensor":
            resource = doc["spec"]["triggers"][0]["template"]["k8s"]["source"]["resource"]
            resource["spec"]["arguments"]["parameters"].append({"name": "epochs", "value": "3"})
    problems = validate.reference_problems(docs)
    assert any("workflowTemplateRef to missing WorkflowTemplate 'train'" in p for p in problems)
    assert any("passes 'epochs', which train-model does not declare" in p for p in problems)


def test_reference_check_catches_workflow_parameters_in_a_shared_template() -> None:
    def change(doc: dict) -> None:
        step = steps_of(doc, "deploy")[0]
        step["arguments"]["parameters"][0]["value"] = "deploy {{workflow.parameters.environment}}"
    problems = validate.reference_problems(mutated("deploy-container-image", change))
    assert any("must not read workflow.parameters.environment" in p for p in problems)


# ---- expressions, run with the real expr engine ------------------------------------------

def test_every_expression_runs_with_every_parameter_value() -> None:
    """Every `{{= }}` compiles and runs in expr, as Argo would, and every podSpecPatch is JSON."""
    assert validate.expression_problems(DOCS) == []
    cases = validate.evaluated(validate.expression_cases(DOCS))
    # Each expression written in workflows/ is evaluated, for each value of what it reads.
    written = sum(text.count("{{=") for path in sorted(WORKFLOWS.rglob("*.yaml"))
                  for text in [path.read_text()] if "{{=" in text)
    comments = sum(line.count("{{=") for path in sorted(WORKFLOWS.rglob("*.yaml"))
                   for line in path.read_text().splitlines() if line.lstrip().startswith("#"))
    distinct = {(c.label, c.field, e) for c, r in cases for e, _ in r.expressions}
    assert len({(label, field) for label, field, _ in distinct}) == len(
        {(c.label, c.field) for c, _ in cases})
    assert len(distinct) == written - comments
    patch = {(v["inputs.parameters.gpu"], v["inputs.parameters.dataset"]): r.value
             for c, r in cases for v in [dict(c.varied)]
             if c.label == "train-model.yaml#0 template train" and c.field == "podSpecPatch"}
    assert set(patch) == {(g, d) for g in ("false", "true") for d in config.DATASETS}
    assert patch["false", "sample"] == "{}"


def broken_train_model(change) -> list[tuple[str, dict]]:
    """DOCS with train-model.yaml's text changed, then parsed again as YAML."""
    text = change((WORKFLOWS / "train-model.yaml").read_text())
    train_model = [d for d in yaml.safe_load_all(text) if d]
    return [*[(label, d) for label, d in DOCS if not label.startswith("train-model.yaml")],
            *[(f"train-model.yaml#{i}", d) for i, d in enumerate(train_model)]]


def test_expression_check_catches_a_more_indented_patch_line() -> None:
    """The form that broke every run: a more-indented line keeps its newline in the string."""
    def indent(text: str) -> str:
        for key in ('"env"', '"volumeMounts"', '"resources"'):
            text = text.replace(f"\n        {key}: [", f"\n          {key}: [").replace(
                f"\n        {key}: {{", f"\n          {key}: {{")
        return text
    docs = broken_train_model(indent)
    patch = next(t for t in dict(docs)["train-model.yaml#0"]["spec"]["templates"]
                 if t["name"] == "train")["podSpecPatch"]
    # YAML kept the newlines around the four more-indented lines (two of them adjacent).
    assert patch.count("\n") == 7
    problems = validate.expression_problems(docs)
    assert problems and all("literal not terminated" in p for p in problems), problems
    assert all("template train podSpecPatch" in p for p in problems)


def test_expression_check_catches_an_expression_cut_short() -> None:
    docs = broken_train_model(lambda text: text.replace('"1"} } }', '"1"}}}'))
    assert any("podSpecPatch" in p and "literal not terminated" in p
               for p in validate.expression_problems(docs))


def test_expression_check_catches_bad_json_and_the_wrong_container() -> None:
    docs = broken_train_model(lambda text: text.replace('"1"} } } ] }', '"1"} } } ], }'))
    assert any("'inputs.parameters.gpu': 'true'}" in p and "not valid JSON" in p
               for p in validate.expression_problems(docs))
    docs = broken_train_model(lambda text: text.replace('[{"name": "main",', '[{"name": "x",'))
    assert any("must patch container 'main'" in p for p in validate.expression_problems(docs))


def test_expression_check_catches_an_unknown_name_and_a_bad_value() -> None:
    docs = broken_train_model(lambda text: text.replace(
        "{{= inputs.parameters.gpu == 'true' ? '{",
        "{{= inputs.parameter.gpu == 'true' ? '{"))
    assert any("podSpecPatch" in p and "inputs.parameter is missing" in p
               for p in validate.expression_problems(docs))
    # asInt of a value that is no number fails at run time: here for each gpu value, with
    # each dataset value (the patch reads both).
    docs = broken_train_model(lambda text: text.replace(
        "{{= inputs.parameters.gpu == 'true' ? '{",
        "{{= asInt(inputs.parameters.gpu) > 0 ? '{"))
    problems = validate.expression_problems(docs)
    assert len(problems) == 4 and all("podSpecPatch" in p for p in problems), problems


def test_mutex_check_catches_a_missing_lock_and_a_deadlock() -> None:
    def drop(doc: dict) -> None:
        del doc["spec"]["synchronization"]
    assert validate.mutex_problems(mutated("rollback", drop)) == [
        f"rollback moves model aliases but does not hold the mutex {validate.MUTEX}"]

    def nest(doc: dict) -> None:
        doc["spec"]["templates"][0]["synchronization"] = {"mutexes": [{"name": validate.MUTEX}]}
    assert any("at workflow level only" in p
               for p in validate.mutex_problems(mutated("deploy-container-image", nest)))

    def forever(doc: dict) -> None:
        del doc["spec"]["activeDeadlineSeconds"]
    assert validate.mutex_problems(mutated("promote-model", forever)) == [
        f"promote-model holds {validate.MUTEX} without spec.activeDeadlineSeconds"]


# ---- the shape of the lab ----------------------------------------------------------------

def test_every_template_of_the_lab_is_there() -> None:
    assert set(by_kind("WorkflowTemplate")) == TEMPLATES
    assert set(by_kind("CronWorkflow")) == {"cron-train"}
    for doc in [*by_kind("WorkflowTemplate").values(), *by_kind("CronWorkflow").values()]:
        spec = doc["spec"].get("workflowSpec", doc["spec"])
        assert spec["serviceAccountName"] == "argo-workflow", doc["metadata"]["name"]


def test_train_model_parameters() -> None:
    assert wf_param("train-model", "scenario")["enum"] == list(config.SCENARIOS)
    assert wf_param("train-model", "gpu")["enum"] == ["false", "true"]
    assert wf_param("train-model", "dataset")["enum"] == list(config.DATASETS)
    assert wf_param("train-model", "dataset")["value"] == config.TrainConfig.dataset
    assert wf_param("train-model", "subset")["value"] == str(config.TrainConfig.subset)
    train = template("train-model", "train")
    assert train["container"]["command"] == [
        "python", "flow.py", "{{inputs.parameters.scenario}}",
        "--dataset", "{{inputs.parameters.dataset}}", "--subset", "{{inputs.parameters.subset}}"]
    out = train["outputs"]["parameters"][0]
    assert out["valueFrom"]["path"] == str(config.DEFAULT_VERSION_FILE)
    steps = {s["name"]: s for g in template("train-model", "main")["steps"] for s in g}
    assert list(steps) == ["image", "build-image", "mark-current", "prepare-data", "train",
                           "build"]
    # Argo's engine decides it: a build only for a registered version, and only when asked.
    from tests.argo_expr import render, should_execute

    when = steps["build"]["when"]
    cases = [(v, b) for v in ("", "7") for b in ("true", "false")]
    rendered = render([(when, {"steps.train.outputs.parameters.model-version": v,
                               "workflow.parameters.build": b}) for v, b in cases])
    decided = should_execute([" ".join(r.value.split()) for r in rendered])
    assert [run for run, error in decided if not error] == [False, False, True, False], decided
    assert wf_param("train-model", "build") == {
        **wf_param("train-model", "build"), "value": "true", "enum": ["true", "false"]}


def test_gpu_patch_targets_the_gpu_node_only_when_asked() -> None:
    patches = validate.pod_spec_patches(template("train-model", "train"), dataset="sample")
    gpu, cpu = patches["true"], patches["false"]
    assert gpu["nodeSelector"] == {"gourmetgram.io/gpu": "true"}
    (main,) = gpu["containers"]
    assert main["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    # No silent fallback to the CPU: the trainer fails when torch sees no GPU.
    assert {"name": config.ENV_NAMES["device"], "value": "cuda"} in main["env"]
    (shm,) = [m for m in main["volumeMounts"] if m["mountPath"] == "/dev/shm"]
    (volume,) = [v for v in gpu["volumes"] if v["name"] == shm["name"]]
    assert volume["emptyDir"]["medium"] == "Memory"
    assert cpu == {}
    assert "inputs.parameters.gpu == 'true'" in template("train-model", "train")["podSpecPatch"]


DATASET_SWITCH = re.compile(
    r"\{\{= inputs\.parameters\.dataset == '(\w+)' \? '([^']*)' : '([^']*)' \}\}")


def data_dirs(text: str) -> dict[str, str]:
    """FOOD11_DATA_DIR of the train step for each data set (the expression's two branches)."""
    (match,) = DATASET_SWITCH.finditer(text)
    assert match[0] == text, text
    return {d: match[2] if d == match[1] else match[3] for d in config.DATASETS}


def claims() -> dict[str, dict]:
    """The PersistentVolumeClaims in workflows/, by name."""
    return {d["metadata"]["name"]: d for _, d in DOCS if d.get("kind") == "PersistentVolumeClaim"}


def test_food11_volume_is_filled_by_prepare_data_and_read_only_in_training() -> None:
    """prepare-data writes where training reads, on the claim of the node that trains."""
    import food11_data

    prepare, train = template("prepare-data", "prepare"), template("train-model", "train")
    (volume,) = prepare["volumes"]
    claim = volume["persistentVolumeClaim"]["claimName"]
    # local-path volumes live on one node: the GPU node has a claim of its own.
    assert validate.branches(claim) == {"false": "food11-data", "true": "food11-data-gpu"}
    assert set(validate.branches(claim).values()) == set(claims())
    assert all(c["metadata"]["namespace"] == "argo" for c in claims().values())
    (wmount,) = prepare["container"]["volumeMounts"]
    assert "readOnly" not in wmount
    # Training reads the same claim, read-only, at the same place (see train_pods).
    for gpu, claim_name in validate.branches(claim).items():
        spec = train_pod(gpu, "food11")["spec"]
        (main,) = spec["containers"]
        (mount,) = [m for m in main["volumeMounts"] if m["mountPath"] == wmount["mountPath"]]
        (data,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
        assert data["persistentVolumeClaim"] == {"claimName": claim_name, "readOnly": True}
        assert mount["readOnly"] is True
    command = prepare["container"]["command"]
    assert command[:3] == ["python", "food11_data.py", "prepare"]
    args = food11_data.parser().parse_args(command[2:])
    assert args.url == food11_data.URL and args.expect_counts == food11_data.COUNTS
    env = {e["name"]: e for e in train["container"]["env"]}
    dirs = data_dirs(env[config.ENV_NAMES["data_dir"]]["value"])
    dest = str(args.dest)
    assert dirs["food11"] == dest and dest.startswith(mount["mountPath"] + "/")
    # the sample set is the one the training image bakes in
    dockerfile = (REPO / "train" / "Dockerfile").read_text()
    assert f"RUN python sample_data.py {dirs['sample']}\n" in dockerfile
    # With gpu=true the prepare pod goes where the GPU training pod goes.
    gpu_patch = validate.pod_spec_patches(prepare)["true"]
    train_patch = validate.pod_spec_patches(train, dataset="food11")["true"]
    assert gpu_patch["nodeSelector"] == train_patch["nodeSelector"]
    assert gpu_patch["tolerations"] == train_patch["tolerations"]
    assert validate.pod_spec_patches(prepare)["false"] == {}


TRAIN_INPUTS = {"scenario": "normal", "subset": "0", "image": "registry:5000/gourmetgram-train:x"}


def train_pod(gpu: str, dataset: str, train: dict | None = None) -> dict:
    """The pod of train-model's train step for these gpu and dataset values."""
    train = train or template("train-model", "train")
    return pod_spec.pod(train, {**TRAIN_INPUTS, "gpu": gpu, "dataset": dataset})


def data_mount_problems(train: dict) -> list[str]:
    """Each pod of the train step must mount its node's Food-11 claim for food11 only."""
    problems = []
    for gpu in ("false", "true"):
        for dataset in config.DATASETS:
            found = pod_spec.claims(train_pod(gpu, dataset, train))
            wanted = ({"/mnt/food11-data": "food11-data" + ("-gpu" if gpu == "true" else "")}
                      if dataset == "food11" else {})
            if found != wanted:
                problems.append(f"gpu={gpu} dataset={dataset}: claims {found}, not {wanted}")
    return problems


def test_train_pod_mounts_the_food11_claim_only_for_food11() -> None:
    """A sample run mounts no claim: a local-path volume would pin it to one node."""
    assert data_mount_problems(template("train-model", "train")) == []
    minor = versions()["kubernetes_minor"]
    for gpu in ("false", "true"):
        for dataset in config.DATASETS:
            manifest = train_pod(gpu, dataset)
            kubernetes_validate.validate(manifest, minor, strict=True)
            env = {e["name"]: e.get("value") for e in manifest["spec"]["containers"][0]["env"]}
            mounts = pod_spec.claims(manifest)
            # The data the trainer reads is on the mounted claim, or baked into the image.
            assert any(env[config.ENV_NAMES["data_dir"]].startswith(path + "/")
                       for path in mounts) == (dataset == "food11")
            assert ("nodeSelector" in manifest["spec"]) == (gpu == "true")


def test_data_mount_check_catches_a_claim_mounted_for_every_data_set() -> None:
    """The form that pinned every CPU run to one node: the claim in the template itself."""
    train = copy.deepcopy(template("train-model", "train"))
    train["container"]["volumeMounts"] = [
        {"name": "food11-data", "mountPath": "/mnt/food11-data", "readOnly": True}]
    train["volumes"] = [{"name": "food11-data", "persistentVolumeClaim": {
        "claimName": "food11-data{{= inputs.parameters.gpu == 'true' ? '-gpu' : '' }}",
        "readOnly": True}}]
    problems = data_mount_problems(train)
    assert len(problems) == 2 and all("dataset=sample" in p for p in problems), problems
    # A patch that forgets the mount leaves the volume unmounted: still pinned, still caught.
    train = copy.deepcopy(template("train-model", "train"))
    train["podSpecPatch"] = train["podSpecPatch"].replace(
        '"mountPath": "/mnt/food11-data", "readOnly": true}', '"mountPath": "/mnt/x"}')
    assert any("not mounted" in p or "/mnt/x" in p for p in data_mount_problems(train))


def test_pod_spec_merge_follows_the_merge_keys() -> None:
    """Volumes merge by name, mounts by mountPath, `$patch: delete` removes an element."""
    original = {"volumes": [{"name": "a", "emptyDir": {}}], "containers": [
        {"name": "main", "image": "x", "volumeMounts": [{"name": "a", "mountPath": "/a"}]}]}
    patch = {"volumes": [{"name": "a", "$patch": "delete"}, {"name": "b", "emptyDir": {}}],
             "containers": [{"name": "main", "volumeMounts": [{"name": "b", "mountPath": "/a"}],
                             "env": [{"name": "E", "value": "1"}]}],
             "nodeSelector": {"k": "v"}}
    assert pod_spec.strategic_merge(original, patch) == {
        "volumes": [{"name": "b", "emptyDir": {}}], "nodeSelector": {"k": "v"},
        "containers": [{"name": "main", "image": "x", "env": [{"name": "E", "value": "1"}],
                        "volumeMounts": [{"name": "b", "mountPath": "/a"}]}]}


def test_train_model_prepares_food11_before_training_and_only_for_food11() -> None:
    """After the image steps (prepare-data runs the current image), before train."""
    groups = template("train-model", "main")["steps"]
    names = [s["name"] for g in groups for s in g]
    assert all(len(g) == 1 for g in groups)
    (prepare,) = groups[names.index("prepare-data")]
    assert prepare["templateRef"] == {"name": "prepare-data", "template": "prepare"}
    assert prepare["when"] == "'{{workflow.parameters.dataset}}' == 'food11'"
    assert prepare["arguments"]["parameters"] == [
        {"name": "gpu", "value": "{{workflow.parameters.gpu}}"}]
    assert names.index("mark-current") < names.index("prepare-data") < names.index("train")


def submission(**params: str) -> tuple[str, dict]:
    """What `argo submit --from workflowtemplate/train-model -p K=V ...` creates."""
    return "submitted", {"apiVersion": validate.API_VERSION, "kind": "Workflow",
                         "metadata": {"generateName": "train-model-", "namespace": "argo"},
                         "spec": {"workflowTemplateRef": {"name": "train-model"}, "arguments": {
                             "parameters": [{"name": k, "value": v} for k, v in params.items()]}}}


def test_food11_submissions_pass_the_template_checks() -> None:
    """-p dataset=food11 (with or without the GPU) is valid; a value off the enum is not."""
    for params in ({"dataset": "food11"}, {"dataset": "food11", "subset": "50"},
                   {"dataset": "food11", "gpu": "true", "subset": "0"}):
        label, doc = submission(**params)
        assert validate.schema_problems(doc) == []
        assert validate.reference_problems([*DOCS, (label, doc)]) == [], params
        assert config.load_config({k: v for k, v in params.items() if k != "gpu"}, env={})
    problems = validate.reference_problems([*DOCS, submission(dataset="food101")])
    assert problems == ["submitted: dataset='food101' is not one of ['sample', 'food11']"]
    problems = validate.reference_problems([*DOCS, submission(dataset="food11", epochs="3")])
    assert problems == ["submitted: passes 'epochs', which train-model does not declare"]
    # The schedule and the sensor start the synthetic set, explicitly.
    cron = by_kind("CronWorkflow")["cron-train"]["spec"]["workflowSpec"]["arguments"]
    assert {"name": "dataset", "value": "sample"} in cron["parameters"]


def test_cron_train_schedules_one_run_at_a_time() -> None:
    spec = by_kind("CronWorkflow")["cron-train"]["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["schedules"] and all(len(s.split()) == 5 for s in spec["schedules"])
    assert spec["workflowSpec"]["workflowTemplateRef"] == {"name": "train-model"}


def test_promotion_paths_match_the_lifecycle_rules() -> None:
    sources = wf_param("promote-model", "source-environment")["enum"]
    targets = wf_param("promote-model", "target-environment")["enum"]
    assert sources == list(lifecycle.PROMOTIONS)
    assert targets == list(lifecycle.PROMOTIONS.values())
    assert wf_param("rollback", "environment")["enum"] == list(lifecycle.ENVIRONMENTS)
    assert wf_param("deploy-container-image", "environment")["enum"] == list(
        lifecycle.ENVIRONMENTS)


def test_staging_alias_moves_only_after_deploy_and_before_tests() -> None:
    names = [s["name"] for g in template("build-container-image", "main")["steps"] for s in g]
    assert names == ["build", "deploy", "test"]
    deploy = [s for g in template("deploy-container-image", "deploy")["steps"] for s in g]
    args = [s["arguments"]["parameters"][0]["value"].split()[0] for s in deploy]
    assert args == ["deploy", "record-deploy"]
    test = [s for g in template("test-staging", "test")["steps"] for s in g]
    assert [s["name"] for s in test] == ["staging-suite", "approve"]


# A plausible value for each ops.py option, to stand in for {{...}} in the YAML.
SAMPLE_VALUES = {"--env": "staging", "--source": "staging", "--target": "canary",
                 "--version": "3", "--tag": "staging-3", "--timeout": "300", "--out": "/model",
                 "--window": "10m"}


def ops_calls() -> list[list[str]]:
    """The ops.py command lines of the workflows, with sample values for the parameters."""
    lines = []
    for _, doc in DOCS:
        for t in doc.get("spec", {}).get("templates") or []:
            for step in validate.calls(t):
                if (step.get("templateRef") or {}).get("name") == "gourmetgram-ops":
                    lines.append(step["arguments"]["parameters"][0]["value"].split())
            for init in t.get("initContainers") or []:
                if init["command"][:2] == ["python", "ops.py"]:
                    lines.append(init["command"][2:])
    for words in lines:
        for i, word in enumerate(words):
            if "{{" in word:
                words[i] = SAMPLE_VALUES[words[i - 1]]
    return lines


def test_every_ops_call_parses_with_the_real_command_line() -> None:
    calls = ops_calls()
    assert {c[0] for c in calls} >= {"deploy", "record-deploy", "approve", "check-promotion",
                                     "rollback-target", "record-rollback", "download",
                                     "canary-analysis"}
    for words in calls:
        args = ops.parser().parse_args(words)
        assert args.func.__name__ == "cmd_" + words[0].replace("-", "_")
    # The commands the mutex check looks for are real ops.py commands.
    (commands,) = [a.choices for a in ops.parser()._actions if a.choices and "approve" in a.choices]
    assert set(validate.ALIAS_COMMANDS) <= set(commands)


# ---- images --------------------------------------------------------------------------------

def images() -> list[str]:
    """Every image named by a container, init container or script of a template."""
    found = []
    for _, doc in DOCS:
        for t in doc.get("spec", {}).get("templates") or []:
            for c in [t.get("container"), t.get("script"), *(t.get("initContainers") or [])]:
                if c:
                    found.append(c["image"])
    return found


TRAIN_IMAGE = "{{inputs.parameters.train-image}}"  # from the ConfigMap gourmetgram-config
TRAINED_IMAGE = "{{inputs.parameters.image}}"  # the content-tagged image, from the image step
IMAGE_OUTPUT = "{{steps.image.outputs.parameters.image}}"


def test_every_image_is_pinned_and_known() -> None:
    pins = versions()
    app = "{{inputs.parameters.registry}}/gourmetgram-app:"
    found = set(images())
    for image in found - {TRAIN_IMAGE, TRAINED_IMAGE}:
        name, _, tag = image.rpartition(":")
        assert name and tag and tag != "latest", image
        assert image in (pins["buildkit_image"], pins["crane_image"]) or (
            image.startswith(app)), image
    assert pins["buildkit_image"].endswith("-rootless")
    assert {TRAIN_IMAGE, TRAINED_IMAGE, pins["buildkit_image"], pins["crane_image"]} <= found
    # Training runs the content-tagged image that the image step named (with gpu=true its
    # tag ends in -cuda: tests/test_image_tag.py); nothing else runs it.
    assert [i for i in images() if i == TRAINED_IMAGE] == [
        template("train-model", "train")["container"]["image"]]


def test_the_training_image_name_comes_from_the_configmap_alone() -> None:
    users = {f"{doc['metadata']['name']}/{t['name']}": t for _, doc in DOCS
             for t in doc.get("spec", {}).get("templates") or []
             if any(TRAIN_IMAGE in text for text in validate.strings(t))}
    assert set(users) == {"build-container-image/build", "gourmetgram-ops/ops",
                          "live-users/play", "prepare-data/prepare"}
    for t in users.values():
        (param,) = [p for p in t["inputs"]["parameters"] if p["name"] == "train-image"]
        # No value or default to fall back on: a missing key fails the step, visibly.
        assert param == {"name": "train-image", "valueFrom": {"configMapKeyRef": {
            "name": "gourmetgram-config", "key": "train-image"}}}
        # The key names the moving tag "current": a node must ask the registry each time.
        for c in [t.get("container"), *(t.get("initContainers") or [])]:
            if c and c["image"] == TRAIN_IMAGE:
                assert c["imagePullPolicy"] == "Always", t["name"]


def test_training_runs_the_image_of_its_own_code() -> None:
    """train-model computes the content tag, builds it when missing, then trains in it."""
    steps = {s["name"]: s for g in template("train-model", "main")["steps"] for s in g}
    image, build, current, train = (steps[n] for n in ("image", "build-image", "mark-current",
                                                       "train"))
    for step, name in ((image, "image"), (build, "build"), (current, "mark-current")):
        assert step["templateRef"] == {"name": "build-train-image", "template": name}
    assert build["when"] == "'{{steps.image.outputs.parameters.exists}}' == 'false'"
    # Only a CPU image becomes "current": the lifecycle steps run on CPU nodes.
    assert current["when"] == "'{{workflow.parameters.gpu}}' == 'false'"
    args = {s["name"]: {p["name"]: p["value"] for p in s["arguments"]["parameters"]}
            for s in (image, build, current, train)}
    assert args["build-image"]["image"] == args["mark-current"]["image"] == IMAGE_OUTPUT
    assert args["train"]["image"] == IMAGE_OUTPUT
    gpu = "{{workflow.parameters.gpu}}"
    assert args["image"]["gpu"] == args["build-image"]["gpu"] == args["train"]["gpu"] == gpu
    assert template("train-model", "train")["container"]["image"] == TRAINED_IMAGE
    # build-train-image on its own runs the same three templates in the same order.
    own = [s for g in template("build-train-image", "main")["steps"] for s in g]
    assert [s["template"] for s in own] == ["image", "build", "mark-current"]
    assert own[2]["when"] == current["when"]
    outputs = {p["name"] for p in template("build-train-image", "image")["outputs"]["parameters"]}
    assert outputs == {"image", "exists"}


def test_no_step_waits_for_ever() -> None:
    """A pod that cannot start (no image, no node) fails the workflow within a deadline."""
    for name in ("train-model", "build-train-image"):
        assert 0 < by_kind("WorkflowTemplate")[name]["spec"]["activeDeadlineSeconds"] <= 4 * 3600
    for name in ("image", "mark-current"):
        assert template("build-train-image", name)["activeDeadlineSeconds"] <= 300
    assert template("build-train-image", "build")["activeDeadlineSeconds"] <= 3600


def test_build_train_image_pushes_what_training_runs_for_cpu_and_gpu() -> None:
    build = template("build-train-image", "build")["container"]
    env = {e["name"]: validate.branches(e["value"]) for e in build["env"]}
    script = build["args"][0]
    assert '--output=type=image,name="$IMAGE",push=true,registry.insecure=true' in script
    assert '--opt=build-arg:TORCH_INDEX="$TORCH_INDEX"' in script
    assert env["IMAGE"] == {"false": TRAINED_IMAGE, "true": TRAINED_IMAGE}
    wheels = "https://download.pytorch.org/whl/"
    assert env["TORCH_INDEX"] == {"false": wheels + "cpu", "true": wheels + "cu130"}
    # The Dockerfile's own default is the CPU index, so a plain `docker build` matches.
    dockerfile = (REPO / "train" / "Dockerfile").read_text()
    assert f"ARG TORCH_INDEX={wheels}cpu\n" in dockerfile
    # Both templates take the same switch.
    assert wf_param("build-train-image", "gpu")["enum"] == wf_param("train-model", "gpu")["enum"]
    assert wf_param("build-train-image", "gpu")["value"] == "false"


CACHE_EXPORT = ("type=registry,ref={ref},mode=max,registry.insecure=true,ignore-error=true")
CACHE_IMPORT = "type=registry,ref={ref},registry.insecure=true"


def test_both_image_builds_reuse_a_registry_cache() -> None:
    """Each build exports its layers to a cache image and imports it when the registry has it."""
    refs = {}
    for wft, repository in (("build-train-image", "gourmetgram-train"),
                            ("build-container-image", "gourmetgram-app")):
        container = template(wft, "build")["container"]
        script = container["args"][0]
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["REGISTRY"] == "{{inputs.parameters.registry}}"
        (cache,) = re.findall(r'^cache="([^"]+)"$', script, re.M)
        assert cache.startswith(f"$REGISTRY/{repository}:")
        # The importer is added only when the cache image answers, and the log says which.
        (url,) = re.findall(r'^url="([^"]+)"$', script, re.M)
        tag = cache.rpartition(":")[2]
        assert url == f"http://$REGISTRY/v2/{repository}/manifests/{tag}"
        assert 'if wget --spider --header "Accept: $MANIFESTS" "$url"' in script
        assert f'import="--import-cache={CACHE_IMPORT.format(ref="$cache")}"' in script
        assert 'echo "build cache: importing $cache"' in script
        assert "not found (first build)" in script
        export = CACHE_EXPORT.format(ref="$cache")
        assert export in script.replace('ref="$cache"', "ref=$cache"), wft
        assert re.search(r"^\s+\$import$", script, re.M), "the import flag must not be quoted"
        refs[wft] = {gpu: cache.replace("$CACHE_TAG", value) for gpu, value in
                     validate.branches(env.get("CACHE_TAG", tag)).items()}
    # The CPU and CUDA builds install different wheels: each keeps its own cache.
    train = refs["build-train-image"]
    assert train["false"] != train["true"] and train["true"].endswith("-cuda")
    assert refs["build-container-image"]["false"] == "$REGISTRY/gourmetgram-app:buildcache"


def test_both_image_builds_run_buildkit_the_same_way() -> None:
    """The two rootless BuildKit pods agree on what makes BuildKit work in a pod."""
    builds = [template(wft, "build") for wft in ("build-train-image", "build-container-image")]
    shared = []
    for build in builds:
        container = build["container"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in build["volumes"]}
        assert volumes["buildkit"] == {"name": "buildkit", "emptyDir": {}}
        assert "buildctl-daemonless.sh" in " ".join(container["command"] + container["args"])
        shared.append((container["image"], container["securityContext"],
                       env["BUILDKITD_FLAGS"], mounts["buildkit"]))
    assert shared[0] == shared[1]
    image, security, flags, state = shared[0]
    assert image == versions()["buildkit_image"]
    assert flags == "--oci-worker-no-process-sandbox"
    # Rootless BuildKit keeps its state in the home of its unprivileged user (uid 1000).
    assert security["runAsUser"] == 1000 and state == "/home/user/.local/share/buildkit"
    assert security["seccompProfile"] == security["appArmorProfile"] == {"type": "Unconfined"}


def test_app_images_follow_the_env_version_pattern() -> None:
    build = template("build-container-image", "build")["container"]["env"]
    image = next(e["value"] for e in build if e["name"] == "IMAGE")
    assert image == ("{{inputs.parameters.registry}}/gourmetgram-app:"
                     "staging-{{inputs.parameters.version}}")
    suite = template("test-staging", "staging-suite")["container"]["image"]
    assert suite.endswith("gourmetgram-app:staging-{{inputs.parameters.version}}")
    retag = template("promote-model", "retag")["container"]["args"]
    assert retag[-2].endswith("/gourmetgram-app:{{inputs.parameters.from}}")


# ---- linters --------------------------------------------------------------------------------

def test_yaml_passes_yamllint() -> None:
    files = sorted(str(p) for p in WORKFLOWS.rglob("*.yaml"))
    config_file = REPO / ".yamllint"
    cfg = ["-c", str(config_file)] if config_file.exists() else [
        "-d", "{extends: default, rules: {line-length: {max: 120}}}"]
    result = subprocess.run([sys.executable, "-m", "yamllint", "-s", *cfg, *files],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_event_rbac_passes_kubernetes_schema() -> None:
    k8s_kinds = [d for _, d in DOCS if d.get("apiVersion", "").startswith(
        ("v1", "rbac.authorization.k8s.io"))]
    assert {d["kind"] for d in k8s_kinds} == {"ServiceAccount", "Role", "RoleBinding",
                                              "PersistentVolumeClaim"}
    minor = versions()["kubernetes_minor"]
    result = subprocess.run(
        [str(Path(sys.executable).parent / "kubernetes-validate"), "--strict",
         "--kubernetes-version", minor, str(WORKFLOWS / "events" / "rbac.yaml"),
         str(WORKFLOWS / "food11-data.yaml")],
        capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# ---- resources -----------------------------------------------------------------------------

def pod_containers(docs: list[tuple[str, dict]] = DOCS) -> dict[str, dict]:
    """Every container, init container and script of the templates, by wft/template/name."""
    found = {}
    for _, doc in docs:
        for t in doc.get("spec", {}).get("templates") or []:
            for kind in ("container", "script"):
                if t.get(kind):
                    found[f"{doc['metadata']['name']}/{t['name']}/main"] = t[kind]
            for init in t.get("initContainers") or []:
                found[f"{doc['metadata']['name']}/{t['name']}/{init['name']}"] = init
    return found


def resource_problems(docs: list[tuple[str, dict]] = DOCS) -> list[str]:
    """Containers without cpu and memory requests and a memory limit at least the request."""
    problems = []
    for label, c in pod_containers(docs).items():
        requests = (c.get("resources") or {}).get("requests") or {}
        limits = (c.get("resources") or {}).get("limits") or {}
        if not {"cpu", "memory"} <= requests.keys():
            problems.append(f"{label}: needs cpu and memory requests")
        elif "memory" not in limits:
            problems.append(f"{label}: needs a memory limit")
        elif config.parse_quantity(limits["memory"]) < config.parse_quantity(requests["memory"]):
            problems.append(f"{label}: memory limit below its request")
    return problems


# The steps whose memory was measured (config.MEMORY_PEAKS) and the container that runs each.
MEASURED = {"train": "train-model/train/main",
            "download": "build-container-image/build/download-model",
            "ops": "gourmetgram-ops/ops/main",
            "staging-suite": "test-staging/staging-suite/main"}


def test_every_container_has_requests_and_a_memory_limit() -> None:
    assert len(pod_containers()) >= 9
    assert resource_problems() == []


def test_resource_check_catches_a_missing_request_or_limit() -> None:
    def drop(path: tuple[str, ...]):
        def change(doc: dict) -> None:
            t = next(t for t in doc["spec"]["templates"] if t["name"] == path[0])
            c = t["initContainers"][0] if path[1] == "init" else t["container"]
            node = c
            for key in path[2:-1]:
                node = node[key]
            del node[path[-1]]
        return change
    cases = {("build", "init", "resources", "requests", "cpu"): "needs cpu and memory requests",
             ("build", "main", "resources", "limits"): "needs a memory limit"}
    for path, text in cases.items():
        problems = resource_problems(mutated("build-container-image", drop(path)))
        assert any(text in p for p in problems), path

    def lower(doc: dict) -> None:
        doc["spec"]["templates"][1]["container"]["resources"]["limits"]["memory"] = "1Mi"
    assert any("below its request" in p for p in resource_problems(mutated("train-model", lower)))


def test_memory_limits_cover_the_measured_peaks() -> None:
    """Each measured step may use its peak; training reserves all of it (request = limit)."""
    containers = pod_containers()
    assert set(MEASURED) == set(config.MEMORY_PEAKS)
    for step, label in MEASURED.items():
        resources = containers[label]["resources"]
        peak = config.parse_quantity(config.MEMORY_PEAKS[step])
        assert config.parse_quantity(resources["limits"]["memory"]) >= peak, step
    # The scheduler places training only where its whole peak fits: a student's scenario
    # cannot push a node out of memory, and the pod is refused (Pending) where it does not fit.
    train = containers[MEASURED["train"]]["resources"]
    assert train["requests"]["memory"] == train["limits"]["memory"]
    assert config.parse_quantity(train["limits"]["memory"]) >= config.parse_quantity(
        config.MEMORY_PEAKS["train"])


def test_train_readme_states_the_train_pods_memory_request() -> None:
    """train/README.md explains the oversized peak against what the train pod reserves."""
    readme = (REPO / "train" / "README.md").read_text()
    request = pod_containers()[MEASURED["train"]]["resources"]["requests"]["memory"]
    (stated,) = re.findall(r"The train pod reserves (\S+) \(request = limit", readme)
    assert stated == request
