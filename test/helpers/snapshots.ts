// Snapshot steps shared by the end-to-end snapshot tests: one snapshot through the REST call
// PowerFlex clients send, and mapping a volume (or snapshot) to the cluster's SDC until the SDC
// exports it.

import type { TestCluster } from "./cluster.ts";
import { nbdinfoJson } from "./real_clients.ts";
import { waitFor } from "./recovery.ts";
import type { Rest } from "./rest.ts";

/** snapshotVolumes of one volume (read-only unless said otherwise). */
export async function snapshotNamed(rest: Rest, volume: string, name: string, readOnly = true): Promise<void> {
  const id = await rest.volumeId(volume);
  await rest.ok("/instances/System/action/snapshotVolumes", { snapshotDefs: [{ volumeId: id, snapshotName: name }], ...(readOnly ? { accessModeLimit: "ReadOnly" } : {}) });
}

/** Map a volume to the cluster's SDC and wait until the SDC exports it. */
export async function mapAndWait(c: TestCluster, rest: Rest, name: string, accessMode: "ReadOnly" | "ReadWrite"): Promise<void> {
  const sdcId = await rest.sdcId();
  await rest.ok(`/instances/Volume::${await rest.volumeId(name)}/action/addMappedSdc`, { sdcId, accessMode, allowMultipleMappings: "TRUE" });
  await waitFor(`the SDC to export ${name}`, 20_000, async () => (await nbdinfoJson(`nbd://127.0.0.1:${c.ports.nbd}`, ["--list"])).exports.some((e) => e["export-name"] === name));
}
