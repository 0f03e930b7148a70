// A Python `requests` client driving the MDM exactly as PyPowerFlex 2.0 does (HTTPS; for every
// call: login, version, login again, the call with the token as Basic password, logout; numbers
// and booleans as strings; extra volumeClass fields), verifying our in-process certificate with
// OpenSSL (verify=cert.pem), so the DER builder is checked by a second TLS stack.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runMdm, type MdmHandle } from "../src/mdm/main.ts";
import { CLUSTER_API_PREFIX, CLUSTER_SECRET_HEADER, ClusterPaths } from "../src/proto/cluster_api.ts";
import { GiB } from "./mdm_fixture.ts";

const PY = String.raw`
import json, sys, requests
base, cert, password = sys.argv[1], sys.argv[2], sys.argv[3]
api = base + "/api"

def token():
    r = requests.get(api + "/login", auth=("admin", password), verify=cert, timeout=30)
    assert r.status_code == 200, ("login", r.status_code, r.text)
    return r.json()

def send(method, path, params=None):
    """PyPowerFlex base_client.send_request: login, version, login, call, logout."""
    t = token()
    v = requests.get(api + "/version", auth=("admin", t), verify=cert, timeout=30)
    assert v.status_code == 200 and v.json() == "3.6", ("version", v.text)
    t = token()
    if method == "GET":
        r = requests.get(api + path, auth=("admin", t), verify=cert, timeout=30)
    else:
        r = requests.post(api + path, auth=("admin", t), headers={"content-type": "application/json"},
                          data=json.dumps({k: v for k, v in (params or {}).items() if v is not None}), verify=cert, timeout=30)
    lo = requests.get(api + "/logout", auth=("admin", t), verify=cert, timeout=30)
    assert lo.status_code == 200, ("logout", lo.status_code)
    return r.status_code, r.json()

def ok(method, path, params=None):
    status, body = send(method, path, params)
    assert status == 200, (method, path, status, body)
    return body

def create(type_, params):
    new_id = ok("POST", "/types/%s/instances" % type_, params)["id"]
    return ok("GET", "/instances/%s::%s" % (type_, new_id))

out = {}
system = ok("GET", "/types/System/instances")[0]
out["systemId"] = system["id"]
out["mdmVersion"] = system["mdmCluster"]["master"]["versionInfo"]
pd = create("ProtectionDomain", {"name": "pd1"})
sp = create("StoragePool", {"mediaType": "HDD", "protectionDomainId": pd["id"], "name": "sp1",
                            "dataLayout": "MediumGranularity", "sparePercentage": "10",
                            "zeroPaddingEnabled": "True", "useRmcache": "False", "checksumEnabled": None})
out["sparePercentage"] = sp["sparePercentage"]
out["poolId"] = sp["id"]
print(json.dumps(out), flush=True)
sys.stdin.readline()  # the test joins SDSs and an SDC now

sdc = [s for s in ok("GET", "/types/Sdc/instances") if s["sdcGuid"] == "py-guid"][0]
vol = create("Volume", {"storagePoolId": sp["id"], "volumeSizeInGb": "8", "name": "pyvol",
                        "volumeType": "ThinProvisioned", "useRmcache": None, "compressionMethod": None,
                        "volumeClass": "defaultclass"})
assert vol["sizeInKb"] == 8 * 1024 * 1024 and vol["mappedSdcInfo"] is None, vol
ok("POST", "/instances/Volume::%s/action/addMappedSdc" % vol["id"],
   {"sdcId": sdc["id"], "allowMultipleMappings": "False", "accessMode": "ReadWrite", "volumeClass": "defaultclass"})
vol = ok("GET", "/instances/Volume::%s" % vol["id"])
assert [m["sdcId"] for m in vol["mappedSdcInfo"]] == [sdc["id"]], vol
ok("POST", "/instances/Volume::%s/action/setVolumeSize" % vol["id"], {"sizeInGB": "16", "volumeClass": "defaultclass"})
ok("POST", "/instances/Volume::%s/action/setVolumeName" % vol["id"], {"newName": "pyvol2"})
vol = [v for v in ok("GET", "/types/Volume/instances") if v["name"] == "pyvol2"][0]
assert vol["sizeInKb"] == 16 * 1024 * 1024, vol
stats = ok("POST", "/types/StoragePool/instances/action/querySelectedStatistics",
           {"properties": ["numOfVolumes", "maxCapacityInKb"], "ids": [sp["id"]]})
assert stats[sp["id"]]["numOfVolumes"] == 1, stats
status, err = send("POST", "/instances/Volume::%s/action/removeVolume" % vol["id"], {"removeMode": "ONLY_ME"})
assert status == 500 and err["errorCode"] > 0 and "mapped" in err["message"], (status, err)
ok("POST", "/instances/Volume::%s/action/removeMappedSdc" % vol["id"], {"sdcId": sdc["id"]})
ok("POST", "/instances/Volume::%s/action/removeVolume" % vol["id"], {"removeMode": "ONLY_ME", "volumeClass": "defaultclass"})
status, err = send("GET", "/instances/Volume::%s" % vol["id"])
assert status == 500 and err["errorCode"] == 79, (status, err)
print(json.dumps({"done": True}), flush=True)
`;

let dir = "";
let h: MdmHandle;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "pf-mdm-py-"));
  h = await runMdm({ dataDir: dir, listenHost: "127.0.0.1", listenPort: 0, adminPassword: "Scaleio123" });
});
afterAll(async () => {
  await h.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function clusterPost(path: string, body: unknown): Promise<void> {
  const res = await fetch(h.url + CLUSTER_API_PREFIX + path, {
    method: "POST",
    headers: { [CLUSTER_SECRET_HEADER]: h.clusterSecret, "content-type": "application/json" },
    body: JSON.stringify(body),
    tls: { ca: h.certPem ?? undefined },
  } as RequestInit);
  expect(res.status).toBe(200);
}

test("a PyPowerFlex-style Python client (requests, OpenSSL verifying our certificate) runs the volume lifecycle", async () => {
  const which = Bun.spawnSync(["python3", "-c", "import requests"]);
  if (which.exitCode !== 0) throw new Error("python3 with the requests module is needed for this test (apt-get install -y python3-requests)");
  const py = Bun.spawn(["python3", "-c", PY, h.url, h.certFile!, "Scaleio123"], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  const reader = py.stdout.getReader();
  let buf = "";
  const nextLine = async (): Promise<string> => {
    while (!buf.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`python client failed: ${await new Response(py.stderr).text()}`);
      buf += new TextDecoder().decode(value);
    }
    const line = buf.slice(0, buf.indexOf("\n"));
    buf = buf.slice(buf.indexOf("\n") + 1);
    return line;
  };
  try {
    const first = JSON.parse(await nextLine()) as { systemId: string; mdmVersion: string; sparePercentage: number };
    expect(first.mdmVersion).toBe("R3_6.0.0");
    expect(first.sparePercentage).toBe(10);
    for (let i = 1; i <= 3; i++) {
      await clusterPost(ClusterPaths.sdsJoin, {
        name: `sds${i}`, host: "127.0.0.1", dataPort: 7200 + i, protectionDomainName: "pd1", storagePoolName: "sp1",
        devices: [{ path: `/dev/py${i}`, capacityBytes: 100 * GiB }],
      });
    }
    await clusterPost(ClusterPaths.sdcJoin, { guid: "py-guid", host: "127.0.0.1", name: "pyhost" });
    py.stdin.write("go\n");
    await py.stdin.flush();
    expect(JSON.parse(await nextLine())).toEqual({ done: true });
    expect(await py.exited).toBe(0);
  } finally {
    py.kill(9);
  }
}, 120_000);
