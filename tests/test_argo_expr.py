"""The expression checker (tests/exprcheck) renders tags the way Argo Workflows v4 does.

Each case is a behaviour of argo-workflows' util/template that the workflow checks rely on
(see the header of tests/exprcheck/main.go for the functions it mirrors).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import argo_expr

GPU = "{{= inputs.parameters.gpu == 'true' ? 'cuda' : 'cpu' }}"


def one(text: str, **env: str) -> argo_expr.Rendered:
    """text rendered with env (keys written with "__" for ".")."""
    (result,) = argo_expr.render([(text, {k.replace("__", "."): v for k, v in env.items()})])
    return result


def test_a_ternary_on_a_parameter_takes_each_branch() -> None:
    assert one(f"torch-{GPU}", inputs__parameters__gpu="true").value == "torch-cuda"
    rendered = one(f"torch-{GPU}", inputs__parameters__gpu="false")
    assert rendered.value == "torch-cpu" and rendered.error == ""
    assert rendered.expressions == ((GPU[3:-2], "cpu"),)


def test_a_newline_inside_a_quoted_string_is_what_argo_rejects() -> None:
    text = "{{= inputs.parameters.gpu == 'true' ? '{\n \"a\": 1}' : '{}' }}"
    assert "literal not terminated" in one(text, inputs__parameters__gpu="true").error


def test_the_first_closing_braces_end_the_tag() -> None:
    text = "{{= inputs.parameters.gpu == 'true' ? '{\"a\": {\"b\": 1}}' : '{}' }}"
    assert "literal not terminated" in one(text, inputs__parameters__gpu="true").error
    assert "cannot find end tag" in one("{{= 'x' ").error


def test_quotes_and_html_characters_survive_the_json_round_trip() -> None:
    text = "{{= inputs.parameters.n < 3 && true ? '\"<&>\"' : 'no' }}"
    assert one(text, inputs__parameters__n="x").error  # a string is not compared with 3
    text = "{{= asInt(inputs.parameters.n) < 3 && true ? '\"<&>\"' : 'no' }}"
    assert one(text, inputs__parameters__n="2").value == '"<&>"'


def test_dotted_names_are_nested_maps_and_dashes_need_brackets() -> None:
    env = {"inputs__parameters__train-image": "reg/train:1"}
    assert one("{{= inputs.parameters['train-image'] + '-cuda' }}", **env).value == (
        "reg/train:1-cuda")
    assert one("{{= toJson(inputs.parameters) }}", **env).value == '{"train-image":"reg/train:1"}'
    # Without brackets expr reads a subtraction: inputs.parameters.train minus image.
    unbracketed = one("{{= inputs.parameters.train-image }}", **env)
    assert "inputs.parameters.train is missing" in unbracketed.error


def test_a_missing_name_fails_and_plain_tags_are_filled_in() -> None:
    assert "inputs is missing" in one(GPU).error
    rendered = one("{{workflow.name}}/{{= asInt(workflow.parameters.epochs) * 2 }}",
                   workflow__name="wf", workflow__parameters__epochs="3")
    assert rendered.value == "wf/6"
    assert "failed to resolve {{workflow.uid}}" in one("{{workflow.uid}}").error


def test_sprig_is_not_there_and_says_so() -> None:
    assert "sprig is missing" in one("{{= sprig.trim(' x ') }}").error


def test_tags_split_like_fasttemplate() -> None:
    text = "a{{inputs.parameters.x}}b{{= 'c' }}d"
    assert argo_expr.tags(text) == ["inputs.parameters.x", "= 'c' "]
    assert argo_expr.simple_tags(text) == ["inputs.parameters.x"]
    assert argo_expr.has_expression(text) and not argo_expr.has_expression("{{ = 'c' }}")


def test_without_go_the_checker_names_the_setup_script(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(argo_expr, "REPO", tmp_path)  # no binary built there yet
    monkeypatch.setattr(argo_expr.shutil, "which", lambda _: None)
    with pytest.raises(argo_expr.CheckerUnavailable, match="tools/install_system_packages.sh"):
        argo_expr.checker.__wrapped__()
