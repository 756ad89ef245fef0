"""Runs `sett --config-check` with exactly the flags and environment each
deployed member gets: every pod of every StatefulSet in rendered
Kubernetes manifests (env, envFrom ConfigMaps, downward-API pod name and
namespace, $(VAR) expansion as the kubelet does it) and every service of a
compose file. Fails on a SETT_* variable `sett` does not know (clap would
ignore it), a $(VAR) left unexpanded, or a configuration `sett` rejects.

usage: config_check.py SETT_BINARY --k8s RENDERED.yaml --compose FILE.yml
"""

import argparse
import json
import re
import subprocess
import sys

import yaml

NAMESPACE = "default"
VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def known_env(sett):
    out = subprocess.run([sett, "--help"], check=True, capture_output=True, text=True).stdout
    names = set(re.findall(r"\[env: (SETT_[A-Z0-9_]+)=", out))
    if not names:
        sys.exit("sett --help names no SETT_* variable")
    return names


def expand(s, env, where):
    def sub(m):
        if m.group(1) not in env:
            raise SystemExit(f"{where}: $({m.group(1)}) is not defined")
        return env[m.group(1)]

    return VAR.sub(sub, s)


def pod_env(container, configmaps, pod, namespace):
    env = {}
    for src in container.get("envFrom", []):
        ref = src.get("configMapRef")
        if ref is None or ref["name"] not in configmaps:
            raise SystemExit(f"{pod}: unsupported envFrom {src}")
        env.update({src.get("prefix", "") + k: str(v) for k, v in configmaps[ref["name"]].items()})
    fields = {"metadata.name": pod, "metadata.namespace": namespace}
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = expand(str(e["value"]), env, f"{pod}: env {e['name']}")
        else:
            path = e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
            if path not in fields:
                raise SystemExit(f"{pod}: env {e['name']}: unsupported valueFrom {e.get('valueFrom')}")
            env[e["name"]] = fields[path]
    return env


def check(sett, known, label, argv, env, expect_name=None, expect_ok=True):
    if not argv or argv[0] not in ("sett", "/usr/local/bin/sett"):
        raise SystemExit(f"{label}: command {argv[:1]} is not sett")
    unknown = sorted(k for k in env if k.startswith("SETT_") and k not in known)
    if unknown:
        raise SystemExit(f"{label}: sett does not know {', '.join(unknown)}")
    base = {"PATH": "/usr/bin:/bin"}
    r = subprocess.run(
        [sett, "--config-check", *argv[1:]], env={**base, **env}, capture_output=True, text=True
    )
    if not expect_ok:
        if r.returncode == 0:
            raise SystemExit(f"{label}: sett --config-check accepted a configuration it must refuse")
        print(f"ok   {label}: refused as expected: {r.stderr.strip()}")
        return
    if r.returncode != 0:
        raise SystemExit(f"{label}: sett --config-check failed ({r.returncode}): {r.stderr.strip()}\n  argv: {argv}\n  env: {env}")
    cfg = json.loads(r.stdout)
    if expect_name is not None and cfg["name"] != expect_name:
        raise SystemExit(f"{label}: resolved name {cfg['name']!r}, expected {expect_name!r}")
    print(f"ok   {label}: {cfg['name']} advertises {','.join(cfg['advertise_peer_urls'])}, "
          f"{len(cfg['initial_members'])} initial members")


def check_k8s(sett, known, path):
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    sets = [d for d in docs if d["kind"] == "StatefulSet"]
    if not sets:
        raise SystemExit(f"{path}: no StatefulSet")
    for sts in sets:
        name = sts["metadata"]["name"]
        namespace = sts["metadata"].get("namespace", NAMESPACE)
        replicas = sts["spec"].get("replicas", 1)
        containers = sts["spec"]["template"]["spec"]["containers"]
        # Every member of the set, and one past it: a pod the initial
        # cluster does not list must be refused.
        for ordinal in range(replicas + 1):
            pod = f"{name}-{ordinal}"
            for c in containers:
                env = pod_env(c, configmaps, pod, namespace)
                argv = [expand(a, env, f"{pod}: {a}") for a in c.get("command", []) + c.get("args", [])]
                check(sett, known, f"k8s {pod}/{c['name']}", argv, env,
                      expect_name=pod, expect_ok=ordinal < replicas)


def check_compose(sett, known, path):
    doc = yaml.safe_load(open(path))
    for svc, spec in doc["services"].items():
        env = spec.get("environment", {})
        if isinstance(env, list):
            env = dict(e.split("=", 1) for e in env)
        env = {k: str(v) for k, v in env.items()}
        argv = spec.get("command")
        if isinstance(argv, str):
            argv = argv.split()
        check(sett, known, f"compose {svc}", argv, env)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("sett")
    p.add_argument("--k8s", action="append", default=[])
    p.add_argument("--compose", action="append", default=[])
    a = p.parse_args()
    known = known_env(a.sett)
    for path in a.k8s:
        check_k8s(a.sett, known, path)
    for path in a.compose:
        check_compose(a.sett, known, path)


if __name__ == "__main__":
    main()
