// The data plane's same-host Unix socket (src/proto/dataplane_local.ts): a client on the SDS's host
// reaches it over the socket, with the same handshake and frames (a 1 MiB write and its read-back,
// a write forwarded from primary to secondary); a stale socket file, a socket that leads to another
// SDS, or the shortcut switched off, all end on TCP with no request failed.

import { afterAll, beforeAll, expect, test } from "bun:test";
import * as fs from "node:fs";
import { Status } from "../src/proto/dataplane.ts";
import { NodeRole } from "../src/proto/dataplane_auth.ts";
import { DataPlaneClient } from "../src/proto/dataplane_client.ts";
import { localSocketPath } from "../src/proto/dataplane_local.ts";
import type { SdsCore } from "../src/sds/sds_core.ts";
import { MiB, SDC_ID, TestGrants, Vol, applyAll, clientTo, credentialsOf, pattern, readCopy, sdsIdOf, startNode, tmpDir } from "./sds_harness.ts";

const VOL = "0a00000000000031";
const vol = new Vol(VOL);
let dir: string;
let nodes: SdsCore[];

beforeAll(() => {
  dir = tmpDir("dplocal");
  process.env.PF_DATAPLANE_SOCKET_DIR = `${dir}/sock`;
  nodes = [startNode(dir, 0, 16 * MiB), startNode(dir, 1, 16 * MiB)];
  applyAll(nodes, [{ volumeId: VOL, extentBytes: 4 * MiB, extents: [{ index: 0, replicas: [0, 1] }] }]);
});

afterAll(async () => {
  for (const n of nodes) await n.stop();
  delete process.env.PF_DATAPLANE_SOCKET_DIR;
  delete process.env.PF_DATAPLANE_LOCAL;
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A client that means to reach SDS number `i` (so the handshake checks whom it reached). */
function sdcTo(n: SdsCore, i: number): DataPlaneClient {
  return new DataPlaneClient({ host: "127.0.0.1", port: n.port, credentials: credentialsOf(NodeRole.SDC, SDC_ID), grants: new TestGrants(SDC_ID), expectSdsId: sdsIdOf(i), reconnectBackoffMs: 0 });
}

test("an SDS on this host listens on the socket its address names, and a client uses it: 1 MiB written on both copies", async () => {
  const path = localSocketPath("127.0.0.1", nodes[0]!.port)!;
  expect(nodes[0]!.server.localSocket).toBe(path);
  expect(fs.statSync(path).isSocket()).toBe(true);
  const before = nodes[0]!.server.localConnsAccepted;
  const c = sdcTo(nodes[0]!, 0);
  try {
    const data = pattern(MiB, 11);
    expect((await vol.write(c, 0, MiB, data)).status).toBe(Status.OK);
    expect(c.transport).toBe("unix");
    expect(nodes[0]!.server.localConnsAccepted).toBe(before + 1);
    // the primary forwarded to the secondary over the secondary's socket too (its only client)
    expect(nodes[1]!.server.localConnsAccepted).toBeGreaterThanOrEqual(1);
    expect(Buffer.from(await vol.read(c, 0, MiB, MiB)).equals(Buffer.from(data))).toBe(true);
    expect(Buffer.from(readCopy(nodes[1]!, VOL, 0, MiB, MiB)).equals(Buffer.from(data))).toBe(true);
  } finally {
    c.close();
  }
});

test("a stale socket file (nobody listening) costs nothing: the client connects over TCP at once", async () => {
  const n = nodes[0]!;
  const path = n.server.localSocket!;
  fs.renameSync(path, `${path}.live`); // the listener stays bound under the other name
  const l = Bun.listen({ unix: `${path}.tmp`, socket: { data() {} } });
  fs.linkSync(`${path}.tmp`, path);
  l.stop(true); // unlinks its own name only: `path` is now a socket file nobody accepts on
  try {
    expect(fs.statSync(path).isSocket()).toBe(true);
    const before = n.server.localConnsAccepted;
    const c = clientTo(n);
    try {
      const data = pattern(4096, 14);
      expect((await vol.write(c, 0, 12288, data)).status).toBe(Status.OK);
      expect(c.transport).toBe("tcp");
      expect(c.isOpen).toBe(true);
      expect(n.server.localConnsAccepted).toBe(before);
    } finally {
      c.close();
    }
  } finally {
    fs.unlinkSync(path);
    fs.renameSync(`${path}.live`, path);
  }
});

test("after a fallback the client tries the socket again on a later connect (an SDS restarted on it)", async () => {
  const n = nodes[0]!;
  const path = n.server.localSocket!;
  fs.renameSync(path, `${path}.live`);
  const l = Bun.listen({ unix: `${path}.tmp`, socket: { data() {} } });
  fs.linkSync(`${path}.tmp`, path);
  l.stop(true); // a stale file, as a killed SDS leaves it
  const c = new DataPlaneClient({ host: "127.0.0.1", port: n.port, credentials: credentialsOf(NodeRole.SDC, SDC_ID), grants: new TestGrants(SDC_ID), expectSdsId: sdsIdOf(0), reconnectBackoffMs: 0, localSocketRetryMs: 0 });
  try {
    expect((await vol.write(c, 0, 20480, pattern(4096, 16))).status).toBe(Status.OK);
    expect(c.transport).toBe("tcp");
    fs.unlinkSync(path);
    fs.renameSync(`${path}.live`, path); // the SDS is on its socket again
    // drop the TCP connection under the client (as an SDS restart would): the next IO reconnects
    (c as unknown as { socket: { terminate(): void } }).socket.terminate();
    await Bun.sleep(20);
    const before = n.server.localConnsAccepted;
    expect((await vol.write(c, 0, 24576, pattern(4096, 17))).status).toBe(Status.OK);
    expect(c.transport).toBe("unix");
    expect(n.server.localConnsAccepted).toBe(before + 1);
  } finally {
    c.close();
    if (fs.existsSync(`${path}.live`)) {
      fs.rmSync(path, { force: true });
      fs.renameSync(`${path}.live`, path);
    }
  }
});

test("a stopped SDS takes its socket file away", async () => {
  const n = startNode(dir, 2, 16 * MiB);
  const path = n.server.localSocket!;
  expect(fs.statSync(path).isSocket()).toBe(true);
  await n.stop();
  expect(fs.existsSync(path)).toBe(false);
});

test("a socket that leads to another SDS fails its handshake, and the same request goes over TCP to the right one", async () => {
  const path = localSocketPath("127.0.0.1", nodes[0]!.port)!;
  const other = nodes[1]!.server.localSocket!;
  fs.renameSync(path, `${path}.mine`);
  fs.symlinkSync(other, path); // a socket file at node 0's path that reaches node 1
  try {
    const c = sdcTo(nodes[0]!, 0);
    try {
      const data = pattern(4096, 12);
      expect((await vol.write(c, 0, 8192, data)).status).toBe(Status.OK);
      expect(c.transport).toBe("tcp");
      expect(Buffer.from(readCopy(nodes[0]!, VOL, 0, 8192, 4096)).equals(Buffer.from(data))).toBe(true);
    } finally {
      c.close();
    }
  } finally {
    fs.unlinkSync(path);
    fs.renameSync(`${path}.mine`, path);
  }
});

test("PF_DATAPLANE_LOCAL=0 keeps every connection on TCP", async () => {
  process.env.PF_DATAPLANE_LOCAL = "0";
  try {
    const before = nodes[0]!.server.localConnsAccepted;
    const c = sdcTo(nodes[0]!, 0);
    try {
      expect((await vol.write(c, 0, 0, pattern(4096, 13))).status).toBe(Status.OK);
      expect(c.transport).toBe("tcp");
      expect(nodes[0]!.server.localConnsAccepted).toBe(before);
    } finally {
      c.close();
    }
  } finally {
    delete process.env.PF_DATAPLANE_LOCAL;
  }
});

test("a socket folder others can write is not trusted: no socket is bound there, and a client does not use one found there", async () => {
  const open = `${dir}/open`;
  fs.mkdirSync(open, { mode: 0o700 });
  fs.chmodSync(open, 0o777);
  const saved = process.env.PF_DATAPLANE_SOCKET_DIR;
  process.env.PF_DATAPLANE_SOCKET_DIR = open;
  const n = startNode(dir, 3, 16 * MiB);
  try {
    expect(n.server.localSocket).toBeNull();
  } finally {
    process.env.PF_DATAPLANE_SOCKET_DIR = saved;
    await n.stop();
  }
  // node 0's own folder, opened to others after it bound its socket: clients stop trusting it
  const sockDir = `${dir}/sock`;
  fs.chmodSync(sockDir, 0o777);
  try {
    expect(fs.statSync(nodes[0]!.server.localSocket!).isSocket()).toBe(true);
    const c = sdcTo(nodes[0]!, 0);
    try {
      expect((await vol.write(c, 0, 16384, pattern(4096, 15))).status).toBe(Status.OK);
      expect(c.transport).toBe("tcp");
    } finally {
      c.close();
    }
  } finally {
    fs.chmodSync(sockDir, 0o700);
  }
});

test("a socket that accepts and never answers (a hung SDS) fails the requests after one connect timeout, without a second wait over TCP", async () => {
  const n = nodes[0]!;
  const path = n.server.localSocket!;
  fs.renameSync(path, `${path}.live`);
  let accepted = 0;
  const hung = Bun.listen({ unix: path, socket: { open() { accepted++; }, data() {} } });
  try {
    const c = new DataPlaneClient({ host: "127.0.0.1", port: n.port, credentials: credentialsOf(NodeRole.SDC, SDC_ID), grants: new TestGrants(SDC_ID), expectSdsId: sdsIdOf(0), reconnectBackoffMs: 0, connectTimeoutMs: 300 });
    try {
      // UNAVAILABLE: the write was not retried over TCP, where the real SDS would have taken it
      expect((await vol.write(c, 0, 28672, pattern(4096, 18))).status).toBe(Status.UNAVAILABLE);
      expect(c.transport).toBe("unix");
      expect(accepted).toBe(1);
    } finally {
      c.close();
    }
  } finally {
    hung.stop(true);
    fs.rmSync(path, { force: true });
    fs.renameSync(`${path}.live`, path);
  }
});
