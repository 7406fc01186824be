"""A CRI client for berth's tests: drives a container runtime's
RuntimeService over gRPC the way kubelet does for pod sandboxes.

Usage: client.py SOCKET COMMAND [ARGS]

  version                  the runtime's name and versions
  run POD                  RunPodSandbox; POD is a JSON object (below)
  status ID                PodSandboxStatus (verbose): state, addresses,
                           the network namespace path and the CNI result
  stop ID | remove ID      StopPodSandbox | RemovePodSandbox
  list                     ListPodSandbox
  bench N POD              N pods one after another: each RunPodSandbox
                           and PodSandboxStatus until ready, then each
                           stopped and removed; the durations in ms (pod
                           i publishes each host port of POD plus i)

POD: {"name", "uid", "namespace", "cgroup_parent", "annotations",
      "ports": [{"protocol": "TCP"|"UDP", "container_port", "host_port",
                 "host_ip"}]}

Every answer is one JSON document on stdout. A gRPC failure prints
{"error": CODE, "message": TEXT} and exits 1. The Python modules of the
proto (runtime_pb2*) must be on PYTHONPATH.
"""

import json
import sys
import time

import grpc

import runtime_pb2 as pb
import runtime_pb2_grpc as pb_grpc

# Bound for one call: a RunPodSandbox waits for the network plugins.
TIMEOUT_S = 120


def sandbox_config(pod):
    ports = [
        pb.PortMapping(
            protocol=pb.Protocol.Value(p.get("protocol", "TCP")),
            container_port=p["container_port"],
            host_port=p.get("host_port", 0),
            host_ip=p.get("host_ip", ""),
        )
        for p in pod.get("ports", [])
    ]
    # What kubelet sends for a pod on the pod network: its own network
    # namespace (NamespaceMode POD), a cgroup parent, a hostname.
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(
            name=pod["name"],
            uid=pod.get("uid", pod["name"] + "-uid"),
            namespace=pod.get("namespace", "default"),
            attempt=pod.get("attempt", 0),
        ),
        hostname=pod["name"],
        port_mappings=ports,
        labels={"app": pod["name"]},
        annotations=pod.get("annotations", {}),
        linux=pb.LinuxPodSandboxConfig(
            cgroup_parent=pod.get("cgroup_parent", ""),
            security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=pb.NamespaceOption(
                    network=pb.POD, pid=pb.CONTAINER, ipc=pb.POD
                )
            ),
        ),
    )


def netns_of(info):
    """The network namespace path from containerd's verbose `info`."""
    spec = info.get("runtimeSpec", {})
    for ns in spec.get("linux", {}).get("namespaces", []):
        if ns.get("type") == "network":
            return ns.get("path", "")
    return ""


def status(stub, sandbox_id):
    r = stub.PodSandboxStatus(
        pb.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=True),
        timeout=TIMEOUT_S,
    )
    info = {}
    if "info" in r.info:
        info = json.loads(r.info["info"])
    s = r.status
    return {
        "id": s.id,
        "name": s.metadata.name,
        "state": pb.PodSandboxState.Name(s.state),
        "ip": s.network.ip,
        "additional_ips": [i.ip for i in s.network.additional_ips],
        "netns": netns_of(info),
        "cni_result": info.get("cniResult"),
    }


def wait_ready(stub, sandbox_id):
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        s = status(stub, sandbox_id)
        if s["state"] == "SANDBOX_READY" or time.monotonic() > deadline:
            return s
        time.sleep(0.01)


def bench(stub, n, pod):
    ids, run_ms, stop_ms, remove_ms = [], [], [], []
    for i in range(n):
        p = dict(pod, name=f"{pod['name']}-{i}", uid=f"{pod['name']}-{i}-uid")
        # Each pod its own host ports: HOSTPORT + i.
        p["ports"] = [
            dict(m, host_port=m["host_port"] + i) if m.get("host_port") else m
            for m in pod.get("ports", [])
        ]
        t0 = time.monotonic()
        r = stub.RunPodSandbox(
            pb.RunPodSandboxRequest(config=sandbox_config(p)), timeout=TIMEOUT_S
        )
        s = wait_ready(stub, r.pod_sandbox_id)
        run_ms.append((time.monotonic() - t0) * 1000)
        if s["state"] != "SANDBOX_READY" or not s["ip"]:
            raise RuntimeError(f"pod {p['name']} is not ready: {s}")
        ids.append(r.pod_sandbox_id)
    for sandbox_id in ids:
        t0 = time.monotonic()
        stub.StopPodSandbox(
            pb.StopPodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=TIMEOUT_S
        )
        stop_ms.append((time.monotonic() - t0) * 1000)
    for sandbox_id in ids:
        t0 = time.monotonic()
        stub.RemovePodSandbox(
            pb.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=TIMEOUT_S
        )
        remove_ms.append((time.monotonic() - t0) * 1000)
    return {"ids": ids, "run_ms": run_ms, "stop_ms": stop_ms, "remove_ms": remove_ms}


def main(argv):
    sock, command, args = argv[1], argv[2], argv[3:]
    stub = pb_grpc.RuntimeServiceStub(grpc.insecure_channel("unix://" + sock))
    if command == "version":
        r = stub.Version(pb.VersionRequest(version="v1"), timeout=TIMEOUT_S)
        out = {
            "runtime_name": r.runtime_name,
            "runtime_version": r.runtime_version,
            "runtime_api_version": r.runtime_api_version,
        }
    elif command == "run":
        t0 = time.monotonic()
        r = stub.RunPodSandbox(
            pb.RunPodSandboxRequest(config=sandbox_config(json.loads(args[0]))),
            timeout=TIMEOUT_S,
        )
        out = {"id": r.pod_sandbox_id, "ms": (time.monotonic() - t0) * 1000}
    elif command == "status":
        out = status(stub, args[0])
    elif command == "stop":
        stub.StopPodSandbox(
            pb.StopPodSandboxRequest(pod_sandbox_id=args[0]), timeout=TIMEOUT_S
        )
        out = {}
    elif command == "remove":
        stub.RemovePodSandbox(
            pb.RemovePodSandboxRequest(pod_sandbox_id=args[0]), timeout=TIMEOUT_S
        )
        out = {}
    elif command == "list":
        r = stub.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=TIMEOUT_S)
        out = [
            {
                "id": p.id,
                "name": p.metadata.name,
                "state": pb.PodSandboxState.Name(p.state),
            }
            for p in r.items
        ]
    elif command == "bench":
        out = bench(stub, int(args[0]), json.loads(args[1]))
    else:
        raise SystemExit(f"unknown command {command!r}")
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    try:
        main(sys.argv)
    except grpc.RpcError as e:
        json.dump({"error": e.code().name, "message": e.details()}, sys.stdout)
        print()
        sys.exit(1)
