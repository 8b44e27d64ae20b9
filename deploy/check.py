"""Structural checks of deploy/ that need no cluster or Docker engine (run by the test suite).

Parses every YAML and JSON file, checks what an orchestrator relies on (probes, grace period, non-root, selectors
matching labels, KEDA trigger), and writes the ConfigMap's streams.toml to the path given as the first argument so
the Rust test can validate it with the daemon's own parser.
"""

import json
import pathlib
import re
import sys

import yaml

root = pathlib.Path(__file__).parent
errors = []


def check(cond, what):
    if not cond:
        errors.append(what)


docs = [d for d in yaml.safe_load_all((root / "kubernetes/db-event-writer.yaml").read_text()) if d]
kinds = {d["kind"]: d for d in docs}
for kind in ["ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "ScaledObject"]:
    check(kind in kinds, f"kubernetes: no {kind}")
for d in docs:
    check("apiVersion" in d and d.get("metadata", {}).get("name"), f"kubernetes: {d.get('kind')} lacks apiVersion/name")

dep = kinds["Deployment"]
labels = dep["spec"]["template"]["metadata"]["labels"]
check(dep["spec"]["selector"]["matchLabels"].items() <= labels.items(), "Deployment selector does not match its pods")
pod = dep["spec"]["template"]["spec"]
check(pod.get("terminationGracePeriodSeconds", 30) > 30, "grace period must exceed shutdown_timeout (30s)")
check(pod["securityContext"].get("runAsNonRoot") is True, "pods must run as non-root")
main = pod["containers"][0]
check(main["livenessProbe"]["httpGet"]["path"] == "/healthz", "liveness probe must use /healthz")
check(main["readinessProbe"]["httpGet"]["path"] == "/readyz", "readiness probe must use /readyz")
check(main["resources"]["limits"].get("memory"), "memory limit missing")
check(any(c.get("args") == ["migrate"] for c in pod.get("initContainers", [])), "no migrate init container")
ports = {p["name"]: p["containerPort"] for p in main["ports"]}
check(ports.get("metrics") == 9464, "metrics port must be 9464")
svc = kinds["Service"]
check(svc["spec"]["selector"].items() <= labels.items(), "Service selector does not match the pods")
pdb = kinds["PodDisruptionBudget"]
check(pdb["spec"]["selector"]["matchLabels"].items() <= labels.items(), "PDB selector does not match the pods")
scaled = kinds["ScaledObject"]
check(scaled["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"], "ScaledObject targets another Deployment")
check("replicas" not in dep["spec"], "the Deployment must not fix replicas: the ScaledObject owns them")
triggers = scaled["spec"]["triggers"]
config_text = kinds["ConfigMap"]["data"]["streams.toml"]
pairs = set(re.findall(r'jetstream = "([^"]+)"\s*\n\s*consumer = "([^"]+)"', config_text))
for trigger in triggers:
    check(trigger["type"] == "nats-jetstream", "KEDA trigger must be nats-jetstream")
    m = trigger["metadata"]
    check((m["stream"], m["consumer"]) in pairs, f"KEDA scales on {m['stream']}/{m['consumer']}, which streams.toml does not define")
    check(m.get("account") not in (None, ""), "KEDA trigger needs its JetStream account")
check({(t["metadata"]["stream"], t["metadata"]["consumer"]) for t in triggers} == pairs,
      "one KEDA trigger per [[stream]] consumer")

compose = yaml.safe_load((root / "compose.yaml").read_text())
services = compose["services"]
for name in ["nats", "timescaledb", "migrate", "db-event-writer"]:
    check(name in services, f"compose: no service {name}")
check(services["migrate"]["command"] == ["migrate"], "compose: migrate must run `migrate`")
check(services["db-event-writer"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully",
      "compose: run must wait for migrate")
check("-js" in services["nats"]["command"], "compose: nats without JetStream")

dockerfile = (root / "docker/Dockerfile").read_text()
stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", dockerfile, re.M)
check(len(stages) >= 2, "Dockerfile must be multi-stage")
check(re.search(r"^USER\s+(?!root|0\b)\S+", dockerfile, re.M), "Dockerfile must switch to a non-root user")
check(re.search(r"^HEALTHCHECK .*\n?.*/healthz", dockerfile, re.M), "Dockerfile HEALTHCHECK must hit /healthz")
for src in re.findall(r"^COPY\s+(?!--from)(.+)\s+\S+$", dockerfile, re.M):
    for path in src.split():
        check((root.parent / path).exists(), f"Dockerfile copies {path}, which does not exist")

dash = json.loads((root / "grafana/db-event-writer.json").read_text())
titles = " ".join(p["title"].lower() for p in dash["panels"])
for word in ["acked", "lag", "latency", "dead letters", "breaker", "pool"]:
    check(word in titles, f"dashboard: no panel about {word}")

if errors:
    print("\n".join(errors))
    sys.exit(1)
if len(sys.argv) > 1:
    pathlib.Path(sys.argv[1]).write_text(kinds["ConfigMap"]["data"]["streams.toml"])
print(f"deploy/: {len(docs)} Kubernetes objects, {len(services)} compose services, {len(dash['panels'])} panels: ok")
