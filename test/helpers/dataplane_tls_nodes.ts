// In-process data-plane TLS fixtures shared by the TLS tests: node certificates issued by a test
// CA for keys made in a temp dir, SDS cores serving TLS, DataPlaneClients over TLS, and a fresh
// refusal log per test (the server's own log mutes repeats for 5 s).

import * as fs from "node:fs";
import type { Socket, TCPSocketListener } from "bun";
import { join } from "node:path";
import { NodeRole } from "../../src/proto/dataplane_auth.ts";
import { DataPlaneClient } from "../../src/proto/dataplane_client.ts";
import { issueNodeCert, loadOrMakeNodeKey, materialFrom, type DataPlaneTlsMaterial, type NodeIdentity } from "../../src/proto/dataplane_tls.ts";
import type { SelfSignedCert } from "../../src/proto/tls_cert.ts";
import { RefusalLog } from "../../src/sds/refusal_log.ts";
import { startSdsCore, type SdsCore } from "../../src/sds/sds_core.ts";
import { MDM_ID, MiB, SDC_ID, TestGrants, credentialsOf, deviceIdOf, sdsIdOf } from "../sds_harness.ts";

export function sdcIdentity(id = SDC_ID): NodeIdentity {
  return { role: NodeRole.SDC, nodeId: id };
}

export function sdsIdentity(i: number): NodeIdentity {
  return { role: NodeRole.SDS, nodeId: sdsIdOf(i) };
}

/** Like materialFrom, for a key already made (materialFrom checks the certificate against that CA). */
export function materialForKey(authority: SelfSignedCert, id: NodeIdentity, k: { keyPem: string; publicKeyPem: string }): DataPlaneTlsMaterial {
  return materialFrom(authority.certPem, issueNodeCert(authority, id, k.publicKeyPem), k.keyPem, id);
}

/** A node's TLS material: its key in dir/keys-<tag> (made once), a certificate of `authority` naming `id`. */
export function nodeMaterial(dir: string, authority: SelfSignedCert, id: NodeIdentity, tag: string): DataPlaneTlsMaterial {
  return materialForKey(authority, id, loadOrMakeNodeKey(join(dir, `keys-${tag}`)));
}

/** SDS i serving TLS only, with a 16 MiB device and a certificate of `authority`. */
export function startTlsNode(dir: string, i: number, authority: SelfSignedCert, opts: { maxInFlightBytesPerConn?: number } = {}): SdsCore {
  const d = join(dir, `sds${i}`);
  fs.mkdirSync(d, { recursive: true });
  return startSdsCore({
    sdsId: sdsIdOf(i),
    mdmId: MDM_ID,
    dataDir: d,
    host: "127.0.0.1",
    port: 0,
    devices: [{ deviceId: deviceIdOf(i), path: join(d, "dev0.img"), sizeBytes: 16 * MiB }],
    tls: nodeMaterial(dir, authority, sdsIdentity(i), `sds${i}`),
    ...opts,
  });
}

/** A client of SDS `sdsIndex` at `port` as node `as` (TLS with `m`, or plaintext with null). */
export function tlsClient(port: number, sdsIndex: number, m: DataPlaneTlsMaterial | null, as: NodeIdentity = sdcIdentity()): DataPlaneClient {
  return new DataPlaneClient({
    host: "127.0.0.1",
    port,
    credentials: credentialsOf(as.role, as.nodeId),
    grants: as.role === NodeRole.SDC ? new TestGrants(as.nodeId) : undefined,
    expectSdsId: sdsIdOf(sdsIndex),
    reconnectBackoffMs: 0,
    connectTimeoutMs: 3000,
    ...(m === null ? {} : { tls: () => m }),
  });
}

/** Every refusal of this SDS logged with its reason from now on. */
export function freshRefusals(n: SdsCore): RefusalLog {
  const log = new RefusalLog("data plane", 0);
  Object.assign(n.server, { refusals: log });
  return log;
}

/**
 * A listener on a free loopback port that upgrades every accepted socket to TLS server-side at
 * once (upgradeTLS, as the SDS does) and hands each finished handshake to `onHandshake`.
 */
export function listenUpgradingTls(tls: object, onHandshake: (s: Socket<undefined>, ok: boolean) => void): TCPSocketListener<undefined> {
  return Bun.listen<undefined>({
    hostname: "127.0.0.1",
    port: 0,
    data: undefined,
    socket: {
      open: (raw) => {
        raw.upgradeTLS<undefined>({ data: undefined, tls, socket: { data: () => {}, handshake: (s, ok) => onHandshake(s, ok) } });
      },
      data: () => {},
    },
  });
}
