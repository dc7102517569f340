"""`kodev skaffold deps` (and `kodev up`) and the build fingerprint name the same
module files, from one function (graph.module_files), on a module whose surroundings
hold everything that could mislead a walk up the tree: a go.work above it, a parent
module that is not in the workspace, a nested module, vendor/ and testdata/."""

from __future__ import annotations

import os
from pathlib import Path

from kodev.cli.skaffold import list_dependency_files
from kodev.golang.fingerprint import FingerprintStore
from kodev.publish import Pipeline, PublishOptions

FILES = {
    "go.work": "go 1.22\n\nuse ./app\n",
    "go.mod": "module example.com/outer\n\ngo 1.22\n",  # not in the workspace
    "app/go.mod": "module example.com/app\n\ngo 1.22\n",
    "app/go.sum": "",
    "app/vendor/modules.txt": "",
    "app/.ko.yaml": "defaultBaseImage: scratch\n",
    "app/cmd/web/main.go": 'package main\n\nimport "example.com/app/lib"\n\n'
                           "func main() { lib.Hello() }\n",
    "app/cmd/web/kodata/index.html": "<p>hi</p>\n",
    "app/lib/lib.go": 'package lib\n\nimport "fmt"\n\nfunc Hello() { fmt.Println("hi") }\n',
    "app/lib/lib_test.go": "package lib\n",
    "app/lib/testdata/fixture.txt": "not built\n",
    "app/nested/go.mod": "module example.com/nested\n\ngo 1.22\n",
    "app/nested/n.go": "package nested\n",
}


def test_skaffold_deps_and_the_fingerprint_name_the_same_files(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    for name, text in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    app = (root / "app").resolve()
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("KO_", "KOCACHE"))}
    environ.update(KOCACHE=str(tmp_path / "cache"), GOFLAGS="")  # -mod=mod: not in a workspace

    deps, _ = list_dependency_files("./cmd/web", app, environ)

    pipeline = Pipeline(PublishOptions(push=False, sbom="none"), workdir=app, environ=environ)
    try:
        pipeline.build(["./cmd/web"])
        key = pipeline.fingerprint_key(["./cmd/web"])
    finally:
        pipeline.close()
    assert key is not None
    record = FingerprintStore(pipeline.cache).load(key)
    assert record is not None
    fingerprinted = sorted(os.path.relpath(p, app) for p in record["files"] if Path(p).is_file())

    assert fingerprinted == sorted(deps)
    assert sorted(deps) == sorted([
        "../go.work", ".ko.yaml", "cmd/web/kodata/index.html", "cmd/web/main.go", "go.mod",
        "go.sum", "lib/lib.go", "vendor/modules.txt",
    ])
