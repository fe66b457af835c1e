"""Check the workflow YAML offline: Argo's schema, references between templates, parameters.

    python -m tests.argo_validate         # prints each problem; exit code 1 if any

The schema comes from hera's generated models (Argo Workflows 4.0, with the Argo Events
kinds). Those models drop fields they do not know, so each document is also compared with
its validated copy: a misspelled key shows up as "unknown field". Every `{{= ... }}`
expression is run with the real expr engine (tests/argo_expr.py, tests/exprcheck/) for
every value its parameters can take, and each podSpecPatch it gives must be JSON.
"""

from __future__ import annotations

import itertools
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from hera.workflows import models as argo
from hera.workflows.models.github.com.argoproj.argo_events.pkg.apis.events import (
    v1alpha1 as events,
)
from pydantic import ValidationError

from tests import argo_expr

HERE = Path(__file__).resolve().parent.parent / "workflows"
API_VERSION = "argoproj.io/v1alpha1"
NAMESPACES = {"WorkflowTemplate": "argo", "CronWorkflow": "argo", "Workflow": "argo",
              "EventSource": "argo-events", "Sensor": "argo-events", "EventBus": "argo-events"}
MUTEX = "gourmetgram-model-aliases"
# ops.py commands that move a model alias; workflows that run them must hold MUTEX.
ALIAS_COMMANDS = ("set-alias", "record-deploy", "record-rollback")
# Variables Argo defines itself (not parameters of ours).
GLOBALS = {"workflow.name", "workflow.namespace", "workflow.uid", "workflow.serviceAccountName",
           "workflow.creationTimestamp", "workflow.status", "workflow.duration", "pod.name"}
TAG = re.compile(r"\{\{(.*?)\}\}", re.S)
PARAM = re.compile(r"\b(inputs|workflow)\.parameters\.([A-Za-z0-9_-]+)")
STEP_OUT = re.compile(
    r"\b(steps|tasks)\.([A-Za-z0-9_-]+)\.outputs\.(result|parameters\.([A-Za-z0-9_-]+))"
)


def documents(folder: Path = HERE) -> Iterator[tuple[str, dict]]:
    """Every YAML document under folder, with a label 'file#index'."""
    for path in sorted(folder.rglob("*.yaml")):
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc is not None:
                yield f"{path.relative_to(folder)}#{i}", doc


def differences(original: object, checked: object, where: str = "") -> list[str]:
    """Keys and values of original that did not survive validation."""
    if isinstance(original, dict) and isinstance(checked, dict):
        out = []
        for key, value in original.items():
            if key not in checked:
                out.append(f"unknown field {where}.{key}")
            else:
                out += differences(value, checked[key], f"{where}.{key}")
        return out
    if isinstance(original, list) and isinstance(checked, list) and len(original) == len(checked):
        return [p for i, (a, b) in enumerate(zip(original, checked, strict=True))
                for p in differences(a, b, f"{where}[{i}]")]
    return [] if original == checked else [f"{where}: {original!r} became {checked!r}"]


def against(model: type, doc: dict) -> list[str]:
    """Validate doc with a hera model; report type errors and fields the model dropped."""
    try:
        checked = model.model_validate(doc).model_dump(by_alias=True, exclude_none=True,
                                                       mode="json")
    except ValidationError as e:
        return [f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()]
    return differences(doc, checked)


def embedded_workflows(doc: dict) -> Iterator[tuple[str, dict]]:
    """Workflows written inside other objects: resource templates and Sensor triggers."""
    for t in doc.get("spec", {}).get("templates") or []:
        manifest = (t.get("resource") or {}).get("manifest")
        if manifest:
            yield f"template {t['name']} manifest", yaml.safe_load(manifest)
    for trigger in doc.get("spec", {}).get("triggers") or []:
        resource = (((trigger.get("template") or {}).get("k8s") or {}).get("source") or {})
        if "resource" in resource:
            yield f"trigger {trigger['template'].get('name')}", resource["resource"]


def _object(doc: dict) -> dict:
    """The document without apiVersion and kind, which hera's Argo Events models lack."""
    return {k: v for k, v in doc.items() if k not in ("apiVersion", "kind")}


def event_source_problems(doc: dict) -> list[str]:
    """EventSource: hera's model nests a webhook's settings, which Argo Events inlines."""
    doc = _object(doc)
    spec = dict(doc.get("spec") or {})
    context_fields = {f.alias or name for name, f in events.WebhookContext.model_fields.items()}
    webhooks = {}
    for name, hook in (spec.get("webhook") or {}).items():
        inline = {k: v for k, v in hook.items() if k in context_fields}
        rest = {k: v for k, v in hook.items() if k not in context_fields}
        webhooks[name] = {**rest, "webhookContext": inline}
    if webhooks:
        spec["webhook"] = webhooks
    return against(events.EventSource, {**doc, "spec": spec})


def sensor_problems(doc: dict) -> list[str]:
    """Sensor: the trigger's resource is any Kubernetes object, checked on its own."""
    doc = _object(doc)
    spec = dict(doc.get("spec") or {})
    triggers = []
    for trigger in spec.get("triggers") or []:
        k8s = dict((trigger.get("template") or {}).get("k8s") or {})
        if "resource" in (k8s.get("source") or {}):
            k8s["source"] = {k: v for k, v in k8s["source"].items() if k != "resource"}
            trigger = {**trigger, "template": {**trigger["template"], "k8s": k8s}}
        triggers.append(trigger)
    spec["triggers"] = triggers
    return against(events.Sensor, {**doc, "spec": spec})


def event_bus_problems(doc: dict) -> list[str]:
    """EventBus: hera has no model for it; check the JetStream fields this lab uses."""
    spec = doc.get("spec") or {}
    jetstream = spec.get("jetstream")
    problems = [f"unknown field .spec.{k}" for k in spec if k != "jetstream"]
    if not isinstance(jetstream, dict):
        return [*problems, ".spec.jetstream is required"]
    problems += [f"unknown field .spec.jetstream.{k}" for k in jetstream
                 if k not in {"version", "replicas", "persistence", "containerTemplate",
                              "streamConfig"}]
    version = jetstream.get("version")
    if not isinstance(version, str) or not re.fullmatch(r"\d+\.\d+\.\d+", version):
        problems.append(f".spec.jetstream.version must be a pinned NATS version, not {version!r}")
    replicas = jetstream.get("replicas", 3)
    if not isinstance(replicas, int):
        problems.append(".spec.jetstream.replicas must be an integer")
    stream = yaml.safe_load(jetstream.get("streamConfig") or "") or {}
    if not isinstance(stream, dict):
        problems.append(".spec.jetstream.streamConfig must be a YAML mapping in a string")
    elif stream.get("replicas", 3) > replicas:  # 3: the controller's default
        problems.append(f"streams want {stream.get('replicas', 3)} replicas, "
                        f"the bus has {replicas}: set streamConfig replicas")
    return problems


MODELS = {"WorkflowTemplate": argo.WorkflowTemplate, "CronWorkflow": argo.CronWorkflow,
          "Workflow": argo.Workflow}
CHECKS = {"EventSource": event_source_problems, "Sensor": sensor_problems,
          "EventBus": event_bus_problems}


def schema_problems(doc: dict) -> list[str]:
    """Problems of one Argo object against the schema of its kind."""
    kind = doc.get("kind")
    if kind in MODELS:
        problems = against(MODELS[kind], doc)
    elif kind in CHECKS:
        problems = CHECKS[kind](doc)
    elif str(doc.get("apiVersion", "")).startswith("argoproj.io"):
        return [f"unknown Argo kind {kind!r}; known: {', '.join([*MODELS, *CHECKS])}"]
    else:
        return []  # plain Kubernetes kinds are checked with kubernetes-validate
    if doc.get("apiVersion") != API_VERSION:
        problems.append(f"apiVersion must be {API_VERSION}")
    meta = doc.get("metadata") or {}
    if not (meta.get("name") or meta.get("generateName")):
        problems.append("metadata.name is missing")
    if meta.get("namespace") != NAMESPACES[kind]:
        problems.append(f"metadata.namespace must be {NAMESPACES[kind]}")
    for label, inner in embedded_workflows(doc):
        problems += [f"{label}: {p}" for p in schema_problems(inner)]
    return problems


def strings(node: object) -> Iterator[str]:
    """Every string inside a YAML tree."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def declared(params: list[dict] | None) -> dict[str, dict]:
    """Parameters by name."""
    return {p["name"]: p for p in params or []}


def needs_value(param: dict) -> bool:
    """Whether a caller must pass this input parameter."""
    return not ({"value", "default", "valueFrom"} & param.keys())


class Catalog:
    """All WorkflowTemplates by name, to resolve template and workflowTemplate references."""

    def __init__(self, docs: list[tuple[str, dict]]) -> None:
        self.templates: dict[str, dict] = {
            d["metadata"]["name"]: d for _, d in docs if d.get("kind") == "WorkflowTemplate"
        }

    def find(self, owner: dict, step: dict) -> tuple[dict | None, dict | None, str]:
        """The template a step calls, its WorkflowTemplate, and a problem text if not found."""
        ref = step.get("templateRef")
        wft, name = (self.templates.get(ref["name"]), ref.get("template")) if ref else (
            owner, step.get("template"))
        if wft is None:
            return None, None, f"templateRef to missing WorkflowTemplate {ref['name']!r}"
        found = {t["name"]: t for t in wft["spec"]["templates"]}.get(name)
        if found is None:
            where = wft["metadata"]["name"]
            return None, wft, f"template {name!r} does not exist in {where}"
        return found, wft, ""

    def referenced(self) -> set[tuple[str, str]]:
        """(WorkflowTemplate, template) pairs that some other WorkflowTemplate calls."""
        out = set()
        for wft in self.templates.values():
            for t in wft["spec"]["templates"]:
                for step in calls(t):
                    ref = step.get("templateRef")
                    if ref and ref["name"] != wft["metadata"]["name"]:
                        out.add((ref["name"], ref.get("template")))
        return out


def calls(template: dict) -> Iterator[dict]:
    """The steps or DAG tasks of a template."""
    for group in template.get("steps") or []:
        yield from group
    yield from (template.get("dag") or {}).get("tasks") or []


def passing_problems(
    wanted: dict[str, dict], given: dict[str, dict], label: str, callee: str,
    extra_ok: bool = False,
) -> list[str]:
    """What is passed must be declared by the callee, and what it requires must be passed.

    extra_ok: workflow arguments may also be read as workflow.parameters, not only as inputs.
    """
    problems = [] if extra_ok else [f"{label}: passes {n!r}, which {callee} does not declare"
                                    for n in given if n not in wanted]
    problems += [f"{label}: does not pass required input {n!r} of {callee}"
                 for n, p in wanted.items() if needs_value(p) and n not in given]
    return problems


def argument_problems(
    callee: dict, arguments: dict | None, label: str, extra_ok: bool = False
) -> list[str]:
    """Arguments a step (or a workflow's entrypoint) gets against the template's inputs."""
    wanted = declared((callee.get("inputs") or {}).get("parameters"))
    given = declared((arguments or {}).get("parameters"))
    return passing_problems(wanted, given, label, callee["name"], extra_ok)


def workflow_ref_problems(catalog: Catalog, spec: dict, label: str) -> list[str]:
    """A workflowTemplateRef must name a WorkflowTemplate and pass only its parameters."""
    ref = (spec.get("workflowTemplateRef") or {}).get("name")
    if ref is None:
        return []
    target = catalog.templates.get(ref)
    if target is None:
        return [f"{label}: workflowTemplateRef to missing WorkflowTemplate {ref!r}"]
    wanted = declared((target["spec"].get("arguments") or {}).get("parameters"))
    given = declared((spec.get("arguments") or {}).get("parameters"))
    return passing_problems(wanted, given, label, ref) + enum_problems(wanted, given, label)


def enum_problems(wanted: dict[str, dict], given: dict[str, dict], label: str) -> list[str]:
    """A literal value passed to a parameter with an enum must be one of it (as argo submit)."""
    problems = []
    for name, param in given.items():
        allowed = (wanted.get(name) or {}).get("enum")
        value = str(param.get("value", ""))
        if allowed and "{{" not in value and value not in [str(a) for a in allowed]:
            problems.append(f"{label}: {name}={value!r} is not one of {allowed}")
    return problems


def variable_problems(catalog: Catalog, wft: dict, template: dict, referenced: bool) -> list[str]:
    """Every {{...}} in a template must name something declared where it is used."""
    name = f"{wft['metadata']['name']}/{template['name']}"
    inputs = declared((template.get("inputs") or {}).get("parameters"))
    wf_params = declared((wft["spec"].get("arguments") or {}).get("parameters"))
    earlier: dict[str, dict] = {}  # step name -> called template, for steps already run
    for group in template.get("steps") or []:
        for step in group:
            callee, _, _ = catalog.find(wft, step)
            earlier[step["name"]] = callee or {}
    tasks = {t["name"]: catalog.find(wft, t)[0] or {} for t in calls(template)
             if "dag" in template}
    problems = []
    for text in strings(template):
        for tag in TAG.findall(text):
            body = tag.strip()
            for scope, param in PARAM.findall(body):
                if scope == "inputs" and param not in inputs:
                    problems.append(f"{name}: {{{{inputs.parameters.{param}}}}} is not an input")
                if scope == "workflow" and param not in wf_params:
                    problems.append(f"{name}: workflow parameter {param!r} is not declared")
                if scope == "workflow" and referenced:
                    problems.append(f"{name}: called by templateRef, so it must not read "
                                    f"workflow.parameters.{param} (the caller's workflow)")
            for kind, step, what, out in STEP_OUT.findall(body):
                known = earlier if kind == "steps" else tasks
                callee = known.get(step)
                if callee is None:
                    problems.append(f"{name}: {kind}.{step} does not exist")
                elif what == "result" and not ({"container", "script"} & callee.keys()):
                    problems.append(f"{name}: {kind}.{step} has no stdout result")
                elif out and out not in declared((callee.get("outputs") or {}).get("parameters")):
                    problems.append(f"{name}: {kind}.{step} has no output parameter {out!r}")
            bare = PARAM.sub("", STEP_OUT.sub("", body)).strip()
            if not body.startswith("=") and bare and bare not in GLOBALS:
                problems.append(f"{name}: unknown variable {{{{{body}}}}}")
    # A step may only read the outputs of steps in earlier groups.
    seen: set[str] = set()
    for group in template.get("steps") or []:
        for step in group:
            for text in strings(step):
                for kind, ref, *_ in STEP_OUT.findall(text):
                    if kind == "steps" and ref not in seen:
                        problems.append(f"{name}: step {step['name']} reads {ref} before it ran")
        seen |= {s["name"] for s in group}
    return problems


# ---- expressions, evaluated with the real expr engine (tests/argo_expr.py) --------------

# Stand-ins for what the cluster supplies: ConfigMap keys and Argo's own variables.
CONFIG_SAMPLES = {"registry": "registry.kube-system.svc.cluster.local:5000",
                  "train-image": "registry.kube-system.svc.cluster.local:5000/"
                                 "gourmetgram-train:1.0.0",
                  "mlflow-uri": "http://mlflow.gourmetgram-platform.svc.cluster.local:8000",
                  "repo-url": "https://github.com/example/gourmetgram.git",
                  "repo-revision": "main"}
GLOBAL_SAMPLES = {name: [f"sample-{name.replace('.', '-')}"] for name in GLOBALS}
STEP_OUTPUT_SAMPLE = "3"  # a model version, the only kind of output the lab's steps give


def _literal(value: object) -> list[str] | None:
    """[value] if it is a plain value, None if it has tags of its own."""
    return None if "{{" in str(value) else [str(value)]


def param_values(param: dict) -> list[str]:
    """The values a declared parameter can take, alone: its enum, its value, or a sample."""
    if param.get("enum"):
        return [str(v) for v in param["enum"]]
    for key in ("value", "default"):
        if key in param and (found := _literal(param[key])) is not None:
            return found
    ref = (param.get("valueFrom") or {}).get("configMapKeyRef")
    if ref:
        return [CONFIG_SAMPLES.get(ref["key"], f"sample-{ref['key']}")]
    return [f"sample-{param['name']}"]


class Scopes:
    """The values each variable can have where a string is templated."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def workflow(self, spec: dict) -> dict[str, list[str]]:
        """workflow.parameters.* of a workflow spec (with a referenced template's arguments)."""
        params = {}
        ref = (spec.get("workflowTemplateRef") or {}).get("name")
        if ref in self.catalog.templates:
            params |= declared((self.catalog.templates[ref]["spec"].get("arguments") or {})
                               .get("parameters"))
        given = declared((spec.get("arguments") or {}).get("parameters"))
        params |= {n: {**params.get(n, {}), **p} for n, p in given.items()}
        return {f"workflow.parameters.{n}": param_values(p) for n, p in params.items()}

    def callers(self, wft: dict, template: dict) -> Iterator[tuple[dict, dict, dict]]:
        """(WorkflowTemplate, template, step) of every step that calls template."""
        for owner in self.catalog.templates.values():
            for t in owner["spec"]["templates"]:
                for step in calls(t):
                    callee, callee_wft, _ = self.catalog.find(owner, step)
                    if callee is template and callee_wft is wft:
                        yield owner, t, step

    def resolve(self, value: str, wft: dict, template: dict, depth: int) -> list[str]:
        """The values an argument written in template can have."""
        if (found := _literal(value)) is not None:
            return found
        name = value.strip().removeprefix("{{").removesuffix("}}").strip()
        if value.strip() == f"{{{{{name}}}}}" and depth < 10:
            if name.startswith("workflow.parameters."):
                return self.workflow(wft["spec"]).get(name, [])
            if name.startswith("inputs.parameters."):
                return self.inputs(wft, template, depth + 1).get(name, [])
        return []

    def inputs(self, wft: dict, template: dict, depth: int = 0) -> dict[str, list[str]]:
        """inputs.parameters.* of a template: its own values, else what its callers pass."""
        out = {}
        entry = template["name"] == wft["spec"].get("entrypoint")
        wf_args = declared((wft["spec"].get("arguments") or {}).get("parameters"))
        for name, param in declared((template.get("inputs") or {}).get("parameters")).items():
            values: list[str] = []
            if not needs_value(param) or param.get("enum"):
                values = param_values(param)
            else:
                for owner, t, step in self.callers(wft, template):
                    arg = declared((step.get("arguments") or {}).get("parameters")).get(name)
                    if arg is not None and "value" in arg:
                        values += self.resolve(str(arg["value"]), owner, t, depth)
                if entry and name in wf_args:
                    values += param_values(wf_args[name])
            out[f"inputs.parameters.{name}"] = list(dict.fromkeys(values)) or [f"sample-{name}"]
        return out

    def steps(self, wft: dict, template: dict) -> dict[str, list[str]]:
        """steps.*/tasks.* outputs a template can read."""
        kind = "tasks" if "dag" in template else "steps"
        out = {}
        for step in calls(template):
            callee, _, _ = self.catalog.find(wft, step)
            if callee is None:
                continue
            out[f"{kind}.{step['name']}.outputs.result"] = [STEP_OUTPUT_SAMPLE]
            for p in (callee.get("outputs") or {}).get("parameters") or []:
                out[f"{kind}.{step['name']}.outputs.parameters.{p['name']}"] = [
                    STEP_OUTPUT_SAMPLE]
        return out


@dataclass(frozen=True)
class Case:
    """One string with an expression, where it is, and one set of values for its variables."""

    label: str
    field: str
    text: str
    env: tuple[tuple[str, str], ...]
    varied: tuple[tuple[str, str], ...]


def strings_at(node: object, path: str = "") -> Iterator[tuple[str, str]]:
    """(path, string) for every string inside a YAML tree."""
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from strings_at(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from strings_at(value, f"{path}[{i}]")


def reads(text: str, name: str) -> bool:
    """Whether text names the variable: `a.b.c`, `a.b['c']` or `a.b["c"]`."""
    prefix, _, last = name.rpartition(".")
    return name in text or any(f"{prefix}[{q}{last}{q}]" in text for q in "'\"")


def cases_of(label: str, node: object, values: dict[str, list[str]]) -> Iterator[Case]:
    """Every combination of values for each string of node that has an expression.

    The variables the string names take each of their values (every enum value); the
    others keep their first one (they are in the env all the same).
    """
    for field, text in strings_at(node):
        if not argo_expr.has_expression(text):
            continue
        first = {name: options[0] for name, options in values.items()}
        varying = sorted(n for n, options in values.items()
                         if len(options) > 1 and reads(text, n))
        for combo in itertools.product(*(values[n] for n in varying)):
            varied = tuple(zip(varying, combo, strict=True))
            yield Case(label, field, text, tuple(sorted({**first, **dict(varied)}.items())),
                       varied)


def expression_cases(docs: list[tuple[str, dict]]) -> list[Case]:
    """Every `{{= ... }}` of the workflows, with each value its parameters can take.

    Templates of WorkflowTemplates (their strings, embedded manifests included, are templated
    in the template's scope), the workflow-level fields of a WorkflowTemplate, a
    CronWorkflow's workflowSpec and the Workflows that Sensors submit.
    """
    scopes = Scopes(Catalog(docs))
    out: list[Case] = []
    for label, doc in docs:
        kind, spec = doc.get("kind"), doc.get("spec") or {}
        specs = {"WorkflowTemplate": [(label, spec)],
                 "CronWorkflow": [(label, spec.get("workflowSpec") or {})],
                 "Sensor": [(f"{label} {where}", inner.get("spec") or {})
                            for where, inner in embedded_workflows(doc)]}.get(kind, [])
        for where, wf_spec in specs:
            wf_values = GLOBAL_SAMPLES | scopes.workflow(wf_spec)
            outside = {k: v for k, v in wf_spec.items() if k != "templates"}
            out += cases_of(f"{where} spec", outside, wf_values)
            for t in wf_spec.get("templates") or []:
                values = (wf_values | scopes.steps(doc, t) | scopes.inputs(doc, t)
                          if kind == "WorkflowTemplate" else wf_values)
                out += cases_of(f"{where} template {t['name']}", t, values)
    return out


def patch_problems(patch: str) -> list[str]:
    """A rendered podSpecPatch must be a JSON object that patches only the container main."""
    # Argo parses a patch that starts with "{" as JSON (workflow/util ApplyPodSpecPatch).
    if not patch.strip().startswith("{"):
        return [f"podSpecPatch must be a JSON object, got {patch[:60]!r}"]
    try:
        parsed = json.loads(patch)
    except json.JSONDecodeError as e:
        return [f"podSpecPatch is not valid JSON: {e}"]
    return [f"podSpecPatch must patch container 'main', not {c.get('name')!r}"
            for c in parsed.get("containers", []) if c.get("name") != "main"]


def evaluated(cases: list[Case]) -> list[tuple[Case, argo_expr.Rendered]]:
    """Each case with what the expr engine made of it."""
    rendered = argo_expr.render([(c.text, dict(c.env)) for c in cases])
    return list(zip(cases, rendered, strict=True))


def expression_problems(docs: list[tuple[str, dict]]) -> list[str]:
    """Every expression compiles and runs for every parameter value; podSpecPatches are JSON."""
    problems = []
    for case, result in evaluated(expression_cases(docs)):
        where = f"{case.label} {case.field} with {dict(case.varied) or 'its values'}"
        if result.error:
            problems.append(f"{where}: {result.error}")
        elif case.field.rsplit(".", 1)[-1] == "podSpecPatch":
            problems += [f"{where}: {p}" for p in patch_problems(result.value)]
    return list(dict.fromkeys(problems))


def branches(text: str, flag: str = "gpu", fixed: dict[str, str] | None = None
             ) -> dict[str, str]:
    """text as Argo renders it with the flag parameter "false" and "true".

    Variables of plain tags stay as they are written; fixed gives other parameters a value
    (name: value, as inputs. and workflow.parameters); an expression that reads anything
    else raises ValueError.
    """
    keep = {name: f"{{{{{name}}}}}" for name in argo_expr.simple_tags(text)}
    for name, value in (fixed or {}).items():
        keep |= {f"inputs.parameters.{name}": value, f"workflow.parameters.{name}": value}
    values = ("false", "true")
    rendered = argo_expr.render([(text, {**keep, f"inputs.parameters.{flag}": v,
                                         f"workflow.parameters.{flag}": v}) for v in values])
    for result in rendered:
        if result.error:
            raise ValueError(f"not a switch on the parameter {flag!r} alone: "
                             f"{result.error}: {text}")
    return {v: r.value for v, r in zip(values, rendered, strict=True)}


def pod_spec_patches(template: dict, **fixed: str) -> dict[str, dict]:
    """The JSON patch a podSpecPatch gives with gpu "false" and "true" (see branches)."""
    text = template.get("podSpecPatch")
    if not text:
        return {}
    return {gpu: json.loads(patch) for gpu, patch in branches(text, fixed=fixed).items()}


def reference_problems(docs: list[tuple[str, dict]]) -> list[str]:
    """Broken template references, undeclared parameters and mis-passed arguments."""
    catalog = Catalog(docs)
    referenced = catalog.referenced()
    problems = []
    for label, doc in docs:
        kind = doc.get("kind")
        if kind == "CronWorkflow":
            problems += workflow_ref_problems(catalog, doc["spec"]["workflowSpec"], label)
        if kind == "Workflow":  # e.g. what `argo submit --from workflowtemplate/X -p ...` makes
            problems += workflow_ref_problems(catalog, doc.get("spec") or {}, label)
        for where, inner in embedded_workflows(doc):
            problems += workflow_ref_problems(catalog, inner.get("spec") or {}, f"{label} {where}")
        if kind != "WorkflowTemplate":
            continue
        wft_name = doc["metadata"]["name"]
        names = [t["name"] for t in doc["spec"]["templates"]]
        if doc["spec"].get("entrypoint") not in names:
            problems.append(f"{label}: entrypoint {doc['spec'].get('entrypoint')!r} is missing")
        else:
            entry = doc["spec"]["templates"][names.index(doc["spec"]["entrypoint"])]
            problems += argument_problems(entry, doc["spec"].get("arguments"), f"{label} entry",
                                          extra_ok=True)
        for t in doc["spec"]["templates"]:
            for step in calls(t):
                callee, _, missing = catalog.find(doc, step)
                if callee is None:
                    problems.append(f"{label} step {step['name']}: {missing}")
                else:
                    problems += argument_problems(callee, step.get("arguments"),
                                                  f"{label} step {step['name']}")
            problems += variable_problems(catalog, doc, t, (wft_name, t["name"]) in referenced)
    return problems


def runs_alias_commands(catalog: Catalog, wft: dict, template: dict, depth: int = 0) -> bool:
    """Whether running template (following templateRefs) can move a model alias."""
    if depth > 10:
        return False
    for step in calls(template):
        args = declared((step.get("arguments") or {}).get("parameters")).get("args", {})
        value = str(args.get("value", ""))
        if value.split()[:1] and value.split()[0] in ALIAS_COMMANDS:
            return True
        callee, owner, _ = catalog.find(wft, step)
        if callee and runs_alias_commands(catalog, owner, callee, depth + 1):
            return True
    return False


def mutex_names(sync: dict | None) -> set[str]:
    """Mutex names of a synchronization block."""
    return {m.get("name") for m in (sync or {}).get("mutexes") or []}


def mutex_problems(docs: list[tuple[str, dict]]) -> list[str]:
    """Every workflow that moves aliases holds MUTEX, at workflow level only, with a deadline."""
    catalog = Catalog(docs)
    problems = []
    for name, wft in catalog.templates.items():
        spec = wft["spec"]
        entry = {t["name"]: t for t in spec["templates"]}.get(spec.get("entrypoint"), {})
        generic = name == "gourmetgram-ops"  # runs any command, alias moves included
        holds = MUTEX in mutex_names(spec.get("synchronization"))
        if (generic or runs_alias_commands(catalog, wft, entry)) and not holds:
            problems.append(f"{name} moves model aliases but does not hold the mutex {MUTEX}")
        if holds and not spec.get("activeDeadlineSeconds"):
            # A pod stuck Pending would otherwise keep every other alias move waiting.
            problems.append(f"{name} holds {MUTEX} without spec.activeDeadlineSeconds")
        for t in spec["templates"]:
            # A template-level lock would deadlock when a workflow holding it calls the template.
            if MUTEX in mutex_names(t.get("synchronization")):
                problems.append(f"{name}/{t['name']}: take {MUTEX} at workflow level only")
    return problems


def all_problems(folder: Path = HERE) -> list[str]:
    """Schema, reference, expression and mutex problems of every document under folder."""
    docs = list(documents(folder))
    problems = [f"{label}: {p}" for label, doc in docs for p in schema_problems(doc)]
    return problems + reference_problems(docs) + expression_problems(docs) + mutex_problems(docs)


if __name__ == "__main__":
    found = all_problems()
    print("\n".join(found) or "workflows: no problems found")
    sys.exit(1 if found else 0)
