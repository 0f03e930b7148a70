// Child process of the MDM kill -9 test (not a test file): runs runMdm on the data dir given as
// argv[2] over HTTPS on 127.0.0.1 port 0 and prints one JSON line {url, port, certPem,
// clusterSecret, adminPassword}; then serves until killed.

import { runMdm } from "../src/mdm/main.ts";

const dataDir = process.argv[2];
if (!dataDir) throw new Error("usage: mdm_child.ts DATA_DIR");
const h = await runMdm({ dataDir, listenHost: "127.0.0.1", listenPort: 0, adminPassword: "child-pass-1", clusterSecret: "child-cluster-secret-123" });
process.stdout.write(JSON.stringify({ url: h.url, port: h.port, certPem: h.certPem, clusterSecret: h.clusterSecret, adminPassword: h.adminPassword }) + "\n");
