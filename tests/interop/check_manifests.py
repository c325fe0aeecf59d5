#!/usr/bin/env python3
"""Validates the Kubernetes manifests in deploy/kubernetes with the
kubernetes-validate package (the API's own OpenAPI schemas, strict: an
unknown field is an error), and prints, as JSON on stdout, each manifest's
kind, name and result, and the scenario the ConfigMap carries (so the test
can check it with `fleetstorm validate`).

Usage: check_manifests.py DEPLOY_DIR
"""
import glob
import json
import os
import sys

import kubernetes_validate
import yaml

VERSION = "1.33.0"  # the oldest Kubernetes whose schemas the manifests must meet

out = {"version": VERSION, "manifests": [], "scenario": None}
for path in sorted(glob.glob(os.path.join(sys.argv[1], "kubernetes", "*.yaml"))):
    with open(path) as f:
        for doc in yaml.safe_load_all(f):
            if not doc:
                continue
            entry = {"file": os.path.basename(path), "kind": doc.get("kind"), "name": doc["metadata"]["name"]}
            try:
                kubernetes_validate.validate(doc, VERSION, strict=True)
                entry["valid"] = True
            except kubernetes_validate.ValidationError as e:
                entry["valid"] = False
                entry["error"] = f"{'.'.join(str(p) for p in e.path)}: {e.message}"
            out["manifests"].append(entry)
            if doc.get("kind") == "ConfigMap" and "scenario.toml" in doc.get("data", {}):
                out["scenario"] = doc["data"]["scenario.toml"]
json.dump(out, sys.stdout)
