import asyncio
import os
import shutil
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from analyzer.config import TargetRef
from analyzer.routers.base import ConflictError, RouterError
from analyzer.routers.file import FileRouter
from tests.servers.crd import validate

ROOT = Path(__file__).resolve().parents[2]


def _router(tmp_path: Path, source: str, kind: str, api: str, name: str, model: str) -> FileRouter:
    path = tmp_path / Path(source).name
    shutil.copyfile(ROOT / source, path)
    return FileRouter(path, TargetRef(kind=kind, api_version=api, name=name), model)  # type: ignore[arg-type]


def _doc(path: Path) -> dict:  # type: ignore[type-arg]
    return YAML(typ="safe").load(path.read_text())  # type: ignore[no-any-return]


def test_inferencemodel_v1alpha2_write_is_valid_and_keeps_comments(tmp_path: Path) -> None:
    r = _router(
        tmp_path,
        "rules/examples/inferencemodel-v1alpha2.yaml",
        "InferenceModel",
        "inference.networking.x-k8s.io/v1alpha2",
        "inferencemodel-sql",
        "lora-request",
    )
    r.path.write_text("# owned by the sql team\n" + r.path.read_text())
    os.chmod(r.path, 0o640)
    before = asyncio.run(r.read())
    assert before.targets == (("sql-lora", 10), ("sql-lora-1", 10), ("sql-lora-2", 10))
    old = _doc(r.path)
    after = asyncio.run(
        r.write(
            version=before.version,
            targets=[("sql-lora", 9), ("sql-lora-v2", 1)],
            annotations={"canary-analyzer.io/rollout.x": '{"a": 1}'},
        )
    )
    assert after.targets == (("sql-lora", 9), ("sql-lora-v2", 1))
    assert after.annotations["canary-analyzer.io/rollout.x"] == '{"a": 1}'
    assert r.path.read_text().startswith("# owned by the sql team\n")
    assert validate(_doc(r.path), old=old) == []
    assert (os.stat(r.path).st_mode & 0o777) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == [r.path.name]
    # removing the annotation again
    asyncio.run(
        r.write(
            version=after.version, targets=None, annotations={"canary-analyzer.io/rollout.x": None}
        )
    )
    assert "annotations" not in _doc(r.path)["metadata"]


@pytest.mark.parametrize("api", ["llm-d.ai/v1alpha2", "inference.networking.x-k8s.io/v1alpha2"])
def test_inferencemodelrewrite_targets(tmp_path: Path, api: str) -> None:
    r = _router(
        tmp_path,
        "rules/examples/inferencemodelrewrite.yaml",
        "InferenceModelRewrite",
        "llm-d.ai/v1alpha2",
        "summarize-rewrite",
        "summarize",
    )
    text = r.path.read_text().replace("apiVersion: llm-d.ai/v1alpha2", f"apiVersion: {api}")
    r.path.write_text(text)
    r.target = TargetRef(kind="InferenceModelRewrite", api_version=api, name="summarize-rewrite")
    obj = asyncio.run(r.read())
    assert obj.targets == (("tweet-summary", 50), ("tweet-summary-1", 50))
    asyncio.run(
        r.write(
            version=obj.version,
            targets=[("tweet-summary", 45), ("tweet-summary-1", 45), ("tweet-summary-v2", 10)],
            annotations={},
        )
    )
    doc = _doc(r.path)
    assert validate(doc) == []
    assert doc["spec"]["rules"][0]["targets"][2] == {
        "modelRewrite": "tweet-summary-v2",
        "weight": 10,
    }


def test_older_split_spelling_is_kept(tmp_path: Path) -> None:
    r = _router(
        tmp_path,
        "rules/examples/inferencemodelrewrite.yaml",
        "InferenceModelRewrite",
        "llm-d.ai/v1alpha2",
        "summarize-rewrite",
        "summarize",
    )
    r.path.write_text(r.path.read_text().replace("targets:", "split:"))
    obj = asyncio.run(r.read())
    asyncio.run(r.write(version=obj.version, targets=[("tweet-summary", 1)], annotations={}))
    rule = _doc(r.path)["spec"]["rules"][0]
    assert "targets" not in rule and rule["split"] == [
        {"modelRewrite": "tweet-summary", "weight": 1}
    ]


def test_stale_write_is_a_conflict_and_changes_nothing(tmp_path: Path) -> None:
    r = _router(
        tmp_path,
        "analyzer/demo/inferencemodel.yaml",
        "InferenceModel",
        "inference.networking.x-k8s.io/v1alpha1",
        "inferencemodel-sample",
        "lora-request",
    )
    obj = asyncio.run(r.read())
    edited = r.path.read_text().replace("weight: 10", "weight: 7", 1)
    r.path.write_text(edited)
    with pytest.raises(ConflictError):
        asyncio.run(r.write(version=obj.version, targets=[("sql-lora", 1)], annotations={}))
    assert r.path.read_text() == edited


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t.replace("modelName: lora-request", "modelName: other"), "routes model"),
        (lambda t: t.replace("name: inferencemodel-sample", "name: x"), "holds no InferenceModel"),
        (lambda t: t.replace("v1alpha1", "v1alpha2", 1), "the rule names"),
        (lambda t: t + "\n  bad: [", "not valid YAML"),
        (lambda t: t.replace("weight: 10", "weight: ten", 1), "not an integer"),
    ],
)
def test_unusable_objects_are_explained(tmp_path: Path, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    r = _router(
        tmp_path,
        "analyzer/demo/inferencemodel.yaml",
        "InferenceModel",
        "inference.networking.x-k8s.io/v1alpha1",
        "inferencemodel-sample",
        "lora-request",
    )
    r.path.write_text(mutate(r.path.read_text()))
    with pytest.raises(RouterError, match=message):
        asyncio.run(r.read())
    r.path.unlink()
    with pytest.raises(RouterError, match="cannot read"):
        asyncio.run(r.read())
