"""Static checks of deploy/compose/compose.yaml where no container engine
runs (tests/deploy.rs runs this with PyYAML): every file it mounts or builds
from exists, Prometheus scrapes services that exist on the port they serve
metrics on, the replicas' store is the Redis service, Grafana gets the
dashboard. Prints one line per check; exits 1 on the first failure.

    python3 deploy/check_compose.py
"""

import os
import sys
from urllib.parse import urlparse

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
COMPOSE_DIR = os.path.join(HERE, "compose")


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        sys.exit(1)


def main():
    with open(os.path.join(COMPOSE_DIR, "compose.yaml")) as f:
        compose = yaml.safe_load(f)
    services = compose["services"]
    check({"redis", "replica-a", "replica-b", "prometheus", "grafana"} <= set(services),
          "services: redis, replica-a, replica-b, prometheus, grafana")

    for name, service in services.items():
        build = service.get("build")
        if build:
            context = os.path.normpath(os.path.join(COMPOSE_DIR, build["context"]))
            dockerfile = os.path.join(context, build.get("dockerfile", "Dockerfile"))
            check(os.path.isfile(dockerfile), f"{name}: build file {os.path.relpath(dockerfile, HERE)} exists")
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                path = os.path.normpath(os.path.join(COMPOSE_DIR, source))
                check(os.path.exists(path), f"{name}: mounted {source} exists")
            else:
                check(source in compose.get("volumes", {}), f"{name}: named volume {source} declared")
        for secret in service.get("secrets", []):
            check(secret in compose.get("secrets", {}), f"{name}: secret {secret} declared")
        for port in service.get("ports", []):
            check(str(port).startswith("127.0.0.1:"), f"{name}: port {port} published on loopback only")

    for name, secret in compose.get("secrets", {}).items():
        path = os.path.join(COMPOSE_DIR, secret["file"])
        check(os.path.isfile(path), f"secret {name}: file {secret['file']} exists")

    metrics_ports = {}
    for name in ("replica-a", "replica-b"):
        env = services[name]["environment"]
        store = urlparse(env["CREATOR_BOOST_STORE"])
        check(store.scheme == "redis" and store.hostname in services,
              f"{name}: store {env['CREATOR_BOOST_STORE']} is a compose service")
        metrics_ports[name] = env["CREATOR_BOOST_METRICS_LISTEN"].rsplit(":", 1)[1]
        check(env["CREATOR_BOOST_WRITE_TOKEN_FILE"] == "/run/secrets/write_token",
              f"{name}: write token from the compose secret")
        check("health" in services[name]["healthcheck"]["test"], f"{name}: health check runs `creator-boost health`")

    prometheus_mount = next(v for v in services["prometheus"]["volumes"] if v.endswith(":/etc/prometheus:ro"))
    prometheus_dir = os.path.normpath(os.path.join(COMPOSE_DIR, prometheus_mount.split(":")[0]))
    with open(os.path.join(prometheus_dir, "prometheus.yml")) as f:
        prometheus = yaml.safe_load(f)
    for rule_file in prometheus["rule_files"]:
        check(os.path.isfile(os.path.join(prometheus_dir, rule_file)), f"prometheus: rule file {rule_file} mounted")
    targets = [t for job in prometheus["scrape_configs"] for c in job["static_configs"] for t in c["targets"]]
    for target in targets:
        host, port = target.rsplit(":", 1)
        check(metrics_ports.get(host) == port, f"prometheus: target {target} is a replica's metrics port")
    check(set(metrics_ports) == {t.rsplit(":", 1)[0] for t in targets}, "prometheus: scrapes every replica")

    grafana = services["grafana"]
    dashboards = next(v for v in grafana["volumes"] if ":/var/lib/grafana/dashboards" in v).split(":")[0]
    dashboard = os.path.join(COMPOSE_DIR, dashboards, "creator-boost-dashboard.json")
    check(os.path.isfile(dashboard), "grafana: dashboard JSON mounted")
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    check(home.endswith("/creator-boost-dashboard.json"), "grafana: dashboard is the home page")
    with open(os.path.join(COMPOSE_DIR, "grafana", "datasources", "prometheus.yaml")) as f:
        datasource = yaml.safe_load(f)["datasources"][0]
    host = urlparse(datasource["url"]).hostname
    check(host in services, f"grafana: datasource {datasource['url']} is a compose service")
    print("compose: all checks passed")


if __name__ == "__main__":
    main()
