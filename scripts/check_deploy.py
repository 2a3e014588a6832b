#!/usr/bin/env python3
"""The review checks of scripts/check-deploy on rendered deployment files.

Usage: check_deploy.py k8s OVERLAY RENDERED.yaml | compose RESOLVED.yaml | dockerfile PATH
       | extract-nats OVERLAY RENDERED.yaml DIR | privilege OVERLAY RENDERED.yaml
       | doctor WHAT PRODUCTION.yaml LOCAL.yaml OUT.yaml | doctorings
Prints "ok"/"FAIL" lines; exits 1 if anything failed. Needs PyYAML and the PyPI package
dockerfile (scripts/ensure-deploy-tools installs both into .tools/venv). Run by
scripts/check-deploy, which sets CHECK_COUNTS (a file that collects "passed failed" per run).
"""
import base64, os, re, sys
import yaml

failures = passes = 0

def ok(msg):
    global passes
    passes += 1
    print(f"   ok    {msg}")

def bad(msg):
    global failures
    failures += 1
    print(f"   FAIL  {msg}")

def done():
    """Adds this run's counts to the file $CHECK_COUNTS, then exits 1 if anything failed."""
    with open(os.environ["CHECK_COUNTS"], "a") as f:
        f.write(f"{passes} {failures}\n")
    sys.exit(1 if failures else 0)

def check(cond, msg, why=""):
    if cond:
        ok(msg)
    else:
        bad(f"{msg}: {why}" if why else msg)

def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]

def generated(ref, base):
    """Is `ref` the name `base`, or `base` with the hash suffix kustomize gives generated objects?"""
    return ref == base or re.fullmatch(re.escape(base) + r"-[a-z0-9]{10}", ref or "") is not None

def matches(selector, labels):
    """A label selector (matchLabels only; matchExpressions are not used here) against labels."""
    if selector is None:
        return False
    if selector.get("matchExpressions"):
        return False
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())

# The interface of the services (README "Configuration" and the deployment brief): the
# replicas of each service (every directory of services/ is one, checked below).
SERVICES = {"pb-control": 2, "pb-session": 2, "pb-channel-group": 2, "pb-cti-sim": 1, "pb-gateway": 2}
# Deployed by the local overlay and docker-compose only: production runs a real CTI
# platform's adapter, and has neither the simulator nor a NATS user for it.
LAB_ONLY = {"pb-cti-sim"}

def deployed(overlay):
    return {s: n for s, n in SERVICES.items() if overlay != "production" or s not in LAB_ONLY}
SERVICE_DIRS = sorted(d for d in os.listdir("services") if os.path.isfile(os.path.join("services", d, "Cargo.toml")))
BINARIES = sorted(SERVICE_DIRS) + ["pb-bridge", "pb-ops"]   # what the image holds

def auth_users(text):
    """The (user, password variable) pairs of an auth.conf, in order."""
    text = re.sub(r"(?m)#.*$", "", text)
    return re.findall(r"""\buser\s*[:=]\s*["']?([\w-]+)["']?\s*password\s*[:=]\s*\$(\w+)""", text)

# The NATS users of each deployment are those of its auth.conf (rendered from the code by
# `pb-ops nats-auth`: production's; `--lab`: the local overlay's and docker-compose's,
# production's users and the simulator's): every place that lists the users' passwords
# must have one for each.
AUTH_CONF = {"production": "deploy/base/nats/auth.conf", "local": "deploy/overlays/local/nats/auth.conf"}
AUTH_CONF["compose"] = AUTH_CONF["local"]
def read_auth(overlay):
    with open(AUTH_CONF[overlay]) as f:
        return auth_users(f.read())
AUTH_PAIRS = {o: read_auth(o) for o in AUTH_CONF}
NATS_USERS = {o: [u for u, _ in pairs] for o, pairs in AUTH_PAIRS.items()}
PASSWORD_ENV = {o: dict(pairs) for o, pairs in AUTH_PAIRS.items()}
SECRET_NAME = "pb-nats-credentials"
SECRET_KEYS = {o: {f"{u}-password" for u in users} for o, users in NATS_USERS.items()}
# Secrets that the production overlay expects to be created out of band (deploy/README.md).
OUT_OF_BAND = {"production": {SECRET_NAME, "nats-tls", "pb-bridge-tls"}, "local": set()}
CLUSTER_SCOPED = {"Namespace"}
GATEWAY = "pb-gateway"
BRIDGE_TLS = ("PB_BRIDGE_TLS_CA", "PB_BRIDGE_TLS_CERT", "PB_BRIDGE_TLS_KEY")

def host_port(addr):
    """("host", port) of host:port ([v6]:port too), or None."""
    m = re.fullmatch(r"\[?([^\[\]]+?)\]?:(\d{1,5})", addr or "")
    return (m.group(1), int(m.group(2))) if m and int(m.group(2)) < 65536 else None

# ---- Kubernetes ------------------------------------------------------------------------------
def pod_spec(obj):
    if obj["kind"] == "Pod":
        return obj["spec"], obj["metadata"].get("labels", {})
    t = obj["spec"]["template"]
    return t["spec"], t["metadata"].get("labels", {})

def env_values(container, configmaps):
    """The container's environment as far as it is written down: literal values and
    ConfigMap values (envFrom first, env overrides); None for other sources."""
    out = {}
    for ef in container.get("envFrom", []):
        ref = (ef.get("configMapRef") or {}).get("name")
        if ref in configmaps:
            out.update({ef.get("prefix", "") + k: v for k, v in (configmaps[ref].get("data") or {}).items()})
    for e in container.get("env", []):
        vf = e.get("valueFrom") or {}
        if "value" in e:
            out[e["name"]] = e["value"]
        elif "configMapKeyRef" in vf:
            ref = vf["configMapKeyRef"]
            out[e["name"]] = (configmaps.get(ref["name"], {}).get("data") or {}).get(ref["key"])
        else:
            out[e["name"]] = None
    return out

def k8s(overlay, path):
    docs = load_all(path)
    name = lambda o: f"{o['kind']}/{o['metadata']['name']}"
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Pod")]
    controllers = [d for d in workloads if d["kind"] != "Pod"]
    configmaps = {d["metadata"]["name"]: d for d in by_kind.get("ConfigMap", [])}
    secrets = {d["metadata"]["name"]: d for d in by_kind.get("Secret", [])}
    p = f"{overlay}:"

    # Namespaces: everything in the namespace pb, which the manifests create.
    stray = [name(d) for d in docs if d["kind"] not in CLUSTER_SCOPED and d["metadata"].get("namespace") != "pb"]
    check(not stray, f"{p} every namespaced object is in namespace pb", f"not in pb: {stray}")
    ns = [d for d in by_kind.get("Namespace", []) if d["metadata"]["name"] == "pb"]
    check(ns and ns[0]["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce") == "restricted",
          f"{p} namespace pb enforces Pod Security 'restricted'", "missing or not enforced")

    # Each workload: hardening, resources, probes (not for the bare tool Pod), pinned image.
    for w in workloads:
        spec, labels = pod_spec(w)
        psc = spec.get("securityContext") or {}
        problems = []
        if spec.get("automountServiceAccountToken") is not False:
            problems.append("automountServiceAccountToken is not false")
        for flag in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(flag):
                problems.append(flag)
        for c in spec.get("initContainers", []) + spec["containers"]:
            csc = c.get("securityContext") or {}
            cn = f"container {c['name']}"
            non_root = csc.get("runAsNonRoot", psc.get("runAsNonRoot"))
            uid = csc.get("runAsUser", psc.get("runAsUser"))
            if non_root is not True:
                problems.append(f"{cn}: runAsNonRoot is not true")
            if uid == 0:
                problems.append(f"{cn}: runAsUser 0")
            if csc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{cn}: readOnlyRootFilesystem is not true")
            if csc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{cn}: allowPrivilegeEscalation is not false")
            if "ALL" not in ((csc.get("capabilities") or {}).get("drop") or []):
                problems.append(f"{cn}: capabilities not dropped (drop: [ALL])")
            seccomp = (csc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
            if seccomp not in ("RuntimeDefault", "Localhost"):
                problems.append(f"{cn}: no seccompProfile RuntimeDefault")
            res = c.get("resources") or {}
            for where, key in (("requests", "cpu"), ("requests", "memory"), ("limits", "memory")):
                if key not in (res.get(where) or {}):
                    problems.append(f"{cn}: no resources.{where}.{key}")
            image = c.get("image", "")
            last = image.rsplit("/", 1)[-1]
            if "@" not in last and (":" not in last or last.endswith(":latest")):
                problems.append(f"{cn}: image {image!r} has no pinned tag")
            if w["kind"] != "Pod":
                for probe in ("livenessProbe", "readinessProbe"):
                    if probe not in c:
                        problems.append(f"{cn}: no {probe}")
            ports = {pt.get("name") for pt in c.get("ports", [])}
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                port = ((c.get(probe) or {}).get("httpGet") or {}).get("port")
                if isinstance(port, str) and port not in ports:
                    problems.append(f"{cn}: {probe} uses unknown port {port!r}")
        what = "non-root, read-only root fs, no escalation, caps dropped, seccomp, resources, pinned image"
        if w["kind"] != "Pod":
            what = "probes, " + what
        check(not problems, f"{p} {name(w)}: {what}", "; ".join(problems))

    # A PodDisruptionBudget for every Deployment and StatefulSet, one that allows a drain.
    pdbs = by_kind.get("PodDisruptionBudget", [])
    for w in controllers:
        _, labels = pod_spec(w)
        mine = [b for b in pdbs if matches(b["spec"].get("selector"), labels)]
        replicas = w["spec"].get("replicas", 1)
        blocking = [b["metadata"]["name"] for b in mine
                    if isinstance(b["spec"].get("minAvailable"), int) and b["spec"]["minAvailable"] >= replicas
                    or b["spec"].get("maxUnavailable") == 0]
        check(len(mine) == 1 and not blocking, f"{p} {name(w)}: one PodDisruptionBudget (replicas: {replicas})",
              f"{len(mine)} budgets select it" if len(mine) != 1 else f"{blocking} blocks every drain")

    # Replica counts; every service of services/ is deployed.
    counts = {w["metadata"]["name"]: w["spec"].get("replicas", 1) for w in controllers}
    check(set(SERVICE_DIRS) == set(SERVICES), f"{p} every service of services/ has an expected replica count here",
          f"services/ has {SERVICE_DIRS}, this check knows {sorted(SERVICES)}")
    for svc, want in deployed(overlay).items():
        have = counts.get(svc)
        good = have == want if (overlay == "local" or want == 1) else (have or 0) >= want
        check(good, f"{p} Deployment/{svc}: replicas: {have}", f"expected {'' if overlay == 'local' or want == 1 else 'at least '}{want}")
    sts = [w for w in by_kind.get("StatefulSet", []) if w["metadata"]["name"] == "nats"]
    check(sts and sts[0]["spec"]["replicas"] == 3 and sts[0]["spec"].get("volumeClaimTemplates"),
          f"{p} StatefulSet/nats: 3 nodes with a PersistentVolumeClaim each", "missing, not 3 replicas or no volume claims")

    # Every ConfigMap and Secret a pod uses exists (or is an expected out-of-band Secret), with its keys.
    missing, out_of_band = [], set()
    def need(kind, ref_name, key, who):
        pool = configmaps if kind == "ConfigMap" else secrets
        if ref_name in pool:
            data = dict(pool[ref_name].get("data") or {}, **(pool[ref_name].get("stringData") or {}))
            if key is not None and key not in data:
                missing.append(f"{who}: {kind} {ref_name} has no key {key}")
        elif kind == "Secret" and ref_name in OUT_OF_BAND[overlay]:
            out_of_band.add(ref_name)
        else:
            missing.append(f"{who}: {kind} {ref_name} not found")
    for w in workloads:
        spec, _ = pod_spec(w)
        for c in spec["containers"]:
            for ef in c.get("envFrom", []):
                if "configMapRef" in ef:
                    need("ConfigMap", ef["configMapRef"]["name"], None, name(w))
                if "secretRef" in ef:
                    need("Secret", ef["secretRef"]["name"], None, name(w))
            for e in c.get("env", []):
                vf = e.get("valueFrom") or {}
                if "configMapKeyRef" in vf:
                    need("ConfigMap", vf["configMapKeyRef"]["name"], vf["configMapKeyRef"]["key"], name(w))
                if "secretKeyRef" in vf:
                    need("Secret", vf["secretKeyRef"]["name"], vf["secretKeyRef"]["key"], name(w))
        for v in spec.get("volumes", []):
            if "configMap" in v:
                for it in v["configMap"].get("items") or [{"key": None}]:
                    need("ConfigMap", v["configMap"]["name"], it["key"], name(w))
            if "secret" in v:
                for it in v["secret"].get("items") or [{"key": None}]:
                    need("Secret", v["secret"]["secretName"], it["key"], name(w))
    note = f" (created out of band: {', '.join(sorted(out_of_band))})" if out_of_band else ""
    check(not missing, f"{p} every ConfigMap, Secret and key the pods use is rendered{note}", "; ".join(missing))

    # Every Service selects pods and names ports they have.
    for s in by_kind.get("Service", []):
        sel = s["spec"].get("selector") or {}
        pods = [pod_spec(w) for w in workloads if sel and all(pod_spec(w)[1].get(k) == v for k, v in sel.items())]
        names = {pt.get("name") for spec, _ in pods for c in spec["containers"] for pt in c.get("ports", [])}
        numbers = {pt["containerPort"] for spec, _ in pods for c in spec["containers"] for pt in c.get("ports", [])}
        bad_ports = [pt.get("targetPort", pt["port"]) for pt in s["spec"]["ports"]
                     if pt.get("targetPort", pt["port"]) not in names | numbers]
        check(pods and not bad_ports, f"{p} {name(s)} selects pods and their ports",
              "selects no pod" if not pods else f"unknown target ports {bad_ports}")

    # The services' NATS users and configuration follow the interface.
    for w in by_kind.get("Deployment", []):
        spec, labels = pod_spec(w)
        if labels.get("app.kubernetes.io/component") != "service":
            continue
        c = spec["containers"][0]
        env = {e["name"]: e for e in c.get("env", [])}
        binary = (c.get("command") or c.get("args") or [""])[0]
        user = (env.get("NATS_USER") or {}).get("value")
        key = ((env.get("NATS_PASSWORD") or {}).get("valueFrom") or {}).get("secretKeyRef") or {}
        inst = ((env.get("PB_INSTANCE") or {}).get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath")
        check(binary == w["metadata"]["name"] and user == binary and user in NATS_USERS[overlay]
              and generated(key.get("name"), SECRET_NAME)
              and key.get("key") == f"{binary}-password" and inst == "metadata.name"
              and (env.get("OTEL_SERVICE_NAME") or {}).get("value") == binary,
              f"{p} {name(w)}: runs {binary} as NATS user {user} (key {key.get('key')}), PB_INSTANCE = pod name",
              "command, NATS_USER (a user of auth.conf), NATS_PASSWORD, PB_INSTANCE or OTEL_SERVICE_NAME do not match the service")
        ports = {pt.get("name"): pt.get("containerPort") for pt in c.get("ports", [])}
        def probe(kind):
            g = (c.get(kind) or {}).get("httpGet") or {}
            return g.get("path"), ports.get(g.get("port"), g.get("port"))
        check(probe("livenessProbe") == ("/livez", 8080) and probe("readinessProbe") == ("/readyz", 8080),
              f"{p} {name(w)}: liveness GET /livez, readiness GET /readyz on the operations port 8080",
              f"liveness {probe('livenessProbe')}, readiness {probe('readinessProbe')}")
    # The NATS nodes get every user's password from the Secret.
    if sts:
        nenv = {e["name"]: ((e.get("valueFrom") or {}).get("secretKeyRef") or {}) for e in pod_spec(sts[0])[0]["containers"][0].get("env", [])}
        wrong = [f"{u}: {var}" for u, var in PASSWORD_ENV[overlay].items()
                 if not generated(nenv.get(var, {}).get("name"), SECRET_NAME) or nenv.get(var, {}).get("key") != f"{u}-password"]
        check(not wrong, f"{p} StatefulSet/nats: the {len(PASSWORD_ENV[overlay])} passwords of auth.conf from {SECRET_NAME}",
              f"missing or from the wrong key: {wrong}")
    cfg = [d for n, d in configmaps.items() if generated(n, "pb-config")]
    data = cfg[0].get("data", {}) if cfg else {}
    check(data.get("PB_LOG_FORMAT") == "json" and data.get("NATS_URL") and data.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").startswith("http"),
          f"{p} pb-config: NATS_URL {data.get('NATS_URL')}, JSON logs, OTLP endpoint {data.get('OTEL_EXPORTER_OTLP_ENDPOINT')}",
          "missing NATS_URL, PB_LOG_FORMAT=json or OTEL_EXPORTER_OTLP_ENDPOINT")
    if data.get("NATS_URL", "").startswith("tls://"):
        ca = data.get("NATS_TLS_CA", "")
        mounted = all(any(ca.startswith(m["mountPath"].rstrip("/") + "/") for c in pod_spec(w)[0]["containers"]
                          for m in c.get("volumeMounts", []))
                      for w in workloads if any(generated(ef.get("configMapRef", {}).get("name", ""), "pb-config")
                                                for c in pod_spec(w)[0]["containers"] for ef in c.get("envFrom", [])))
        check(ca and mounted, f"{p} TLS to NATS: NATS_TLS_CA={ca} is mounted in every pod that uses pb-config",
              "NATS_TLS_CA unset or not mounted")

    # Network policies: deny by default, then each pod may reach what it needs.
    nps = by_kind.get("NetworkPolicy", [])
    check(any(n["spec"].get("podSelector") == {} and set(n["spec"].get("policyTypes", [])) >= {"Ingress", "Egress"}
              and not n["spec"].get("ingress") and not n["spec"].get("egress") for n in nps),
          f"{p} NetworkPolicy: default deny of ingress and egress", "no default-deny policy")

    def port_ok(rule, port, proto="TCP"):
        ports = rule.get("ports")
        return not ports or any(pt.get("port") == port and pt.get("protocol", "TCP") == proto for pt in ports)
    def allowed(direction, selected, peer, port, proto="TCP"):
        """Does a policy selecting `selected` allow `direction` traffic with `peer` on port?
        peer: pod labels in this namespace, or ("ns", labels) for a pod in another namespace."""
        key, side = ("egress", "to") if direction == "Egress" else ("ingress", "from")
        for n in nps:
            if direction not in n["spec"].get("policyTypes", []) or not matches(n["spec"]["podSelector"], selected):
                continue
            for rule in n["spec"].get(key, []):
                if not port_ok(rule, port, proto):
                    continue
                for q in rule.get(side, []):
                    if isinstance(peer, tuple):
                        if "namespaceSelector" in q:
                            return True
                    elif "namespaceSelector" not in q and "ipBlock" not in q and matches(q.get("podSelector"), peer):
                        return True
        return False
    nats_labels = pod_spec(sts[0])[1] if sts else {}
    jaeger = [pod_spec(w)[1] for w in workloads if pod_spec(w)[1].get("app.kubernetes.io/name") == "jaeger"]
    for w in workloads:
        spec, labels = pod_spec(w)
        reach = []
        if not allowed("Egress", labels, ("ns", {}), 53, "UDP"):
            reach.append("no DNS")
        if labels.get("nats-client") == "true":
            if not (allowed("Egress", labels, nats_labels, 4222) and allowed("Ingress", nats_labels, labels, 4222)):
                reach.append("cannot reach NATS 4222")
            otlp = (allowed("Egress", labels, jaeger[0], 4318) and allowed("Ingress", jaeger[0], labels, 4318)) if jaeger \
                else allowed("Egress", labels, ("ns", {}), 4318)
            if not otlp:
                reach.append("cannot reach the OTLP/HTTP endpoint 4318")
        if labels.get("app.kubernetes.io/component") == "service" and not allowed("Ingress", labels, ("ns", {}), 8080):
            reach.append("Prometheus cannot scrape 8080")
        if w is (sts[0] if sts else None):
            if not (allowed("Egress", labels, labels, 6222) and allowed("Ingress", labels, labels, 6222)):
                reach.append("NATS nodes cannot reach one another on 6222")
        if labels.get("app.kubernetes.io/component") == "service" and labels.get("nats-client") != "true":
            reach.append("service pod without label nats-client")
        check(not reach, f"{p} NetworkPolicy: {name(w)} reaches what it needs", "; ".join(reach))
    if overlay == "production":
        check(allowed("Ingress", nats_labels, ("ns", {}), 4222),
              f"{p} NetworkPolicy: the Processor Bridge (another namespace) reaches NATS 4222", "no such policy")
    else:
        bridge = [w for w in workloads if pod_spec(w)[1].get("app.kubernetes.io/name") == "pb-bridge"]
        check(bridge and pod_spec(bridge[0])[1].get("nats-client") == "true",
              f"{p} the bridge pod pb-bridge is a NATS client", "no bridge pod labelled nats-client")

    # The gateway: one active replica holds the link to the Processor Bridge, one stands by.
    gw = [d for d in by_kind.get("Deployment", []) if d["metadata"]["name"] == GATEWAY]
    check(gw, f"{p} Deployment/{GATEWAY} is rendered", "missing")
    if gw:
        gspec, glabels = pod_spec(gw[0])
        gc = gspec["containers"][0]
        genv = env_values(gc, configmaps)
        budgets = [b for b in pdbs if matches(b["spec"].get("selector"), glabels)]
        check(gw[0]["spec"].get("replicas", 1) >= 2 and len(budgets) == 1 and budgets[0]["spec"].get("minAvailable") == 1,
              f"{p} {GATEWAY}: {gw[0]['spec'].get('replicas', 1)} replicas (one holds the link, a standby takes over), "
              "PodDisruptionBudget minAvailable 1", "fewer than 2 replicas, or no budget with minAvailable: 1")
        # Where the bridge is: PB_BRIDGE_ADDR, then a path through the network policies.
        addr = genv.get("PB_BRIDGE_ADDR")
        hp = host_port(addr)
        check(hp is not None, f"{p} {GATEWAY}: PB_BRIDGE_ADDR={addr}", "unset, or not host:port")
        if hp:
            host, port = hp
            svc = [x for x in by_kind.get("Service", []) if host.split(".")[0] == x["metadata"]["name"]
                   and (host.count(".") == 0 or host.split(".")[1] == "pb")]
            if svc:
                # A bridge inside this namespace (the local emulator): the Service, its pods and port.
                sp = [pt for pt in svc[0]["spec"]["ports"] if pt["port"] == port]
                sel = svc[0]["spec"].get("selector") or {}
                targets = [(pod_spec(w)[1], pt["containerPort"]) for w in workloads
                           if sel and all(pod_spec(w)[1].get(k) == v for k, v in sel.items())
                           for c in pod_spec(w)[0]["containers"] for pt in c.get("ports", [])
                           if sp and sp[0].get("targetPort", port) in (pt.get("name"), pt["containerPort"])]
                reach = targets and all(allowed("Egress", glabels, tl, tp) and allowed("Ingress", tl, glabels, tp)
                                        for tl, tp in targets)
                check(reach, f"{p} NetworkPolicy: {GATEWAY} reaches the bridge at Service/{svc[0]['metadata']['name']}:{port} "
                      f"(pods {', '.join(sorted({t[0].get('app.kubernetes.io/name', '?') for t in targets}))}, port {targets[0][1] if targets else '?'})",
                      "no pod behind that Service port" if not targets else "egress from the gateway or ingress to the bridge not allowed")
            else:
                # A bridge elsewhere: egress to another namespace or an ipBlock on its port.
                def out_of_ns(port):
                    for n in nps:
                        if "Egress" not in n["spec"].get("policyTypes", []) or not matches(n["spec"]["podSelector"], glabels):
                            continue
                        for rule in n["spec"].get("egress", []):
                            if port_ok(rule, port) and any("namespaceSelector" in q or "ipBlock" in q for q in rule.get("to", [])):
                                return True
                    return False
                check(out_of_ns(port), f"{p} NetworkPolicy: {GATEWAY} reaches the bridge at {addr} (egress to another namespace or an ipBlock, TCP {port})",
                      "no policy allows it")
        # Nothing comes in but the operations port.
        extra = [f"{n['metadata']['name']}: {rule.get('ports') or 'every port'}" for n in nps
                 if "Ingress" in n["spec"].get("policyTypes", []) and matches(n["spec"]["podSelector"], glabels)
                 for rule in n["spec"].get("ingress", [])
                 if not rule.get("ports") or any(pt.get("port") != 8080 for pt in rule["ports"])]
        check(not extra, f"{p} NetworkPolicy: {GATEWAY} takes ingress on 8080 only (metrics; probes come from the kubelet)",
              f"also allowed: {extra}")
        # TLS to the bridge: the files are in a mounted Secret, with the keys they name.
        tls = {v: genv.get(v) for v in BRIDGE_TLS if genv.get(v)}
        mounts = {m["name"]: m["mountPath"].rstrip("/") for m in gc.get("volumeMounts", [])}
        vols = {v["name"]: v for v in gspec.get("volumes", [])}
        bad_files = []
        used = set()
        for var, file in tls.items():
            where = [(vn, mp) for vn, mp in mounts.items() if file.startswith(mp + "/")]
            sec = (vols.get(where[0][0]) or {}).get("secret") if where else None
            if not sec:
                bad_files.append(f"{var}={file} is not in a mounted Secret")
                continue
            used.add(sec["secretName"])
            rel = file[len(where[0][1]) + 1:]
            if sec.get("items") and rel not in [it["path"] for it in sec["items"]]:
                bad_files.append(f"{var}={file}: Secret {sec['secretName']} gives no {rel}")
        if overlay == "production":
            check(len(tls) == 3 and not bad_files and used <= OUT_OF_BAND[overlay],
                  f"{p} {GATEWAY}: TLS to the bridge, CA and client certificate from Secret {', '.join(sorted(used)) or '?'} "
                  f"(created out of band), mounted read-only",
                  "; ".join(bad_files) or f"set: {sorted(tls)}, expected {list(BRIDGE_TLS)} from an out-of-band Secret")
        elif tls:
            check(not bad_files, f"{p} {GATEWAY}: TLS files to the bridge are mounted", "; ".join(bad_files))

    # Secrets: dev values only in the local overlay, none at all in production.
    if overlay == "production":
        check(not secrets, f"{p} no Secret rendered (credentials and TLS are created out of band)",
              f"Secrets rendered: {sorted(secrets)}")
        literal = [f"{name(w)}: {e['name']}" for w in workloads for c in pod_spec(w)[0]["containers"]
                   for e in c.get("env", []) if re.search(r"PASSWORD|SECRET|TOKEN", e["name"]) and "value" in e]
        check(not literal, f"{p} no password, secret or token as a literal environment value", f"literal: {literal}")
        leaks = [f"ConfigMap/{n}:{k}" for n, cm in configmaps.items() for k, v in (cm.get("data") or {}).items()
                 if re.search(r"PASSWORD|SECRET|TOKEN", k, re.I)
                 or re.search(r"""(?im)^\s*[^#\n]*\b(password|token)\s*[:=]\s*(?!\$)["']?\w""", v)]
        check(not leaks, f"{p} no password or token written in a ConfigMap (NATS passwords are $VARIABLES)", f"found in {leaks}")
    else:
        sec = secrets.get(next((n for n in secrets if generated(n, SECRET_NAME)), ""), {})
        values = {k: base64.b64decode(v).decode() for k, v in (sec.get("data") or {}).items()}
        check(set(values) == SECRET_KEYS[overlay] and all(v.startswith("dev-") for v in values.values()),
              f"{p} {SECRET_NAME}: the {len(SECRET_KEYS[overlay])} NATS passwords of auth.conf's users, obviously-dev values",
              f"keys {sorted(values)}, expected {sorted(SECRET_KEYS[overlay])}")
    done()

def extract_nats(overlay, path, out):
    """Writes the files of ConfigMap nats-config, and checks what nats.conf must say."""
    docs = load_all(path)
    cm = [d for d in docs if d["kind"] == "ConfigMap" and generated(d["metadata"]["name"], "nats-config")]
    if not cm:
        bad(f"{path}: no ConfigMap nats-config")
        done()
    for k, v in cm[0]["data"].items():
        with open(os.path.join(out, k), "w") as f:
            f.write(v)
    conf = cm[0]["data"].get("nats.conf", "")
    sts = [d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "nats"][0]
    routes = re.findall(r"nats://(nats-\d+)\.nats-headless:6222", conf)
    want = [f"nats-{i}" for i in range(sts["spec"]["replicas"])]
    check(sorted(routes) == want, f"{overlay}: nats.conf: cluster routes {routes} match the StatefulSet", f"expected {want}")
    check(re.search(r"(?m)^\s*jetstream\s*\{[^}]*store_dir", conf) is not None, f"{overlay}: nats.conf: JetStream with file storage")
    check(re.search(r"(?m)^\s*include\s+\./auth\.conf\s*$", conf) is not None, f"{overlay}: nats.conf: include ./auth.conf")
    pairs = auth_users(cm[0]["data"].get("auth.conf", ""))
    users = [u for u, _ in pairs]
    need = set(deployed(overlay)) | {"pb-bridge"}
    check(pairs == AUTH_PAIRS[overlay] and need <= set(users) and all(re.fullmatch(r"PB_\w+_PASSWORD", v) for _, v in pairs),
          f"{overlay}: auth.conf: users {', '.join(users)} (one per service, and pb-bridge), each password a $PB_*_PASSWORD",
          f"expected those of {AUTH_CONF[overlay]}, {AUTH_PAIRS[overlay]}, covering {sorted(need)}")
    done()

# ---- least privilege on NATS ----------------------------------------------------------------
def auth_permissions(text):
    """Each user's permissions in an auth.conf in the form `pb-ops nats-auth` renders:
    {user: {"publish": [...], "subscribe": [...], "responses": bool}}; None for a file in any
    other form (a deny list, a user without permissions, a bare list, a second block for a
    user could each widen a permission unseen: refused, not guessed at)."""
    text = re.sub(r"(?m)^\s*#.*$", "", text)
    quoted = r'"[^"\\]*"'
    subjects = rf"\[\s*(?:{quoted}(?:\s*,\s*{quoted})*)?\s*\]"
    user = (rf'\{{\s*user:\s*"([\w-]+)"\s*password:\s*\$\w+\s*permissions:\s*\{{\s*'
            rf"publish:\s*\{{\s*allow:\s*({subjects})\s*\}}\s*subscribe:\s*\{{\s*allow:\s*({subjects})\s*\}}\s*"
            rf'(allow_responses:\s*\{{\s*max:\s*1\s*,\s*expires:\s*"\d+s"\s*\}}\s*)?\}}\s*\}}')
    if not re.fullmatch(rf"\s*authorization\s*\{{\s*users\s*=\s*\[\s*(?:{user}\s*)*\]\s*\}}\s*", text):
        return None
    found = list(re.finditer(user, text))
    out = {m.group(1): {"publish": re.findall(r'"([^"]*)"', m.group(2)),
                        "subscribe": re.findall(r'"([^"]*)"', m.group(3)),
                        "responses": m.group(4) is not None} for m in found}
    return out if len(out) == len(found) else None

def subject_matches(pattern, subject):
    """Does NATS deliver `subject` to a subscription on `pattern` (or let a publish permission
    on `pattern` publish it)?"""
    p, s = pattern.split("."), subject.split(".")
    for i, t in enumerate(p):
        if t == ">":
            return len(s) > i
        if i >= len(s) or (t != "*" and t != s[i]):
            return False
    return len(p) == len(s)

def overlap(a, b):
    """Is there a subject that both patterns match?"""
    ta, tb = a.split("."), b.split(".")
    for x, y in zip(ta, tb):
        if ">" in (x, y):
            return True
        if "*" not in (x, y) and x != y:
            return False
    return len(ta) == len(tb)

# A reply subject as NATS clients make them: the inbox prefix, a 22-character token, and
# (for requests) one more token.
def replies(prefix):
    return [f"{prefix}.Tb1RtCy8jeLPK5bRCbKcBu", f"{prefix}.Tb1RtCy8jeLPK5bRCbKcBu.7"]

def privilege(overlay, path):
    """Least privilege on NATS in a rendered overlay: its auth.conf (ConfigMap nats-config)
    and, in production, what is deployed."""
    docs = load_all(path)
    p = f"{overlay}:"
    cms = {d["metadata"]["name"]: d.get("data") or {} for d in docs if d["kind"] == "ConfigMap"}
    conf = next((d for n, d in cms.items() if generated(n, "nats-config")), {}).get("auth.conf", "")
    prefix = next((d for n, d in cms.items() if generated(n, "pb-config")), {}).get("PB_SUBJECT_PREFIX", "pb")
    perms = auth_permissions(conf)
    check(perms is not None, f"{p} auth.conf is in the form `pb-ops nats-auth` renders (allow lists, every user with its own)",
          "another form may widen a permission unseen: render it again")
    if perms is None:
        done()
    if overlay == "production":
        runs = lambda c: {os.path.basename(x) for x in (c.get("command") or []) + (c.get("args") or [])}
        sims = [f"{d['kind']}/{d['metadata']['name']}" for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Pod")
                and (d["metadata"]["name"] in LAB_ONLY or any(runs(c) & LAB_ONLY for c in pod_spec(d)[0]["containers"]))]
        check(not sims, f"{p} no simulated CTI deployed (a real platform's adapter connects instead)", f"deployed: {sims}")
        check(not set(perms) & LAB_ONLY, f"{p} auth.conf: no NATS user for the simulator", f"users {sorted(set(perms) & LAB_ONLY)}")
        sim = f"{prefix}.sim.>"
        drivers = [f"{u} {k} {s}" for u, q in perms.items() for k in ("publish", "subscribe") for s in q[k] if overlap(s, sim)]
        check(not drivers, f"{p} auth.conf: no user may publish or subscribe the simulator's subjects ({sim})", f"allowed: {drivers}")
    # Replies: each user on its own inbox prefix, read by nobody else; nobody reads or forges
    # into the default inbox (answers go through allow_responses).
    inboxes = {u: [s[:-2] for s in q["subscribe"] if s.startswith("_INBOX") and s.endswith(".>")] for u, q in perms.items()}
    shared = sorted(u for u, i in inboxes.items() if len(i) != 1 or i[0] == "_INBOX")
    check(not shared, f"{p} auth.conf: each user reads its replies on an inbox prefix of its own", f"not so: {shared}")
    readers = sorted({f"{u}: {s}" for u, q in perms.items() for s in q["subscribe"]
                      for x in replies("_INBOX") + [r for v, i in inboxes.items() if v != u for pre in i for r in replies(pre)]
                      if subject_matches(s, x)})
    check(not readers, f"{p} auth.conf: nobody reads the default inbox or another user's", f"readers: {readers}")
    forgers = sorted({f"{u}: {s}" for u, q in perms.items() for s in q["publish"] for x in replies("_INBOX") if subject_matches(s, x)})
    check(not forgers, f"{p} auth.conf: nobody publishes into the default inbox", f"publishers: {forgers}")
    admins = sorted({f"{u}: {s}" for u, q in perms.items() for s in q["publish"]
                     for op in ("DELETE", "PURGE", "UPDATE") if overlap(s, f"$JS.API.STREAM.{op}.>")})
    check(not admins, f"{p} auth.conf: nobody may delete, purge or change a stream", f"allowed: {admins}")
    done()

# The self-test's doctored production renders: name -> what is changed.
DOCTORINGS = {
    "simulator": "the simulator's Deployment added",
    "sim-publish": "pb-bridge allowed to publish P.sim.>",
    "inbox-reader": "pb-session allowed to read every reply (_INBOX.>)",
}

def doctor(what, production, local, out):
    """Writes the production render `production` with the change `what` (DOCTORINGS)."""
    docs = load_all(production)
    if what == "simulator":
        extra = [d for d in load_all(local) if d["kind"] == "Deployment" and d["metadata"]["name"] in LAB_ONLY]
        docs += extra
        changed = bool(extra)
    else:
        prefix = next(d for d in docs if d["kind"] == "ConfigMap" and generated(d["metadata"]["name"], "pb-config"))["data"]["PB_SUBJECT_PREFIX"]
        user, key, subject = {"sim-publish": ("pb-bridge", "publish", f"{prefix}.sim.>"),
                              "inbox-reader": ("pb-session", "subscribe", "_INBOX.>")}[what]
        cm = next(d for d in docs if d["kind"] == "ConfigMap" and generated(d["metadata"]["name"], "nats-config"))
        conf = cm["data"]["auth.conf"]
        cm["data"]["auth.conf"] = re.sub(rf'(user:\s*"{user}".*?{key}:\s*\{{\s*allow:\s*\[)', lambda m: f'{m.group(1)}"{subject}", ',
                                         conf, count=1, flags=re.S)
        changed = cm["data"]["auth.conf"] != conf
    if not changed:
        sys.exit(f"doctor {what}: nothing to change in {production}")
    with open(out, "w") as f:
        yaml.safe_dump_all(docs, f)

# ---- docker-compose --------------------------------------------------------------------------
def container_ports(svc):
    out = set()
    for pt in svc.get("ports", []):
        if isinstance(pt, dict):
            out.add(int(pt["target"]))
        else:
            out.add(int(str(pt).split("/")[0].rsplit(":", 1)[-1]))
    return out

def compose(path):
    c = yaml.safe_load(open(path))
    svcs = c.get("services", {})
    need = {"nats", "jaeger", "cti-sim", "control", "session", "channel-group", "gateway", "bridge"}
    check(need <= set(svcs), f"compose: services {', '.join(sorted(need))}", f"missing {sorted(need - set(svcs))}")
    nats, jaeger = svcs.get("nats", {}), svcs.get("jaeger", {})
    check(re.fullmatch(r"jaegertracing/jaeger:2\.\d+\.\d+", jaeger.get("image", "")) is not None
          and {16686, 4317, 4318} <= container_ports(jaeger) and "healthcheck" in jaeger,
          f"compose: Jaeger v2 ({jaeger.get('image')}), UI 16686, OTLP 4317/4318, health check",
          "image not jaegertracing/jaeger:2.x.y, a port missing or no health check")
    mounts = [str(v).split(":")[0] if isinstance(v, str) else v.get("source", "") for v in nats.get("volumes", [])]
    confs = [m for m in mounts if m.endswith(".conf")]
    check({4222, 8222} <= container_ports(nats) and "healthcheck" in nats and len(confs) == 2
          and all(os.path.isfile(m) for m in confs) and any(os.path.samefile(m, AUTH_CONF["compose"]) for m in confs),
          f"compose: NATS with client 4222, monitoring 8222, health check, nats.conf and the lab's auth.conf ({AUTH_CONF['compose']}) mounted",
          f"ports {sorted(container_ports(nats))}, mounts {confs}")
    nats_env = nats.get("environment", {})
    missing = sorted(v for v in PASSWORD_ENV["compose"].values() if not nats_env.get(v))
    check(not missing, f"compose: nats: the {len(PASSWORD_ENV['compose'])} passwords of auth.conf's users in its environment",
          f"missing {missing}")
    for n, s in svcs.items():
        for dep, cond in (s.get("depends_on") or {}).items():
            if cond.get("condition") == "service_healthy" and "healthcheck" not in svcs.get(dep, {}):
                bad(f"compose: {n} waits for {dep} to be healthy, but {dep} has no health check")
    for n, want in (("cti-sim", 1), ("control", 2), ("session", 2), ("channel-group", 2), ("gateway", 2)):
        s = svcs.get(n, {})
        env = s.get("environment", {})
        binary = (s.get("command") or [""])[0]
        hc = " ".join(s.get("healthcheck", {}).get("test", []))
        deps = s.get("depends_on") or {}
        replicas = (s.get("deploy") or {}).get("replicas", 1)
        problems = []
        if s.get("image") != "pb-client:dev" or not binary.startswith("pb-"):
            problems.append("not pb-client:dev with a pb-* command")
        if "pb-ops probe http://127.0.0.1:8080/readyz" not in hc:
            problems.append("health check is not `pb-ops probe .../readyz`")
        if (deps.get("nats") or {}).get("condition") != "service_healthy":
            problems.append("does not wait for NATS to be healthy")
        if replicas != want:
            problems.append(f"{replicas} replicas, expected {want}")
        if s.get("read_only") is not True or str(s.get("user")) != "10001:10001":
            problems.append("not read-only as uid 10001")
        if env.get("NATS_USER") != binary or env.get("NATS_PASSWORD") != nats_env.get(PASSWORD_ENV["compose"].get(binary, "")):
            problems.append("NATS_USER/NATS_PASSWORD do not match the NATS server's user")
        if not str(env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")).startswith("http://jaeger:4318"):
            problems.append("OTEL_EXPORTER_OTLP_ENDPOINT is not http://jaeger:4318 (OTLP over HTTP)")
        check(not problems, f"compose: {n}: {binary}, {replicas} replica(s), healthy when ready, NATS user {env.get('NATS_USER')}, traces to Jaeger",
              "; ".join(problems))
    b = svcs.get("bridge", {})
    benv = b.get("environment", {})
    check(b.get("entrypoint") == ["pb-bridge"] and "tools" in (b.get("profiles") or [])
          and benv.get("NATS_USER") == "pb-bridge" and benv.get("NATS_PASSWORD") == nats_env.get(PASSWORD_ENV["compose"]["pb-bridge"]),
          "compose: bridge: pb-bridge on demand (profile tools), NATS user pb-bridge (for `sim`)",
          "entrypoint, profile or NATS user wrong")
    # The gateway connects to the bridge emulator, which listens (PB_BRIDGE_LISTEN) where
    # PB_BRIDGE_ADDR points; the bridge must not wait for the gateway to be healthy: the
    # active gateway is healthy only once a bridge listens.
    g = svcs.get("gateway", {})
    genv = g.get("environment", {})
    addr, listen = host_port(genv.get("PB_BRIDGE_ADDR")), host_port(benv.get("PB_BRIDGE_LISTEN"))
    backoff = str(genv.get("PB_BRIDGE_BACKOFF_MAX_MS", ""))
    problems = []
    if not addr or addr[0] not in svcs:
        problems.append(f"PB_BRIDGE_ADDR={genv.get('PB_BRIDGE_ADDR')} is not <compose service>:<port>")
    elif addr[0] != "bridge" or not listen or listen[1] != addr[1] or listen[0] not in ("0.0.0.0", "::"):
        problems.append(f"the bridge does not listen on all addresses, port {addr[1]} (PB_BRIDGE_LISTEN={benv.get('PB_BRIDGE_LISTEN')})")
    if not backoff.isdigit() or int(backoff) > 1000:
        problems.append(f"PB_BRIDGE_BACKOFF_MAX_MS={backoff or 'unset'}: an on-demand bridge waits up to 5 s (expected <= 1000)")
    if ((b.get("depends_on") or {}).get("gateway") or {}).get("condition") not in ("service_started",):
        problems.append("the bridge does not start the gateway (depends_on gateway: service_started; not healthy: a deadlock)")
    check(not problems, f"compose: gateway -> bridge: PB_BRIDGE_ADDR={genv.get('PB_BRIDGE_ADDR')}, "
          f"PB_BRIDGE_LISTEN={benv.get('PB_BRIDGE_LISTEN')}, back-off at most {backoff} ms", "; ".join(problems))
    done()

# ---- Dockerfile ------------------------------------------------------------------------------
INSTRUCTIONS = {"ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
                "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"}

def dockerfile_check(path):
    import dockerfile
    try:
        cmds = dockerfile.parse_file(path)
    except dockerfile.GoParseError as e:
        bad(f"Dockerfile: Docker's parser refuses it: {e}")
        done()
    unknown = [f"line {c.start_line}: {c.cmd}" for c in cmds if c.cmd.upper() not in INSTRUCTIONS]
    check(not unknown, f"Dockerfile: parsed by Docker's parser, {len(cmds)} instructions, all known", f"unknown {unknown}")
    # ARG defaults resolve the FROM lines' ${VARIABLES}.
    args = {}
    for c in cmds:
        if c.cmd.upper() == "ARG" and "=" in c.value[0]:
            k, v = c.value[0].split("=", 1)
            args.setdefault(k, v)
    def resolve(image):
        return re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), image)
    # Stages in order: (name, base image, instructions).
    stages = []
    for c in cmds:
        if c.cmd.upper() == "FROM":
            name = c.value[2] if len(c.value) >= 3 and c.value[1].upper() == "AS" else str(len(stages))
            stages.append((name, resolve(c.value[0]), []))
        elif stages:
            stages[-1][2].append(c)
    named = {n: (base, body) for n, base, body in stages}
    order = [n for n, _, _ in stages]
    check(order[-1:] == ["runtime"] and {"base", "prebuilt", "build"} <= set(order),
          f"Dockerfile: stages {', '.join(f'{n} ({b})' for n, b, _ in stages)}",
          "expected base, prebuilt, build and, last (the default target), runtime")
    if not {"base", "prebuilt", "build", "runtime"} <= set(order):
        done()
    check(named["build"][0].startswith("rust:1.95") and named["base"][0].startswith("gcr.io/distroless/cc-debian12"),
          f"Dockerfile: with a registry, built on {named['build'][0]}, run on {named['base'][0]}", "expected rust:1.95 and distroless/cc-debian12")
    check(order.index("prebuilt") < order.index("build"),
          "Dockerfile: `prebuilt` before `build` (Docker's legacy builder stops there, never pulling the Rust image)",
          f"order {order}")
    check(named["runtime"][0] == "base" and named["prebuilt"][0] == "base",
          "Dockerfile: runtime and prebuilt both FROM base (the same image but for the binaries' origin)",
          f"runtime FROM {named['runtime'][0]}, prebuilt FROM {named['prebuilt'][0]}")
    users = [c.value[0] for c in named["base"][1] if c.cmd.upper() == "USER"]
    check(users and users[-1] == "10001:10001", "Dockerfile: base runs as 10001:10001", f"USER {users}")
    build = " ".join(c.original for c in named["build"][1])
    copied = [c for c in named["runtime"][1] if c.cmd.upper() == "COPY" and "--from=build" in c.flags]
    # Each binary by name, as a word (pb-gateway must not pass for pb-gateway-x).
    bins = [b for b in BINARIES if not re.search(rf"(?<![\w-]){re.escape(b)}(?![\w-])", build)]
    check(copied and not bins and "/usr/local/bin" in " ".join(c.original for c in copied),
          f"Dockerfile: the {len(BINARIES)} binaries ({', '.join(BINARIES)}) go from the build stage to /usr/local/bin",
          f"missing {bins}")
    prebuilt = [c for c in named["prebuilt"][1] if c.cmd.upper() == "COPY"]
    check(prebuilt and "/usr/local/bin" in prebuilt[0].original,
          "Dockerfile: prebuilt copies the context's bin/ (scripts/containers stages the release binaries) to /usr/local/bin",
          f"{[c.original for c in prebuilt]}")
    done()

mode = sys.argv[1]
if mode == "k8s":
    k8s(sys.argv[2], sys.argv[3])
elif mode == "extract-nats":
    extract_nats(sys.argv[2], sys.argv[3], sys.argv[4])
elif mode == "privilege":
    privilege(sys.argv[2], sys.argv[3])
elif mode == "doctor":
    doctor(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
elif mode == "doctorings":
    print("\n".join(f"{k}\t{v}" for k, v in DOCTORINGS.items()))
elif mode == "compose":
    compose(sys.argv[2])
elif mode == "dockerfile":
    dockerfile_check(sys.argv[2])
else:
    sys.exit(f"unknown mode {mode}")
